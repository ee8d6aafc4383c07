"""The compressed-gradient methods: every worker uploads ``C(gradient)`` each iteration and
the server steps with the sum of the decoded uploads (:class:`~.base.CompressedGradient`).

* ``gd``: the full local gradient, uncompressed (dense float32, 32 bits per coordinate).
* ``sgd``: a minibatch gradient (``batch`` samples), uncompressed.
* ``qsgd``: QSGD of the minibatch gradient (Alistarh et al. 2017), ``levels`` levels (LAQ.py's
  baseline: s = 10), L2 norms of ``bucket_size``-coordinate buckets.
* ``ssgd``: a random ``ratio`` of the coordinates rescaled by n/k so the estimate stays
  unbiased (the LAQ paper's SSGD, Wangni et al.-style), as (index, float32 value) pairs.
* ``terngrad``: TernGrad (Wen et al. 2017), ``{-1, 0, +1} * ||g||_inf`` after clipping at 2.5
  standard deviations, unbiased, about 2 bits per coordinate.
* ``sparse-qsgd``: a random ``ratio`` of the coordinates quantized to ``bits`` bits
  (Jiang & Agrawal 2018's two reducers combined per message); random selection is unbiased
  only after scaling by ``n/k``, which the server applies (read from each payload's ``k``).

GD: ``theta^{k+1} = theta^k - alpha * sum_m grad f_m(theta^k)``; the others replace the
gradient by ``decompress(C(g_m(theta^k; batch_m^k)))``. Stochastic compressors are built per
worker with ``stream = m``, so rounding differs across workers and is reproducible. Every
upload is a real payload, so uncompressed bits are counted exactly like compressed ones.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._typing import F64
from ..compressors import SparseQuantPayload
from ..compressors.base import decoded
from ..wire import Payload
from .base import CodecSpec, CompressedGradient, Params, Server, SumServer
from .param_sets import QSGD_PARAMS, SPARSE_QUANT_PARAMS, STOCHASTIC_PARAMS

__all__ = [
    "GD",
    "QSGD",
    "QSGD_CODEC",
    "SGD",
    "SPARSE_QUANT_CODEC",
    "SSGD",
    "STOCHASTIC_DEFAULTS",
    "SparseQSGD",
    "TernGrad",
    "UnbiasedSparseServer",
    "unbiased_sparse_scale",
]


def __dir__() -> list[str]:
    return __all__


#: The official SLAQ script's step size for the stochastic comparison.
STOCHASTIC_DEFAULTS: dict[str, Any] = {"alpha": 0.008}


def _qsgd_options(p: Params) -> dict[str, Any]:
    return {"levels": p.levels, "bucket_size": p.bucket_size}


def _sparse_quant_options(p: Params) -> dict[str, Any]:
    return {"ratio": p.ratio, "bits": max(p.bits, 2), "selection": "randk"}


#: QSGD with the run's ``levels`` and ``bucket_size`` (QSGD, PQASGD).
QSGD_CODEC = CodecSpec("qsgd", _qsgd_options, seeded=True)
#: Random-k selection of ``ratio`` n coordinates quantized to ``max(bits, 2)`` bits
#: (sparse+quantized SGD, Sparse-AsyLPG); unbiased after :func:`unbiased_sparse_scale`.
SPARSE_QUANT_CODEC = CodecSpec("sparse_quant", _sparse_quant_options, seeded=True)


def unbiased_sparse_scale(payload: Payload) -> float:
    """``n / k``: the factor that makes a random-k payload's decoded values unbiased."""
    return payload.n / max(len(getattr(payload, "indices", ())), 1)


class UnbiasedSparseServer(SumServer):
    """:class:`SumServer` that scales each random-k payload by ``n / k``."""

    chunkable = False  # n / k needs the whole payload

    def apply(self, uploads: dict[int, Payload]) -> None:
        total = np.zeros(self.dim)
        for m in sorted(uploads):
            p = uploads[m]
            if not isinstance(p, SparseQuantPayload):
                raise TypeError(f"worker {m} sent {type(p).__name__}, expected SparseQuantPayload")
            total += decoded(self.compressor, p) * unbiased_sparse_scale(p)
        self._move(self.theta - self.scale * total)


class GD(CompressedGradient):
    """Gradient descent (the paper's GD baseline)."""

    name = "gd"


class SGD(CompressedGradient):
    """Distributed minibatch SGD (uncompressed)."""

    name = "sgd"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS


class QSGD(SGD):
    """Quantized SGD."""

    name = "qsgd"
    codec = QSGD_CODEC
    entropy_codable = True
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS | QSGD_PARAMS


class SSGD(SGD):
    """Random-k sparsified SGD."""

    name = "ssgd"
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS | {"ratio"}
    codec = CodecSpec("randk", lambda p: {"ratio": p.ratio, "rescale": True}, seeded=True)


class TernGrad(SGD):
    """Ternary gradients."""

    name = "terngrad"
    entropy_codable = True
    codec = CodecSpec("terngrad", seeded=True)


class SparseQSGD(SGD):
    """Random-k sparsification followed by b-bit quantization."""

    name = "sparse-qsgd"
    codec = SPARSE_QUANT_CODEC
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS | SPARSE_QUANT_PARAMS

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return UnbiasedSparseServer(self.params, x0, num_workers, self.build_compressor(0))
