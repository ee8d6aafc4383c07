"""Timing harness of ``laqcore bench``: interleaved short samples, median and minimum, and
the machine description stored with every report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import runtime
from .cases import Fn

__all__ = ["SHARED_MACHINE", "emit_report", "import_torch", "machine_info", "time_interleaved"]

#: The note a report measured on the shared development machine carries next to its numbers.
SHARED_MACHINE = "shared 2-core machine, loaded by other jobs: use the same-run ratios"


def __dir__() -> list[str]:
    return __all__


def _loops_for(fn: Fn, min_time: float) -> int:
    """Calls per sample so that one sample lasts about ``min_time`` seconds."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, int(min_time / max(once, 1e-9)))


def _sample(fn: Fn, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops


def time_interleaved(
    fns: Sequence[Fn], repeats: int, min_time: float, budget: float = 2.0
) -> list[tuple[float, float]]:
    """(median, min) seconds per call of each function, samples interleaved in rounds.

    Short samples and many of them keep the median robust on a shared machine: a sample
    that lost its core to another process is an outlier, not part of every sample. After
    ``budget`` seconds the rounds stop early (but never before 3), so slow baselines at
    large n do not dominate the run.
    """
    for fn in fns:  # warm-up: page in buffers, start the thread pool, fill caches
        fn()
    loops = [_loops_for(fn, min_time) for fn in fns]
    samples: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for rnd in range(repeats):
        for i, fn in enumerate(fns):
            samples[i].append(_sample(fn, loops[i]))
        if rnd >= 2 and time.perf_counter() - start > budget:
            break
    return [(statistics.median(s), min(s)) for s in samples]


def _cpu_model() -> str:
    """The CPU's model name with its family and model numbers (a virtual machine often shows
    only "AMD EPYC": the numbers tell the generations apart, e.g. family 25 is Zen 3/4 and
    26 is Zen 5)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:  # the first processor's block is enough
                    break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def machine_info(torch: Any, note: str | None = None) -> dict[str, Any]:
    """CPU, thread and build description stored with every report (and ``note``, when
    given: e.g. :data:`SHARED_MACHINE`)."""
    info = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": runtime.get_num_threads(),
        "simd": runtime.simd_level(),
        "build": runtime.build_info(),
        "numpy": np.__version__,
        "torch": None if torch is None else str(torch.__version__),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if note is not None:
        info["note"] = note
    return info


def emit_report(report: dict[str, Any], out: Path | None) -> None:
    """Print a benchmark script's ``report`` as JSON, and write it to ``out`` when given."""
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def import_torch(use_torch: bool) -> Any:
    if not use_torch:
        return None
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return torch
