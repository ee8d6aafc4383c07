"""QSGD (Alistarh et al. 2017): minibatch gradients with unbiased stochastic quantization.

Uses the ``"qsgd"`` compressor with ``levels`` (LAQ.py's baseline: s = 10), L2 bucket norms
of ``bucket_size`` coordinates, and per-worker seeded rounding (``stream = m``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import CompressedGradient
from .sgd import STOCHASTIC_DEFAULTS

__all__ = ["QSGD"]


def __dir__() -> list[str]:
    return __all__


class QSGD(CompressedGradient):
    """Quantized SGD."""

    name = "qsgd"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS
    compressor_name = "qsgd"

    def compressor_kwargs(self, m: int) -> dict[str, Any]:
        p = self.params
        return {"levels": p.levels, "bucket_size": p.bucket_size, "seed": p.seed, "stream": m}
