"""pytest-benchmark view of the kernels: laqcore next to its numpy baseline, per group.

Each kernel x n x bits x threads case is one benchmark group holding the laqcore kernel and
the vectorised numpy implementation of the same job (the baselines of ``laqcore bench``);
the case's ``verify`` runs first, so a baseline that stops doing the same job fails the
benchmark instead of timing something else. Not part of the test suite (``testpaths`` is
``tests``); run it explicitly:

    python -m pytest bench/bench_kernels.py --benchmark-only
    python -m pytest bench/bench_kernels.py --benchmark-only -k "laq and 1048576" \\
        --benchmark-json out.json

``laqcore bench`` (python/laqcore/bench/) is the full sweep with memcpy and torch
baselines; this file is for quick, comparable A/B runs during development.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import laqcore
from laqcore import bench

pytest.importorskip("pytest_benchmark")

SIZES = [2**16, 2**20]
BITS = [1, 4, 8]
THREADS = sorted({1, laqcore.get_num_threads()})


def _cases() -> list[Any]:
    params = []
    for name in bench.available_kernels():
        spec = bench.KERNELS[name]
        widths = spec.widths[:1] if spec.fixed else [b for b in BITS if b in spec.widths]
        for n in SIZES:
            for bits in widths:
                for threads in THREADS:
                    params.append(
                        pytest.param(name, n, bits, threads, id=f"{name}-n{n}-b{bits}-t{threads}")
                    )
    return params


@pytest.mark.parametrize("impl", ["laqcore", "numpy"])
@pytest.mark.parametrize(("kernel", "n", "bits", "threads"), _cases())
def test_kernel(benchmark: Any, kernel: str, n: int, bits: int, threads: int, impl: str) -> None:
    case = bench.KERNELS[kernel].make(n, bits, np.random.default_rng(0), None)
    assert case.verify is not None
    case.verify()  # the baseline does the same job as the kernel (same bytes / same scale)
    benchmark.group = f"{kernel} n={n} bits={bits} threads={threads}"
    fn = case.kernel if impl == "laqcore" else case.numpy
    if fn is None:
        pytest.skip(f"no numpy baseline for {kernel}")
    with laqcore.num_threads(threads):
        benchmark(fn)
