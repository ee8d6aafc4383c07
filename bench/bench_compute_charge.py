"""What the simulator's time model charges as compute, alone and with the core shared.

Two measurements on digits (M = 10 by default):

1. the parts of one worker step, each the median of ``--calls`` calls: the local gradient,
   a GD worker step, the LAQ quantizer (``propose``) and an LAQ worker step;
2. GD and LAQ simulated for ``--iterations`` iterations, printing the mean worker step and
   server update (``TrafficTrace.worker_mean_s`` / ``server_mean_s``) next to what the time
   model charges (``worker_step_s`` / ``server_step_s``: stratified medians,
   :mod:`laqcore.network.trace`); with ``--busy N``, N busy-looping processes are pinned to
   the same core as this process while it simulates (Linux), which is what a loaded machine
   does to a run: the mean then counts the other processes' time slices, the charge should
   not.

Usage::

    python bench/bench_compute_charge.py --busy 0
    python bench/bench_compute_charge.py --busy 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from laqcore.algorithms import get_algorithm
from laqcore.algorithms.base import Message
from laqcore.problems import make_problem
from laqcore.simulator import simulate


def median_us(fn: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def spin(seconds: float, core: int) -> None:
    os.sched_setaffinity(0, {core})
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-M", "--workers", type=int, default=10)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--iterations", type=int, default=600)
    ap.add_argument("--busy", type=int, default=0, help="busy processes sharing this core")
    args = ap.parse_args()
    prob = make_problem("digits", workers=args.workers)
    prob.optimal_value()
    M = args.workers
    f = prob.workers[0]
    theta = prob.initial_point() + 0.01
    gd = get_algorithm("gd").make_worker(0, f, M)
    laq = get_algorithm("laq").make_worker(0, f, M)
    laq.step(Message(0, theta, rhs=0.0))  # the forced first upload
    msg = Message(5, theta, rhs=1e-3)
    g = f.grad(theta)
    print(f"digits, M = {M}, p = {prob.dim}; medians of {args.calls} calls")
    print(f"  local gradient   {median_us(lambda: f.grad(theta), args.calls):6.1f} us")
    print(f"  GD worker step   {median_us(lambda: gd.step(msg), args.calls):6.1f} us")
    propose = laq.uploader.propose  # type: ignore[attr-defined]
    print(f"  LAQ quantizer    {median_us(lambda: propose(g), args.calls):6.1f} us")
    print(f"  LAQ worker step  {median_us(lambda: laq.step(msg), args.calls):6.1f} us")
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    busy = [mp.Process(target=spin, args=(3600.0, core), daemon=True) for _ in range(args.busy)]
    for p in busy:
        p.start()
    try:
        print(f"simulated, {args.iterations} iterations, {args.busy} busy processes on core {core}")
        for name in ("gd", "laq"):
            r = simulate(prob, get_algorithm(name), max_iterations=args.iterations, eps=0.0)
            t = r.trace
            assert t is not None
            print(
                f"  {name:<4} worker step: mean {t.worker_mean_s * 1e3:.3f} ms, charged "
                f"{t.worker_step_s * 1e3:.3f} ms; server: mean {t.server_mean_s * 1e3:.3f} ms, "
                f"charged {t.server_step_s * 1e3:.3f} ms"
            )
    finally:
        for p in busy:
            p.terminate()
            p.join()


if __name__ == "__main__":
    main()
