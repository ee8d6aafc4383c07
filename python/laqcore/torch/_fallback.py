"""``fallback=True``: keep compressing only where it makes the training step faster.

A compressing hook pays for its coding and for an exchange that waits for the last bucket
(DDP's own all-reduce overlaps the backward pass, bucket by bucket); it wins only where the
link is slow enough for the bytes it saves to outweigh that. Where it is not (a small model on
a fast link: the bench MLP at 1 Gbit/s, README), every compressing hook, PyTorch's included,
makes the step slower than plain DDP. The probe measures instead of guessing, and compares
what each mode adds to an iteration after its backward pass has produced the last bucket
(forward, backward and the optimizer step are the same in both):

* compressed: the hook's time at the last bucket (gather, coding, exchange, scatter);
* DDP's all-reduce: from the launch of the last bucket's asynchronous all-reduce until it
  completes (the all-reduces of earlier buckets, launched during the backward pass, complete
  in order before it: what is left of them is in this time too).

1. The first ``steps`` compressed iterations (after the hook's own warm-up; not the steps a
   non-finite gradient dropped, which move no payload) are timed; every rank then averages
   their median over the ranks (one all-reduce of a float64).
2. Then DDP's all-reduce runs (exactly PyTorch's default hook: one asynchronous, averaged
   all-reduce per bucket), one iteration at a time: at the first bucket of the next
   iteration every rank averages the last iteration's time over the ranks (so every rank
   decides the same, before any bucket of the new iteration is sent). The decision is taken
   as soon as it is clear, on the median of the all-reduce times so far: after one
   iteration if it took ``clear**2`` times the compressed median or less than its
   ``1 / clear**2`` (2.25 with the default 1.5: on a slow link one all-reduce iteration is
   what probing costs), after two or more if every one of them was ``clear`` times slower
   (or faster); else after ``steps`` of them. Compression resumes where it stopped (its state is
   untouched by the all-reduce iterations) or DDP's all-reduce runs to the end of the run.

The decision is checkpointed. It depends on timing, so two runs can decide differently when
the two modes' times are close (the runs are then about equally fast either way);
``fallback=False`` (the default) keeps runs bit-reproducible.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch
import torch.distributed as dist

from .._validate import check_positive_int, check_real

__all__ = ["LinkProbe"]


def __dir__() -> list[str]:
    return __all__


#: The probe's modes, in order; the last two are the decisions.
PROBE_COMPRESS, PROBE_ALLREDUCE, COMPRESS, ALLREDUCE = (
    "probe-compress",
    "probe-allreduce",
    "compress",
    "allreduce",
)


def _rank_mean(value: float, group: Any) -> float:
    """``value`` averaged over the ranks of ``group`` (identical on every rank)."""
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, group=group)
    return float(t[0]) / dist.get_world_size(group)


class LinkProbe:
    """Times the hook's compressed exchange against DDP's all-reduce and keeps the faster.

    Parameters
    ----------
    steps : int
        Iterations timed in each mode at most (>= 1; their median decides).
    clear : float
        The ratio of the two modes' times that decides early (>= 1; one iteration decides
        at its square).
    """

    def __init__(self, steps: int = 8, clear: float = 1.5) -> None:
        self.steps = check_positive_int(steps, "probe_steps")
        self.clear = check_real(clear, "clear", minimum=1.0)
        self.mode = PROBE_COMPRESS
        #: Seconds each mode adds after the last bucket, averaged over the ranks (the
        #: compressed median once timed, the all-reduce's once decided).
        self.times: dict[str, float] = {}
        self._compressed: list[float] = []
        self._pending: float | None = None  # the last all-reduce's time, not yet shared
        self._allreduce: list[float] = []  # shared (rank means)
        self._timed_before = 0  # all-reduce iterations timed before a resume (decided probe)

    def __repr__(self) -> str:
        return f"LinkProbe(steps={self.steps}, mode={self.mode!r}, times={self.times})"

    @property
    def all_reduce(self) -> bool:
        """Whether the current iteration runs DDP's all-reduce (probing it, or decided)."""
        return self.mode in (PROBE_ALLREDUCE, ALLREDUCE)

    @property
    def probing(self) -> bool:
        return self.mode in (PROBE_COMPRESS, PROBE_ALLREDUCE)

    # -- the compressed phase -------------------------------------------------------------
    def compressed(self, seconds: float, group: Any) -> None:
        """One compressed iteration's time at the last bucket; after ``steps`` of them (the
        same iteration on every rank) their median, averaged over the ranks."""
        if self.mode != PROBE_COMPRESS:
            return
        self._compressed.append(seconds)
        if len(self._compressed) == self.steps:
            self.times[COMPRESS] = _rank_mean(statistics.median(self._compressed), group)
            self.mode = PROBE_ALLREDUCE

    # -- the all-reduce phase -------------------------------------------------------------
    def all_reduced(self, seconds: float) -> None:
        """The last bucket's all-reduce took ``seconds`` from launch to completion (called
        from its future's callback; DDP waits for it before the backward pass returns)."""
        self._pending = seconds

    def next_iteration(self, group: Any) -> None:
        """At the first bucket of an iteration, before anything is sent: share the previous
        all-reduce iteration's time and decide if it is time to (a collective: every rank
        calls it at the same bucket)."""
        if self.mode != PROBE_ALLREDUCE or self._pending is None:
            return
        self._allreduce.append(_rank_mean(self._pending, group))
        self._pending = None
        c, ar, k = self.times[COMPRESS], self._allreduce, len(self._allreduce)
        # Clear: every all-reduce time so far `clear` times slower (or faster) than the
        # compressed median, and either two of them or, alone, `clear` squared (the first
        # all-reduce after the compressed phase can pay one-time costs).
        need = self.clear if k >= 2 else self.clear * self.clear
        slower = all(a >= need * c for a in ar)
        faster = all(c >= need * a for a in ar)
        if slower or faster or k == self.steps:
            self._decide(statistics.median(ar))

    @property
    def allreduce_samples(self) -> int:
        """DDP all-reduce iterations the decision has timed so far."""
        return len(self._allreduce) + self._timed_before

    def _decide(self, allreduce: float) -> None:
        self.times[ALLREDUCE] = allreduce
        self.mode = COMPRESS if self.times[COMPRESS] < allreduce else ALLREDUCE

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The decision and how many all-reduce iterations it timed (a probe still running
        starts again after a resume)."""
        decided = not self.probing
        return {
            "mode": self.mode if decided else PROBE_COMPRESS,
            "times": dict(self.times),
            "allreduce_samples": self.allreduce_samples if decided else 0,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        mode = sd.get("mode")
        if mode not in (PROBE_COMPRESS, COMPRESS, ALLREDUCE):
            raise ValueError(f"state_dict['fallback']['mode'] must be a probe mode, got {mode!r}")
        times = sd.get("times", {})
        if not isinstance(times, dict):
            raise TypeError("state_dict['fallback']['times'] must be a dict")
        where = "state_dict['fallback']['allreduce_samples']"  # absent before it was saved
        timed = check_positive_int(sd.get("allreduce_samples", 0), where, minimum=0)
        self.mode, self.times = mode, {str(k): float(v) for k, v in times.items()}
        self._compressed, self._pending, self._allreduce = [], None, []
        self._timed_before = timed
