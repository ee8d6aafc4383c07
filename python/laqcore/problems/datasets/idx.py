"""A defensive reader of IDX files (MNIST's format), raw or gzip-compressed."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from .compressed import compression
from .dataset import DatasetError

__all__ = ["MAX_IDX_BYTES", "read_idx"]


def __dir__() -> list[str]:
    return __all__


_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


#: Largest IDX body :func:`read_idx` reads (MNIST's training images are 47 MB): a header
#: may declare any size, and a small ``.gz`` can expand to gigabytes.
MAX_IDX_BYTES = 2**31
_CHUNK = 2**20
_EXPECT = "IDX format (2 zero bytes, type byte, ndim byte, big-endian uint32 dims, data)"
# What a corrupt or truncated gzip stream raises while it is read.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _read_exactly(fh: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, read in chunks: memory follows what the stream really holds,
    not what a header claims."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        chunk = fh.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _read_stream(fh: BinaryIO, path: str, max_bytes: int) -> npt.NDArray[Any]:
    head = _read_exactly(fh, 4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path!r} is not an IDX file: bad magic number; expected {_EXPECT}")
    ndim = head[3]
    raw_dims = _read_exactly(fh, 4 * ndim)
    if ndim == 0 or len(raw_dims) < 4 * ndim:
        raise DatasetError(f"{path!r}: truncated IDX header; expected {_EXPECT}")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = np.dtype(_IDX_DTYPES[head[2]])
    need = math.prod(dims) * dtype.itemsize
    if need > max_bytes:  # checked before a byte of the body is decompressed
        raise DatasetError(
            f"{path!r}: IDX header declares dims {dims} ({need} bytes of data), above the "
            f"{max_bytes} bytes this reader accepts"
        )
    body = _read_exactly(fh, need)
    extra = fh.read(1)
    if len(body) != need or extra:
        got = f"{len(body)}" if not extra else f"more than {need}"
        raise DatasetError(
            f"{path!r}: IDX header promises dims {dims} ({need} data bytes) but the file holds "
            f"{got} (truncated or corrupt)"
        )
    data = np.frombuffer(body, dtype=dtype, count=math.prod(dims))
    try:  # numpy refuses more than 32 (64) dimensions, and dims whose product overflows
        shaped = data.reshape(dims)
    except ValueError as err:  # (zero size: (0, 2**32 - 1, 2**32 - 1) holds no data bytes)
        raise DatasetError(
            f"{path!r}: IDX header declares dims {dims}, which no array can have ({err}); "
            f"expected {_EXPECT}"
        ) from None
    return shaped.astype(dtype.newbyteorder("="))


def read_idx(path: str, *, max_bytes: int = MAX_IDX_BYTES) -> npt.NDArray[Any]:
    """Read one IDX file (raw or gzip-compressed, recognised by its first bytes), streaming:
    the header is checked, and the size it declares bounded by ``max_bytes``, before the
    body is read or decompressed.

    Raises
    ------
    DatasetError
        Naming the file: missing, unreadable, not IDX, truncated (also a truncated or corrupt
        ``.gz`` stream), trailing data, or a declared size above ``max_bytes``.
    """
    try:
        opener: Any = gzip.open if compression(path) == "gzip" else open
        with opener(path, "rb") as fh:
            return _read_stream(fh, path, max_bytes)
    except DatasetError:
        raise
    except _READ_ERRORS as err:  # BadGzipFile is an OSError; a cut stream is an EOFError
        raise DatasetError(f"cannot read IDX file {path!r}: {type(err).__name__}: {err}") from err
