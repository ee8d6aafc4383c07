"""Sparsified SGD (the LAQ paper's SSGD baseline): each worker uploads a random ``ratio``
fraction of its minibatch gradient's coordinates, rescaled by ``n/k`` so the estimate stays
unbiased (Wangni et al.-style), as (index, float32 value) pairs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import CompressedGradient
from .sgd import STOCHASTIC_DEFAULTS

__all__ = ["SSGD"]


def __dir__() -> list[str]:
    return __all__


class SSGD(CompressedGradient):
    """Random-k sparsified SGD."""

    name = "ssgd"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS
    compressor_name = "randk"

    def compressor_kwargs(self, m: int) -> dict[str, Any]:
        p = self.params
        return {"ratio": p.ratio, "rescale": True, "seed": p.seed, "stream": m}
