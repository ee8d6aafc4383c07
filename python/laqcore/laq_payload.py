"""The LAQ payloads: what one LAQ upload puts on the wire (see :mod:`laqcore.laq`).

Two frame kinds (:mod:`laqcore.wire`):

* ``PayloadKind.LAQ`` (:class:`LAQPayload`, one radius for the whole vector, the paper's
  quantizer): metadata ``<BBHf`` = bits (uint8), two zero padding fields (uint8, uint16),
  radius (float32); body = the codes packed in :func:`laqcore.pack_bits`' layout,
  ``ceil(n * bits / 8)`` bytes.
* ``PayloadKind.LAQ_BLOCK`` (:class:`LAQBlockPayload`, one radius per block of
  ``block_size`` coordinates, the last block possibly shorter): metadata ``<BBHI`` = bits,
  two zero padding fields, block_size (uint32, a multiple of 8 in ``[8, 2**31]``); body =
  the ``ceil(n / block_size)`` float32 radii, then the packed codes as above.

Frames of the global kind written before the blockwise kind existed decode unchanged.
``LAQPayload.from_bytes`` accepts both kinds; ``LAQBlockPayload.from_bytes`` only the
blockwise one.

Payloads are immutable: the fields are read-only properties and the arrays read-only (an
array given to the constructor that is writeable is copied), so what ``to_bytes`` writes is
always what the constructor validated.
"""

from __future__ import annotations

import math
import struct
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from . import _core
from ._typing import FloatVector
from ._validate import as_code_vector, check_bits, check_block_size, check_positive_int, check_real
from .wire import Payload, PayloadKind, body_array, expect_body_size

__all__ = ["LAQBlockPayload", "LAQPayload"]


def __dir__() -> list[str]:
    return __all__


_P = TypeVar("_P", bound="LAQPayload")


def _check_radius(radius: Any) -> float:
    value = check_real(radius, "radius", minimum=0.0)
    if float(np.float32(value)) != value:
        raise ValueError(f"radius must be exactly representable as float32, got {value!r}")
    return value


def _frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``a`` itself if read-only, else a read-only copy (the caller keeps its array)."""
    if a.flags.writeable:
        a = a.copy()
        a.flags.writeable = False
    return a


def _check_packed(packed: Any, n: int, bits: int) -> npt.NDArray[np.uint8]:
    packed = as_code_vector(packed, "packed")
    need = int(_core.pack.packed_size(n, bits))
    if packed.shape[0] != need:
        raise ValueError(
            f"packed has {packed.shape[0]} bytes but {n} codes of {bits} bits need exactly {need}"
        )
    return _frozen(packed)


def _check_meta_common(n: int, bits: int, pad8: int, pad16: int) -> None:
    if not 1 <= bits <= 8:
        raise ValueError(f"corrupt LAQ frame: bits must be in [1, 8], got {bits}")
    if pad8 != 0 or pad16 != 0:
        raise ValueError("corrupt LAQ frame: metadata padding is not zero")
    if n < 1:
        raise ValueError(f"corrupt LAQ frame: n must be >= 1, got {n}")


class LAQPayload(Payload):
    """One LAQ upload: the packed innovation codes and the radius (read-only fields).

    Attributes
    ----------
    packed : numpy.ndarray of uint8
        The ``n`` codes of ``bits`` bits in :func:`laqcore.pack_bits`' layout (read-only).
    radius : float
        ``R = max|g - q_prev|`` (a float32 value); for a blockwise payload the largest radius.
    radii : numpy.ndarray of float32
        One radius per block (read-only); ``[radius]`` for the global quantizer.
    block_size : int or None
        Coordinates per radius block; ``None``: one radius for the whole vector.
    bits : int
        Bits per code, 1..8.
    n : int
        Length of the encoded vector.
    err_sq : float or None
        ``||q_prev + dQ - g||^2``, the quantization error the upload rule needs. Known only to
        the sender: ``None`` for a payload decoded with :meth:`from_bytes`.
    innov_sq : float
        ``||dQ||^2``. Computed by the quantizer; for a decoded payload it is recomputed from the
        codes on first access (bit-identical to the sender's value).

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> p = laqcore.laq_quantize(np.array([0.5, -1.0, 0.25], dtype=np.float32), None, 2)
    >>> p.bits, p.n, p.radius, p.nbytes
    (2, 3, 1.0, 25)
    >>> laqcore.LAQPayload.from_bytes(p.to_bytes()) == p
    True
    """

    KIND: ClassVar[PayloadKind] = PayloadKind.LAQ
    META: ClassVar[struct.Struct] = struct.Struct("<BBHf")
    _IMMUTABLE: ClassVar[bool] = True  # read-only fields, validated by the constructor

    def __init__(
        self,
        packed: npt.NDArray[np.uint8],
        radius: float,
        bits: int,
        n: int,
        err_sq: float | None = None,
        innov_sq: float | None = None,
    ) -> None:
        self._bits = check_bits(bits)
        self._n = check_positive_int(n, "n")
        r = _check_radius(radius)
        self._radii: FloatVector = _frozen(np.array([r], dtype=np.float32))
        self._packed = _check_packed(packed, self._n, self._bits)
        self._err_sq = None if err_sq is None else float(err_sq)
        self._innov_sq = None if innov_sq is None else float(innov_sq)

    @classmethod
    def _trusted(
        cls: type[_P],
        packed: npt.NDArray[np.uint8],
        radii: FloatVector,
        bits: int,
        n: int,
        block_size: int | None = None,
        err_sq: float | None = None,
        innov_sq: float | None = None,
    ) -> _P:
        """A payload of fields that are valid by construction, without the constructor's
        checks (the per-step hot path): the quantizer's output, a block slice of a valid
        payload, a frame the native check accepted. ``packed`` and ``radii`` must be
        read-only arrays of the right lengths (``radii`` holds one radius for the global
        kind)."""
        p = cls.__new__(cls)
        p._bits, p._n, p._radii, p._packed = bits, n, radii, packed
        if block_size is not None:
            p._block_size = block_size  # type: ignore[attr-defined]  # LAQBlockPayload's field
        p._err_sq = None if err_sq is None else float(err_sq)
        p._innov_sq = None if innov_sq is None else float(innov_sq)
        return p

    # -- read-only fields --------------------------------------------------------------
    @property
    def n(self) -> int:  # type: ignore[override]
        return self._n

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def packed(self) -> npt.NDArray[np.uint8]:
        return self._packed

    @property
    def radii(self) -> FloatVector:
        return self._radii

    @property
    def radius(self) -> float:
        return float(self._radii.max())

    @property
    def block_size(self) -> int | None:
        return None

    @property
    def err_sq(self) -> float | None:
        return self._err_sq

    @property
    def innov_sq(self) -> float:
        """``||dQ||^2`` (see the class docstring)."""
        if self._innov_sq is None:
            self._innov_sq = self._native_innov_sq()
        return self._innov_sq

    def _native_innov_sq(self) -> float:
        return float(_core.laq.innov_sq(self._packed, self._n, self._bits, self.radius))

    @property
    def tau(self) -> float:
        """``1 / (2**bits - 1)``: the elementwise error bound is ``tau * radius`` (per block)."""
        return 1.0 / ((1 << self._bits) - 1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, bits={self.bits}, radius={self.radius!r}, "
            f"block_size={self.block_size}, err_sq={self.err_sq!r}, nbytes={self.nbytes})"
        )

    # -- wire.Payload interface ---------------------------------------------------------
    def _meta_values(self) -> tuple[Any, ...]:
        return (self._bits, 0, 0, self.radius)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self._packed,)

    @classmethod
    def _check_meta(cls, n: int, meta: tuple[Any, ...]) -> tuple[int, int]:
        """Check a frame's metadata; (body bytes before the codes, bytes of packed codes)."""
        bits, pad8, pad16, radius = meta
        _check_meta_common(n, bits, pad8, pad16)
        if not math.isfinite(radius) or radius < 0.0:
            raise ValueError(f"corrupt LAQ frame: radius must be finite and >= 0, got {radius}")
        return 0, int(_core.pack.packed_size(n, bits))

    @classmethod
    def _from_arrays(
        cls, n: int, meta: tuple[Any, ...], prefix: memoryview, packed: npt.NDArray[np.uint8]
    ) -> LAQPayload:
        """The payload of checked metadata, the body bytes before the codes (``prefix``) and
        an array of packed codes of the right length that the payload may own."""
        bits, radius = meta[0], meta[3]
        # Padding bits of the last byte must be zero (also checked by every decoder).
        _core.laq.check_payload(packed, n, bits, radius)
        packed.flags.writeable = False
        radii = np.array([radius], dtype=np.float32)  # a float32 field: exact
        radii.flags.writeable = False
        return cls._trusted(packed, radii, bits, n)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> LAQPayload:
        prefix, need = cls._check_meta(n, meta)
        expect_body_size(body, prefix + need)
        packed = body_array(body, prefix, need, np.uint8, "packed codes")
        return cls._from_arrays(n, meta, body[:prefix], packed)

    @classmethod
    def _from_coded(
        cls, n: int, meta: tuple[Any, ...], prefix: memoryview, packed: npt.NDArray[np.uint8]
    ) -> LAQPayload:
        # The decoder's fresh array becomes the payload's codes: no joined body to copy.
        size, need = cls._check_meta(n, meta)
        expect_body_size(prefix, size)
        if packed.dtype != np.uint8 or packed.shape != (need,):
            raise ValueError(f"decoded codes of shape {packed.shape}, expected ({need},)")
        return cls._from_arrays(n, meta, prefix, packed)


class LAQBlockPayload(LAQPayload):
    """A blockwise LAQ upload: one radius per block of ``block_size`` coordinates.

    Block ``j`` covers coordinates ``[j * block_size, min((j + 1) * block_size, n))``; its
    codes are on the grid of ``2**bits`` points spanning ``[-radii[j], radii[j]]``.
    ``block_size`` is a multiple of 8, so the blocks ``[start, stop)`` are a byte range of
    ``packed`` and :meth:`slice_blocks` cuts their payload out without re-encoding.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> g = np.array([1.0, 0.5] * 4 + [0.01] * 8, dtype=np.float32)
    >>> p = laqcore.laq_quantize(g, None, 2, block_size=8)
    >>> p.radii
    array([1.  , 0.01], dtype=float32)
    >>> p.slice_blocks(1, 2).n, laqcore.LAQPayload.from_bytes(p.to_bytes()) == p
    (8, True)
    """

    KIND: ClassVar[PayloadKind] = PayloadKind.LAQ_BLOCK
    META: ClassVar[struct.Struct] = struct.Struct("<BBHI")

    def __init__(  # noqa: PLR0913 - the payload's fields
        self,
        packed: npt.NDArray[np.uint8],
        radii: npt.NDArray[np.float32],
        bits: int,
        n: int,
        block_size: int,
        err_sq: float | None = None,
        innov_sq: float | None = None,
    ) -> None:
        self._bits = check_bits(bits)
        self._n = check_positive_int(n, "n")
        bs = check_block_size(block_size)
        if bs is None:
            raise TypeError("block_size must be an integer for a LAQBlockPayload")
        self._block_size: int = bs
        if not isinstance(radii, np.ndarray) or radii.dtype != np.float32 or radii.ndim != 1:
            raise TypeError("radii must be a 1-D float32 numpy array")
        need = -(-self._n // bs)
        if radii.shape[0] != need:
            raise ValueError(
                f"radii has {radii.shape[0]} entries but n = {self._n} in blocks of {bs} "
                f"needs exactly {need}"
            )
        if not bool(np.all(np.isfinite(radii))) or bool(np.any(radii < 0)):
            raise ValueError("every radius must be finite and >= 0")
        self._radii = _frozen(np.ascontiguousarray(radii))
        self._packed = _check_packed(packed, self._n, self._bits)
        self._err_sq = None if err_sq is None else float(err_sq)
        self._innov_sq = None if innov_sq is None else float(innov_sq)

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def num_blocks(self) -> int:
        """Number of radius blocks, ``ceil(n / block_size)``."""
        return int(self._radii.shape[0])

    def _native_innov_sq(self) -> float:
        return float(
            _core.laq.innov_sq_blocks(
                self._packed, self._n, self._bits, self._block_size, self._radii
            )
        )

    def block_range(self, start: int, stop: int) -> tuple[int, int]:
        """The coordinates ``[lo, hi)`` covered by blocks ``[start, stop)``."""
        nb = self.num_blocks
        s = check_positive_int(start, "start", minimum=0)
        e = check_positive_int(stop, "stop", minimum=0)
        if not s < e <= nb:
            raise ValueError(f"need 0 <= start < stop <= {nb} (the number of blocks), got {s}, {e}")
        return s * self._block_size, min(e * self._block_size, self._n)

    def slice_blocks(self, start: int, stop: int) -> LAQBlockPayload:
        """The payload of blocks ``[start, stop)``: the sub-vector ``[lo, hi)`` of
        :meth:`block_range`, with the same radii and codes (byte slices, no re-encoding).
        Decode it into ``aggregate[lo:hi]``. Its ``err_sq`` is ``None``."""
        lo, hi = self.block_range(start, stop)
        b0 = lo // 8 * self._bits
        b1 = b0 + int(_core.pack.packed_size(hi - lo, self._bits))
        # Views of read-only, validated arrays: valid by construction.
        return LAQBlockPayload._trusted(
            self._packed[b0:b1], self._radii[start:stop], self._bits, hi - lo, self._block_size
        )

    def _meta_values(self) -> tuple[Any, ...]:
        return (self._bits, 0, 0, self._block_size)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self._radii, self._packed)

    @classmethod
    def _check_meta(cls, n: int, meta: tuple[Any, ...]) -> tuple[int, int]:
        bits, pad8, pad16, block_size = meta
        _check_meta_common(n, bits, pad8, pad16)
        if not 8 <= block_size <= 2**31 or block_size % 8 != 0:
            raise ValueError(
                f"corrupt LAQ_BLOCK frame: block_size must be a multiple of 8 in [8, 2**31], "
                f"got {block_size}"
            )
        return 4 * (-(-n // block_size)), int(_core.pack.packed_size(n, bits))

    @classmethod
    def _from_arrays(
        cls, n: int, meta: tuple[Any, ...], prefix: memoryview, packed: npt.NDArray[np.uint8]
    ) -> LAQBlockPayload:
        bits, block_size = meta[0], meta[3]
        radii = body_array(prefix, 0, len(prefix) // 4, np.float32, "radii")
        # Every radius finite and >= 0, zero padding bits (also checked by every decoder).
        _core.laq.check_blocks_payload(packed, n, bits, block_size, radii)
        packed.flags.writeable = False
        radii.flags.writeable = False
        return cls._trusted(packed, radii, bits, n, block_size)
