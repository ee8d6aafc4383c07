"""Skipping the tests that need PyTorch, with a reason that says what is skipped and how to
run it (the README's test command installs ``.[test]`` only; torch is the ``torch`` extra)."""

from __future__ import annotations

import functools
from typing import Any

import pytest

INSTALL = "pip install '.[test,torch]'"


def skip_reason(what: str) -> str:
    return f"PyTorch is not installed, so {what} are skipped; to run them: {INSTALL}"


def require_torch(what: str) -> Any:
    """``import torch``, or skip the calling module/test, naming ``what`` is skipped."""
    return pytest.importorskip("torch", reason=skip_reason(what))


@functools.cache
def torch_gaps() -> dict[str, str]:
    """What this torch lacks of the features some tests use: feature -> why they skip.

    Empty on the torch CI installs (2.13.0). ``pyproject.toml`` allows ``torch>=2.1``, and
    torch 2.1.2 (measured) lacks all three: ``"cpu_grad_scaler"``, ``torch.amp.GradScaler``
    (loss scaling of CPU autocast; torch 2.1 had only the CUDA scaler); ``"gloo_bfloat16"``,
    gloo sending bfloat16 tensors (its DDP fails to build a bfloat16 model: "Invalid scalar
    type"); ``"cpu_float16_matmul"``, an ``nn.Linear`` in float16 on CPU. Probed, not read
    off the version; the gloo probe is a standalone one-rank group, which touches no process
    group of the tests.
    """
    import datetime

    import torch
    import torch.distributed as dist

    gaps = {}
    if not hasattr(torch.amp, "GradScaler"):
        gaps["cpu_grad_scaler"] = (
            f"torch {torch.__version__} has no torch.amp.GradScaler (CPU loss scaling)"
        )
    half = torch.ones(1, 2, dtype=torch.float16)
    try:
        torch.nn.functional.linear(half, torch.ones(2, 2, dtype=torch.float16))
    except RuntimeError as err:  # torch 2.1.2: "addmm_impl_cpu_" not implemented for 'Half'
        gaps["cpu_float16_matmul"] = (
            f"torch {torch.__version__} has no float16 matmul on CPU ({err})"
        )
    probe = torch.zeros(1, dtype=torch.bfloat16)
    group = dist.ProcessGroupGloo(dist.HashStore(), 0, 1, datetime.timedelta(seconds=30))
    try:
        group.broadcast([probe]).wait()
    except RuntimeError as err:
        gaps["gloo_bfloat16"] = f"gloo of torch {torch.__version__} cannot send bfloat16 ({err})"
    # The group before the tensor: a gloo group's destructor held the GIL while joining a
    # worker thread that could be dropping the last reference to the tensor, which needs the
    # GIL, until pytorch/pytorch#154976 (docs/ddp.md, "Versions of Python, numpy and torch").
    del group
    del probe
    return gaps


def skip_without(feature: str) -> None:
    """Skip the calling test where this torch lacks ``feature`` (:func:`torch_gaps`)."""
    reason = torch_gaps().get(feature)
    if reason is not None:
        pytest.skip(reason)
