"""Sparsifiers: top-k, rand-k (Stich et al. 2018; docs/algorithms.md "Sign, sparsifiers, error
feedback") and sparse + quantized.

* ``"topk"``: the k largest ``|x_i|``; ties go to the lower index (deterministic).
* ``"randk"``: k distinct coordinates drawn by the counter RNG (a keyed selection: every
  index gets a random key, the k largest win), optionally rescaled by n/k to be unbiased.
* ``"sparse_quant"`` (aliases ``"sparse_quantized"``, ``"sparsified_qsgd"``): top-k or rand-k
  selection, then the k kept values quantized to ``bits`` bits with QSGD's max-norm
  stochastic rounding (one float32 scale, ``levels = 2**(bits-1) - 1`` levels plus a sign;
  the Jiang & Agrawal / Sparse-AsyLPG combination, §5/§6). It reuses the QSGD kernel on the
  gathered values, with the whole selection as one bucket.

Selection rules: ``cpp/include/laqcore/sparse.hpp``. k is given directly (``k=``) or as a
fraction of the length (``ratio=``, k = max(1, ceil(ratio * n))); exactly one of them.

Frames (indices are uint32, strictly increasing, each < n; checked by ``from_bytes``):

* TOPK / RANDK: metadata ``<Q`` = k; body = k uint32 indices, then k float32 values.
* SPARSE_QUANT: metadata ``<QBBf`` = (k, bits, selection: 0 = top-k / 1 = rand-k, scale);
  body = k uint32 indices, then ``packed_size(k, bits)`` bytes of QSGD codes.
"""

from __future__ import annotations

import math
import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .. import _core
from .._typing import FloatVector
from .._validate import (
    as_float_vector,
    check_bool,
    check_choice,
    check_positive_int,
    check_real,
    check_step,
)
from ..wire import Payload, PayloadKind, body_array, expect_body_size
from .base import PayloadCompressor, SeededCompressor, check_n, readonly

__all__ = [
    "RandKCompressor",
    "RandKPayload",
    "SparseQuantCompressor",
    "SparseQuantPayload",
    "TopKCompressor",
    "TopKPayload",
]

MAX_LENGTH = 2**32 - 1  # indices are uint32 on the wire
_SELECTIONS = ("topk", "randk")
IndexVector = npt.NDArray[np.uint32]


def __dir__() -> list[str]:
    return __all__


class _KSpec:
    """Validated ``k`` / ``ratio`` pair (exactly one given) and its value for a length n."""

    def __init__(self, k: Any, ratio: Any) -> None:
        if (k is None) == (ratio is None):
            raise TypeError("give exactly one of k (a count) and ratio (a fraction of n)")
        self.k = None if k is None else check_positive_int(k, "k", maximum=MAX_LENGTH)
        self.ratio = None if ratio is None else check_real(ratio, "ratio", positive=True, maximum=1)

    def for_length(self, n: int) -> int:
        if n > MAX_LENGTH:
            raise ValueError(f"x has {n} elements; sparse payloads hold at most {MAX_LENGTH}")
        if self.k is not None:
            if self.k > n:
                raise ValueError(f"k = {self.k} is larger than the vector length n = {n}")
            return self.k
        ratio = 1.0 if self.ratio is None else self.ratio  # __init__ set one of the two
        return max(1, min(n, math.ceil(ratio * n)))

    def __repr__(self) -> str:
        return f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"


def _read_indices(body: memoryview, n: int, k: int, kind: str) -> IndexVector:
    check_n(n, kind)
    if n > MAX_LENGTH:
        raise ValueError(f"corrupt {kind} frame: n = {n} exceeds the uint32 index range")
    if not 1 <= k <= n:
        raise ValueError(f"corrupt {kind} frame: k = {k} entries for length n = {n}")
    idx = body_array(body, 0, k, np.uint32, "indices")
    _core.sparse.check_indices(idx, n)
    return idx


# -- top-k / rand-k ------------------------------------------------------------------------
class _SparsePayload(Payload):
    """k sorted uint32 ``indices`` and their float32 ``values`` (both read-only)."""

    META: ClassVar[struct.Struct] = struct.Struct("<Q")

    def __init__(self, n: int, indices: IndexVector, values: FloatVector) -> None:
        self.n = n
        self.indices = readonly(indices)
        self.values = readonly(values)

    @property
    def k(self) -> int:
        return int(self.indices.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, k={self.k}, nbytes={self.nbytes})"

    def _meta_values(self) -> tuple[Any, ...]:
        return (self.k,)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.indices, self.values)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> _SparsePayload:
        k = int(meta[0])
        kind = cls.KIND.name
        if 1 <= k <= n:
            expect_body_size(body, 8 * k)
        idx = _read_indices(body, n, k, kind)
        values = body_array(body, 4 * k, k, np.float32, "values")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"corrupt {kind} frame: values contain NaN or Inf")
        return cls(n, idx, values)


class TopKPayload(_SparsePayload):
    __doc__ = _SparsePayload.__doc__
    KIND: ClassVar[PayloadKind] = PayloadKind.TOPK


class RandKPayload(_SparsePayload):
    __doc__ = _SparsePayload.__doc__
    KIND: ClassVar[PayloadKind] = PayloadKind.RANDK


def _scatter(n: int, indices: IndexVector, values: FloatVector) -> FloatVector:
    return _core.sparse.scatter(indices, values, n)


class TopKCompressor(PayloadCompressor[TopKPayload]):
    """Top-k sparsifier (registry name ``"topk"``; deterministic).

    Parameters
    ----------
    k : int, optional
        Coordinates kept (1 <= k <= n at compress time).
    ratio : float, optional
        Fraction of coordinates kept, in (0, 1]; instead of ``k``.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("topk", k=2)
    >>> p = comp.compress(np.array([0.5, -3.0, 1.0, 3.0]))
    >>> p.indices.tolist(), comp.decompress(p).tolist()
    ([1, 3], [0.0, -3.0, 0.0, 3.0])
    """

    name = "topk"
    payload_type = TopKPayload

    def __init__(self, *, k: int | None = None, ratio: float | None = None) -> None:
        self._spec = _KSpec(k, ratio)

    def compress(self, x: Any, *, step: int | None = None) -> TopKPayload:
        """Keep the k largest ``|x_i|``; ``step`` is checked and otherwise ignored."""
        check_step(step)
        v = as_float_vector(x, "x")
        idx, values = _core.sparse.topk(v, self._spec.for_length(v.shape[0]))
        return TopKPayload(v.shape[0], idx, values)

    def decompress(self, payload: Payload) -> FloatVector:
        p = self._own(payload)
        return _scatter(p.n, p.indices, p.values)

    def _repr_args(self) -> list[str]:
        return [repr(self._spec), *super()._repr_args()]


class RandKCompressor(SeededCompressor[RandKPayload]):
    """Rand-k sparsifier (registry name ``"randk"``).

    Parameters
    ----------
    k, ratio
        As for :class:`TopKCompressor`.
    rescale : bool
        Multiply the kept values by n/k so the estimate is unbiased (default False: the
        plain rand-k of Stich et al., meant for use with error feedback).
    seed, stream : int
        See :class:`~laqcore.compressors.base.SeededCompressor`.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("randk", k=2, seed=3)
    >>> p = comp.compress(np.arange(1.0, 6.0), step=0)
    >>> p.k, bool(np.all(np.diff(p.indices.astype(int)) > 0))
    (2, True)
    """

    name = "randk"
    payload_type = RandKPayload
    REPR_FIELDS: ClassVar[tuple[str, ...]] = ("rescale", "seed", "stream")

    def __init__(
        self,
        *,
        k: int | None = None,
        ratio: float | None = None,
        rescale: bool = False,
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        super().__init__(seed=seed, stream=stream)
        self._spec = _KSpec(k, ratio)
        self.rescale = check_bool(rescale, "rescale")

    def compress(self, x: Any, *, step: int | None = None) -> RandKPayload:
        v = as_float_vector(x, "x")
        n = v.shape[0]
        k = self._spec.for_length(n)
        idx, values = _core.sparse.randk(v, k, self._key(self._step(step)))
        self._done(step)
        if self.rescale:
            with np.errstate(over="ignore"):
                values *= np.float32(n / k)
            if not np.all(np.isfinite(values)):
                raise ValueError(
                    f"rand-k rescaling by n/k = {n / k:g} overflows float32 (|x| up to "
                    f"{float(np.max(np.abs(v))):g}); scale the input down or use rescale=False"
                )
        return RandKPayload(n, idx, values)

    def decompress(self, payload: Payload) -> FloatVector:
        p = self._own(payload)
        return _scatter(p.n, p.indices, p.values)

    def _repr_args(self) -> list[str]:
        return [repr(self._spec), *super()._repr_args()]


# -- sparse + quantized -------------------------------------------------------------------
def _check_bits(bits: Any) -> int:
    """Bits per kept value of sparse+quantized: a sign bit plus at least one level bit."""
    return check_positive_int(bits, "bits", minimum=2, maximum=8)


def _levels_for_bits(bits: int) -> int:
    return (1 << (bits - 1)) - 1


class SparseQuantPayload(Payload):
    """k sorted uint32 ``indices``, the packed QSGD codes of their values and one ``scale``."""

    KIND: ClassVar[PayloadKind] = PayloadKind.SPARSE_QUANT
    META: ClassVar[struct.Struct] = struct.Struct("<QBBf")

    def __init__(
        self,
        n: int,
        bits: int,
        selection: str,
        scale: float,
        indices: IndexVector,
        packed: npt.NDArray[np.uint8],
    ) -> None:
        self.n = n
        # the compressor's own checks: a hand-built payload with bits = 0 failed at decode
        # with "negative shift count"
        self.bits = _check_bits(bits)
        self.selection = check_choice(selection, "selection", _SELECTIONS)
        self.scale = float(np.float32(scale))
        self.indices = readonly(indices)
        self.packed = readonly(packed)

    @property
    def k(self) -> int:
        return int(self.indices.shape[0])

    @property
    def levels(self) -> int:
        return _levels_for_bits(self.bits)

    def __repr__(self) -> str:
        return (
            f"SparseQuantPayload(n={self.n}, k={self.k}, bits={self.bits}, "
            f"selection={self.selection!r}, nbytes={self.nbytes})"
        )

    def _meta_values(self) -> tuple[Any, ...]:
        return (self.k, self.bits, _SELECTIONS.index(self.selection), self.scale)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.indices, self.packed)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> SparseQuantPayload:
        k, bits, sel, scale = int(meta[0]), int(meta[1]), int(meta[2]), float(meta[3])
        if not 2 <= bits <= 8:
            raise ValueError(f"corrupt SPARSE_QUANT frame: bits = {bits}, must be in [2, 8]")
        if sel >= len(_SELECTIONS):
            raise ValueError(f"corrupt SPARSE_QUANT frame: selection id {sel}")
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f"corrupt SPARSE_QUANT frame: scale {scale}")
        nbytes = (k * bits + 7) // 8
        if 1 <= k <= n:
            expect_body_size(body, 4 * k + nbytes)
        idx = _read_indices(body, n, k, "SPARSE_QUANT")
        packed = body_array(body, 4 * k, nbytes, np.uint8, "codes")
        return cls(n, bits, _SELECTIONS[sel], scale, idx, packed)


class SparseQuantCompressor(SeededCompressor[SparseQuantPayload]):
    """Sparsify, then quantize the kept values (registry name ``"sparse_quant"``).

    Parameters
    ----------
    k, ratio
        As for :class:`TopKCompressor`.
    bits : int
        Bits per kept value, 2..8: a sign bit plus ``bits - 1`` level bits, i.e.
        ``2**(bits-1) - 1`` QSGD levels of the max-norm scale (unbiased given the selection).
    selection : {"topk", "randk"}
        How the k coordinates are chosen (default ``"topk"``).
    seed, stream : int
        Rounding uses ``make_key(seed, step, stream)``; rand-k selection uses
        ``stream + 2**62`` so the two draws are independent.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("sparse_quant", k=2, bits=4)
    >>> p = comp.compress(np.array([0.1, -4.0, 2.0, 0.0]), step=0)
    >>> p.indices.tolist(), p.scale, float(comp.decompress(p)[1])
    ([1, 2], 4.0, -4.0)
    """

    name = "sparse_quant"
    payload_type = SparseQuantPayload
    REPR_FIELDS: ClassVar[tuple[str, ...]] = ("bits", "selection", "seed", "stream")

    def __init__(
        self,
        *,
        k: int | None = None,
        ratio: float | None = None,
        bits: int = 4,
        selection: str = "topk",
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        super().__init__(seed=seed, stream=stream)
        self._spec = _KSpec(k, ratio)
        self.bits = _check_bits(bits)
        self.selection = check_choice(selection, "selection", _SELECTIONS)

    @property
    def levels(self) -> int:
        return _levels_for_bits(self.bits)

    def compress(self, x: Any, *, step: int | None = None) -> SparseQuantPayload:
        v = as_float_vector(x, "x")
        n = v.shape[0]
        k = self._spec.for_length(n)
        s = self._step(step)
        if self.selection == "topk":
            idx, values = _core.sparse.topk(v, k)
        else:
            idx, values = _core.sparse.randk(v, k, self._key(s, draw=1))
        # The kept values form one QSGD bucket with the max-norm scale.
        scales, packed = _core.qsgd.quantize(values, self.levels, k, "max", self._key(s))
        self._done(step)
        return SparseQuantPayload(n, self.bits, self.selection, float(scales[0]), idx, packed)

    def decompress(self, payload: Payload) -> FloatVector:
        p = self._own(payload)
        scales = np.array([p.scale], dtype=np.float32)
        values = _core.qsgd.dequantize(p.packed, scales, p.k, p.levels, p.k)
        return _scatter(p.n, p.indices, values)

    def _repr_args(self) -> list[str]:
        return [repr(self._spec), *super()._repr_args()]
