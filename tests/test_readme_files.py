"""Every file the README shows or links (figures, tables, scripts) is in the repository and
not hidden by .gitignore (issue 14, item 1: ``results/`` once matched ``docs/results/``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(not README.exists(), reason="needs the source checkout")


def _linked_paths() -> list[str]:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)\)", text)  # [text](path) and ![alt](path)
    return sorted({p for p in links if not p.startswith(("http://", "https://", "mailto:"))})


def test_readme_links_exist():
    paths = _linked_paths()
    assert any(p.startswith("docs/results/") for p in paths)  # the figures are linked
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert missing == []


def test_readme_files_are_not_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", *_linked_paths()], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert ignored == []
    # A run's own output directory stays ignored.
    assert subprocess.run(["git", "check-ignore", "-q", "results/x"], cwd=ROOT).returncode == 0


# -- every Markdown page's links and the section references of docs, code and tests -------

DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, ROOT / "CONTRIBUTING.md", *DOCS]


def _headings(page: Path) -> list[str]:
    """The page's headings (outside code blocks) and the names of its bold paragraph leads."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    heads = re.findall(r"^#{1,6} (.+)$", text, re.M)
    leads = re.findall(r"^(?:[*-] )?\*\*([^*]+?)\.?\*\*", text, re.M)  # also in bullets
    return [h.strip() for h in heads + leads]


def _slug(heading: str) -> str:
    """GitHub's and MyST's anchor of a heading: lower case, punctuation dropped, '-' for ' '."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_page_links_exist_with_their_anchors():
    """README, CONTRIBUTING and docs/*.md: each relative link, resolved from its page, names a
    file, and a #anchor into a Markdown page names one of its headings (the README test
    above checks the README's files only, not docs/ links or anchors)."""
    assert len(DOCS) >= 8
    broken = []
    for page in PAGES:
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if link.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path) if path else page
            if not target.exists():
                broken.append(f"{page.name}: {link}")
            elif anchor and target.suffix == ".md":
                if anchor not in {_slug(h) for h in _headings(target)}:
                    broken.append(f"{page.name}: {link} (no such heading)")
    assert broken == []


def test_section_references_name_a_section():
    """'docs/ddp.md, "Stale cap"' in the docs, the package, the benches and the tests names a
    heading or a bold paragraph of that page (two named sections that did not exist)."""
    sources = [*PAGES, *sorted((ROOT / "python").rglob("*.py"))]
    sources += sorted((ROOT / "bench").glob("*.py")) + sorted((ROOT / "tests").glob("*.py"))
    pages = {page.name: [h.lower() for h in _headings(page)] for page in DOCS}
    found, dangling = 0, []
    for source in sources:
        text = " ".join(source.read_text(encoding="utf-8").split())
        text = text.replace('" "', '"').replace("# ", "")  # strings and comments over lines
        for page, section in re.findall(r'(\w+\.md),? (?:section )?"([^"]+)"', text):
            if page not in pages:
                continue
            found += 1
            if not any(h.startswith(section.lower()) for h in pages[page]):
                dangling.append(f"{source.relative_to(ROOT)}: {page}, {section!r}")
    assert found >= 20
    assert dangling == []


def test_same_page_references_name_a_section():
    """'("Warm-up" below)' names a heading or bold paragraph of the same page ('see "A
    LIBSVM file" below' named none)."""
    found, dangling = 0, []
    for page in PAGES:
        text = " ".join(page.read_text(encoding="utf-8").split())
        heads = [h.lower() for h in _headings(page)]
        for section in re.findall(r'"([^"]+)"\)? (?:below|above)', text):
            found += 1
            if not any(h.startswith(section.lower()) for h in heads):
                dangling.append(f"{page.name}: {section!r}")
    assert found >= 20
    assert dangling == []


def test_architecture_map_names_every_module():
    """docs/architecture.md's map of the tree names every module of the package
    (distributed/engine_config.py and torch/_group_check.py were missing from it)."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    tree = text.split("```")[1]
    modules = [
        path
        for path in sorted((ROOT / "python" / "laqcore").rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py")
    ]
    assert len(modules) > 50
    assert [p.name for p in modules if p.name not in tree] == []
