"""TernGrad: stochastic ternarization with optional clipping (docs/algorithms.md "TernGrad").

``g_tilde = s * sign(g) * b`` with ``b_i ~ Bernoulli(|g_i| / s)`` and ``s = max |g|`` (after
optional clipping of ``|g|`` at ``clip_factor * std(g)``, default 2.5 as in the paper), or a
*shared* scaler (the maximum of all workers' scalers, so ternary values can be summed;
get each worker's with :meth:`TernGradCompressor.local_scaler`). Unbiased for the clipped
gradient. Codes are 2 bits: ``0 -> 0``, ``1 -> +s``, ``2 -> -s`` (``3`` is invalid);
formulas in ``cpp/include/laqcore/terngrad.hpp``.

Frame: metadata ``<f`` = the scaler s; body = ``packed_size(n, 2)`` bytes of codes.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import _core
from .._typing import FloatVector
from .._validate import as_float_vector, check_real
from ..wire import Payload, PayloadKind
from .base import ScaledCodesPayload, SeededCompressor

__all__ = ["TernGradCompressor", "TernGradPayload"]


def __dir__() -> list[str]:
    return __all__


class TernGradPayload(ScaledCodesPayload):
    """A ternarized vector: ``scaler`` (float) and 2-bit ``packed`` codes (read-only)."""

    KIND: ClassVar[PayloadKind] = PayloadKind.TERNGRAD
    CODE_BITS: ClassVar[int] = 2
    SCALE_NAME: ClassVar[str] = "scaler"

    @property
    def scaler(self) -> float:
        return self._scale


class TernGradCompressor(SeededCompressor[TernGradPayload]):
    """TernGrad compressor (registry name ``"terngrad"``).

    Parameters
    ----------
    clip_factor : float or None
        Clip ``|g|`` at ``clip_factor * std(g)`` before ternarizing (paper default 2.5);
        ``None`` or ``0`` disables clipping. A constant tensor (std 0, e.g. any tensor of
        length 1) is not clipped: the formula's ``c * 0`` would clip it to zero, and a
        parameter (or a two-phase chunk) of equal values would never move.
    seed, stream : int
        See :class:`~laqcore.compressors.base.SeededCompressor`.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("terngrad", clip_factor=None, seed=0)
    >>> p = comp.compress(np.array([1.0, -1.0, 0.0, 0.25]), step=0)
    >>> p.scaler, comp.decompress(p)[:3].tolist()
    (1.0, [1.0, -1.0, 0.0])
    """

    name = "terngrad"
    payload_type = TernGradPayload
    REPR_FIELDS: ClassVar[tuple[str, ...]] = ("clip_factor", "seed", "stream")

    def __init__(self, *, clip_factor: float | None = 2.5, seed: int = 0, stream: int = 0) -> None:
        super().__init__(seed=seed, stream=stream)
        c = 0.0 if clip_factor is None else check_real(clip_factor, "clip_factor")
        if c < 0:
            raise ValueError(f"clip_factor must be >= 0 (0 or None: no clipping), got {c}")
        self.clip_factor: float | None = None if c == 0 else c

    @property
    def _clip(self) -> float:
        return 0.0 if self.clip_factor is None else self.clip_factor

    def local_scaler(self, x: Any) -> float:
        """This worker's scaler ``max |clip(x)|``, to be max-reduced for scaler sharing."""
        s, _ = _core.terngrad.scaler(as_float_vector(x, "x"), self._clip)
        return float(s)

    def compress(
        self, x: Any, *, step: int | None = None, shared_scaler: float | None = None
    ) -> TernGradPayload:
        """Ternarize ``x``; ``shared_scaler`` (>= :meth:`local_scaler`) replaces the local one."""
        v = as_float_vector(x, "x")
        shared = -1.0
        if shared_scaler is not None:
            shared = check_real(shared_scaler, "shared_scaler")
            if shared < 0:
                raise ValueError(f"shared_scaler must be >= 0, got {shared}")
        key = self._key(self._step(step))
        scaler, packed = _core.terngrad.quantize(v, self._clip, shared, key)
        self._done(step)
        return TernGradPayload(v.shape[0], scaler, packed)

    def decompress(self, payload: Payload) -> FloatVector:
        p = self._own(payload)
        return _core.terngrad.dequantize(p.packed, p.n, p.scaler)
