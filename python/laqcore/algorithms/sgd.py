"""Minibatch SGD: every worker uploads a dense minibatch gradient (500 samples by default).

theta^{k+1} = theta^k - alpha * sum_m g_m(theta^k; batch_m^k)
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import CompressedGradient

__all__ = ["SGD", "STOCHASTIC_DEFAULTS"]


def __dir__() -> list[str]:
    return __all__


#: The official SLAQ script's step size for the stochastic comparison.
STOCHASTIC_DEFAULTS: dict[str, Any] = {"alpha": 0.008}


class SGD(CompressedGradient):
    """Distributed minibatch SGD (uncompressed)."""

    name = "sgd"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS
    compressor_name = "none"
