"""A defensive ``.npz`` reader for files the user points at: every member's declared size
and ``.npy`` header are checked before anything is allocated, pickles are never loaded, and
any defect is a :class:`~laqcore.problems.datasets.DatasetError` naming the file."""

from __future__ import annotations

import zipfile
from typing import Any

import numpy.typing as npt

from ..._npy import NPZ_ERRORS, npy_from_bytes, read_member
from .dataset import DatasetError

__all__ = ["read_npz"]


def __dir__() -> list[str]:
    return __all__


def read_npz(path: str, keys: tuple[str, ...], what: str) -> list[npt.NDArray[Any]]:
    """The arrays ``keys`` of an ``.npz`` archive; any defect is a :class:`DatasetError`
    naming the file and ``what`` was expected."""
    expect = f"expected {what} with arrays {list(keys)}"
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            members = {k: k + ".npy" if k + ".npy" in names else k for k in keys}
            missing = [k for k, m in members.items() if m not in names]
            if missing:
                raise DatasetError(f"{path!r} lacks array(s) {missing}; {expect}")
            return [npy_from_bytes(read_member(zf, m), m) for m in members.values()]
    except DatasetError:
        raise
    except NPZ_ERRORS as err:
        raise DatasetError(
            f"cannot read {path!r} as an .npz archive ({type(err).__name__}: {err}); {expect}"
        ) from err
