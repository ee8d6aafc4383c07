"""Sparse-AsyLPG: AsyLPG whose gradient upload is sparsified before quantization.

Each worker keeps a random ``ratio`` fraction of the variance-reduced gradient's coordinates
and quantizes them to ``bits`` bits; the server rescales by ``n/k`` (unbiased). The paper
keeps coordinate i with probability proportional to ``|a_i|``; uniform selection is used here
(the available unbiased sparsifier), which has a larger variance for the same k.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..compressors import get_compressor
from .asylpg import AsyLPG

if TYPE_CHECKING:
    from ..compressors.base import Compressor

__all__ = ["SparseAsyLPG"]


def __dir__() -> list[str]:
    return __all__


class SparseAsyLPG(AsyLPG):
    """AsyLPG with random-k sparsification + quantization of the uplink."""

    name = "sparse-asylpg"

    def grad_codec(self, m: int) -> Compressor:
        p = self.params
        return get_compressor(
            "sparse_quant",
            ratio=p.ratio,
            bits=max(p.bits, 2),
            selection="randk",
            seed=p.seed,
            stream=m,
        )
