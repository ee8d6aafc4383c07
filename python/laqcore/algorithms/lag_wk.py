"""LAG-WK: lazily aggregated gradients, worker-side trigger (Chen et al., NeurIPS 2018).

Worker m computes ``g = grad f_m(theta^k)`` every iteration and uploads the innovation
``g - g_hat_m`` (dense float32) only if ``||g - g_hat_m||^2 > (1/(alpha^2 M^2)) sum_d xi_d
||theta^{k+1-d} - theta^{k-d}||^2``. With ``xi = 0`` every changed gradient is uploaded and
LAG-WK is GD (tested). As in the reference LAQ code's LAG-WK, an upload is also forced after
``t_bar`` (100) skipped iterations; ``lag_forced=False`` (CLI ``--no-lag-forced``) keeps the
LAG paper's rule alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .base import Algorithm, Server, Worker
from .lag_common import DenseLazyServer, InnovationGradientWorker

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = ["LAGWK"]


def __dir__() -> list[str]:
    return __all__


class LAGWK(Algorithm):
    """LAG with the worker-side rule."""

    name = "lag-wk"

    def make_server(
        self,
        x0: npt.NDArray[np.float64],
        num_workers: int,
        smoothness: npt.NDArray[np.float64] | None = None,
    ) -> Server:
        return DenseLazyServer(self.params, x0, num_workers)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return InnovationGradientWorker(self.site(m, objective, num_workers), server_decides=False)
