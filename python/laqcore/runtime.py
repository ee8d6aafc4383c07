"""Thread control and build information.

Kernels use OpenMP when laqcore was built with it. The thread count starts from
``OMP_NUM_THREADS``; without it, from the cores this process may use, divided by
``LOCAL_WORLD_SIZE`` when that is set (the ranks of one node share its cores; torchrun and
``laqcore launch`` set it). :func:`share_cores` applies the same rule later, e.g. once
torch.distributed is up. The count can be changed at run time with :func:`set_num_threads`
or temporarily with :func:`num_threads`; it is process-wide (a thread started later, e.g. a
DDP communication hook's, sees it) and bounded by ``max(64, 4 * cores)``. Results never
depend on it: every kernel is bit-identical for any thread count.

Busy machines. The kernels run on laqcore's own thread pool, not in OpenMP parallel
regions: a region ends with a barrier that waits for every thread of the team, and with
more threads than free cores (several ranks per node, a busy machine) each region then
waits for a thread the OS has not scheduled yet (measured before the pool: 2 threads 60x
slower than 1 at n = 2^20, load 20 on 2 cores; OpenMP's default spin-waiting made it worse).
The pool hands out fixed blocks one at a time to the caller and to helpers that are
running, never waits for one that has not started, and its idle threads sleep.
``laqcore bench --contended`` measures this.

The hot kernels also exist in SIMD variants (AVX2 on x86-64) chosen at run time from the
CPU's features. ``LAQCORE_SIMD=scalar`` in the environment (or :func:`set_simd_level` /
:func:`simd`) forces the portable scalar reference; every path gives bit-identical results.
"""

from __future__ import annotations

import contextlib
import operator
import os
import platform
from collections.abc import Iterator
from typing import Any

from . import _core

__all__ = [
    "build_info",
    "get_num_threads",
    "max_num_threads",
    "num_threads",
    "set_num_threads",
    "set_simd_level",
    "share_cores",
    "simd",
    "simd_level",
    "simd_levels",
]


def __dir__() -> list[str]:
    return __all__


def get_num_threads() -> int:
    """Number of threads the kernels use for large inputs (1 without OpenMP)."""
    return int(_core.runtime.get_num_threads())


def max_num_threads() -> int:
    """Largest count :func:`set_num_threads` accepts: ``max(64, 4 * cores)``."""
    return int(_core.runtime.max_num_threads())


def set_num_threads(n: int) -> None:
    """Set the number of threads for large inputs, process-wide (ignored without OpenMP).

    Raises ``TypeError`` unless ``n`` is an integer (numpy's included, not a bool),
    ``ValueError`` unless ``1 <= n <= max_num_threads()``.
    """
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)  # int or numpy integer; not a float
    except TypeError:
        raise TypeError(f"n must be an int >= 1, got {n!r}") from None
    limit = max_num_threads()
    if not 1 <= n <= limit:
        raise ValueError(f"n must be in [1, {limit}] (4 threads per core, at least 64), got {n}")
    _core.runtime.set_num_threads(n)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - platforms without affinity
        return os.cpu_count() or 1


def share_cores(local_world_size: int | None = None) -> int:
    """Set the thread count to this process's share of the node's cores; return it.

    ``local_world_size``: processes sharing the node; default ``LOCAL_WORLD_SIZE`` from the
    environment, else torch.distributed's world size when it is initialised (all ranks on
    one node assumed), else 1. The count is ``max(1, cores // local_world_size)`` with
    ``cores`` the CPUs this process may run on. ``OMP_NUM_THREADS``, when set, wins.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return get_num_threads()
    if local_world_size is None:
        env = os.environ.get("LOCAL_WORLD_SIZE", "")
        if env.isdigit() and int(env) >= 1:
            local_world_size = int(env)
        else:
            local_world_size = _torch_world_size()
    if isinstance(local_world_size, bool) or not isinstance(local_world_size, int):
        raise TypeError(f"local_world_size must be an int >= 1, got {local_world_size!r}")
    if local_world_size < 1:
        raise ValueError(f"local_world_size must be >= 1, got {local_world_size}")
    n = max(1, min(_cpu_count() // local_world_size, max_num_threads()))
    set_num_threads(n)
    return n


def _torch_world_size() -> int:
    import sys

    dist = sys.modules.get("torch.distributed")  # never imports torch itself
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


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
