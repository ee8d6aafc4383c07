"""The identity compressor ``"none"`` and its DENSE payload (raw float32 values).

GD, SGD and LAG upload full-precision vectors; sending them through a payload too means
every algorithm's communication is counted the same way, in exact wire bytes.

Frame body: ``n`` float32 values, little-endian. No metadata.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np

from .. import _core
from .._typing import FloatVector
from .._validate import as_float_vector, check_step
from ..wire import Payload, PayloadKind, body_array, expect_body_size
from .base import PayloadCompressor, check_n, readonly

__all__ = ["DensePayload", "IdentityCompressor"]


def __dir__() -> list[str]:
    return __all__


class DensePayload(Payload):
    """Raw float32 values (``values``, read-only) of a length-``n`` vector."""

    KIND: ClassVar[PayloadKind] = PayloadKind.DENSE
    META: ClassVar[struct.Struct] = struct.Struct("<")

    def __init__(self, values: FloatVector) -> None:
        self.values = readonly(values)
        self.n = int(values.shape[0])

    def __repr__(self) -> str:
        return f"DensePayload(n={self.n}, nbytes={self.nbytes})"

    def _meta_values(self) -> tuple[Any, ...]:
        return ()

    def _body(self) -> tuple[FloatVector, ...]:
        return (self.values,)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> DensePayload:
        check_n(n, "DENSE")
        expect_body_size(body, 4 * n)
        values = body_array(body, 0, n, np.float32, "values")
        if not np.all(np.isfinite(values)):
            raise ValueError("corrupt DENSE frame: values contain NaN or Inf")
        return cls(values)


class IdentityCompressor(PayloadCompressor[DensePayload]):
    """No compression: the payload carries the float32 values (``4 n`` body bytes).

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("none")
    >>> p = comp.compress(np.array([1.5, -2.0]))
    >>> comp.decompress(comp.from_bytes(p.to_bytes()))
    array([ 1.5, -2. ], dtype=float32)
    """

    name = "none"
    payload_type = DensePayload

    def compress(self, x: Any, *, step: int | None = None) -> DensePayload:
        """Copy ``x`` (as float32) into a payload; ``step`` is checked and otherwise ignored."""
        check_step(step)
        return DensePayload(_core.sparse.dense_copy(as_float_vector(x, "x")))

    def decompress(self, payload: Payload) -> FloatVector:
        p = self._own(payload)
        return p.values.copy()
