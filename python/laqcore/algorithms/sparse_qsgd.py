"""Sparse + quantized SGD (Jiang & Agrawal 2018's two reducers combined per message).

Each worker keeps a random ``ratio`` fraction of its minibatch gradient's coordinates and
quantizes the kept values to ``bits`` bits (unbiased stochastic rounding on the max-norm
grid). Random selection is unbiased only after scaling by ``n/k``; the compressor sends the
unscaled values, so the server applies that factor (read from each payload's ``k``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..compressors import SparseQuantPayload
from ..wire import Payload
from .base import CompressedGradient, Server, SumServer
from .sgd import STOCHASTIC_DEFAULTS

if TYPE_CHECKING:
    from ..compressors.base import Compressor

__all__ = ["SparseQSGD", "UnbiasedSparseServer"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


class UnbiasedSparseServer(SumServer):
    """:class:`SumServer` that scales each random-k payload by ``n / k``."""

    def apply(self, uploads: dict[int, Payload]) -> None:
        total = np.zeros(self.dim)
        for m in sorted(uploads):
            p = uploads[m]
            if not isinstance(p, SparseQuantPayload):
                raise TypeError(f"worker {m} sent {type(p).__name__}, expected SparseQuantPayload")
            total += self.compressor.decompress(p) * (p.n / max(len(p.indices), 1))
        self._move(self.theta - self.scale * total)


class SparseQSGD(CompressedGradient):
    """Random-k sparsification followed by b-bit quantization."""

    name = "sparse-qsgd"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS
    compressor_name = "sparse_quant"

    def compressor_kwargs(self, m: int) -> dict[str, Any]:
        p = self.params
        return {
            "ratio": p.ratio,
            "bits": max(p.bits, 2),
            "selection": "randk",
            "seed": p.seed,
            "stream": m,
        }

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        comp: Compressor = self.build_compressor(0)
        return UnbiasedSparseServer(self.params, x0, num_workers, comp)
