"""QSGD, TernGrad and the rotation quantizer inside DDP: stochastic, unbiased, every rank
uploads every step.

The hook returns the mean of the decompressed gradients of the ranks that uploaded. The
compressor's randomness is keyed on ``(seed, rank)`` and the iteration (its ``step``), so
ranks draw independent rounding noise and a resumed run draws exactly the noise of the
uninterrupted one; a step dropped for a non-finite gradient does not advance the iteration,
so it draws nothing either.

The rotation hook (Suresh et al. 2017, whose rotation is shared by all clients) rotates every
rank's gradient with the same random signs, keyed on ``seed`` and the iteration
(:meth:`~laqcore.compressors.RotationCompressor.sign_key` of stream 0), and sends QSGD codes
of the rotated vector; the exchange averages in the rotated domain (the rotation is linear),
and every rank applies the inverse rotation once to the average. So the two-phase owners
average and re-quantize their chunk of rotated coordinates exactly as for QSGD.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch._C._distributed_c10d import GradBucket

from .. import _core
from .._validate import check_positive_int
from ..compressors.base import compressor_parameters
from ..compressors.rotation import RotationCompressor, rotation_padded_size
from ._exchange import CompressorAllGather, GradientExchange
from ._state import HookState, run_hook
from ._two_phase import check_exchange, compressor_two_phase, resolve_exchange

__all__ = ["QSGDState", "RotationState", "TernGradState"]  # the hook states
__all__ += ["qsgd_hook", "rotation_hook", "terngrad_hook"]  # and their hooks


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
Future = torch.futures.Future


class _CompressorState(HookState):
    """Shared state of the stateless-compressor hooks (QSGD, TernGrad, rotation)."""

    _NAME = ""  # the compressor whose frames the exchange moves
    _DEFAULTS: ClassVar[dict[str, Any]] = {}  # the hook's defaults for the compressor's parameters
    _SETTINGS = ("seed", "exchange", "compressor_kwargs")

    # The public constructor of QSGDState, TernGradState and RotationState (documented on
    # QSGDState): they differ in _NAME, i.e. in which compressor ``**kwargs`` configure, and
    # in _DEFAULTS.
    def __init__(
        self,
        process_group: Any = None,
        *,
        seed: int = 0,
        warmup_steps: int = 1,
        nonfinite: str = "propagate",
        exchange: str = "auto",
        grad_scaler: Any = None,
        fallback: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(process_group, warmup_steps, nonfinite, grad_scaler, fallback)
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.exchange = check_exchange(exchange)
        self._check_keywords(kwargs)
        self.compressor_kwargs = {**self._DEFAULTS, **kwargs}
        self._compressor: Any = None
        self._make(0)  # validate the hyperparameters now, not at the first step
        self._seal()

    def _check_keywords(self, kwargs: dict[str, Any]) -> None:
        """``kwargs`` must be the quantizer's own: its ``seed`` is the state's and its
        ``stream`` the rank, and the exchange's compressor (``qsgd`` for the rotation) is not
        the name the trainer used, so the compressor's own message would mislead."""
        takes = compressor_parameters(self._NAME)
        if takes is None:  # pragma: no cover - a factory without a signature
            return
        own = [k for k in takes if k not in ("seed", "stream")]
        unknown = sorted(set(kwargs) - set(own))
        if unknown:
            state = inspect.signature(_CompressorState.__init__).parameters
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s) "
                f"{', '.join(map(repr, unknown))}; its quantizer's keywords are {', '.join(own)}; "
                f"the state's are {', '.join(k for k in state if k not in ('self', 'kwargs'))}"
            )

    def _keyword_elsewhere(self, name: str) -> str | None:
        takes = compressor_parameters(self._NAME) or ()
        if name in ("seed", "stream") or name not in takes:
            return None
        return (
            f"its quantizer's keywords are fixed once the state is built (compressor_kwargs): "
            f"build a new {type(self).__name__}({name}=...) and register that one instead"
        )

    def _make(self, rank: int) -> Any:
        from ..compressors import get_compressor

        # One reproducible random stream per rank; the iteration is the compressor's step.
        return get_compressor(self._NAME, seed=self.seed, stream=rank, **self.compressor_kwargs)

    def _make_exchange(self, n: int) -> GradientExchange:
        if self._compressor is None:
            self._compressor = self._make(self.rank)
        wire = self._wire_length(n)
        if self._exchange_on(self.world_size, n) == "two-phase":
            kwargs = self.compressor_kwargs
            return compressor_two_phase(self.process_group, wire, self._NAME, self.seed, kwargs)
        group, control = self.process_group, self._transport_control
        return CompressorAllGather(group, wire, self._compressor, control)

    def _exchange_on(self, world_size: int, n: int) -> str:
        return resolve_exchange(self.exchange, world_size, n, pinned=self._pinned_exchange)

    # The three places where the rotation hook differs (identities here).
    def _wire_length(self, n: int) -> int:
        """Coordinates of the vector the exchange averages, for a gradient of ``n``."""
        return n

    def _encode(self, grad: FloatVector, step: int) -> FloatVector:
        """The vector this rank compresses at ``step``."""
        return grad

    def _decode(self, mean: FloatVector, step: int) -> FloatVector:
        """The averaged gradient, from the exchange's average of the compressed vectors."""
        return mean

    def _step(self, grad: FloatVector) -> FloatVector | None:
        self.exchanger  # noqa: B018 - creates the compressor at the first step
        comp, k = self._compressor, self.iteration
        payload = self._propose(lambda g: comp.compress(self._encode(g, k), step=k), grad)
        # The average goes into the flat buffer when it has the gradient's length.
        out = grad if self._wire_length(grad.shape[0]) == grad.shape[0] else None
        mean = self._exchange(payload, payload is None, out=out).mean
        return None if mean is None else self._decode(mean, k)

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
    exchange : {"auto", "two-phase", "all-gather"}, default "auto"
        ``"two-phase"``: rank j averages chunk j of the uploads and re-compresses it
        (unbiased, fresh randomness) for everyone (bytes per rank independent of the number
        of ranks; docs/ddp.md); ``"all-gather"``: every rank decodes every upload;
        ``"auto"``: the all-gather on 1-2 ranks for gradients of up to 2^20 coordinates (no
        re-compression, the same bytes there) and from 3 ranks on while ``n (N - 1) (N - 2)
        / N`` is at most 2^18, else the two-phase exchange (docs/ddp.md, "Two ranks",
        "Three ranks and more").
    grad_scaler : torch.amp.GradScaler, optional
        The trainer's loss scaler (:class:`~laqcore.torch.LAQState`'s ``grad_scaler``).
        These hooks keep no memory across steps and their codes are scale-free, so it only
        puts the compressed vector in unscaled units; accepted so that every hook state
        takes the same arguments.
    fallback : bool
        DDP's all-reduce instead where it is faster (:class:`~laqcore.torch.LAQState`'s
        ``fallback``).
    **kwargs
        QSGD hyperparameters, passed to ``laqcore.get_compressor("qsgd", ...)``: ``levels``
        (default 7: 4 bits per coordinate with the sign), ``bucket_size`` (512 coordinates
        per float32 scale) and ``norm``, default ``"max"`` (each bucket's codes span its
        largest magnitude), where the compressor's own default is the paper's ``"l2"``. At
        the same bytes the max norm has about 1/40 of the l2 norm's error on Gaussian
        vectors; in the bench's noisy image task ``norm="l2"`` (this hook's earlier
        default) lost 9.4 points on average over five seeds and ``"max"`` 1.7
        (docs/results_hooks.md, "A noisy image task"). ``norm="l2"`` gives the paper's
        quantizer, for comparisons with its figures.
    """

    _NAME = "qsgd"
    _DEFAULTS: ClassVar[dict[str, Any]] = {"norm": "max"}


class TernGradState(_CompressorState):
    """State of :func:`terngrad_hook`: TernGrad (Wen et al., NeurIPS 2017), values {-s, 0, s}.

    Parameters are those of :class:`QSGDState`; ``**kwargs`` go to
    ``laqcore.get_compressor("terngrad", ...)`` (``clip_factor``, default 2.5, the paper's).

    The whole flat gradient is clipped and ternarized at once, one threshold and one scaler,
    where the paper's code has one per parameter tensor. On the bench's trainers neither is
    ahead: per tensor reached a lower training loss on the digits CNN and MLP at the same
    accuracy and lost more on a noisy image task (-5.3 points against this hook's -2.9, at
    the same bytes; docs/results_hooks.md, "TernGrad: one scaler per gradient or one per
    tensor"). Without clipping (``clip_factor=None``) three of those four trainers collapse.
    """

    _NAME = "terngrad"


class RotationState(_CompressorState):
    """State of :func:`rotation_hook`: randomized Hadamard rotation, then QSGD's stochastic
    rounding (Suresh, Yu, Kumar & McMahan 2017; the compressor ``"rotation"``).

    At iteration k every rank rotates its flat gradient (zero-padded to N, the next power of
    two) with the same random signs, ``y_m = H D_k g_m / sqrt(N)``, and uploads QSGD codes
    of ``y_m`` (rounding keyed on ``(seed, rank, k)``); every rank returns
    ``D_k H mean_m(Q(y_m)) / sqrt(N)`` (first n entries), an unbiased estimate of the mean
    gradient, bit-identical on every rank. Frames cover the N rotated coordinates: up to
    twice the codes of QSGD on n coordinates when n is just above a power of two.

    Parameters
    ----------
    process_group : ProcessGroup, optional
        Group to communicate in (the default group if ``None``).
    seed : int, default 0
        Base seed of the signs (shared by all ranks) and of the rounding (per rank).
    warmup_steps, nonfinite : int, str
        As for :class:`QSGDState`.
    exchange : {"auto", "two-phase", "all-gather"}, default "auto"
        As for :class:`QSGDState`; both exchange QSGD codes of the rotated vectors, and the
        two-phase owners average and re-quantize their chunk of rotated coordinates.
    **kwargs
        The quantizer's ``levels`` (default 7: 4 bits per rotated coordinate),
        ``bucket_size`` (512 rotated coordinates per float32 scale) and ``norm`` (default
        ``"max"``, Suresh et al.'s quantizer spanning each bucket's range, or ``"l2"``), as
        for ``laqcore.get_compressor("rotation", ...)``.
    """

    _NAME = "qsgd"  # the exchange moves QSGD codes of the rotated gradient
    _DEFAULTS: ClassVar[dict[str, Any]] = {"norm": "max"}

    def __init__(self, process_group: Any = None, **kwargs: Any) -> None:
        super().__init__(process_group, **kwargs)
        # Validated by the QSGD compressor above; the signs' generator takes the same.
        self._signs = RotationCompressor(seed=self.seed, stream=0, **self.compressor_kwargs)

    def _wire_length(self, n: int) -> int:
        return rotation_padded_size(n)

    def _encode(self, grad: FloatVector, step: int) -> FloatVector:
        # ValueError for NaN/Inf, as the compressors' kernels (the non-finite policy).
        return _core.rotation.forward(grad, self._signs.sign_key(step))

    def _decode(self, mean: FloatVector, step: int) -> FloatVector:
        return _core.rotation.inverse(mean, self.numel, self._signs.sign_key(step))


def qsgd_hook(state: QSGDState, bucket: GradBucket, *extra: Any) -> Future[torch.Tensor]:
    """DDP communication hook running QSGD (see :mod:`laqcore.torch._state` for the flow)."""
    return run_hook(state, bucket, QSGDState, "qsgd_hook", extra)


def terngrad_hook(state: TernGradState, bucket: GradBucket, *extra: Any) -> Future[torch.Tensor]:
    """DDP communication hook running TernGrad (see :mod:`laqcore.torch._state`)."""
    return run_hook(state, bucket, TernGradState, "terngrad_hook", extra)


def rotation_hook(state: RotationState, bucket: GradBucket, *extra: Any) -> Future[torch.Tensor]:
    """DDP communication hook running the rotation quantizer (see :class:`RotationState`)."""
    return run_hook(state, bucket, RotationState, "rotation_hook", extra)


# DDP's register_comm_hook compares the hook's annotations with the real classes; with
# postponed evaluation (``from __future__ import annotations``) they are strings.
for _hook in (qsgd_hook, terngrad_hook, rotation_hook):
    _hook.__annotations__ = typing.get_type_hints(_hook)
del _hook
