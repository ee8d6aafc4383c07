"""Without PyTorch the torch tests are skipped with a reason that names them and says how to
run them (issue 14, item 7)."""

from __future__ import annotations

import sys

import pytest

from needs_torch import require_torch


def test_skip_reason_names_what_and_how(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(pytest.skip.Exception) as info:
        require_torch("the DDP comm-hook tests")
    reason = str(info.value)
    assert "PyTorch is not installed" in reason
    assert "the DDP comm-hook tests" in reason
    assert "pip install '.[test,torch]'" in reason
