"""Dynamic averaging (Kamp et al., ECML-PKDD 2018), full-synchronisation variant.

Workers take local gradient steps and watch their divergence from the last common reference
model ``r``. A worker whose ``||x_m - r||^2`` exceeds ``threshold`` uploads its model (a
violation). In the next iteration the server asks every other worker for its model, averages
all M, and broadcasts the average as the new reference. (Kamp et al.'s "balancing", which
first tries to resolve a violation with a subset of workers, is not modelled: every
violation costs a full synchronisation, an upper bound on its communication.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..compressors import get_compressor
from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker, WorkerSite, theta_message_nbytes
from .local_common import LocalWorker, small_message_nbytes

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = ["DynamicAveraging"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


class DynamicServer(Server):
    def __init__(self, params: Params, x0: F64, num_workers: int) -> None:
        super().__init__(params, x0, num_workers)
        self.codec = get_compressor("none")
        self.collected: dict[int, F64] = {}  # models received during a synchronisation
        self.reset_next = True

    def message(self, m: int) -> Message:
        if self.collected:
            # Sync round: violators wait, the others send their model without stepping.
            asked = m not in self.collected
            return Message(
                self.k,
                self.theta,
                request=asked,
                nbytes=small_message_nbytes(),
                extra={"sync": True},
            )
        nbytes = theta_message_nbytes(self.dim) if self.reset_next else 0
        return Message(self.k, self.theta, reset=self.reset_next, nbytes=nbytes)

    def apply(self, uploads: dict[int, Payload]) -> None:
        self.reset_next = False
        for m in sorted(uploads):
            self.collected[m] = self.codec.decompress(uploads[m]).astype(np.float64)
        new = self.theta
        if len(self.collected) == self.num_workers:
            new = np.mean([self.collected[m] for m in range(self.num_workers)], axis=0)
            self.collected = {}
            self.reset_next = True
        self._move(new)


class DynamicWorker(LocalWorker):
    def __init__(self, site: WorkerSite) -> None:
        super().__init__(site, stochastic=False)
        self.codec = get_compressor("none")
        self.reference: F64 | None = None

    def step(self, msg: Message) -> Payload | None:
        if msg.extra.get("sync"):
            if not msg.request:
                return None  # already uploaded its violating model; waits for the average
            assert self.x is not None
            return self.codec.compress(self.x, step=msg.k)
        self.sync(msg)
        if msg.reset or self.reference is None:
            self.reference = np.array(msg.theta, dtype=np.float64)
        x = self.local_step()
        d = x - self.reference
        if float(d @ d) > self.params.threshold:
            return self.codec.compress(x, step=msg.k)
        return None


class DynamicAveraging(Algorithm):
    """Local steps with divergence-triggered model averaging."""

    name = "dynamic-avg"

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return DynamicServer(self.params, x0, num_workers)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return DynamicWorker(self.site(m, objective, num_workers))
