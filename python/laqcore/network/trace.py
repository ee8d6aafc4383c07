"""The per-iteration traffic of one run, recorded by the simulator for the time model.

One row per iteration: how many workers uploaded, their bytes in all and the largest upload,
the downlink bytes one broadcast carries and the bytes delivered to all workers, and which
workers uploaded (a bit mask, so the time model can group workers onto nodes), and the
measured compute of the round: one worker's step (the round's worker time over its steps) and
the server's update.

Every worker step is timed on its own and a round's sample of one worker step is a median
over its workers (:meth:`TrafficTrace.record_compute`). The compute charged per round
(:attr:`TrafficTrace.worker_step_s`, :attr:`TrafficTrace.server_step_s`) is then a
*stratified median* of the per-round samples: the
rounds are grouped by how many workers uploaded (a lazy server's update, or a random
selection's worker steps, legitimately cost more in rounds with more uploads), the median is
taken within each group and the groups are weighted by their number of rounds. On a dedicated
machine the per-round times of one stratum are nearly constant, so this is their mean; on a
shared machine the scheduler hands the core to other processes in the middle of some rounds
and the plain mean (:attr:`TrafficTrace.worker_mean_s`) charges the run for that foreign
work, by different amounts for runs made at different times (issue 16: a 4.7 ms LAQ step
against 1.7 ms for GD under load, for the same gradient). The median ignores those
preempted rounds as long as fewer than half of a stratum's rounds are hit.

Because the time model only needs these sizes, one run serves any number of link settings:
:func:`laqcore.network.round_times` is applied afterwards (the studies cache the traces as
``.npz`` files, :meth:`TrafficTrace.save` / :meth:`TrafficTrace.load`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .._npy import NPZ_ERRORS, read_npz_arrays

if TYPE_CHECKING:
    from ..wire import Payload

__all__ = ["TrafficTrace", "stratified_median"]


def __dir__() -> list[str]:
    return __all__


I64 = npt.NDArray[np.int64]


def stratified_median(values: npt.ArrayLike, strata: npt.ArrayLike) -> float:
    """``sum_s (n_s / n) median(values in stratum s)``: the median of each stratum's values,
    weighted by the stratum's size (0.0 for no values).

    Examples
    --------
    >>> stratified_median([1.0, 1.0, 9.0, 3.0], [0, 0, 0, 2])  # (3 * 1 + 1 * 3) / 4
    1.5
    """
    v = np.asarray(values, dtype=np.float64)
    s = np.asarray(strata)
    if v.shape != s.shape or v.ndim != 1:
        raise ValueError(f"values and strata must be 1-D of one length, got {v.shape}, {s.shape}")
    if v.size == 0:
        return 0.0
    total = 0.0
    for key in np.unique(s):
        part = v[s == key]
        total += part.size * float(np.median(part))
    return total / v.size


_SERIES = ("up_count", "up_bytes", "up_max", "down_broadcast", "down_delivered")


@dataclass
class TrafficTrace:
    """Recorded traffic of one run (see the module docstring).

    Attributes
    ----------
    num_workers : int
    up_count, up_bytes, up_max, down_broadcast, down_delivered : list of int
        One entry per iteration.
    masks : list of bytes
        ``numpy.packbits`` of the iteration's uploader flags (worker order).
    worker_seconds, worker_steps, server_seconds, server_steps
        Measured compute: total time spent in worker steps / server updates, and their counts.
    worker_round_s, server_round_s : list of float
        Per iteration: the mean seconds of one worker step in that round, and the server
        update's seconds (:meth:`record_compute`; empty for traces built without them, which
        then fall back to the means).
    """

    num_workers: int
    up_count: list[int] = field(default_factory=list)
    up_bytes: list[int] = field(default_factory=list)
    up_max: list[int] = field(default_factory=list)
    down_broadcast: list[int] = field(default_factory=list)
    down_delivered: list[int] = field(default_factory=list)
    masks: list[bytes] = field(default_factory=list)
    worker_seconds: float = 0.0
    worker_steps: int = 0
    server_seconds: float = 0.0
    server_steps: int = 0
    worker_round_s: list[float] = field(default_factory=list)
    server_round_s: list[float] = field(default_factory=list)

    def record_compute(
        self, steps: Sequence[tuple[float, bool]], shared: float, server_seconds: float
    ) -> None:
        """Add one round's measured compute.

        ``steps``: ``(seconds, uploaded)`` of every worker step of the round, each timed on
        its own; ``shared``: the round's other worker-side seconds (the messages), charged
        ``shared / M`` to every step; ``server_seconds``: the server's update. The totals
        grow by the plain sums; the round's sample of one worker step is ``shared / M`` plus
        the median of the uploading steps times their share plus the median of the others
        times theirs (a step preempted by another process moves neither median, while the
        two kinds of step, e.g. a requested gradient and an idle worker, keep their weight).
        """
        M = len(steps)
        seconds = np.array([s for s, _ in steps], dtype=np.float64)
        up = np.array([u for _, u in steps], dtype=bool)
        self.worker_seconds += shared + float(seconds.sum())
        self.worker_steps += M
        self.server_seconds += server_seconds
        self.server_steps += 1
        typical = stratified_median(seconds, up)  # uploading vs other steps: two strata
        self.worker_round_s.append(shared / M + typical if M else 0.0)
        self.server_round_s.append(server_seconds)

    def record(self, uploads: dict[int, Payload], broadcast: int, delivered: int) -> None:
        """Append one iteration: the uploads that reached the server and the downlink."""
        sizes = [p.nbytes for p in uploads.values()]
        self.up_count.append(len(sizes))
        self.up_bytes.append(sum(sizes))
        self.up_max.append(max(sizes, default=0))
        self.down_broadcast.append(int(broadcast))
        self.down_delivered.append(int(delivered))
        flags = np.zeros(self.num_workers, dtype=bool)
        flags[list(uploads)] = True
        self.masks.append(np.packbits(flags).tobytes())

    @property
    def iterations(self) -> int:
        return len(self.up_count)

    @property
    def worker_mean_s(self) -> float:
        """Mean wall time of one worker's step (gradient + compression), seconds."""
        return self.worker_seconds / self.worker_steps if self.worker_steps else 0.0

    @property
    def server_mean_s(self) -> float:
        """Mean wall time of one server update, seconds."""
        return self.server_seconds / self.server_steps if self.server_steps else 0.0

    @property
    def worker_step_s(self) -> float:
        """Compute charged for one worker's step (gradient + compression), seconds: the
        stratified median of the per-round samples (module docstring), else the mean."""
        return self._charged(self.worker_round_s, self.worker_mean_s)

    @property
    def server_step_s(self) -> float:
        """Compute charged for one server update, seconds (as :attr:`worker_step_s`)."""
        return self._charged(self.server_round_s, self.server_mean_s)

    def _charged(self, samples: list[float], mean: float) -> float:
        if not samples or len(samples) != len(self.up_count):
            return mean
        return stratified_median(np.asarray(samples), self.series("up_count"))

    def series(self, name: str) -> I64:
        if name not in _SERIES:
            raise ValueError(f"unknown series {name!r}; one of {_SERIES}")
        return np.asarray(getattr(self, name), dtype=np.int64)

    def uploader_flags(self) -> npt.NDArray[np.bool_]:
        """``(iterations, num_workers)`` bool array: who uploaded when."""
        if not self.masks:
            return np.zeros((0, self.num_workers), dtype=bool)
        packed = np.frombuffer(b"".join(self.masks), dtype=np.uint8).reshape(len(self.masks), -1)
        return np.unpackbits(packed, axis=1, count=self.num_workers).astype(bool)

    def totals(self) -> dict[str, int]:
        """Uplink, downlink (delivered) and total bits over the whole trace."""
        up = 8 * int(self.series("up_bytes").sum())
        down = 8 * int(self.series("down_delivered").sum())
        return {"uplink_bits": up, "downlink_bits": down, "total_bits": up + down}

    def save(self, path: str | os.PathLike[str]) -> None:
        arrays: dict[str, Any] = {k: self.series(k) for k in _SERIES}
        arrays["masks"] = np.frombuffer(b"".join(self.masks), dtype=np.uint8)
        arrays["meta"] = np.array(
            [self.num_workers, self.worker_steps, self.server_steps], dtype=np.int64
        )
        arrays["seconds"] = np.array([self.worker_seconds, self.server_seconds])
        arrays["round_seconds"] = np.array(
            [self.worker_round_s, self.server_round_s], dtype=np.float64
        ).reshape(2, -1)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrafficTrace:
        """Read a trace written by :meth:`save`; ``ValueError`` naming the file when it is
        not one (a corrupt archive raised zlib.error, NotImplementedError or RuntimeError, so
        a damaged run-cache entry stopped a study instead of being run again)."""
        try:
            z = read_npz_arrays(path)
            m, wsteps, ssteps = (int(v) for v in z["meta"])
            t = cls(m, worker_steps=wsteps, server_steps=ssteps)
            t.worker_seconds, t.server_seconds = (float(v) for v in z["seconds"])
            if "round_seconds" in z:  # older traces: the means only
                t.worker_round_s, t.server_round_s = (
                    [float(v) for v in row] for row in z["round_seconds"]
                )
            for k in _SERIES:
                setattr(t, k, [int(v) for v in z[k]])
            width = (m + 7) // 8
            raw = z["masks"].tobytes()
            t.masks = [raw[i : i + width] for i in range(0, len(raw), width)]
        except FileNotFoundError:
            raise
        except (*NPZ_ERRORS, KeyError) as err:
            raise ValueError(
                f"cannot read traffic trace {os.fspath(path)!r}: {type(err).__name__}: {err}"
            ) from err
        return t
