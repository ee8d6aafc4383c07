"""Checked reading of ``.npy`` data and ``.npz`` members from files laqcore did not write
itself (data sets, checkpoints, run-cache traces): every declared size and ``.npy`` header is
checked before anything is allocated, and pickles are never loaded. Errors are plain
exceptions naming the member; each caller turns them into its own (``DatasetError``,
``CheckpointError``, ...) naming its file."""

from __future__ import annotations

import io
import lzma
import math
import zipfile
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_NPZ_MEMBER_BYTES",
    "NPZ_ERRORS",
    "npy_from_bytes",
    "read_member",
    "read_npz_arrays",
]


def __dir__() -> list[str]:
    return __all__


#: Largest ``.npy`` member read from an archive (MNIST's x_train is 47 MB as uint8, 376 MB
#: as float64).
MAX_NPZ_MEMBER_BYTES = 2**30
#: What reading a corrupt archive can raise besides OSError/ValueError/EOFError: a bad zip
#: structure (BadZipFile, LargeZipFile), an unknown compression method or zip version
#: (NotImplementedError), an encrypted member (RuntimeError), a corrupt compressed stream
#: (zlib.error, LZMAError), a .npy header numpy cannot interpret (TypeError).
NPZ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    TypeError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
)


def read_member(zf: zipfile.ZipFile, member: str) -> bytes:
    """The decompressed bytes of one member, refused above ``MAX_NPZ_MEMBER_BYTES``: a small
    archive's member can expand to many GB. zipfile never returns more than the size the
    header declares (a larger stream fails its CRC), so checking that size bounds the read."""
    size = zf.getinfo(member).file_size
    if size > MAX_NPZ_MEMBER_BYTES:
        raise ValueError(
            f"member {member!r} declares {size} bytes, above the {MAX_NPZ_MEMBER_BYTES} "
            "this loader reads"
        )
    return zf.read(member)


def npy_from_bytes(raw: bytes, member: str) -> npt.NDArray[Any]:
    """Parse one ``.npy`` member, checking the header's shape against the data it holds
    *before* numpy allocates the array (a 100-byte member can declare a 1 TiB shape).
    Raises ``ValueError`` naming the member; the caller adds the archive's name."""
    fp = io.BytesIO(raw)
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"member {member!r}: unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError(f"member {member!r} holds Python objects (pickles are not loaded)")
    need = math.prod(shape) * dtype.itemsize
    if len(raw) - fp.tell() != need:
        raise ValueError(
            f"member {member!r}: .npy header promises shape {shape} of {dtype} ({need} bytes) "
            f"but holds {len(raw) - fp.tell()} data bytes"
        )
    fp.seek(0)
    return np.asarray(np.load(fp, allow_pickle=False))


def read_npz_arrays(path: Any) -> dict[str, npt.NDArray[Any]]:
    """Every member of an ``.npz`` archive by its array name (``np.savez``'s key), each
    through :func:`read_member` and :func:`npy_from_bytes`: for files small enough to read
    whole. ``np.load`` would allocate whatever shape a member's header declares."""
    with zipfile.ZipFile(path) as zf:
        return {
            name.removesuffix(".npy"): npy_from_bytes(read_member(zf, name), name)
            for name in zf.namelist()
        }
