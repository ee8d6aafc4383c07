"""Rotation quantizer: randomized Hadamard transform, then stochastic quantization
(Suresh, Yu, Kumar & McMahan 2017, "Distributed mean estimation with limited communication").

``x`` (length n) is zero-padded to N = the next power of two, its signs are flipped at random
(``D``, seeded by the counter RNG) and it is rotated by the orthonormal Hadamard matrix:
``y = H D x / sqrt(N)``. ``y`` is quantized with QSGD's unbiased stochastic rounding
(:mod:`laqcore.compressors.qsgd`: ``levels`` levels, one scale per bucket, ``norm`` "max" by
default as in Suresh et al.'s min-max quantizer, or "l2"), and the receiver decodes
``x_hat = D H y_hat / sqrt(N)`` (first n entries). The rotation is orthogonal and does not
depend on the rounding, so ``E[x_hat] = x`` and the error is the quantization error of ``y``
rotated back; the rotation spreads a few large coordinates over all N, which shrinks the
quantizer's range, and so its variance, on heavy-tailed vectors. Formulas and arithmetic:
``cpp/include/laqcore/rotation.hpp``.

Randomness: the rounding uses ``make_key(seed, step, stream)``, the signs an independent draw
(``stream + 2**62``); the sign key travels in the frame, so any receiver decodes it.

Frame (``PayloadKind.ROTATION``, see :mod:`laqcore.wire`): metadata ``<BBQQ`` = (levels,
norm: 0 = l2 / 1 = max, bucket_size, sign key); body = float32 scales of the
``ceil(N / bucket_size)`` buckets, then the ``N`` packed codes (QSGD's layout).
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .. import _core
from .._typing import FloatVector
from .._validate import as_float_vector, check_positive_int
from ..wire import Payload, PayloadKind
from .base import check_n
from .qsgd import BucketCodesPayload, BucketQuantizer, parse_scaled_codes

__all__ = ["RotationCompressor", "RotationPayload", "rotation_padded_size"]


def __dir__() -> list[str]:
    return __all__


def rotation_padded_size(n: int) -> int:
    """The rotated length N: the smallest power of two >= n.

    Examples
    --------
    >>> from laqcore.compressors import rotation_padded_size
    >>> [rotation_padded_size(n) for n in (1, 3, 4, 1000)]
    [1, 4, 4, 1024]
    """
    return int(_core.rotation.padded_size(check_positive_int(n, "n", maximum=2**62)))


class RotationPayload(BucketCodesPayload):
    """A rotated, quantized vector.

    Attributes
    ----------
    n : int
        Length of the original vector; ``padded`` = N is the rotated length.
    levels, bucket_size : int
    norm : str
    key : int
        The sign key of the rotation (``D``).
    scales : numpy.ndarray of float32
        One scale per bucket of the rotated vector (read-only).
    packed : numpy.ndarray of uint8
        The N codes in QSGD's layout (read-only).
    """

    KIND: ClassVar[PayloadKind] = PayloadKind.ROTATION
    META: ClassVar[struct.Struct] = struct.Struct("<BBQQ")

    def __init__(
        self,
        n: int,
        levels: int,
        norm: str,
        bucket_size: int,
        key: int,
        scales: FloatVector,
        packed: npt.NDArray[np.uint8],
    ) -> None:
        super().__init__(n, levels, norm, bucket_size, scales, packed)
        self.key = key

    @property
    def padded(self) -> int:
        return rotation_padded_size(self.n)

    def __repr__(self) -> str:
        return (
            f"RotationPayload(n={self.n}, padded={self.padded}, levels={self.levels}, "
            f"norm={self.norm!r}, bucket_size={self.bucket_size}, nbytes={self.nbytes})"
        )

    def _meta_values(self) -> tuple[Any, ...]:
        return (*super()._meta_values(), self.key)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> RotationPayload:
        levels, norm_id, bucket_size, key = (int(v) for v in meta)
        check_n(n, "ROTATION")
        if n > 2**62:
            raise ValueError(f"corrupt ROTATION frame: n = {n} exceeds 2**62")
        norm, scales, packed = parse_scaled_codes(
            "ROTATION", rotation_padded_size(n), levels, norm_id, bucket_size, body
        )
        return cls(n, levels, norm, bucket_size, key, scales, packed)


class RotationCompressor(BucketQuantizer[RotationPayload]):
    """Randomized Hadamard rotation + stochastic quantization (registry name ``"rotation"``).

    Parameters
    ----------
    levels : int
        Levels s of the quantizer (1..127); codes take ``1 + ceil(log2(s + 1))`` bits per
        rotated coordinate. Default 7 (4 bits).
    bucket_size : int
        Rotated coordinates per scale, default 512.
    norm : {"max", "l2"}
        Scale of each bucket, default ``"max"`` (Suresh et al.'s quantizer spans the range).
    seed, stream : int
        See :class:`~laqcore.compressors.base.SeededCompressor`.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("rotation", levels=7, seed=0)
    >>> x = np.random.default_rng(0).standard_t(3, 1000).astype(np.float32)
    >>> p = comp.compress(x, step=0)
    >>> p.padded, p.nbytes == len(p.to_bytes())
    (1024, True)
    >>> comp.decompress(comp.from_bytes(p.to_bytes())).shape
    (1000,)
    """

    name = "rotation"
    payload_type = RotationPayload

    def __init__(
        self,
        *,
        levels: int = 7,
        bucket_size: int = 512,
        norm: str = "max",
        seed: int = 0,
        stream: int = 0,
    ) -> None:
        super().__init__(
            levels=levels, bucket_size=bucket_size, norm=norm, seed=seed, stream=stream
        )

    def sign_key(self, step: int | None = None) -> int:
        """The key of the random signs ``D`` at ``step`` (``None``: the step of the next
        :meth:`compress` without one), a pure function of ``seed``, ``stream`` and the step.
        The DDP rotation hook (:class:`laqcore.torch.RotationState`) rotates every rank's
        gradient with stream 0's key."""
        return self._key(self._step(step), 1)

    def compress(self, x: Any, *, step: int | None = None) -> RotationPayload:
        """Rotate and quantize ``x`` (float32, finite).

        Raises ``ValueError`` for NaN/Inf and ``OverflowError`` when ``max|x_i|`` exceeds
        ``3.4e38 / N^1.5`` (N the padded length; ``3.2e29`` at N = 2^20): above it the
        transform's float32 sums, or its inverse's at the receiver, could overflow
        (``cpp/include/laqcore/rotation.hpp``, ``rotation_input_limit``).
        """
        v = as_float_vector(x, "x")
        k = self._step(step)
        sign_key = self.sign_key(k)
        scales, packed = _core.rotation.compress(
            v, self.levels, self.bucket_size, self.norm, sign_key, self._key(k)
        )
        self._done(step)
        return RotationPayload(
            v.shape[0], self.levels, self.norm, self.bucket_size, sign_key, scales, packed
        )

    def decompress(self, payload: Payload) -> FloatVector:
        p = self._own(payload)
        return _core.rotation.decompress(p.packed, p.scales, p.n, p.levels, p.bucket_size, p.key)
