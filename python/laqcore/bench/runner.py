"""The benchmark sweep: every kernel x size x bit width x thread count, timed against its
baselines (see :mod:`laqcore.bench`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import runtime
from .._validate import check_bits, check_positive_int, check_real, check_uint64
from .cases import KERNELS, Case, available_kernels
from .report import format_row
from .timing import import_torch, machine_info, time_interleaved

__all__ = ["run"]


def __dir__() -> list[str]:
    return __all__


def run(
    *,
    kernels: Iterable[str] | None = None,
    sizes: Iterable[int] | None = None,
    bits: Iterable[int] = (1, 2, 4, 8),
    threads: Iterable[int] | None = None,
    repeats: int | None = None,
    min_time: float | None = None,
    quick: bool = False,
    use_torch: bool = True,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark sweep and return ``{"machine": {...}, "results": [...]}``.

    Parameters
    ----------
    kernels : iterable of str, optional
        Subset of :func:`available_kernels` (default: all of them).
    sizes : iterable of int, optional
        Element counts (default ``2**10 .. 2**24``; with ``quick``, ``2**10, 2**16, 2**20``).
    bits : iterable of int
        Bit widths for the kernels that take one.
    threads : iterable of int, optional
        Thread counts (default ``1`` and all threads).
    repeats, min_time : optional
        Samples per figure (median taken) and minimum seconds per sample
        (default 21 and 0.001; with ``quick``, 3 and 0.0005). Sampling of one figure stops
        after about 2 s once 3 samples are in.
    quick : bool
        Small, fast configuration (for smoke tests; numbers are rough).
    use_torch : bool
        Time the torch baseline when torch is importable.
    seed : int
        Seed of the random inputs.
    log : callable, optional
        Receives one progress line per result.

    Returns
    -------
    dict
        ``machine`` (see :func:`machine_info`) and ``results``: one dict per configuration
        with ``kernel, n, bits, threads, seconds, gbps, memcpy_seconds, memcpy_ratio,
        numpy_seconds, numpy_speedup, torch_seconds, torch_speedup`` (medians; ``None``
        where a baseline does not exist) and the matching ``*_min`` fastest samples.
    """
    avail = available_kernels()
    names = list(avail if kernels is None else kernels)
    for name in names:
        if name not in avail:
            raise ValueError(f"unknown or unavailable kernel {name!r}; available: {avail}")
    size_list = (
        list(sizes)
        if sizes is not None
        else ([2**10, 2**16, 2**20] if quick else [2**e for e in range(10, 25)])
    )
    if not size_list or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in size_list
    ):
        raise ValueError(f"sizes must be positive ints, got {size_list}")
    bit_list = [check_bits(b) for b in bits]
    if not bit_list:
        raise ValueError("bits must name at least one bit width")
    max_threads = runtime.get_num_threads()
    thread_list = list(threads) if threads is not None else sorted({1, max_threads})
    for t in thread_list:
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"threads must be positive ints, got {thread_list}")
    reps = check_positive_int(repeats if repeats is not None else (3 if quick else 21), "repeats")
    # NaN passed a "< 0" test and failed in the timing loop; inf overflowed there.
    mtime = check_real(
        min_time if min_time is not None else (0.0005 if quick else 0.001),
        "min_time",
        minimum=0.0,
    )
    check_uint64(seed, "seed")  # numpy's own message names no parameter

    torch = import_torch(use_torch)
    torch_threads = torch.get_num_threads() if torch is not None else 0
    rng = np.random.default_rng(seed)
    results: list[dict[str, Any]] = []
    try:
        for name in names:
            spec = KERNELS[name]
            for n in size_list:
                widths = (
                    spec.widths[:1] if spec.fixed else [b for b in bit_list if b in spec.widths]
                )
                for b in widths:
                    case = spec.make(n, b, rng, torch)
                    results.extend(
                        _measure_case(name, n, b, case, thread_list, reps, mtime, torch, log)
                    )
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return {"machine": machine_info(torch), "results": results}


def _measure_case(
    name: str,
    n: int,
    bits: int,
    case: Case,
    thread_list: list[int],
    reps: int,
    mtime: float,
    torch: Any,
    log: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    if case.verify is not None:
        if torch is not None:
            torch.set_num_threads(thread_list[0])
        case.verify()
    dst = np.empty_like(case.memcpy_src)
    src = case.memcpy_src

    def memcpy() -> None:
        np.copyto(dst, src)

    rows = []
    numpy_s: tuple[float, float] | None = None
    for t in thread_list:
        with runtime.num_threads(t):
            (kernel_s, kernel_min), (memcpy_s, memcpy_min) = time_interleaved(
                [case.kernel, memcpy], reps, mtime
            )
        if numpy_s is None and case.numpy is not None:  # single-threaded: time it once
            numpy_s = time_interleaved([case.numpy], reps, mtime)[0]
        torch_s: tuple[float, float] | None = None
        if case.torch is not None:
            torch.set_num_threads(t)
            torch_s = time_interleaved([case.torch], reps, mtime)[0]
        row = {
            "kernel": name,
            "n": n,
            "bits": bits,
            "threads": t,
            "seconds": kernel_s,
            "gbps": src.nbytes / kernel_s / 1e9,
            "memcpy_seconds": memcpy_s,
            "memcpy_ratio": kernel_s / memcpy_s,
            "numpy_seconds": None if numpy_s is None else numpy_s[0],
            "numpy_speedup": None if numpy_s is None else numpy_s[0] / kernel_s,
            "torch_seconds": None if torch_s is None else torch_s[0],
            "torch_speedup": None if torch_s is None else torch_s[0] / kernel_s,
            # Fastest samples: the least disturbed by other processes on a shared machine.
            "seconds_min": kernel_min,
            "memcpy_seconds_min": memcpy_min,
            "numpy_seconds_min": None if numpy_s is None else numpy_s[1],
            "torch_seconds_min": None if torch_s is None else torch_s[1],
        }
        rows.append(row)
        if log is not None:
            log(format_row(row))
    return rows
