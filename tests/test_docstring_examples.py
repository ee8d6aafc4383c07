"""The ``Examples`` sections of the docstrings run and print what they show (numpy-style
docstrings with an Examples section are the convention, docs/architecture.md, and the API
reference shows them; nothing ran them before). One test per module, ``# doctest: +SKIP``
lines excepted (the ones that need a process group or a DDP model)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import laqcore
from needs_torch import skip_reason

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(laqcore.__path__, "laqcore.")
    if not info.name.endswith("__main__")
)


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    return [t for t in tests if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        pytest.skip(skip_reason(f"the docstring examples of {name}"))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    threads = laqcore.get_num_threads()
    try:
        for test in _examples(name):
            runner.run(test, out=report.append)
    finally:
        laqcore.set_num_threads(threads)
    assert runner.failures == 0, "".join(report)


def test_examples_are_found():
    """The finder sees the package's examples (a change in how modules are found would
    make every test above pass without running anything)."""
    count = sum(
        len(t.examples) for name in ("laqcore.packing", "laqcore.lazy") for t in _examples(name)
    )
    assert count >= 5
