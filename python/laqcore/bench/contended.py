"""``laqcore bench --contended``: kernels with more threads than free cores.

Starts ``load`` competing busy processes (default: one per CPU, so no core is free), then
times each kernel with 1 thread and with each requested thread count, the samples of all
thread counts interleaved so that every count sees the same load. ``slowdown`` is a count's
median time divided by the 1-thread median of the same run: the thread cliff this mode
guards against is a slowdown far above 1 (before laqcore's own thread pool: 60x at
n = 2^20 with 2 threads at load 20 on 2 cores). The goal is at most ~1.5.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .. import runtime
from .._validate import check_uint64
from .cases import KERNELS, available_kernels
from .timing import machine_info

__all__ = ["format_row", "run_contended"]


def __dir__() -> list[str]:
    return __all__


_BUSY = "while True:\n    pass\n"


def _start_load(count: int) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-c", _BUSY], stdout=subprocess.DEVNULL)
        for _ in range(count)
    ]


def _stop_load(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:  # only the processes started above, by their own handles
        p.kill()
    for p in procs:
        p.wait(timeout=30)


def _median_times(fns: list[Callable[[], Any]], threads: list[int], rounds: int) -> list[float]:
    """Median seconds per call of fns[i] run with threads[i], samples interleaved."""
    samples: list[list[float]] = [[] for _ in fns]
    for fn, t in zip(fns, threads):  # warm-up (and the pool's threads started)
        with runtime.num_threads(t):
            fn()
    for _ in range(rounds):
        for i, (fn, t) in enumerate(zip(fns, threads)):
            with runtime.num_threads(t):
                start = time.perf_counter()
                fn()
                samples[i].append(time.perf_counter() - start)
    return [statistics.median(s) for s in samples]


def run_contended(
    *,
    kernels: Iterable[str] | None = None,
    sizes: Iterable[int] = (2**16, 2**20),
    bits: Iterable[int] = (4,),
    threads: Iterable[int] = (2, 4),
    load: int | None = None,
    rounds: int = 41,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time kernels under a competing load; return ``{"machine", "load", "results"}``.

    Each result: ``kernel, n, bits, threads, seconds`` (median) and ``slowdown`` (seconds
    over the same run's 1-thread median).
    """
    avail = available_kernels()
    names = (
        list(kernels)
        if kernels is not None
        else ["laq_quantize_pack", "laq_block_quantize_pack", "pack"]
    )
    for name in names:
        if name not in avail:
            raise ValueError(f"unknown or unavailable kernel {name!r}; available: {avail}")
    counts = [int(t) for t in threads]
    if any(t < 1 for t in counts):
        raise ValueError(f"threads must be >= 1, got {counts}")
    nload = (os.cpu_count() or 1) if load is None else int(load)
    if nload < 0 or rounds < 1:
        raise ValueError("load must be >= 0 and rounds >= 1")
    check_uint64(seed, "seed")  # numpy's own message names no parameter
    rng = np.random.default_rng(seed)
    results: list[dict[str, Any]] = []
    procs = _start_load(nload)
    try:
        time.sleep(0.5)  # let the load start
        for name in names:
            spec = KERNELS[name]
            for n in sizes:
                for b in spec.widths[:1] if spec.fixed else [w for w in bits if w in spec.widths]:
                    case = spec.make(n, b, rng, None)
                    ts = [1, *counts]
                    med = _median_times([case.kernel] * len(ts), ts, rounds)
                    for t, sec in zip(ts[1:], med[1:]):
                        row = {
                            "kernel": name,
                            "n": n,
                            "bits": b,
                            "threads": t,
                            "seconds": sec,
                            "seconds_1thread": med[0],
                            "slowdown": sec / med[0],
                        }
                        results.append(row)
                        if log is not None:
                            log(format_row(row))
    finally:
        _stop_load(procs)
    return {"machine": machine_info(None), "load": nload, "results": results}


def format_row(r: dict[str, Any]) -> str:
    """One aligned text line of a result."""
    return (
        f"{r['kernel']:<24} n=2^{int(np.log2(r['n'])):<3d} bits={r['bits']} "
        f"thr={r['threads']:<2d} {r['seconds'] * 1e3:9.3f} ms  1 thread {r['seconds_1thread'] * 1e3:9.3f} ms"
        f"  slowdown x{r['slowdown']:.2f}"
    )
