"""Write plots/offline-template.html: DVC's plot page with vega, vega-lite and vega-embed inside it.

`dvc plots show` writes dvc_plots/index.html, which by default loads these three libraries from a
public CDN, so the page is blank on a machine without a network. .dvc/config points DVC at this
template instead (`plots.html_template`): the libraries travel inside the page, which then opens
anywhere, also when it is mailed or copied off the machine.

The versions are the ones DVC's own template loads (dvc_render/vega.py), so the specs DVC writes
render as DVC intends. Each package comes from the npm registry and is checked against the
integrity hash the registry published for it; its licence goes to plots/vega-licenses/.
Run it only to change a version (it needs the npm registry):  python scripts/vendor_vega.py
"""

import base64
import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

# name, version, the file DVC's template loads, the npm registry's sha512 of the package tarball
PACKAGES = [
    (
        "vega",
        "5.20.2",
        "build/vega.min.js",
        "qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
    ),
    (
        "vega-lite",
        "5.2.0",
        "build/vega-lite.min.js",
        "Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
    ),
    (
        "vega-embed",
        "6.18.2",
        "build/vega-embed.min.js",
        "wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
    ),
]
TEMPLATE = Path("plots/offline-template.html")
LICENSES = Path("plots/vega-licenses")

# DVC replaces {plot_divs} with the charts and {refresh_tag} with `dvc plots show --open`'s refresh
# tag; there is no {scripts}, so DVC's CDN script tags are left out.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Made by scripts/vendor_vega.py: {versions} (BSD-3-Clause, see plots/vega-licenses/) -->
{libraries}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def package_files(name: str, version: str, path: str, integrity: str) -> tuple[str, str]:
    """The library's minified script and its licence, from the registry's tarball, checked."""
    url = f"https://registry.npmjs.org/{name}/-/{name}-{version}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        tarball = response.read()
    digest = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != integrity:
        raise SystemExit(f"vendor_vega: {url}: sha512 {digest} is not the registry's {integrity}")
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        script, license_text = (tar.extractfile(f"package/{p}").read().decode() for p in (path, "LICENSE"))
    # The script goes inside <script>...</script> and DVC fills the page by plain text replacement.
    for forbidden in ("</script", "{plot_divs}", "{refresh_tag}", "{scripts}"):
        if forbidden in script:
            raise SystemExit(f"vendor_vega: {name} {version} contains {forbidden!r}: it cannot be inlined")
    return script, license_text


def main() -> None:
    libraries, versions = [], []
    LICENSES.mkdir(parents=True, exist_ok=True)
    for name, version, path, integrity in PACKAGES:
        script, license_text = package_files(name, version, path, integrity)
        libraries.append(f"    <script>/* {name}@{version} */\n{script.strip()}\n    </script>")
        versions.append(f"{name}@{version}")
        (LICENSES / f"{name}.LICENSE").write_text(license_text)
    page = PAGE.replace("{versions}", ", ".join(versions)).replace("{libraries}", "\n".join(libraries))
    TEMPLATE.write_text(page)
    print(f"wrote {TEMPLATE} ({len(page.encode()):,} bytes): {', '.join(versions)}")


if __name__ == "__main__":
    main()
