"""PQASGD (Jiang & Agrawal, NeurIPS 2018): periodic quantized averaging.

Workers run local minibatch SGD; every ``period`` iterations each uploads its *quantized*
model change since the last average, ``Q(x_m - x_avg)`` (QSGD with ``levels``), and the
server averages: ``x_avg += (1/M) sum_m decompress(...)``; the new average is broadcast and
every worker restarts from it. Uploads (and downlink broadcasts) happen only at sync
iterations, which is where its communication saving comes from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..compressors import get_compressor
from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker, WorkerSite, theta_message_nbytes
from .local_common import LocalWorker, small_message_nbytes
from .sgd import STOCHASTIC_DEFAULTS

if TYPE_CHECKING:
    from ..compressors.base import Compressor
    from ..problems import LocalObjective

__all__ = ["PQASGD"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


class PQServer(Server):
    def __init__(self, params: Params, x0: F64, num_workers: int, codec: Compressor) -> None:
        super().__init__(params, x0, num_workers)
        self.codec = codec

    def message(self, m: int) -> Message:
        reset = self.k % self.params.period == 0
        nbytes = theta_message_nbytes(self.dim) if reset else small_message_nbytes()
        return Message(self.k, self.theta, reset=reset, nbytes=nbytes)

    def apply(self, uploads: dict[int, Payload]) -> None:
        new = self.theta
        if uploads:
            if len(uploads) != self.num_workers:
                raise ValueError("PQASGD averaging needs every worker's upload")
            total = np.zeros(self.dim)
            for m in sorted(uploads):
                total += self.codec.decompress(uploads[m])
            new = self.theta + total / self.num_workers
        self._move(new)


class PQWorker(LocalWorker):
    def __init__(
        self,
        site: WorkerSite,
        codec: Compressor,
    ) -> None:
        super().__init__(site, stochastic=True)
        self.codec = codec
        self.anchor: F64 | None = None

    def step(self, msg: Message) -> Payload | None:
        self.sync(msg)
        if msg.reset or self.anchor is None:
            self.anchor = np.array(msg.theta, dtype=np.float64)
        x = self.local_step()
        if (msg.k + 1) % self.params.period != 0:
            return None
        return self.codec.compress(x - self.anchor, step=msg.k)


class PQASGD(Algorithm):
    """Periodic quantized averaging SGD."""

    name = "pqasgd"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS

    def _codec(self, m: int) -> Compressor:
        p = self.params
        return get_compressor(
            "qsgd", levels=p.levels, bucket_size=p.bucket_size, seed=p.seed, stream=m
        )

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return PQServer(self.params, x0, num_workers, self._codec(0))

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return PQWorker(self.site(m, objective, num_workers), self._codec(m))
