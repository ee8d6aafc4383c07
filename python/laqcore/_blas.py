"""Limit numpy's OpenBLAS threads at run time (for the simulator's many small products).

The simulator evaluates M small per-worker gradients per iteration. OpenBLAS threads any
product above ~2.6e5 multiply-adds, and on a busy machine the thread hand-offs dominate:
measured on the 2-core development machine under load, an MLP run (200 hidden units, digits)
was 35x slower with OpenBLAS's default threads than with one. ``OPENBLAS_NUM_THREADS`` only
works if set before numpy is imported, which a ``laqcore`` command cannot do, so this module
calls OpenBLAS's own ``*_set_num_threads`` through ctypes on the library numpy already
loaded (found in ``/proc/self/maps`` or next to numpy). With another BLAS (MKL, Accelerate)
or anything unexpected it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import re
from collections.abc import Iterator
from typing import Any

__all__ = ["blas_threads", "get_blas_threads", "set_blas_threads"]


def __dir__() -> list[str]:
    return __all__


_PREFIXES = ("openblas_", "scipy_openblas_")
_SUFFIXES = ("", "64_")
_cache: list[tuple[Any, Any]] | None = None


def _libraries() -> list[str]:
    paths: set[str] = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths.update(re.findall(r"(/\S*openblas\S*\.(?:so|dylib)\S*)", fh.read()))
    except OSError:
        import numpy

        base = os.path.dirname(os.path.dirname(numpy.__file__))
        for pattern in ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*"):
            paths.update(glob.glob(os.path.join(base, pattern)))
    return sorted(paths)


def _handles() -> list[tuple[Any, Any]]:
    """(set, get) function pairs of every OpenBLAS loaded in this process."""
    global _cache
    if _cache is not None:
        return _cache
    found = []
    for path in _libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre in _PREFIXES:
            for suf in _SUFFIXES:
                setter = getattr(lib, f"{pre}set_num_threads{suf}", None)
                getter = getattr(lib, f"{pre}get_num_threads{suf}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    found.append((setter, getter))
    _cache = found
    return found


def get_blas_threads() -> int | None:
    """OpenBLAS's current thread count, or None if no OpenBLAS could be reached."""
    handles = _handles()
    return int(handles[0][1]()) if handles else None


def set_blas_threads(n: int) -> int | None:
    """Set OpenBLAS's thread count; return the previous one (None: not supported here)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"BLAS thread count must be an integer >= 1, got {n!r}")
    handles = _handles()
    if not handles:
        return None
    old = int(handles[0][1]())
    for setter, _ in handles:
        setter(n)
    return old


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` OpenBLAS threads (``None`` or 0: leave them alone).

    Examples
    --------
    >>> with blas_threads(1):
    ...     pass
    """
    if not n:
        yield
        return
    old = set_blas_threads(n)
    try:
        yield
    finally:
        if old is not None:
            set_blas_threads(old)
