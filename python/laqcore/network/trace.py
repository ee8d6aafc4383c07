"""The per-iteration traffic of one run, recorded by the simulator for the time model.

One row per iteration: how many workers uploaded, their bytes in all and the largest upload,
the downlink bytes one broadcast carries and the bytes delivered to all workers, and which
workers uploaded (a bit mask, so the time model can group workers onto nodes). The mean
compute time of one worker's step and of the server's update are measured in the run.

Because the time model only needs these sizes, one run serves any number of link settings:
:func:`laqcore.network.round_times` is applied afterwards (the studies cache the traces as
``.npz`` files, :meth:`TrafficTrace.save` / :meth:`TrafficTrace.load`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ..wire import Payload

__all__ = ["TrafficTrace"]


def __dir__() -> list[str]:
    return __all__


I64 = npt.NDArray[np.int64]

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
    def worker_step_s(self) -> float:
        """Mean wall time of one worker's step (gradient + compression), seconds."""
        return self.worker_seconds / self.worker_steps if self.worker_steps else 0.0

    @property
    def server_step_s(self) -> float:
        """Mean wall time of one server update, seconds."""
        return self.server_seconds / self.server_steps if self.server_steps else 0.0

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
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrafficTrace:
        with np.load(path) as z:
            m, wsteps, ssteps = (int(v) for v in z["meta"])
            t = cls(m, worker_steps=wsteps, server_steps=ssteps)
            t.worker_seconds, t.server_seconds = (float(v) for v in z["seconds"])
            for k in _SERIES:
                setattr(t, k, [int(v) for v in z[k]])
            width = (m + 7) // 8
            raw = z["masks"].tobytes()
            t.masks = [raw[i : i + width] for i in range(0, len(raw), width)]
        return t
