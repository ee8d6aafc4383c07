"""Quantized GD (QGD): LAQ's innovation quantizer, uploading every iteration.

Each worker sends ``dQ_m = Q(g_m - q_prev_m)`` (b bits per coordinate + the radius) every
iteration and the server steps with ``sum_m q_prev_m``. Equals LAQ with the lazy rule
switched off (``xi = 0`` and an upload forced every iteration), which the tests check.
The official code's comment "alg=2: rQGD" leaves open whether its QGD used a randomized
quantizer; this one is the deterministic LAQ grid, so QGD vs LAQ isolates the lazy skipping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .base import Algorithm, Server, Worker
from .lazy_common import InnovationWorker, QuantizedLazyServer

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = ["QGD"]


def __dir__() -> list[str]:
    return __all__


class QGD(Algorithm):
    """Quantized gradient descent (b-bit innovations, no skipping)."""

    name = "qgd"

    def make_server(
        self, x0: npt.NDArray[np.float64], num_workers: int,
        smoothness: npt.NDArray[np.float64] | None = None,
    ) -> Server:
        return QuantizedLazyServer(self.params, x0, num_workers)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return InnovationWorker(m, objective, self.params, num_workers, mode="always")
