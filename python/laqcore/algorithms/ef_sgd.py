"""Error-feedback SGD: EF-signSGD (Karimireddy et al. 2019) and top-k SGD with memory
(Stich, Cordonnier & Jaggi 2018).

Worker m sends ``Delta = C(alpha * g + e_m)`` and keeps ``e_m = alpha * g + e_m -
decompress(Delta)`` (:class:`laqcore.ErrorFeedback`); the server applies
``theta -= sum_m decompress(Delta_m)`` (the step size is already inside). ``C`` is the scaled
sign ``(||p||_1 / n) sign(p)`` (EF-sign, about 1 bit per coordinate) or the ``ratio``
fraction of largest-magnitude coordinates (top-k).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .._typing import F64
from ..error_feedback import ErrorFeedback
from ..wire import Payload
from .base import (
    CodecSpec,
    CompressedGradient,
    CompressedWorker,
    Message,
    Server,
    SumServer,
    Worker,
    WorkerSite,
)
from .compressed import STOCHASTIC_DEFAULTS
from .param_sets import STOCHASTIC_PARAMS

if TYPE_CHECKING:
    from ..compressors.base import Compressor
    from ..problems import LocalObjective

__all__ = ["EFSign", "EFWorker", "ErrorFeedbackSGD", "TopKEF"]


def __dir__() -> list[str]:
    return __all__


class EFWorker(CompressedWorker):
    """Compresses ``alpha * g`` plus its memory through :class:`laqcore.ErrorFeedback`."""

    def __init__(self, site: WorkerSite, compressor: Compressor, stochastic: bool) -> None:
        super().__init__(site, compressor, stochastic)
        self.ef = ErrorFeedback(compressor)

    def step(self, msg: Message) -> Payload | None:
        g = self.gradient(msg.theta, self.stochastic)
        return self.ef.compress(self.params.alpha * g, step=msg.k)


class ErrorFeedbackSGD(CompressedGradient):
    """Compressed SGD with per-worker error feedback."""

    stochastic = True
    DEFAULTS: ClassVar[dict[str, Any]] = STOCHASTIC_DEFAULTS
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return SumServer(self.params, x0, num_workers, self.build_compressor(0), scaled=True)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return EFWorker(
            self.site(m, objective, num_workers), self.build_compressor(m), self.stochastic
        )


class EFSign(ErrorFeedbackSGD):
    """Error-feedback scaled-sign SGD."""

    name = "ef-sign"
    entropy_codable = True
    codec = CodecSpec("sign")


class TopKEF(ErrorFeedbackSGD):
    """Top-k sparsified SGD with error feedback."""

    name = "topk-ef"
    USES: ClassVar[frozenset[str]] = STOCHASTIC_PARAMS | {"ratio"}
    codec = CodecSpec("topk", lambda p: {"ratio": p.ratio})
