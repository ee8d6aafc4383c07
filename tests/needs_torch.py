"""Skipping the tests that need PyTorch, with a reason that says what is skipped and how to
run it (the README's test command installs ``.[test]`` only; torch is the ``torch`` extra)."""

from __future__ import annotations

from typing import Any

import pytest

INSTALL = "pip install '.[test,torch]'"


def skip_reason(what: str) -> str:
    return f"PyTorch is not installed, so {what} are skipped; to run them: {INSTALL}"


def require_torch(what: str) -> Any:
    """``import torch``, or skip the calling module/test, naming ``what`` is skipped."""
    return pytest.importorskip("torch", reason=skip_reason(what))
