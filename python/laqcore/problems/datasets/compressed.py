"""Compressed data files, recognised by their first bytes rather than their names: a saved
download may lack its ``.gz``, and the LIBSVM site serves its data sets as ``.bz2``."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from typing import Any

__all__ = ["OPENERS", "compression"]


def __dir__() -> list[str]:
    return __all__


# Each format's magic number (the longest is xz's six bytes).
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)

#: The opener of each format :func:`compression` names (``open``'s signature).
OPENERS: dict[str, Any] = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}


def compression(path: str | os.PathLike[str]) -> str | None:
    """``"gzip"``, ``"bzip2"`` or ``"xz"`` when the file at ``path`` starts with that
    format's magic number, else ``None`` (``OSError`` if it cannot be read)."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)
