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
