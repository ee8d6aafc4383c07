"""A/B switch for benches: the host gathers as gloo's ring all-gather.

Before commit a719887 the two-phase exchange's host gathers ran ``dist.all_gather`` (a ring
of ``world - 1`` dependent hops in gloo); :meth:`laqcore.distributed.gather.HostGather.into`,
which every exchange now uses (the two-phase exchange, the transport of the
``exchange="all-gather"`` hooks and of the engine, the engine's replica check), runs an
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

from laqcore.distributed.gather import HostGather


def _ring_into(
    self: HostGather, whole: torch.Tensor, send: npt.NDArray[Any], what: str
) -> npt.NDArray[Any]:
    rows = whole.view(self.world, -1)
    mine = torch.from_numpy(np.ascontiguousarray(send)).to(self.device)
    self.guard(what, dist.all_gather, list(rows.unbind(0)), mine, group=self.group)
    out: npt.NDArray[Any] = rows.cpu().numpy()
    return out


HostGather.into = _ring_into  # type: ignore[method-assign]
