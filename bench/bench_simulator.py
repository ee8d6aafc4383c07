#!/usr/bin/env python3
"""Simulator cost: one LAQ iteration vs one GD iteration on the same problem, same run.

Goal (issue 4): an LAQ iteration costs at most 1.25x a GD iteration. Both compute the same
M local gradients; LAQ adds the fused quantize+pack kernel, the upload test and the packed
accumulate, GD the dense float32 payload and its decode. Measured two ways:

* ``step``: the bare algorithm loop (``server.message`` / ``worker.step`` /
  ``server.apply``), i.e. what the distributed engine also runs per rank;
* ``simulate``: :func:`laqcore.simulator.simulate` with its accounting (loss every
  iteration for the stopping rule, evaluations every 10).

Short blocks of GD and LAQ iterations alternate, so machine load hits both alike; the
headline ratio compares each algorithm's fastest block (the least disturbed sample on a
shared machine), the median ratio is printed next to it.

Usage::

    python bench/bench_simulator.py                      # digits (p=650) and p=7850
    python bench/bench_simulator.py --block 50 --repeats 25 --json out.json
"""

from __future__ import annotations

import os

# Single-threaded BLAS (set before numpy loads): the gradients are identical for GD and LAQ,
# and on a shared machine OpenBLAS's thread hand-offs add noise far larger than the
# difference being measured. Override by exporting OPENBLAS_NUM_THREADS yourself.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

from laqcore import build_info
from laqcore.algorithms import get_algorithm
from laqcore.problems import make_classification, make_problem
from laqcore.simulator import simulate


class StepLoop:
    """The bare server/worker loop of one algorithm, kept alive across timed blocks."""

    def __init__(self, prob: Any, name: str) -> None:
        alg = get_algorithm(name)
        self.M = prob.num_workers
        self.server = alg.make_server(prob.initial_point(), self.M)
        self.workers = [alg.make_worker(m, prob.workers[m], self.M) for m in range(self.M)]

    def run(self, iterations: int) -> float:
        """Seconds per iteration over ``iterations`` more iterations."""
        t0 = time.perf_counter()
        for _ in range(iterations):
            ups = {}
            for m, w in enumerate(self.workers):
                p = w.step(self.server.message(m))
                if p is not None:
                    ups[m] = p
            self.server.apply(ups)
        return (time.perf_counter() - t0) / iterations


def sim_block(prob: Any, name: str, iterations: int) -> float:
    res = simulate(prob, get_algorithm(name), max_iterations=iterations, eps=0.0, eval_every=10)
    return res.wall_time / iterations


def measure(prob: Any, block: int, repeats: int) -> dict[str, Any]:
    """Interleaved GD/LAQ blocks; the ratio of the minima is the headline (the least
    disturbed sample of each, robust on a shared machine), the medians are reported too."""
    out: dict[str, Any] = {"problem": prob.describe()}
    loops = {name: StepLoop(prob, name) for name in ("gd", "laq")}
    prob.optimal_value()  # F* solved once, outside the timings
    kinds = {
        "step": lambda name: loops[name].run(block),
        "simulate": lambda name: sim_block(prob, name, block),
    }
    for kind, fn in kinds.items():
        times: dict[str, list[float]] = {"gd": [], "laq": []}
        for name in ("gd", "laq"):
            fn(name)  # warm-up
        for _ in range(repeats):
            for name in ("gd", "laq"):
                times[name].append(fn(name))
        gd_min, laq_min = min(times["gd"]), min(times["laq"])
        gd_med, laq_med = statistics.median(times["gd"]), statistics.median(times["laq"])
        out[kind] = {
            "gd_ms": 1e3 * gd_min,
            "laq_ms": 1e3 * laq_min,
            "ratio": laq_min / gd_min,
            "median_ratio": laq_med / gd_med,
            "gd_all_ms": [1e3 * t for t in times["gd"]],
            "laq_all_ms": [1e3 * t for t in times["laq"]],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--block", type=int, default=20, help="iterations per timed sample")
    ap.add_argument("--repeats", type=int, default=15, help="samples per algorithm")
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--json", default=None, help="write the measurements here")
    args = ap.parse_args(argv)
    # F* is irrelevant to the timing; keep the solve out of the user's cache.
    os.environ.setdefault("LAQCORE_CACHE_DIR", tempfile.mkdtemp(prefix="laqcore-bench-"))
    problems = [
        make_problem("digits", workers=args.workers),
        # MNIST-sized softmax model (784 features, p = 7850) on synthetic data.
        make_problem(
            make_classification(n=6000, d=784, num_classes=10, seed=0), workers=args.workers
        ),
    ]
    report: dict[str, Any] = {
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "laqcore": build_info(),
        },
        "block": args.block,
        "repeats": args.repeats,
        "results": [],
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    print(
        f"{'problem':<38}{'p':>6}{'loop':>10}{'GD ms/it':>10}{'LAQ ms/it':>11}"
        f"{'LAQ/GD':>8}{'(median)':>10}"
    )
    for prob in problems:
        r = measure(prob, args.block, args.repeats)
        report["results"].append(r)
        for kind in ("step", "simulate"):
            m = r[kind]
            print(
                f"{prob.name:<38}{prob.dim:>6}{kind:>10}{m['gd_ms']:>10.3f}"
                f"{m['laq_ms']:>11.3f}{m['ratio']:>8.2f}{m['median_ratio']:>10.2f}"
            )
    worst = max(r[k]["ratio"] for r in report["results"] for k in ("step", "simulate"))
    print(f"worst LAQ/GD ratio (fastest blocks): {worst:.2f} (goal <= 1.25)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
