"""Shared parts of LAG-WK and LAG-PS: dense innovations and their server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ..compressors import get_compressor
from ..wire import Payload
from .base import Message, Params, Worker, WorkerSite
from .lazy_common import LazyServer

if TYPE_CHECKING:
    pass

__all__ = ["DenseLazyServer", "InnovationGradientWorker"]


def __dir__() -> list[str]:
    return __all__


class DenseLazyServer(LazyServer):
    """Adds decoded dense innovations ``grad f_m(theta^k) - grad f_m(theta_hat_m)``."""

    def __init__(self, params: Params, x0: npt.NDArray[np.float64], num_workers: int) -> None:
        super().__init__(params, x0, num_workers)
        self.codec = get_compressor("none")

    def add(self, m: int, payload: Payload) -> None:
        self.lazy.add_dense(self.codec.decompress(payload))


class InnovationGradientWorker(Worker):
    """LAG worker: keeps ``g_hat`` = the sum of what it uploaded (exactly the server's copy of
    its gradient) and uploads the dense innovation ``g - g_hat`` when told to.

    LAG-WK (``server_decides=False``) tests ``||g - g_hat||^2 > rhs`` itself, with an upload
    forced after ``t_bar`` skips when ``params.lag_forced`` (the reference code's comparison);
    LAG-PS follows ``msg.request`` (the server decided, and a skipped worker computes nothing).
    """

    def __init__(
        self,
        site: WorkerSite,
        *,
        server_decides: bool,
    ) -> None:
        super().__init__(site)
        self.g_hat = np.zeros(self.f.dim)
        self.codec = get_compressor("none")
        self.server_decides = server_decides
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
