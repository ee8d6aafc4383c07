"""Shared parts of the local-update methods (PQASGD, one-shot and dynamic averaging).

Their workers keep a local model ``x_m`` and take local steps on their own objective; the
server's model is the last average. A local step uses ``alpha * M`` so that it matches one
synchronous step ``theta -= alpha * sum_m g_m`` when all workers agree (``sum_m g_m = M *
mean``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .base import Message, Worker, WorkerSite

if TYPE_CHECKING:
    pass

__all__ = ["LocalWorker", "small_message_nbytes"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


def small_message_nbytes() -> int:
    """Downlink bytes of a message without a model (iteration number / control flag)."""
    return 8


class LocalWorker(Worker):
    """Holds ``x_m``; ``local_step()`` does ``x_m -= alpha M g_m(x_m)``."""

    def __init__(
        self,
        site: WorkerSite,
        *,
        stochastic: bool,
    ) -> None:
        super().__init__(site)
        self.x: F64 | None = None
        self.stochastic = stochastic

    def sync(self, msg: Message) -> None:
        if msg.reset or self.x is None:
            self.x = np.array(msg.theta, dtype=np.float64)

    def local_step(self) -> F64:
        assert self.x is not None  # sync() ran first
        self.x = self.x - self.params.alpha * self.num_workers * self.gradient(
            self.x, self.stochastic
        )
        return self.x
