"""A/B switch for benches: the two-phase exchange's host gathers as gloo's ring all-gather.

Before commit a719887 :meth:`laqcore.distributed.two_phase.TwoPhaseExchange._gather_into`
ran ``dist.all_gather`` (a ring of ``world - 1`` dependent hops in gloo); it now runs an
``all_to_all_single`` of ``world`` copies (the same bytes). Put this folder on
``PYTHONPATH`` and every Python process of a bench (the ranks inherit the environment)
imports this module at start-up and puts the ring back::

    PYTHONPATH=bench/ring_gathers python bench/bench_hooks.py --suite tc ...

Nothing else changes: bytes, decisions and averages are identical either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

import laqcore.distributed.two_phase as _two_phase


def _ring_gather_into(
    self: _two_phase.TwoPhaseExchange, whole: torch.Tensor, send: npt.NDArray[Any], what: str
) -> npt.NDArray[Any]:
    rows = whole.view(self.world, -1)
    mine = torch.from_numpy(np.ascontiguousarray(send)).to(self.device)
    self._guard(what, dist.all_gather, list(rows.unbind(0)), mine, group=self.group)
    out: npt.NDArray[Any] = rows.cpu().numpy()
    return out


_two_phase.TwoPhaseExchange._gather_into = _ring_gather_into  # type: ignore[method-assign]
