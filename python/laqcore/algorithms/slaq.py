"""SLAQ: stochastic LAQ (official ``SLAQ.py``).

As LAQ but with minibatch gradients (500 per worker), ``alpha = 0.008``, ``b = 3``, and the
SLAQ trigger: upload iff ``||dQ||^2 >= (1/(alpha^2 M^2)) sum_{d=1..D-1} xi_d ||dtheta||^2
+ 0.5 * 3 (err + err_hat) + 0.2`` or the clock reaches ``t_bar = 100``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from .base import Algorithm, Server, Worker
from .lazy_common import InnovationWorker, QuantizedLazyServer

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = ["SLAQ"]


def __dir__() -> list[str]:
    return __all__


class SLAQ(Algorithm):
    """Stochastic LAQ."""

    name = "slaq"
    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = {"alpha": 0.008, "bits": 3}

    def make_server(
        self,
        x0: npt.NDArray[np.float64],
        num_workers: int,
        smoothness: npt.NDArray[np.float64] | None = None,
    ) -> Server:
        history = self.params.history(num_terms=max(self.params.D - 1, 1))
        return QuantizedLazyServer(self.params, x0, num_workers, history)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return InnovationWorker(self.site(m, objective, num_workers), stochastic=True, slaq=True)
