"""`dvc plots show` gives a page that draws every chart in a headless Chromium with no network (a network
namespace of its own where allowed, every host name unresolvable). The same page made with DVC's CDN template
must draw nothing there: so the test can fail, and the browser really had no network."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from dvc_render.html import PAGE_HTML

from scripts.pipeline_copy import REPO, copy_pipeline
from scripts.vendor_vega import PACKAGES

BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium")
CHARTS = [
    "Training_cost_per_epoch",
    "Test_cost__when_data_test_size___0_",
    "plots_confusion_low_level_csv",
    "plots_confusion_functional_csv",
    "plots_confusion_high_level_csv",
]


# A chart's <div>, and the size of the canvas drawn in it (before the next chart's <div>)
CANVAS = re.compile(r'<div id="(\w+)"[^>]*>(?:(?!<div id=)[\s\S])*?<canvas width="(\d+)" height="(\d+)"')


def offline_browser(page: Path, profile: Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Open `page` with no network; the canvases it drew and the page's uncaught errors."""
    command = [
        BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=30000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        command = ["unshare", "-n", *command]  # no network interface at all (needs root)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    sizes = {chart: (int(width), int(height)) for chart, width, height in CANVAS.findall(result.stdout)}
    errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and re.search("Uncaught|Error", line)]
    return sizes, errors


def test_every_chart_draws_in_a_browser_without_network(tmp_path):
    root = copy_pipeline(tmp_path / "repo")
    for name in ("cost", "confusion"):
        shutil.copytree(REPO / "plots" / name, root / "plots" / name)
    # The committed run has no test split (its test-cost files are a header): give that chart rows too.
    (root / "plots/test_cost").mkdir()
    for impl in ("low_level", "functional", "high_level"):
        (root / f"plots/test_cost/{impl}.tsv").write_text("epoch\ttest_cost\n0\t1.0986123\n100\t0.7\n200\t0.6\n")

    def plots_show(out: str, *template: str) -> Path:
        subprocess.run(["dvc", "plots", "show", "-o", out, *template], cwd=root, check=True, capture_output=True)
        return root / out / "index.html"

    page = plots_show("offline")  # the template named in .dvc/config
    text = page.read_text()
    assert "cdn.jsdelivr.net" not in text and "Training cost per epoch" in text
    for impl in ("low_level", "functional", "high_level"):
        assert text.count(f'"filename": "{impl}.tsv"') == 1001 + 3  # a cost per epoch, 0 to 1000, and 3 test costs
    if BROWSER is None:
        pytest.skip("no headless Chromium (Debian: apt-get install chromium-headless-shell)")
    sizes, errors = offline_browser(page, tmp_path / "profile")
    assert errors == []
    assert sorted(sizes) == sorted(CHARTS)
    assert all(width > 100 and height > 100 for width, height in sizes.values()), sizes

    (tmp_path / "cdn.html").write_text(PAGE_HTML)
    page = plots_show("cdn", "--html-template", str(tmp_path / "cdn.html"))
    sizes, errors = offline_browser(page, tmp_path / "profile-cdn")
    assert sizes == {} and any("vegaEmbed is not defined" in line for line in errors), (sizes, errors)


def test_the_template_carries_the_pinned_libraries_and_their_licences():
    page = (REPO / "plots/offline-template.html").read_text()
    for name, version, _, _ in PACKAGES:
        assert f"/* {name}@{version} */" in page
        licence = (REPO / f"plots/vega-licenses/{name}.LICENSE").read_text()
        assert "Redistribution and use in source and binary forms" in licence
    assert "<script src=" not in page and "{plot_divs}" in page and "{scripts}" not in page
