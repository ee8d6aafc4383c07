"""Thread control and build information.

Kernels use OpenMP when laqcore was built with it. The thread count starts from
``OMP_NUM_THREADS`` (or the number of cores) and can be changed at run time with
:func:`set_num_threads` or temporarily with :func:`num_threads`. Results never depend on it:
every kernel is bit-identical for any thread count.

The hot kernels also exist in SIMD variants (AVX2 on x86-64) chosen at run time from the
CPU's features. ``LAQCORE_SIMD=scalar`` in the environment (or :func:`set_simd_level` /
:func:`simd`) forces the portable scalar reference; every path gives bit-identical results.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from typing import Any

from . import _core

__all__ = [
    "build_info",
    "get_num_threads",
    "num_threads",
    "set_num_threads",
    "set_simd_level",
    "simd",
    "simd_level",
    "simd_levels",
]


def __dir__() -> list[str]:
    return __all__


def get_num_threads() -> int:
    """Number of threads the kernels use for large inputs (1 without OpenMP)."""
    return int(_core.runtime.get_num_threads())


def set_num_threads(n: int) -> None:
    """Set the number of threads for large inputs (``n >= 1``; ignored without OpenMP)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int >= 1, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    _core.runtime.set_num_threads(n)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Context manager that runs its body with ``n`` threads, then restores the old count."""
    old = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(old)


def simd_levels() -> list[str]:
    """SIMD code paths usable on this machine, the scalar reference first.

    Examples
    --------
    >>> import laqcore
    >>> laqcore.runtime.simd_levels()[0]
    'scalar'
    """
    return [str(level) for level in _core.runtime.simd_levels()]


def simd_level() -> str:
    """The SIMD code path the kernels use now (``"scalar"``, ``"avx2"`` or ``"avx512"``)."""
    return str(_core.runtime.simd_level())


def set_simd_level(level: str) -> str:
    """Switch the SIMD code path and return the previous one.

    ``level`` is ``"auto"`` (the best the CPU supports), or one of :func:`simd_levels`.
    Results do not depend on it; this exists for testing and benchmarking.
    """
    if not isinstance(level, str):
        raise TypeError(f"level must be a str, got {type(level).__name__}")
    return str(_core.runtime.set_simd_level(level))


@contextlib.contextmanager
def simd(level: str) -> Iterator[None]:
    """Context manager that runs its body on SIMD path ``level``, then restores the old one.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> with laqcore.runtime.simd("scalar"):
    ...     laqcore.pack_bits(np.array([1, 0, 1], dtype=np.uint8), 1)
    array([5], dtype=uint8)
    """
    old = set_simd_level(level)
    try:
        yield
    finally:
        set_simd_level(old)


def build_info() -> dict[str, Any]:
    """What this build of laqcore contains.

    Returns a dict with ``version``, ``openmp`` (bool), ``openmp_version`` (spec date or 0),
    ``cuda`` (bool), ``simd`` (list of SIMD paths compiled in), ``simd_active`` (the one in
    use), ``compiler``, ``num_threads``, ``cpu_count``, ``platform`` and ``python``.
    """
    rt = _core.runtime
    info: dict[str, Any] = {
        "version": _core.__version__,
        "openmp": bool(rt.have_openmp()),
        "openmp_version": int(rt.openmp_version()),
        "cuda": bool(rt.have_cuda()),
        "simd": list(getattr(rt, "simd_levels", lambda: ["scalar"])()),
        "simd_active": str(getattr(rt, "simd_level", lambda: "scalar")()),
        "compiler": str(rt.compiler()),
        "num_threads": get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    return info
