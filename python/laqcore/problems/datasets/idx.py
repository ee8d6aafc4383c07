"""A defensive reader of IDX files (MNIST's format), raw or gzip-compressed."""

from __future__ import annotations

import gzip
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from .dataset import DatasetError

__all__ = ["read_idx"]


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


def read_idx(path: str) -> npt.NDArray[Any]:
    """Read one IDX file (raw or gzip-compressed), validating its header against its size."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:  # includes gzip.BadGzipFile
        raise DatasetError(f"cannot read IDX file {path!r}: {err}") from err
    expect = "IDX format (2 zero bytes, type byte, ndim byte, big-endian uint32 dims, data)"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path!r} is not an IDX file: bad magic number; expected {expect}")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path!r}: truncated IDX header; expected {expect}")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    need = 4 + 4 * ndim + count * dtype.itemsize
    if len(raw) != need:
        raise DatasetError(
            f"{path!r}: IDX header promises dims {dims} ({need} bytes) but the file has "
            f"{len(raw)} bytes (truncated or corrupt)"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims).astype(dtype.newbyteorder("="))
