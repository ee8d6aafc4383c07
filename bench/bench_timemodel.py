"""Predicted vs measured time: the link/time model against the real distributed engine.

Every rank of :func:`laqcore.distributed.engine.run_engine` (the engine behind ``laqcore
launch``) runs in its own Linux network namespace behind a veth pair shaped with ``tc``
(token bucket rate + netem delay on both ends; the namespaces of bench_distributed.py, with a
burst of 1.5 timer ticks so that the rate binds even for small messages). The same run is
simulated (identical upload decisions), and :func:`laqcore.network.round_times` predicts its
time under ``topology="allgather"`` (the engine's exchange) with ``nodes`` = processes, plus
the engine's per-iteration loss all-reduce (M float64, ring: ``2 (N-1) (L + 64 M / (N B))``).
The one-way latency is ``--model-latency-ms`` (an unshaped veth hop plus TCP and gloo, 0.1 ms
as in bench_distributed's model), plus twice the netem delay if one is given (each packet crosses two shaped ends; netem is missing from
some kernels, then ``--delay-ms 0``). Compute
per iteration is the simulator's measured worker/server step times.

Data: a synthetic LIBSVM file (``--features`` features, 10 classes; softmax model), written
by this script (``--write-libsvm PATH`` writes one and exits). Needs root, ``ip`` and ``tc``.

Usage (as root)::

    python bench/bench_timemodel.py --nprocs 2,4 --rate 10mbit --delay-ms 2 \
        --out bench/measured/timemodel.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_distributed import SUBNET, Netns, _parse_rate, launch_ranks  # noqa: E402


class TightNetns(Netns):
    """bench_distributed's namespaces with a small token bucket (the rate binds at once)."""

    def _bucket(self) -> tuple[int, str]:
        return max(3000, int(_parse_rate(self.rate) / 8 / 250 * 1.5)), "400ms"


def write_libsvm(path: str, n: int, d: int, classes: int = 10, seed: int = 0) -> None:
    """Gaussian classes around random centres, written in LIBSVM format (dense rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d))
    y = rng.integers(0, classes, size=n)
    X = centres[y] + 2.0 * rng.normal(size=(n, d))
    with open(path, "w", encoding="ascii") as fh:
        for label, row in zip(y, X):
            fh.write(f"{label} " + " ".join(f"{j + 1}:{v:.4g}" for j, v in enumerate(row)) + "\n")


def rank_main(cfg: dict[str, Any]) -> None:
    import datetime

    import torch.distributed as dist

    from laqcore.distributed.engine import EngineConfig, run_engine

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{cfg['master']}:{cfg['port']}",
        rank=cfg["rank"],
        world_size=cfg["world"],
        timeout=datetime.timedelta(seconds=300),
    )
    ec = EngineConfig(
        problem=cfg["problem"],
        algorithm=cfg["algorithm"],
        max_iterations=cfg["iterations"],
        eps=0.0,
        eval_every=10**9,
        record_history=False,
    )
    out = run_engine(cfg["rank"], cfg["world"], ec)
    print(json.dumps({"wall_time": out["result"]["wall_time"], "wire": out["wire"]}), flush=True)
    dist.barrier()
    os._exit(0)


def measure(
    n: int, algorithm: str, args: argparse.Namespace, net: Netns, problem: dict[str, Any]
) -> dict[str, Any]:
    port = 29500 + (os.getpid() * 7 + n * 131 + len(algorithm)) % 20000
    configs = [
        {
            "rank": r,
            "world": n,
            "algorithm": algorithm,
            "problem": problem,
            "iterations": args.iterations,
            "port": port,
            "master": f"{SUBNET}.1",
        }
        for r in range(n)
    ]
    outs = launch_ranks(__file__, configs, net, args.run_timeout, f"{algorithm}, n={n}")
    return {"time_s": max(o["wall_time"] for o in outs), "wire": outs[0]["wire"]}


def predict(
    n: int, algorithm: str, args: argparse.Namespace, prob: Any, latency_s: float
) -> dict[str, Any]:
    from laqcore._blas import blas_threads
    from laqcore.algorithms import get_algorithm
    from laqcore.network import Link, round_times
    from laqcore.simulator import simulate

    with blas_threads(1):  # as the ranks (OMP_NUM_THREADS=1)
        res = simulate(
            prob,
            get_algorithm(algorithm),
            max_iterations=args.iterations,
            eps=0.0,
            eval_every=10**9,
            record_history=False,
        )
    assert res.trace is not None
    rate = _parse_rate(args.rate)
    L = 2 * args.delay_ms / 1e3 + latency_s
    link = Link(rate, rate, L, topology="allgather")
    times = round_times(res.trace, link, nodes=n)
    M = prob.num_workers
    monitor = 2 * (n - 1) * (L + 64.0 * M / (n * rate))
    compute = res.trace.worker_step_s * -(-M // n) + res.trace.server_step_s
    return {
        "time_s": float(times.sum() + monitor * res.iterations),
        "compute_s_per_iteration": compute,
        "monitor_s_per_iteration": monitor,
        "uploads": res.uploads,
        "uplink_bits": res.bits,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rank-config", help=argparse.SUPPRESS)
    ap.add_argument("--write-libsvm", default=None, help="write the data file and exit")
    ap.add_argument("--nprocs", default="2,4")
    ap.add_argument("--algorithms", default="gd,lag-wk,laq")
    ap.add_argument("--rate", default="10mbit", help="tc rate per rank and direction")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="netem delay on each veth end")
    ap.add_argument(
        "--model-latency-ms",
        type=float,
        default=0.1,
        help="the model's one-way latency of an unshaped veth hop + TCP/gloo (as "
        "bench_distributed's model)",
    )
    ap.add_argument(
        "--burst",
        default="tight",
        choices=["tight", "bench"],
        help="token bucket: tight (1.5 timer ticks) or bench_distributed's (>= 32 KiB)",
    )
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--features", type=int, default=1000)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--run-timeout", type=float, default=600)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.rank_config:
        with open(args.rank_config) as fh:
            rank_main(json.load(fh))
        return 1
    if args.write_libsvm:
        write_libsvm(args.write_libsvm, args.samples, args.features)
        return 0
    from laqcore.problems import make_problem

    data = os.path.join(tempfile.mkdtemp(prefix="lqtm"), "synthetic.svm")
    write_libsvm(data, args.samples, args.features)
    problem = {"dataset": f"libsvm:{data}", "workers": args.workers}
    prob = make_problem(**problem)
    prob.optimal_value()  # solve F* once (cached for the ranks)
    print(
        f"# {args.rate} per rank and direction, netem {args.delay_ms} ms per end, "
        f"dim {prob.dim}, M={args.workers}, {args.iterations} iterations, "
        f"{os.cpu_count()} cores (shared, loaded)"
    )
    rows = []
    for n in [int(v) for v in args.nprocs.split(",")]:
        shaper = TightNetns if args.burst == "tight" else Netns
        with shaper(n, args.rate, args.delay_ms) as net:
            lat = args.model_latency_ms / 1e3
            for alg in args.algorithms.split(","):
                t0 = time.perf_counter()
                meas = measure(n, alg, args, net, problem)
                pred = predict(n, alg, args, prob, lat)
                err = pred["time_s"] / meas["time_s"] - 1
                rows.append(
                    {
                        "nprocs": n,
                        "algorithm": alg,
                        "measured_s": meas["time_s"],
                        "predicted_s": pred["time_s"],
                        "rel_error": err,
                        "prediction": pred,
                        "wire": meas["wire"],
                    }
                )
                print(
                    f"n={n} {alg:<7} measured {meas['time_s']:7.2f} s  predicted "
                    f"{pred['time_s']:7.2f} s  error {100 * err:+6.1f}%  "
                    f"({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
