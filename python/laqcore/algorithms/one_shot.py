"""One-shot averaging (Zinkevich et al. 2010): no communication until the end.

Each worker runs ``local_steps`` gradient steps on its own objective from the common start,
then uploads its model once (dense); the server averages and the run ends. On non-IID shards
the average of local minimisers is not the global minimiser, so this shows the accuracy
that communication buys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..compressors import get_compressor
from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker, WorkerSite, theta_message_nbytes
from .local_common import LocalWorker

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = ["OneShotAveraging"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


class OneShotServer(Server):
    def __init__(self, params: Params, x0: F64, num_workers: int) -> None:
        super().__init__(params, x0, num_workers)
        self.codec = get_compressor("none")

    def message(self, m: int) -> Message:
        # Only the very first message carries the model (the common start).
        nbytes = theta_message_nbytes(self.dim) if self.k == 0 else 0
        return Message(self.k, self.theta, reset=self.k == 0, nbytes=nbytes)

    def apply(self, uploads: dict[int, Payload]) -> None:
        new = self.theta
        if uploads:
            if len(uploads) != self.num_workers:
                raise ValueError("one-shot averaging needs every worker's model")
            new = np.mean([self.codec.decompress(uploads[m]) for m in sorted(uploads)], axis=0)
            new = new.astype(np.float64)
            self.done = True
        self._move(new)


class OneShotWorker(LocalWorker):
    def __init__(self, site: WorkerSite) -> None:
        super().__init__(site, stochastic=False)
        self.codec = get_compressor("none")

    def step(self, msg: Message) -> Payload | None:
        self.sync(msg)
        x = self.local_step()
        if msg.k + 1 < self.params.local_steps:
            return None
        return self.codec.compress(x, step=msg.k)


class OneShotAveraging(Algorithm):
    """Local training, one averaging at the end."""

    name = "one-shot"

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return OneShotServer(self.params, x0, num_workers)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return OneShotWorker(self.site(m, objective, num_workers))
