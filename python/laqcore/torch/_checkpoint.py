"""The values of a hook checkpoint: torch tensors outside, numpy arrays inside.

The library's states (:class:`~laqcore.lazy_state.LazyUploader`, the aggregate, the
exchange's replica) keep numpy arrays, which the simulator shares. A trainer saves the
hook's ``state_dict()`` next to the model's with ``torch.save`` and reads it back with
``torch.load``, whose default since torch 2.6 is ``weights_only=True``: that unpickler
accepts tensors and plain containers but refuses numpy arrays ("Weights only load
failed"), so a checkpoint holding them could only be read with ``weights_only=False``, i.e.
by trusting the file with arbitrary code. :func:`to_torch` turns every array of a state dict
into a CPU tensor (and numpy scalars into Python numbers) on the way out; :func:`to_numpy`
turns tensors back into numpy arrays on the way in, so checkpoints written before (numpy)
load as well. Both copy, so a checkpoint never aliases the live state.

:func:`counters` and :func:`load_counters` carry an exchange's byte and round counters (a
dataclass of ints) through a checkpoint, so ``stats()`` after a resume counts the whole run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .._validate import check_positive_int

__all__ = ["counters", "load_counters", "to_numpy", "to_torch"]


def __dir__() -> list[str]:
    return __all__


def to_torch(value: Any) -> Any:
    """``value`` with every numpy array replaced by a CPU tensor copy (recursively through
    dicts, lists and tuples) and every numpy scalar by the Python number it holds."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_torch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_torch(v) for v in value)
    return value


def to_numpy(value: Any, where: str = "state_dict") -> Any:
    """``value`` with every tensor replaced by a numpy array copy (recursively through dicts,
    lists and tuples); the library's own loaders then check dtypes, shapes and values.

    Raises ``TypeError`` for a tensor numpy cannot hold (bfloat16, complex32, a tensor that
    needs gradients is detached first), naming where it sits.
    """
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16 or t.is_sparse or t.is_quantized:
            raise TypeError(
                f"{where} is a {t.dtype} tensor{' (sparse)' if t.is_sparse else ''}; a hook "
                "checkpoint holds dense float32 vectors (as state_dict() wrote them)"
            )
        return np.array(t.numpy(), copy=True)
    if isinstance(value, dict):
        return {k: to_numpy(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_numpy(v, f"{where}[{i}]") for i, v in enumerate(value))
    return value


def counters(stats: Any) -> dict[str, int]:
    """The fields of ``stats``, a dataclass of cumulative int counters, as a plain dict."""
    return {f.name: int(getattr(stats, f.name)) for f in dataclasses.fields(stats)}


def load_counters(stats: Any, saved: Any, where: str) -> None:
    """Set the counters of ``stats`` from :func:`counters` of a checkpoint (``None``: a
    checkpoint written before they were saved; they stay as they are). Every value is
    checked (a non-negative int) before any is set; counters ``stats`` does not have (a
    later version's) are ignored."""
    if saved is None:
        return
    if not isinstance(saved, dict):
        raise TypeError(f"{where} must be a dict of counters, got {type(saved).__name__}")
    names = {f.name for f in dataclasses.fields(stats)}
    values = {
        k: check_positive_int(v, f"{where}[{k!r}]", minimum=0)
        for k, v in saved.items()
        if k in names
    }
    for k, v in values.items():
        setattr(stats, k, v)
