"""LAG: lazily aggregated gradients (Chen et al., NeurIPS 2018), both triggers.

* LAG-WK (worker-side): worker m computes ``g = grad f_m(theta^k)`` every iteration and
  uploads the innovation ``g - g_hat_m`` (dense float32) only if ``||g - g_hat_m||^2 >
  (1/(alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2``. With ``xi = 0`` every
  changed gradient is uploaded and LAG-WK is GD (tested). As in the reference LAQ code's
  LAG-WK, an upload is also forced after ``t_bar`` (100) skipped iterations;
  ``lag_forced=False`` (CLI ``--no-lag-forced``) keeps the LAG paper's rule alone.
* LAG-PS (server-side): the server asks worker m for a fresh gradient only if
  ``L_m^2 ||theta_hat_m - theta^k||^2`` exceeds the same right-hand side (``theta_hat_m``:
  where m's gradient was last computed; ``L_m``: its smoothness constant). A worker that is
  not asked computes nothing. Default ``ck = 10`` (``xi_d = 10/D``), the official LAG code's
  PS setting (its WK setting is ``1/D``): the bound ``L_m ||theta_hat_m - theta^k||``
  over-estimates the gradient change, so the PS rule needs a larger threshold to skip.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._typing import F64
from ..compressors import get_compressor
from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker, WorkerSite
from .lazy_common import LazyServer
from .param_sets import LAG_PARAMS

__all__ = ["LAGPS", "LAGWK", "DenseLazyServer", "InnovationGradientWorker", "PSServer"]


def __dir__() -> list[str]:
    return __all__


class DenseLazyServer(LazyServer):
    """Adds decoded dense innovations ``grad f_m(theta^k) - grad f_m(theta_hat_m)``."""

    def __init__(self, params: Params, x0: F64, num_workers: int) -> None:
        super().__init__(params, x0, num_workers)
        self.codec = get_compressor("none")

    def add(self, m: int, payload: Payload) -> None:
        self.lazy.add_dense(self.codec.decompress(payload))

    def add_into(self, out: npt.NDArray[np.floating[Any]], m: int, payload: Payload) -> None:
        out += self.codec.decompress(payload)


class InnovationGradientWorker(Worker):
    """LAG worker: keeps ``g_hat`` = the sum of what it uploaded (exactly the server's copy of
    its gradient) and uploads the dense innovation ``g - g_hat`` when told to.

    LAG-WK (``server_decides=False``) tests ``||g - g_hat||^2 > rhs`` itself, with an upload
    forced after ``t_bar`` skips when ``params.lag_forced`` (the reference code's comparison);
    LAG-PS (:class:`PSWorker`) follows ``msg.request`` (the server decided, and a skipped
    worker computes nothing).
    """

    server_decides: ClassVar[bool] = False

    def __init__(self, site: WorkerSite) -> None:
        super().__init__(site)
        self.g_hat = np.zeros(self.f.dim)
        self.codec = get_compressor("none")
        # LAG-WK's forced upload after t_bar skips (params.lag_forced; t_bar = 0: never skip).
        self.t_bar = self.params.t_bar if self.params.lag_forced else None
        self.clock = 0  # iterations since the last upload

    def step(self, msg: Message) -> Payload | None:
        if self.server_decides and not msg.request:
            return None
        delta = self.f.grad(msg.theta) - self.g_hat
        # LAG-WK skips iff ||delta||^2 <= rhs (the LAG code uploads when it is larger),
        # unless t_bar skips in a row force the upload.
        forced = self.t_bar is not None and self.clock >= self.t_bar
        if not self.server_decides and not forced and float(delta @ delta) <= msg.rhs:
            self.clock += 1
            return None
        self.clock = 0
        payload = self.codec.compress(delta, step=msg.k)
        self.g_hat += self.codec.decompress(payload)
        return payload


class PSWorker(InnovationGradientWorker):
    """LAG-PS worker: uploads exactly when the server asks."""

    server_decides = True


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

    def _record(self, uploaders: list[int]) -> None:
        for m in uploaders:
            if not self._asked.get(m, False):
                raise ValueError(f"worker {m} uploaded without being asked (LAG-PS)")
            self.theta_hat[m] = self.theta.copy()
        self._asked.clear()

    def apply(self, uploads: dict[int, Payload]) -> None:
        self._record(list(uploads))
        super().apply(uploads)

    def commit(self, uploaders: list[int], state: npt.NDArray[np.floating[Any]]) -> None:
        self._record(uploaders)
        super().commit(uploaders, state)


class LAGWK(Algorithm):
    """LAG with the worker-side rule."""

    name = "lag-wk"
    USES: ClassVar[frozenset[str]] = LAG_PARAMS
    server_type = DenseLazyServer
    worker_type = InnovationGradientWorker


class LAGPS(Algorithm):
    """LAG with the server-side rule (needs per-worker smoothness constants)."""

    name = "lag-ps"
    USES: ClassVar[frozenset[str]] = LAG_PARAMS
    needs_smoothness = True
    DEFAULTS: ClassVar[dict[str, Any]] = {"ck": 10.0}
    worker_type = PSWorker

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        if smoothness is None:
            raise ValueError("LAG-PS needs the workers' smoothness constants L_m")
        return PSServer(self.params, x0, num_workers, smoothness)
