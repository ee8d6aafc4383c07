"""Importing the scripts under bench/ from tests: they import each other by bare name (each
runs with bench/ on its path), and a copy of tests/ run against an installed wheel (CI's
wheel check) has no bench/ at all, so their tests skip there."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str) -> ModuleType:
    """bench/NAME.py, imported with bench/ on the path; skips the test without the checkout."""
    if not (BENCH / f"{name}.py").is_file():
        pytest.skip(f"needs the source checkout (bench/{name}.py)")
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)
