"""The documentation a user reads: a short README, docs/ whose links resolve, and every command either run by a
test or marked as not run."""

import re

import pytest

from conftest import ROOT

pytestmark = pytest.mark.static

PAGES = [ROOT / "README.md", ROOT / "inventories" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_short_and_has_what_a_user_looks_for():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings == ["What it deploys", "Requirements", "Getting started", "Playbooks", "Roles", "Operations",
                        "Development", "Benchmarks", "Known issues", "License"]
    # no history in it: no commit hashes, no results file names
    assert not re.search(r"\b[0-9a-f]{7,40}\b(?![^`]*`)", text.replace(re.search(
        r"<!-- bench-summary:begin -->.*<!-- bench-summary:end -->", text, re.S).group(0), ""))
    assert "benchmarks/results/2" not in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve()
        assert resolved.exists(), target
        if anchor and resolved.suffix == ".md":
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)}
            assert anchor in slugs, target


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_block_says_whether_a_test_runs_it(page):
    for indent, body in re.findall(r"^( *)```(?:sh|bash|console)\n(.*?)^\1```", page.read_text(), re.M | re.S):
        first = body.strip().splitlines()[0].strip()
        assert re.match(r"# (run by|not run)", first), first
