"""The Python examples of the README and the user guide run as written, and print what the
page says they print (a ```text block after the example, or a ``# [...]`` comment under a
``print``). The DDP fragments (``ddp_model``, a training loop) need processes and a model of
the reader's: they are left to the hook tests."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import laqcore
from laqcore.compressors import base as compressor_base

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/quickstart.md", "docs/algorithms.md"]

pytestmark = pytest.mark.skipif(
    not (ROOT / "README.md").exists(), reason="needs the source checkout"
)


def _blocks(page: str) -> list[tuple[int, str, str | None]]:
    """(line, code, the ```text block right after it, if any) of each runnable python block."""
    text = (ROOT / page).read_text(encoding="utf-8")
    fence = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)
    found = list(fence.finditer(text))
    blocks = []
    for i, m in enumerate(found):
        if m.group(1) != "python" or "torch" in m.group(2):
            continue
        after = found[i + 1] if i + 1 < len(found) else None
        shown = None
        if after is not None and after.group(1) == "text":
            between = text[m.end() : after.start()]
            if "print" in between:  # "prints (...):" introduces the block
                shown = after.group(2)
        blocks.append((text.count("\n", 0, m.start()) + 1, m.group(2), shown))
    return blocks


def _comment_output(code: str) -> list[str]:
    """The ``# ...`` comment lines that follow a ``print(...)`` line: its shown output."""
    lines = code.splitlines()
    return [
        nxt[2:]
        for line, nxt in zip(lines, lines[1:])
        if line.startswith("print(") and nxt.startswith("# ")
    ]


# Read at collection, so only where the pages are (the wheel's tests run outside the checkout).
HAVE_PAGES = (ROOT / "README.md").exists()
BLOCKS = [(page, *block) for page in PAGES for block in _blocks(page)] if HAVE_PAGES else []


@pytest.mark.parametrize(
    ("page", "line", "code", "shown"), BLOCKS, ids=[f"{b[0]}:{b[1]}" for b in BLOCKS]
)
def test_example_runs_and_prints_what_the_page_shows(page, line, code, shown, private_cache):
    # A block may use what an earlier block of its page imported (the quick start's
    # threads example uses laqcore): the reader's session has it.
    namespace: dict[str, object] = {"laqcore": laqcore}
    threads = laqcore.get_num_threads()
    # A block that registers a compressor of its own (docs/algorithms.md) must not change
    # available_compressors() for the tests after it.
    registry = compressor_base._REGISTRY
    saved = dict(registry.entries), dict(registry.aliases), set(registry.deprecated)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
    finally:
        laqcore.set_num_threads(threads)
        registry.entries.clear()
        registry.entries.update(saved[0])
        registry.aliases.clear()
        registry.aliases.update(saved[1])
        registry.deprecated.clear()
        registry.deprecated.update(saved[2])
    printed = out.getvalue().splitlines()
    if shown is not None:
        assert printed == shown.splitlines()
    for expected in _comment_output(code):
        assert expected in printed


def test_shown_outputs_are_found():
    """The two kinds of shown output the test compares exist (a rename would skip them)."""
    assert {page for page, *_ in BLOCKS} == set(PAGES)
    shown = [s for _, _, s in _blocks("docs/quickstart.md") if s is not None]
    assert len(shown) == 1 and "laq " in shown[0]
    assert any(_comment_output(code) for _, code, _ in _blocks("README.md"))
