"""The local-update methods: workers keep a local model ``x_m``, take local steps on their
own objective, and communicate models only now and then; the server's model is the last
average.

* PQASGD (Jiang & Agrawal, NeurIPS 2018), periodic quantized averaging: local minibatch
  SGD; every ``period`` iterations each worker uploads its *quantized* model change since the
  last average, ``Q(x_m - x_avg)`` (QSGD with ``levels``), the server averages
  ``x_avg += (1/M) sum_m decompress(...)`` and every worker restarts from the broadcast.
  Uploads (and downlink broadcasts) happen only at sync iterations.
* One-shot averaging (Zinkevich et al. 2010): no communication until the end. Each worker
  runs ``local_steps`` gradient steps from the common start, then uploads its model once
  (dense); the server averages and the run ends. On non-IID shards the average of local
  minimisers is not the global minimiser: this shows the accuracy communication buys.
* Dynamic averaging (Kamp et al., ECML-PKDD 2018), full-synchronisation variant: a worker
  whose divergence ``||x_m - r||^2`` from the last common reference ``r`` exceeds
  ``threshold`` uploads its model (a violation); in the next iteration the server asks every
  other worker for its model, averages all M and broadcasts the average as the new
  reference. (Kamp et al.'s "balancing", which first tries a subset of workers, is not
  modelled: every violation costs a full synchronisation, an upper bound on its cost.)

A local step uses ``alpha * M`` so that it matches one synchronous step ``theta -= alpha *
sum_m g_m`` when all workers agree (``sum_m g_m = M * mean``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._typing import F64
from ..compressors import get_compressor
from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker, WorkerSite, theta_message_nbytes
from .compressed import QSGD_CODEC, STOCHASTIC_DEFAULTS
from .param_sets import COMMON_PARAMS, QSGD_PARAMS, STOCHASTIC_PARAMS

if TYPE_CHECKING:
    from ..compressors.base import Compressor
    from ..problems import LocalObjective

__all__ = ["PQASGD", "DynamicAveraging", "LocalWorker", "OneShotAveraging", "small_message_nbytes"]


def __dir__() -> list[str]:
    return __all__


def small_message_nbytes() -> int:
    """Downlink bytes of a message without a model (iteration number / control flag)."""
    return 8


class LocalWorker(Worker):
    """Holds ``x_m``; ``local_step()`` does ``x_m -= alpha M g_m(x_m)``. Its uploads go
    through ``codec`` (default: models sent dense, ``"none"``)."""

    #: Whether local steps use minibatch gradients.
    stochastic: ClassVar[bool] = False

    def __init__(self, site: WorkerSite, codec: Compressor | None = None) -> None:
        super().__init__(site)
        self.codec = get_compressor("none") if codec is None else codec
        self.x: F64 | None = None

    def sync(self, msg: Message) -> None:
        if msg.reset or self.x is None:
            self.x = np.array(msg.theta, dtype=np.float64)

    def local_step(self) -> F64:
        assert self.x is not None  # sync() ran first
        self.x = self.x - self.params.alpha * self.num_workers * self.gradient(
            self.x, self.stochastic
        )
        return self.x


# -- PQASGD ---------------------------------------------------------------------------------
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
    stochastic = True

    def __init__(self, site: WorkerSite, codec: Compressor) -> None:
        super().__init__(site, codec)
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
    entropy_codable = True
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS | QSGD_PARAMS | {"period"}
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return PQServer(self.params, x0, num_workers, QSGD_CODEC.build(self.params, 0))

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return PQWorker(self.site(m, objective, num_workers), QSGD_CODEC.build(self.params, m))


# -- one-shot averaging ------------------------------------------------------------------------
class DenseModelServer(Server):
    """Server of the methods whose workers upload whole models, dense (one-shot and dynamic
    averaging)."""

    def __init__(self, params: Params, x0: F64, num_workers: int) -> None:
        super().__init__(params, x0, num_workers)
        self.codec = get_compressor("none")


class OneShotServer(DenseModelServer):
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
    def step(self, msg: Message) -> Payload | None:
        self.sync(msg)
        x = self.local_step()
        if msg.k + 1 < self.params.local_steps:
            return None
        return self.codec.compress(x, step=msg.k)


class OneShotAveraging(Algorithm):
    """Local training, one averaging at the end."""

    name = "one-shot"
    USES: ClassVar[frozenset[str]] = COMMON_PARAMS | {"local_steps"}
    server_type = OneShotServer
    worker_type = OneShotWorker


# -- dynamic averaging ------------------------------------------------------------------------
class DynamicServer(DenseModelServer):
    def __init__(self, params: Params, x0: F64, num_workers: int) -> None:
        super().__init__(params, x0, num_workers)
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
        super().__init__(site)
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
    USES: ClassVar[frozenset[str]] = COMMON_PARAMS | {"threshold"}
    server_type = DynamicServer
    worker_type = DynamicWorker
