"""The README stays a tour a newcomer reads in minutes, and every link in it leads somewhere.

The manual is the MkDocs site in ``docs/`` (``mkdocs build --strict`` in ``make test`` checks the links
between its pages); the README is not part of that site, so its links to the pages are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.paths import REPO_ROOT

README = REPO_ROOT / "README.md"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def heading_anchors(page: Path) -> set[str]:
    """The anchors MkDocs gives ``page``'s headings (Python-Markdown's ``toc`` slugs), fenced code skipped."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    anchors = set()
    for title in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.MULTILINE):
        plain = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", title)
        slug = re.sub(r"[^\w\s-]", "", plain).strip().lower()
        anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def test_the_readme_is_at_most_200_lines() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_every_relative_link_in_the_readme_leads_to_a_file_and_heading() -> None:
    links = [link for link in LINK.findall(README.read_text()) if not re.match(r"[a-z]+:", link)]
    assert any(link.startswith("docs/") for link in links), "the README links to the docs pages"
    for link in links:
        path, _, anchor = link.partition("#")
        target = REPO_ROOT / path
        assert target.is_file(), f"README.md links to {link}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(target), f"README.md links to {link}: no such heading"


def test_the_anchor_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Gateways: forward-auth\n\n```sh\n# not a heading\n```\n")
    assert heading_anchors(page) == {"title", "gateways-forward-auth"}
