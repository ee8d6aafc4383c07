"""AsyLPG (Yu, Wu & Huang, NeurIPS 2019, "Double Quantization"): asynchronous SVRG with a
quantized model downlink and quantized gradient uplink. Reconstruction (docs/algorithms.md "AsyLPG",
details UNCONFIRMED there), simulated with a bounded-delay asynchrony model:

* Every ``epoch`` iterations the server takes a snapshot ``x_s = theta`` and broadcasts it in
  full precision; each worker computes its full local gradient ``mu_m = grad f_m(x_s)``
  (local work, no upload).
* Each iteration the server quantizes its model relative to the snapshot,
  ``Q_x(theta - x_s)`` (max-norm grid with ``2^(model_bits-1) - 1`` levels per sign, unbiased
  rounding), and keeps the last ``max_delay + 1`` of these payloads. Worker m reads the one
  from ``d_m`` iterations ago, ``d_m`` uniform on ``{0..max_delay}`` (seeded, drawn by the
  server): bounded staleness ``tau = max_delay``. Downlink bits = that payload's size.
* Worker m computes the variance-reduced minibatch gradient
  ``a_m = g_m(x_read; B) - g_m(x_s; B) + mu_m`` and uploads ``Q_a(a_m)`` (max-norm grid,
  ``2^(bits-1) - 1`` levels, i.e. ``bits`` bits per coordinate with the sign).
* Server: ``theta -= alpha * sum_m decompress(Q_a(a_m))``.

Two variants change one piece:

* Sparse-AsyLPG sparsifies the gradient upload before quantizing it: each worker keeps a
  random ``ratio`` fraction of the variance-reduced gradient's coordinates and quantizes them
  to ``bits`` bits; the server rescales by ``n/k`` (unbiased). The paper keeps coordinate i
  with probability proportional to ``|a_i|``; uniform selection is used here (the available
  unbiased sparsifier), which has a larger variance for the same k.
* Acc-AsyLPG adds momentum (reconstruction): the server keeps an extrapolated point
  ``y_t = x_t + momentum * (x_t - x_{t-1})``; workers read (quantized, delayed) ``y`` and the
  step is ``x_{t+1} = y_t - alpha * sum_m Q(a_m)``. The paper uses a Katyusha-style coupling
  (docs/algorithms.md "AsyLPG"; its details are unconfirmed); this is the simpler Nesterov
  form with a constant weight (``momentum``, default 0.3).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._typing import F64
from ..compressors import get_compressor
from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker, WorkerSite, theta_message_nbytes
from .compressed import SPARSE_QUANT_CODEC, unbiased_sparse_scale
from .param_sets import STOCHASTIC_PARAMS

if TYPE_CHECKING:
    from ..compressors.base import Compressor
    from ..problems import LocalObjective

__all__ = ["AccAsyLPG", "AsyLPG", "AsyLPGServer", "AsyLPGWorker", "SparseAsyLPG"]


def __dir__() -> list[str]:
    return __all__


def max_norm_quantizer(bits: int, bucket_size: int, seed: int, stream: int) -> Compressor:
    """Unbiased b-bit quantizer on the max-norm grid (QSGD, ``norm="max"``)."""
    levels = (1 << (bits - 1)) - 1
    return get_compressor(
        "qsgd",
        levels=max(levels, 1),
        bucket_size=bucket_size,
        norm="max",
        seed=seed,
        stream=stream,
    )


class AsyLPGServer(Server):
    """Snapshot, delayed quantized models, and the SVRG step (optionally with momentum)."""

    def __init__(
        self,
        params: Params,
        x0: F64,
        num_workers: int,
        grad_codec: Compressor,
        *,
        momentum: float = 0.0,
        unbias_sparse: bool = False,
    ) -> None:
        super().__init__(params, x0, num_workers)
        self.grad_codec = grad_codec
        # Stream ids above any worker id keep the model quantizer's bits independent.
        self.model_codec = max_norm_quantizer(
            params.model_bits, params.bucket_size, params.seed, 1 << 40
        )
        self.rng = np.random.default_rng([params.seed, 0xA5])
        self.momentum = momentum
        self.unbias_sparse = unbias_sparse
        self.y = self.theta.copy()  # the point workers read (= theta without momentum)
        self.snapshot = self.theta.copy()
        self.recent: deque[tuple[Payload, F64]] = deque(maxlen=params.max_delay + 1)
        self._prepared_for = -1
        self._delays = np.zeros(num_workers, dtype=np.int64)

    def _prepare(self) -> None:
        if self._prepared_for == self.k:
            return
        if self.k % self.params.epoch == 0:
            self.snapshot = self.y.copy()
            self.recent.clear()
        payload = self.model_codec.compress(self.y - self.snapshot, step=self.k)
        point = self.snapshot + self.model_codec.decompress(payload)
        self.recent.append((payload, point))
        self._delays = self.rng.integers(0, len(self.recent), size=self.num_workers)
        self._prepared_for = self.k

    def message(self, m: int) -> Message:
        self._prepare()
        payload, point = self.recent[-1 - int(self._delays[m])]
        new_epoch = self.k % self.params.epoch == 0
        nbytes = payload.nbytes + (theta_message_nbytes(self.dim) if new_epoch else 0)
        extra: dict[str, Any] = {"snapshot": self.snapshot} if new_epoch else {}
        return Message(self.k, point, nbytes=nbytes, extra=extra)

    def apply(self, uploads: dict[int, Payload]) -> None:
        total = np.zeros(self.dim)
        for m in sorted(uploads):
            p = uploads[m]
            v = self.grad_codec.decompress(p).astype(np.float64)
            if self.unbias_sparse:
                v *= unbiased_sparse_scale(p)
            total += v
        new = self.y - self.params.alpha * total
        self.y = new + self.momentum * (new - self.theta)
        self._move(new)


class AsyLPGWorker(Worker):
    def __init__(
        self,
        site: WorkerSite,
        codec: Compressor,
    ) -> None:
        super().__init__(site)
        self.codec = codec
        self.snapshot: F64 | None = None
        self.mu: F64 | None = None

    def step(self, msg: Message) -> Payload | None:
        snap = msg.extra.get("snapshot")
        if snap is not None:
            self.snapshot = np.array(snap, dtype=np.float64)
            self.mu = self.f.grad(self.snapshot)
        if self.snapshot is None or self.mu is None:
            raise ValueError("AsyLPG worker stepped before receiving a snapshot")
        idx = self.f.sample(self.rng, self.params.batch)
        a = self.f.minibatch_grad(msg.theta, idx) - self.f.minibatch_grad(self.snapshot, idx)
        return self.codec.compress(a + self.mu, step=msg.k)


class AsyLPG(Algorithm):
    """Asynchronous low-precision SVRG with double quantization."""

    name = "asylpg"
    entropy_codable = True
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS | {
        "bits",
        "bucket_size",
        "epoch",
        "max_delay",
        "model_bits",
    }
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = {"bits": 8}
    momentum: ClassVar[bool] = False

    def grad_codec(self, m: int) -> Compressor:
        p = self.params
        return max_norm_quantizer(p.bits, p.bucket_size, p.seed, m)

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return AsyLPGServer(
            self.params,
            x0,
            num_workers,
            self.grad_codec(0),
            momentum=self.params.momentum if self.momentum else 0.0,
            unbias_sparse=self.grad_codec(0).name == "sparse_quant",
        )

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return AsyLPGWorker(self.site(m, objective, num_workers), self.grad_codec(m))


class SparseAsyLPG(AsyLPG):
    """AsyLPG with random-k sparsification + quantization of the uplink."""

    name = "sparse-asylpg"
    entropy_codable = False  # random-k + quantization: no single code stream
    USES: ClassVar[frozenset[str]] = AsyLPG.USES | {"ratio"}

    def grad_codec(self, m: int) -> Compressor:
        return SPARSE_QUANT_CODEC.build(self.params, m)


class AccAsyLPG(AsyLPG):
    """Momentum-accelerated AsyLPG."""

    name = "acc-asylpg"
    USES: ClassVar[frozenset[str]] = AsyLPG.USES | {"momentum"}
    momentum: ClassVar[bool] = True
