#!/usr/bin/env python3
"""Simulator cost: one LAQ iteration vs one GD iteration on the same problem, same run.

Goal (issue 4): an LAQ iteration costs at most 1.25x a GD iteration. Both compute the same
M local gradients; LAQ adds the fused quantize+pack kernel, the upload test and the packed
accumulate, GD the dense float32 payload and its decode. Measured two ways:

* ``step``: the bare algorithm loop (``server.message`` / ``worker.step`` /
  ``server.apply``), i.e. what the distributed engine also runs per rank;
* ``simulate``: :func:`laqcore.simulator.simulate` with its accounting (loss every
  iteration for the stopping rule, evaluations every 10).

Repeats alternate GD and LAQ blocks and report medians, so machine load hits both alike.

Usage::

    python bench/bench_simulator.py                      # digits (p=650) and p=7850
    python bench/bench_simulator.py --iterations 300 --repeats 7 --json out.json
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


def step_loop(prob: Any, name: str, iterations: int) -> float:
    """Seconds per iteration of the bare server/worker loop."""
    alg = get_algorithm(name)
    M = prob.num_workers
    server = alg.make_server(prob.initial_point(), M)
    workers = [alg.make_worker(m, prob.workers[m], M) for m in range(M)]
    t0 = time.perf_counter()
    for _ in range(iterations):
        ups = {}
        for m, w in enumerate(workers):
            p = w.step(server.message(m))
            if p is not None:
                ups[m] = p
        server.apply(ups)
    return (time.perf_counter() - t0) / iterations


def sim_loop(prob: Any, name: str, iterations: int) -> float:
    res = simulate(prob, get_algorithm(name), max_iterations=iterations, eps=0.0)
    return res.wall_time / iterations


def measure(prob: Any, iterations: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"problem": prob.describe()}
    for kind, fn in (("step", step_loop), ("simulate", sim_loop)):
        times: dict[str, list[float]] = {"gd": [], "laq": []}
        fn(prob, "gd", max(iterations // 10, 5))  # warm-up (imports, caches)
        for _ in range(repeats):
            for name in ("gd", "laq"):
                times[name].append(fn(prob, name, iterations))
        gd, laq = statistics.median(times["gd"]), statistics.median(times["laq"])
        out[kind] = {"gd_ms": 1e3 * gd, "laq_ms": 1e3 * laq, "ratio": laq / gd,
                     "gd_all_ms": [1e3 * t for t in times["gd"]],
                     "laq_all_ms": [1e3 * t for t in times["laq"]]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--json", default=None, help="write the measurements here")
    args = ap.parse_args(argv)
    # F* is irrelevant to the timing; keep the solve out of the user's cache.
    os.environ.setdefault("LAQCORE_CACHE_DIR", tempfile.mkdtemp(prefix="laqcore-bench-"))
    problems = [
        make_problem("digits", workers=args.workers),
        # MNIST-sized softmax model (784 features, p = 7850) on synthetic data.
        make_problem(make_classification(n=6000, d=784, num_classes=10, seed=0),
                     workers=args.workers),
    ]
    report: dict[str, Any] = {
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(),
                    "cpu_count": os.cpu_count(), "laqcore": build_info()},
        "iterations": args.iterations, "repeats": args.repeats, "results": [],
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    print(f"{'problem':<34}{'p':>6}{'loop':>10}{'GD ms/it':>10}{'LAQ ms/it':>11}{'LAQ/GD':>8}")
    for prob in problems:
        r = measure(prob, args.iterations, args.repeats)
        report["results"].append(r)
        for kind in ("step", "simulate"):
            m = r[kind]
            print(f"{prob.name:<34}{prob.dim:>6}{kind:>10}{m['gd_ms']:>10.3f}"
                  f"{m['laq_ms']:>11.3f}{m['ratio']:>8.2f}")
    worst = max(r[k]["ratio"] for r in report["results"] for k in ("step", "simulate"))
    print(f"worst LAQ/GD ratio: {worst:.2f} (goal <= 1.25)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
