"""QSGD: bucketed, unbiased stochastic quantization with s levels (docs/algorithms.md "QSGD").

Each bucket of ``bucket_size`` consecutive coordinates is scaled by its own L2 norm
(``norm="l2"``, the paper's quantizer) or max norm (``norm="max"``, the variant used in
practice), and every coordinate is rounded to a neighbouring level ``l/s`` or ``(l+1)/s``
with the probability that makes it unbiased. The exact formulas, the code layout
(``code = 2*level + negative``, ``1 + ceil(log2(s+1))`` bits per code, at most 8, so
``levels <= 127``) and the packing are documented in ``cpp/include/laqcore/qsgd.hpp``.

Frame (see :mod:`laqcore.wire`): metadata ``<BBQ`` = (levels, norm: 0 = l2 / 1 = max,
bucket_size); body = float32 scales of the ``ceil(n / bucket_size)`` buckets, then the
packed codes (``packed_size(n, code_bits)`` bytes).

:func:`qsgd_elias_bits` gives the Elias-coded size the QSGD paper (and the LAQ code's QSGD
baseline) count, for comparing with their bit figures; ``payload.nbytes`` is the real,
fixed-width size that laqcore sends.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .. import _core
from .._typing import FloatVector
from .._validate import (
    MAX_LEVELS,
    UINT64_MAX,
    as_float_vector,
    check_choice,
    check_levels,
    check_positive_int,
)
from ..packing import unpack_bits
from ..wire import Payload, PayloadKind, body_array, expect_body_size
from .base import P, SeededCompressor, check_n, check_payload, readonly

__all__ = [
    "BucketCodesPayload",
    "BucketQuantizer",
    "QSGDCompressor",
    "QSGDPayload",
    "elias_omega_length",
    "qsgd_code_bits",
    "qsgd_dequantize",
    "qsgd_elias_bits",
    "qsgd_quantize",
]

NORMS = ("l2", "max")


def __dir__() -> list[str]:
    return __all__


def qsgd_code_bits(levels: int) -> int:
    """Bits per packed (sign, level) code: ``1 + ceil(log2(levels + 1))``.

    Examples
    --------
    >>> from laqcore.compressors import qsgd_code_bits
    >>> [qsgd_code_bits(s) for s in (1, 3, 4, 7, 127)]
    [2, 3, 4, 4, 8]
    """
    return int(_core.qsgd.code_bits(check_levels(levels)))


class BucketCodesPayload(Payload):
    """What the QSGD and rotation frames share: ``levels``, ``norm`` (``"l2"`` or
    ``"max"``), ``bucket_size``, one float32 scale per bucket (``scales``) and the packed
    (sign, level) codes (``packed``), both read-only."""

    def __init__(
        self,
        n: int,
        levels: int,
        norm: str,
        bucket_size: int,
        scales: FloatVector,
        packed: npt.NDArray[np.uint8],
    ) -> None:
        self.n = n
        self.levels = levels
        # checked here for hand-built payloads: decoding never reads the norm, so a bogus one
        # went unnoticed until to_bytes
        self.norm = check_choice(norm, "norm", NORMS)
        self.bucket_size = bucket_size
        self.scales = readonly(scales)
        self.packed = readonly(packed)

    @property
    def code_bits(self) -> int:
        return qsgd_code_bits(self.levels)

    def _meta_values(self) -> tuple[Any, ...]:
        return (self.levels, NORMS.index(self.norm), self.bucket_size)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.scales, self.packed)


class QSGDPayload(BucketCodesPayload):
    """A QSGD-compressed vector.

    Attributes
    ----------
    n, levels, bucket_size : int
    norm : str
        ``"l2"`` or ``"max"``.
    scales : numpy.ndarray of float32
        One scale per bucket (read-only).
    packed : numpy.ndarray of uint8
        The packed codes (read-only).
    """

    KIND: ClassVar[PayloadKind] = PayloadKind.QSGD
    META: ClassVar[struct.Struct] = struct.Struct("<BBQ")

    def __repr__(self) -> str:
        return (
            f"QSGDPayload(n={self.n}, levels={self.levels}, norm={self.norm!r}, "
            f"bucket_size={self.bucket_size}, nbytes={self.nbytes})"
        )

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> QSGDPayload:
        levels, norm_id, bucket_size = (int(v) for v in meta)
        check_n(n, "QSGD")
        norm, scales, packed = parse_scaled_codes("QSGD", n, levels, norm_id, bucket_size, body)
        return cls(n, levels, norm, bucket_size, scales, packed)


def parse_scaled_codes(
    kind: str, count: int, levels: int, norm_id: int, bucket_size: int, body: memoryview
) -> tuple[str, FloatVector, npt.NDArray[np.uint8]]:
    """Check the (levels, norm, bucket) metadata of a frame holding ``count`` QSGD codes and
    read its body (float32 bucket scales, then the packed codes); ``ValueError`` naming
    ``kind`` for anything no valid frame has. Shared by the QSGD and rotation frames."""
    if not 1 <= levels <= MAX_LEVELS:
        raise ValueError(f"corrupt {kind} frame: levels = {levels}, must be in [1, 127]")
    if norm_id >= len(NORMS):
        raise ValueError(f"corrupt {kind} frame: norm id {norm_id} (0 = l2, 1 = max)")
    if bucket_size < 1:
        raise ValueError(f"corrupt {kind} frame: bucket_size = 0")
    nb = -(-count // bucket_size)
    nbytes = (count * qsgd_code_bits(levels) + 7) // 8
    expect_body_size(body, 4 * nb + nbytes)
    scales = body_array(body, 0, nb, np.float32, "scales")
    if not np.all(np.isfinite(scales) & (scales >= 0)):
        raise ValueError(f"corrupt {kind} frame: scales must be finite and >= 0")
    packed = body_array(body, 4 * nb, nbytes, np.uint8, "codes")
    return NORMS[norm_id], scales, packed


def qsgd_quantize(
    x: Any,
    levels: int = 7,
    *,
    bucket_size: int = 512,
    norm: str = "l2",
    seed: int = 0,
    step: int = 0,
    stream: int = 0,
) -> QSGDPayload:
    """Quantize ``x`` with QSGD (the functional form of :class:`QSGDCompressor`).

    Parameters
    ----------
    x : array_like, 1-D float
        The vector (float32 native, float64 converted). NaN/Inf raise ``ValueError``.
    levels : int
        Number of levels s, 1..127.
    bucket_size : int
        Coordinates per bucket (>= 1); each bucket has its own float32 scale.
    norm : {"l2", "max"}
        Bucket scale.
    seed, step, stream : int
        RNG key ``make_key(seed, step, stream)`` of the stochastic rounding.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> p = laqcore.qsgd_quantize(np.array([0.5, -1.0, 0.0, 2.0]), levels=4, bucket_size=2)
    >>> p.scales
    array([1.118034, 2.      ], dtype=float32)
    >>> float(laqcore.qsgd_dequantize(p)[3])
    2.0
    """
    comp = QSGDCompressor(
        levels=levels, bucket_size=bucket_size, norm=norm, seed=seed, stream=stream
    )
    return comp.compress(x, step=step)


def qsgd_dequantize(payload: QSGDPayload) -> FloatVector:
    """Decode a :class:`QSGDPayload` to float32 (``ValueError`` for a corrupt code)."""
    p = check_payload(payload, QSGDPayload, "qsgd")
    return _core.qsgd.dequantize(p.packed, p.scales, p.n, p.levels, p.bucket_size)


class BucketQuantizer(SeededCompressor[P]):
    """The parameters and checks QSGD and the rotation quantizer share: ``levels``,
    ``bucket_size``, ``norm``, ``seed`` and ``stream``."""

    REPR_FIELDS: ClassVar[tuple[str, ...]] = ("levels", "bucket_size", "norm", "seed", "stream")

    def __init__(
        self,
        *,
        levels: int = 7,
        bucket_size: int = 512,
        norm: str = "l2",
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        super().__init__(seed=seed, stream=stream)
        self.levels = check_levels(levels)
        self.bucket_size = check_positive_int(bucket_size, "bucket_size", maximum=UINT64_MAX)
        self.norm = check_choice(norm, "norm", NORMS)


class QSGDCompressor(BucketQuantizer[QSGDPayload]):
    """QSGD compressor (registry name ``"qsgd"``).

    Parameters
    ----------
    levels : int
        Levels s (1..127); codes take ``1 + ceil(log2(s + 1))`` bits. Default 7 (4 bits).
    bucket_size : int
        Coordinates per bucket, default 512.
    norm : {"l2", "max"}
        Scale of each bucket, default ``"l2"`` (the paper's unbiased quantizer).
    seed, stream : int
        See :class:`~laqcore.compressors.base.SeededCompressor`.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("qsgd", levels=7, bucket_size=4, seed=1)
    >>> x = np.array([0.1, -0.2, 0.3, -0.4, 0.5], dtype=np.float32)
    >>> p = comp.compress(x, step=0)
    >>> p.nbytes == len(p.to_bytes())
    True
    >>> comp.decompress(p).dtype
    dtype('float32')
    """

    name = "qsgd"
    payload_type = QSGDPayload

    def compress(self, x: Any, *, step: int | None = None) -> QSGDPayload:
        v = as_float_vector(x, "x")
        key = self._key(self._step(step))
        scales, packed = _core.qsgd.quantize(v, self.levels, self.bucket_size, self.norm, key)
        self._done(step)
        return QSGDPayload(v.shape[0], self.levels, self.norm, self.bucket_size, scales, packed)

    def decompress(self, payload: Payload) -> FloatVector:
        return qsgd_dequantize(self._own(payload))


def elias_omega_length(m: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Length in bits of the Elias omega code of each positive integer in ``m``.

    ``L(1) = 1``; otherwise the code writes m, then floor(log2 m), ... recursively, each in
    binary, plus a final 0 bit.

    Examples
    --------
    >>> from laqcore.compressors import elias_omega_length
    >>> elias_omega_length([1, 2, 3, 4, 16]).tolist()
    [1, 3, 3, 6, 11]
    """
    v = np.asarray(m, dtype=np.int64)
    if v.size and v.min() < 1:
        raise ValueError("Elias omega codes exist for positive integers only")
    total = np.ones(v.shape, dtype=np.int64)
    v = v.copy()
    while np.any(v > 1):
        active = v > 1
        nbits = np.zeros_like(v)
        # bit_length of v for v >= 2 (exact for int64 values below 2**53)
        nbits[active] = np.floor(np.log2(v[active])).astype(np.int64) + 1
        total += np.where(active, nbits, 0)
        v = np.where(active, nbits - 1, v)
    return total


def qsgd_elias_bits(payload: QSGDPayload) -> int:
    """Bits an Elias-coded QSGD message would take (the paper's accounting, §3).

    Per bucket: 32 bits for the scale; per non-zero coordinate: the Elias omega code of its
    distance to the previous non-zero of the bucket (1-based gap), 1 sign bit and the Elias
    omega code of its level. This is an *estimate for comparisons* with the QSGD/LAQ papers'
    bit counts (their exact coder is UNCONFIRMED); laqcore sends fixed-width codes, whose
    real size is ``payload.nbytes``.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> from laqcore.compressors import qsgd_elias_bits
    >>> p = laqcore.qsgd_quantize(np.array([0.0, 0.0, 3.0]), levels=1, bucket_size=3)
    >>> qsgd_elias_bits(p)  # 32 (scale) + omega(3)=3 + 1 (sign) + omega(1)=1
    37
    """
    p = check_payload(payload, QSGDPayload, "qsgd_elias_bits")
    codes = unpack_bits(np.array(p.packed), p.code_bits, p.n).astype(np.int64)
    levels = codes >> 1
    nb = p.scales.shape[0]
    total = 32 * nb
    positions = np.flatnonzero(levels)
    if positions.size:
        bucket = positions // p.bucket_size
        start = bucket * p.bucket_size
        prev = np.concatenate(([-1], positions[:-1]))
        first_in_bucket = np.concatenate(([True], bucket[1:] != bucket[:-1]))
        gaps = np.where(first_in_bucket, positions - start + 1, positions - prev)
        total += int(elias_omega_length(gaps).sum())
        total += positions.size  # sign bits
        total += int(elias_omega_length(levels[positions]).sum())
    return int(total)
