"""LAG-PS: lazily aggregated gradients, server-side trigger (Chen et al., NeurIPS 2018).

The server asks worker m for a fresh gradient only if
``L_m^2 ||theta_hat_m - theta^k||^2 > (1/(alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} -
theta^{k-d}||^2`` (``theta_hat_m``: where m's gradient was last computed; ``L_m``: its
smoothness constant). A worker that is not asked computes nothing.

Default ``ck = 10`` (``xi_d = 10/D``), the official LAG code's PS setting (its WK setting is
``1/D``): the bound ``L_m ||theta_hat_m - theta^k||`` over-estimates the gradient change, so
the PS rule needs a larger threshold to skip anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker
from .lag_common import DenseLazyServer, InnovationGradientWorker

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = ["LAGPS"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


class PSServer(DenseLazyServer):
    """Decides per worker from ``L_m`` and the distance to the worker's last point."""

    def __init__(self, params: Params, x0: F64, num_workers: int, smoothness: F64) -> None:
        super().__init__(params, x0, num_workers)
        self.L = np.asarray(smoothness, dtype=np.float64)
        if self.L.shape != (num_workers,):
            raise ValueError(
                f"LAG-PS needs one smoothness constant per worker ({num_workers}), "
                f"got shape {self.L.shape}"
            )
        self.theta_hat: list[F64 | None] = [None] * num_workers
        self._asked: dict[int, bool] = {}

    def message(self, m: int) -> Message:
        msg = super().message(m)
        th = self.theta_hat[m]
        if th is not None:
            d = th - self.theta
            msg.request = bool(self.L[m] ** 2 * float(d @ d) > msg.rhs)
        self._asked[m] = msg.request
        return msg

    def apply(self, uploads: dict[int, Payload]) -> None:
        for m in uploads:
            if not self._asked.get(m, False):
                raise ValueError(f"worker {m} uploaded without being asked (LAG-PS)")
            self.theta_hat[m] = self.theta.copy()
        self._asked.clear()
        super().apply(uploads)


class LAGPS(Algorithm):
    """LAG with the server-side rule (needs per-worker smoothness constants)."""

    name = "lag-ps"
    needs_smoothness = True
    DEFAULTS: ClassVar[dict[str, Any]] = {"ck": 10.0}

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        if smoothness is None:
            raise ValueError("LAG-PS needs the workers' smoothness constants L_m")
        return PSServer(self.params, x0, num_workers, smoothness)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return InnovationGradientWorker(self.site(m, objective, num_workers), server_decides=True)
