"""TernGrad (Wen et al. 2017): minibatch gradients ternarized to ``{-1, 0, +1} * ||g||_inf``
(unbiased), after clipping at 2.5 standard deviations, about 2 bits per coordinate.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import CompressedGradient
from .sgd import STOCHASTIC_DEFAULTS

__all__ = ["TernGrad"]


def __dir__() -> list[str]:
    return __all__


class TernGrad(CompressedGradient):
    """Ternary gradients."""

    name = "terngrad"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS
    compressor_name = "terngrad"

    def compressor_kwargs(self, m: int) -> dict[str, Any]:
        return {"seed": self.params.seed, "stream": m}
