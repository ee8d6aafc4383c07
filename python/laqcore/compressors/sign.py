"""Scaled sign compression ``(||x||_1 / n) * sign(x)`` (EF-SGD, ALGORITHMS.md §7).

One bit per coordinate (1 = negative; zeros are sent as +, since one bit cannot say 0) and
one float32 scale. Biased but a delta-compressor: use it with
:class:`~laqcore.error_feedback.ErrorFeedback` as in EF-SGD. Layout in
``cpp/include/laqcore/sign.hpp``.

Frame: metadata ``<f`` = the scale; body = ``packed_size(n, 1)`` bytes of sign bits.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .. import _core
from .._validate import as_float_vector
from ..wire import Payload, PayloadKind, body_array, expect_body_size
from .base import FloatVector, check_n, check_payload, check_step, readonly

__all__ = ["SignCompressor", "SignPayload"]


def __dir__() -> list[str]:
    return __all__


class SignPayload(Payload):
    """``scale`` (float) and the packed sign bits ``packed`` (read-only)."""

    KIND: ClassVar[PayloadKind] = PayloadKind.SIGN
    META: ClassVar[struct.Struct] = struct.Struct("<f")

    def __init__(self, n: int, scale: float, packed: npt.NDArray[np.uint8]) -> None:
        self.n = n
        self.scale = float(np.float32(scale))
        self.packed = readonly(packed)

    def __repr__(self) -> str:
        return f"SignPayload(n={self.n}, scale={self.scale}, nbytes={self.nbytes})"

    def _meta_values(self) -> tuple[Any, ...]:
        return (self.scale,)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.packed,)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> SignPayload:
        (scale,) = meta
        check_n(n, "SIGN")
        if not (np.isfinite(scale) and scale >= 0):
            raise ValueError(f"corrupt SIGN frame: scale {scale} (must be finite and >= 0)")
        nbytes = (n + 7) // 8
        expect_body_size(body, nbytes)
        return cls(n, float(scale), body_array(body, 0, nbytes, np.uint8, "sign bits"))


class SignCompressor:
    """Scaled sign compressor (registry name ``"sign"``); deterministic, no parameters.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("sign")
    >>> comp.decompress(comp.compress(np.array([2.0, -1.0, 0.0]))).tolist()
    [1.0, -1.0, 1.0]
    """

    name = "sign"

    def compress(self, x: Any, *, step: int | None = None) -> SignPayload:
        """Compress ``x``; ``step`` is checked and otherwise ignored (deterministic)."""
        check_step(step)
        v = as_float_vector(x, "x")
        scale, packed = _core.sign.compress(v)
        return SignPayload(v.shape[0], scale, packed)

    def decompress(self, payload: Payload) -> FloatVector:
        p = check_payload(payload, SignPayload, "SignCompressor")
        return _core.sign.decompress(p.packed, p.n, p.scale)

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> SignPayload:
        return SignPayload.from_bytes(buf, expected_n=expected_n)

    def __repr__(self) -> str:
        return "SignCompressor()"
