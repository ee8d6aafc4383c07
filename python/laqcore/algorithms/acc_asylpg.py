"""Acc-AsyLPG: AsyLPG with momentum acceleration (reconstruction).

The server keeps an extrapolated point ``y_t = x_t + momentum * (x_t - x_{t-1})``; workers read
(quantized, delayed) ``y`` and the step is ``x_{t+1} = y_t - alpha * sum_m Q(a_m)``. The paper
uses a Katyusha-style coupling (docs/algorithms.md "AsyLPG"; its details are unconfirmed);
this is the simpler Nesterov form with a constant weight (``momentum``, default 0.3).
"""

from __future__ import annotations

from typing import ClassVar

from .asylpg import AsyLPG

__all__ = ["AccAsyLPG"]


def __dir__() -> list[str]:
    return __all__


class AccAsyLPG(AsyLPG):
    """Momentum-accelerated AsyLPG."""

    name = "acc-asylpg"
    momentum: ClassVar[bool] = True
