"""Scaled sign compression ``(||x||_1 / n) * sign(x)`` (EF-SGD; docs/algorithms.md "Sign,
sparsifiers, error feedback").

One bit per coordinate (1 = negative; zeros are sent as +, since one bit cannot say 0) and
one float32 scale. Biased but a delta-compressor: use it with
:class:`~laqcore.error_feedback.ErrorFeedback` as in EF-SGD. Layout in
``cpp/include/laqcore/sign.hpp``.

Frame: metadata ``<f`` = the scale; body = ``packed_size(n, 1)`` bytes of sign bits.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .. import _core
from .._typing import FloatVector
from .._validate import as_float_vector, check_step
from ..wire import Payload, PayloadKind
from .base import PayloadCompressor, ScaledCodesPayload

__all__ = ["SignCompressor", "SignPayload"]


def __dir__() -> list[str]:
    return __all__


class SignPayload(ScaledCodesPayload):
    """``scale`` (float) and the packed sign bits ``packed`` (read-only)."""

    KIND: ClassVar[PayloadKind] = PayloadKind.SIGN
    CODE_BITS: ClassVar[int] = 1
    SCALE_NAME: ClassVar[str] = "scale"

    @property
    def scale(self) -> float:
        return self._scale


class SignCompressor(PayloadCompressor[SignPayload]):
    """Scaled sign compressor (registry name ``"sign"``); deterministic, no parameters.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("sign")
    >>> comp.decompress(comp.compress(np.array([2.0, -1.0, 0.0]))).tolist()
    [1.0, -1.0, 1.0]
    """

    name = "sign"
    payload_type = SignPayload

    def compress(self, x: Any, *, step: int | None = None) -> SignPayload:
        """Compress ``x``; ``step`` is checked and otherwise ignored (deterministic)."""
        check_step(step)
        v = as_float_vector(x, "x")
        scale, packed = _core.sign.compress(v)
        return SignPayload(v.shape[0], scale, packed)

    def decompress(self, payload: Payload) -> FloatVector:
        p = self._own(payload)
        return _core.sign.decompress(p.packed, p.n, p.scale)
