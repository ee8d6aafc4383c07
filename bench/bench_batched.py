#!/usr/bin/env python3
"""Simulator cost at many workers: per-worker vs batched gradient evaluation, same run.

The worker-scaling study (``laqcore scaling``) simulates up to M = 1024 workers of 20
samples each. Evaluated worker by worker, each iteration costs M small products plus M
Python calls for the gradients and M more for the loss; ``Problem.use_batched`` evaluates
all of them in one batched product (laqcore.problems.batched). This script times
:func:`laqcore.simulator.simulate` both ways on the weak-scaling problem, alternating short
runs so that machine load hits both alike, and reports the fastest of ``--repeats`` runs of
each and their ratio, plus the measured worker step the time model is charged (the same
either way: the batched run charges one worker's own gradient time).

Usage::

    python bench/bench_batched.py --workers 64,256,1024 --iterations 10 --json out.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import time
from typing import Any


def _run(M: int, name: str, iterations: int, batched: bool) -> tuple[float, float]:
    from laqcore.algorithms import get_algorithm, own_overrides
    from laqcore.experiments.scaling import _weak_problem
    from laqcore.simulator import simulate

    _, prob = _weak_problem(M, 20, 50, 0)
    prob.optimal_value()
    prob.use_batched(batched)
    # full gradients for the stochastic methods too, as the scaling study
    alg = get_algorithm(name, **own_overrides(name, {"alpha": 0.2 / M, "batch": 10**9}))
    t0 = time.perf_counter()
    res = simulate(prob, alg, max_iterations=iterations, eps=0.0, record_history=False)
    assert res.trace is not None
    return time.perf_counter() - t0, res.trace.worker_step_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="64,256,1024")
    ap.add_argument("--algorithms", default="gd,laq")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for M in (int(v) for v in args.workers.split(",")):
        for name in args.algorithms.split(","):
            best: dict[bool, tuple[float, float]] = {}
            for _ in range(args.repeats):
                for batched in (False, True):
                    t, step = _run(M, name, args.iterations, batched)
                    if batched not in best or t < best[batched][0]:
                        best[batched] = (t, step)
            row = {
                "M": M,
                "algorithm": name,
                "per_worker_s": best[False][0],
                "batched_s": best[True][0],
                "speedup": best[False][0] / best[True][0],
                "charged_step_ms": {
                    "per_worker": 1e3 * best[False][1],
                    "batched": 1e3 * best[True][1],
                },
            }
            rows.append(row)
            print(
                f"M={M:<5} {name:<6} per-worker {row['per_worker_s']:.2f} s  batched "
                f"{row['batched_s']:.2f} s  ({row['speedup']:.2f}x)  charged worker step "
                f"{1e3 * best[False][1]:.3f} / {1e3 * best[True][1]:.3f} ms",
                flush=True,
            )
    if args.json:
        machine = {"platform": platform.platform(), "cpus": os.cpu_count()}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "machine": machine, "rows": rows}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
