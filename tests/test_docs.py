"""The README and docs/ link only to files and headings that exist, and the README reaches every page of docs/."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The image's copy of the project (its `test` service) leaves out .ci/, wheels/ and more.
pytestmark = pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout of the whole repository")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def local_links(page: Path) -> list[tuple[str, str]]:
    """Each link to a file of the repository or a heading, as (path, anchor); an empty path is the page itself."""
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [tuple(t.partition("#")[::2]) for t in targets if not re.match(r"[a-z]+:", t)]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as
    hyphens, and -1, -2, ... after a repeated one."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # no headings in code blocks
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in found:
            n += 1
            anchor = f"{slug}-{n}"
        found.add(anchor)
    return found


def test_every_local_link_points_to_a_file_and_heading():
    broken = []
    for page in PAGES:
        for path, anchor in local_links(page):
            target = page.parent / path if path else page
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in anchors(target)):
                broken.append(f"{page.relative_to(REPO)}: {path}#{anchor}")
    assert broken == []


def test_headings_get_githubs_anchors(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# A `b`, c!\n## Q & A\n```\n# not a heading\n```\n## Q & A\n")
    assert anchors(page) == {"a-b-c", "q--a", "q--a-1"}


def test_the_readme_links_every_docs_page():
    linked = {(REPO / path).resolve() for path, _ in local_links(REPO / "README.md")}
    assert [page for page in PAGES[1:] if page.resolve() not in linked] == []
