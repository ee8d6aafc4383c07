"""QSGD and TernGrad inside DDP: stochastic, unbiased, every rank uploads every step.

The hook returns the mean of the decompressed gradients of the ranks that uploaded. The
compressor's randomness is keyed on ``(seed, rank)`` and the iteration (its ``step``), so
ranks draw independent rounding noise and a resumed run draws exactly the noise of the
uninterrupted one; a step dropped for a non-finite gradient does not advance the iteration,
so it draws nothing either.
"""

from __future__ import annotations

import typing
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch._C._distributed_c10d import GradBucket

from .._validate import check_positive_int
from ._exchange import CompressorAllGather, GradientExchange
from ._state import HookState
from ._two_phase import check_exchange, compressor_two_phase

__all__ = ["QSGDState", "TernGradState", "qsgd_hook", "terngrad_hook"]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
Future = torch.futures.Future


class _CompressorState(HookState):
    """Shared state of the stateless-compressor hooks (QSGD, TernGrad)."""

    _NAME = ""

    # The public constructor of QSGDState and TernGradState (documented on QSGDState):
    # they differ only in _NAME, i.e. in which compressor ``**kwargs`` configure.
    def __init__(
        self,
        process_group: Any = None,
        *,
        seed: int = 0,
        warmup_steps: int = 1,
        nonfinite: str = "propagate",
        exchange: str = "two-phase",
        **kwargs: Any,
    ) -> None:
        super().__init__(process_group, warmup_steps, nonfinite)
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.exchange = check_exchange(exchange)
        self.compressor_kwargs = dict(kwargs)
        self._compressor: Any = None
        self._make(0)  # validate the hyperparameters now, not at the first step

    def _make(self, rank: int) -> Any:
        from ..compressors import get_compressor

        # One reproducible random stream per rank; the iteration is the compressor's step.
        return get_compressor(self._NAME, seed=self.seed, stream=rank, **self.compressor_kwargs)

    def _make_exchange(self, n: int) -> GradientExchange:
        if self._compressor is None:
            self._compressor = self._make(self.rank)
        if self.exchange == "two-phase":
            kwargs = self.compressor_kwargs
            return compressor_two_phase(self.process_group, n, self._NAME, self.seed, kwargs)
        return CompressorAllGather(self.process_group, n, self._compressor)

    def _step(self, grad: FloatVector) -> FloatVector | None:
        self.exchanger  # noqa: B018 - creates the compressor at the first step
        comp, k = self._compressor, self.iteration
        payload = self._propose(lambda g: comp.compress(g, step=k), grad)
        return self._exchange(payload, payload is None, out=grad).mean  # into the flat buffer

    def __getstate__(self) -> dict[str, Any]:
        d = super().__getstate__()
        d["_compressor"] = None
        return d


class QSGDState(_CompressorState):
    """State of :func:`qsgd_hook`: QSGD (Alistarh et al., NeurIPS 2017).

    Parameters
    ----------
    process_group : ProcessGroup, optional
        Group to communicate in (the default group if ``None``).
    seed : int, default 0
        Base seed of the stochastic rounding (combined with the rank and the iteration).
    warmup_steps : int, default 1
        Iterations of plain all-reduce first.
    nonfinite : {"propagate", "raise", "skip"}, default "propagate"
        What a NaN/Inf gradient does (:mod:`laqcore.torch._nonfinite`).
    exchange : {"two-phase", "all-gather"}, default "two-phase"
        ``"two-phase"``: rank j averages chunk j of the uploads and re-compresses it
        (unbiased, fresh randomness) for everyone (bytes per rank independent of the number
        of ranks; docs/ddp.md); ``"all-gather"``: every rank decodes every upload.
    **kwargs
        QSGD hyperparameters, passed to ``laqcore.get_compressor("qsgd", ...)`` (e.g.
        ``levels``, ``bucket_size``); the compressor's defaults otherwise.
    """

    _NAME = "qsgd"


class TernGradState(_CompressorState):
    """State of :func:`terngrad_hook`: TernGrad (Wen et al., NeurIPS 2017), values {-s, 0, s}.

    Parameters are those of :class:`QSGDState`; ``**kwargs`` go to
    ``laqcore.get_compressor("terngrad", ...)``.
    """

    _NAME = "terngrad"


def qsgd_hook(state: QSGDState, bucket: GradBucket) -> Future[torch.Tensor]:
    """DDP communication hook running QSGD (see :mod:`laqcore.torch._state` for the flow)."""
    return state._run(bucket)


def terngrad_hook(state: TernGradState, bucket: GradBucket) -> Future[torch.Tensor]:
    """DDP communication hook running TernGrad (see :mod:`laqcore.torch._state`)."""
    return state._run(bucket)


# DDP's register_comm_hook compares the hook's annotations with the real classes; with
# postponed evaluation (``from __future__ import annotations``) they are strings.
for _hook in (qsgd_hook, terngrad_hook):
    _hook.__annotations__ = typing.get_type_hints(_hook)
del _hook
