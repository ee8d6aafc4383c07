"""Error-feedback SGD template (EF-sign, top-k with memory).

Worker m sends ``Delta = C(alpha * g + e_m)`` and keeps ``e_m = alpha * g + e_m -
decompress(Delta)`` (:class:`laqcore.ErrorFeedback`); the server applies
``theta -= sum_m decompress(Delta_m)`` (the step size is already inside).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from ..error_feedback import ErrorFeedback
from ..wire import Payload
from .base import CompressedGradient, Message, Server, SumServer, Worker, WorkerSite
from .sgd import STOCHASTIC_DEFAULTS

if TYPE_CHECKING:
    from ..compressors.base import Compressor
    from ..problems import LocalObjective

__all__ = ["EFWorker", "ErrorFeedbackSGD"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


class EFWorker(Worker):
    def __init__(
        self,
        site: WorkerSite,
        compressor: Compressor,
        stochastic: bool,
    ) -> None:
        super().__init__(site)
        self.ef = ErrorFeedback(compressor)
        self.stochastic = stochastic

    def step(self, msg: Message) -> Payload | None:
        g = self.gradient(msg.theta, self.stochastic)
        return self.ef.compress(self.params.alpha * g, step=msg.k)


class ErrorFeedbackSGD(CompressedGradient):
    """Compressed SGD with per-worker error feedback."""

    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return SumServer(self.params, x0, num_workers, self.build_compressor(0), scaled=True)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return EFWorker(
            self.site(m, objective, num_workers), self.build_compressor(m), self.stochastic
        )
