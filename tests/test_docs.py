"""The README and docs/ link only to files that exist, and the README reaches every page of docs/."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The image's copy of the project (its `test` service) leaves out .ci/, wheels/ and more.
pytestmark = pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout of the whole repository")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def local_links(page: Path) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_local_link_points_to_a_file():
    broken = [
        f"{page.relative_to(REPO)}: {target}"
        for page in PAGES
        for target in local_links(page)
        if not (page.parent / target).exists()
    ]
    assert broken == []


def test_the_readme_links_every_docs_page():
    linked = {(REPO / target).resolve() for target in local_links(REPO / "README.md")}
    assert [page for page in PAGES[1:] if page.resolve() not in linked] == []
