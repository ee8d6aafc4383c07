"""Bit packing of 1..8-bit integer codes.

Layout (the body of every packed payload): the codes form one little-endian bit stream,
code ``i`` occupying stream bits ``[i*bits, (i+1)*bits)``, and stream bit ``j`` is bit
``j % 8`` (0 = least significant) of byte ``j // 8``. The last byte is zero-padded. See
``cpp/include/laqcore/pack.hpp``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._validate import as_code_vector, check_bits, check_positive_int

__all__ = ["pack_bits", "packed_size", "unpack_bits"]


def __dir__() -> list[str]:
    return __all__


def packed_size(n: int, bits: int) -> int:
    """Number of bytes that ``n`` codes of ``bits`` bits occupy: ``ceil(n * bits / 8)``."""
    return int(_core.pack.packed_size(check_positive_int(n, "n", minimum=0), check_bits(bits)))


def pack_bits(codes: Any, bits: int) -> npt.NDArray[np.uint8]:
    """Pack integer codes of ``bits`` bits each into bytes.

    Parameters
    ----------
    codes : numpy.ndarray of uint8, 1-D
        Codes, each in ``[0, 2**bits)``. Other dtypes raise ``TypeError`` (never cast).
    bits : int
        Bits per code, 1..8.

    Returns
    -------
    numpy.ndarray of uint8
        ``packed_size(len(codes), bits)`` bytes.

    Raises
    ------
    ValueError
        If a code does not fit in ``bits`` bits (the message names the first one).

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> laqcore.pack_bits(np.array([1, 2, 3], dtype=np.uint8), 4)
    array([33,  3], dtype=uint8)
    """
    return _core.pack.pack_bits(as_code_vector(codes), check_bits(bits))


def unpack_bits(packed: Any, bits: int, n: int) -> npt.NDArray[np.uint8]:
    """Inverse of :func:`pack_bits`: recover ``n`` codes of ``bits`` bits.

    ``packed`` must hold exactly ``packed_size(n, bits)`` bytes with zero padding bits;
    anything else is a truncated or corrupt buffer and raises ``ValueError``.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> laqcore.unpack_bits(np.array([33, 3], dtype=np.uint8), 4, 3)
    array([1, 2, 3], dtype=uint8)
    """
    n = check_positive_int(n, "n", minimum=0)
    return _core.pack.unpack_bits(as_code_vector(packed, "packed"), check_bits(bits), n)
