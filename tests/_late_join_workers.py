"""A rank function for tests/test_distributed.py whose rank 0 finishes joining the process
group late, as a rank starved of CPU does, to check that no rank starts its work before it.

The spawned ranks import this module when they unpickle the function; there (and only
there, not in the test process) it wraps ``torch.distributed.init_process_group``.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import torch.distributed as dist

#: How much later than the others rank 0 returns from ``init_process_group``.
LATE_JOIN_S = 2.0

_joined_at: list[float] = []


def _join_late_on_rank_0(*args: Any, **kwargs: Any) -> None:
    _init_process_group(*args, **kwargs)
    if kwargs.get("rank") == 0:
        time.sleep(LATE_JOIN_S)
    _joined_at.append(time.monotonic())


# A rank, not the test process (parent_process() is set only after the unpickling).
if multiprocessing.current_process().name != "MainProcess":
    _init_process_group = dist.init_process_group
    dist.init_process_group = _join_late_on_rank_0


def join_and_start_times(rank: int, world: int) -> tuple[float, float]:
    """When this rank finished joining and when its work began (the machine's monotonic
    clock, one for every process)."""
    return _joined_at[-1], time.monotonic()
