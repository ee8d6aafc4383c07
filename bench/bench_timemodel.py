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
    calibration = calibrate(cfg["workers"], cfg.get("calibrate_reps", 40))
    ec = EngineConfig(
        problem=cfg["problem"],
        algorithm=cfg["algorithm"],
        max_iterations=cfg["iterations"],
        eps=0.0,
        eval_every=10**9,
        record_history=False,
        # The exchange topology="allgather" models (the measured JSONs predate the engine's
        # two-phase exchange, now its default: network.topology's "chunked").
        exchange="all-gather",
    )
    out = run_engine(cfg["rank"], cfg["world"], ec)
    print(
        json.dumps(
            {
                "wall_time": out["result"]["wall_time"],
                "wire": out["wire"],
                "calib": calibration,
                "round_compute_s": out["round_compute_s"],
            }
        ),
        flush=True,
    )
    dist.barrier()
    os._exit(0)


def calibrate(M: int, reps: int) -> dict[str, float]:
    """Mean seconds of the engine's two small collectives on this link and machine, timed
    in the ranks before the run: the control all-gather (one int64 per rank) and the
    monitoring all-reduce (M float64). Gives the model's per-message latency as the machine
    delivers it (TCP, gloo, and the scheduling of N ranks on shared cores), measured apart
    from the runs it is used to predict."""
    import torch
    import torch.distributed as dist

    one = torch.zeros(1, dtype=torch.int64)
    bufs = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    vec = torch.zeros(M, dtype=torch.float64)
    out: dict[str, float] = {}
    for name, op in (
        ("allgather_s", lambda: dist.all_gather(bufs, one)),
        ("allreduce_s", lambda: dist.all_reduce(vec)),
    ):
        for _ in range(5):
            op()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            op()
        out[name] = (time.perf_counter() - t0) / reps
    return out


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
            "workers": args.workers,
            "port": port,
            "master": f"{SUBNET}.1",
        }
        for r in range(n)
    ]
    outs = launch_ranks(__file__, configs, net, args.run_timeout, f"{algorithm}, n={n}")
    calib = {k: max(o["calib"][k] for o in outs) for k in outs[0]["calib"]}
    return {
        "time_s": max(o["wall_time"] for o in outs),
        "wire": outs[0]["wire"],
        "calibration": calib,
        # A round waits for its slowest rank: sum over rounds of the max over ranks.
        "engine_compute_s": float(np.max([o["round_compute_s"] for o in outs], axis=0).sum()),
        "engine_compute_s_per_rank": [o["wire"]["compute_s"] for o in outs],
        "engine_exchange_s": [o["wire"]["exchange_s"] for o in outs],
        "engine_monitor_s": [o["wire"]["monitor_s"] for o in outs],
    }


def predict(
    n: int,
    algorithm: str,
    args: argparse.Namespace,
    prob: Any,
    latency_s: float,
    meas: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model's time for the same run. ``naive``: the simulator's single-process compute
    and the fixed ``latency_s``; ``calibrated`` (with ``meas``): the engine's own compute
    per iteration (each round's wall time outside collectives on its slowest rank, summed
    over rounds: a synchronous round waits for the last rank) and the one-way
    latency from the small-collective calibration, ``t_allgather / (N - 1) - 64 / rate``."""
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
    M = prob.num_workers

    def model(L: float, compute_s: float | None) -> tuple[float, float]:
        link = Link(rate, rate, L, topology="allgather")
        times = round_times(res.trace, link, nodes=n, compute_s=compute_s)  # type: ignore[arg-type]
        monitor = 2 * (n - 1) * (L + 64.0 * M / (n * rate))
        return float(times.sum() + monitor * res.iterations), monitor

    L = 2 * args.delay_ms / 1e3 + latency_s
    naive, monitor = model(L, None)
    compute = res.trace.worker_step_s * -(-M // n) + res.trace.server_step_s
    out: dict[str, Any] = {
        "time_s": naive,
        "compute_s_per_iteration": compute,
        "monitor_s_per_iteration": monitor,
        "latency_s": L,
        "uploads": res.uploads,
        "uplink_bits": res.bits,
    }
    if meas is not None:
        L_cal = max(meas["calibration"]["allgather_s"] / (n - 1) - 64.0 / rate, 0.0)
        L_cal += 2 * args.delay_ms / 1e3
        c_eng = meas["engine_compute_s"] / args.iterations
        cal, mon_cal = model(L_cal, c_eng)
        out["calibrated"] = {
            "time_s": cal,
            "latency_s": L_cal,
            "compute_s_per_iteration": c_eng,
            "monitor_s_per_iteration": mon_cal,
        }
    return out


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
                pred = predict(n, alg, args, prob, lat, meas)
                err = pred["time_s"] / meas["time_s"] - 1
                cal = pred["calibrated"]
                err_cal = cal["time_s"] / meas["time_s"] - 1
                rows.append(
                    {
                        "nprocs": n,
                        "algorithm": alg,
                        "measured_s": meas["time_s"],
                        "predicted_s": pred["time_s"],
                        "rel_error": err,
                        "calibrated_s": cal["time_s"],
                        "rel_error_calibrated": err_cal,
                        "prediction": pred,
                        "measurement": {k: v for k, v in meas.items() if k != "wire"},
                        "wire": meas["wire"],
                    }
                )
                print(
                    f"n={n} {alg:<7} measured {meas['time_s']:7.2f} s  predicted "
                    f"{pred['time_s']:7.2f} s ({100 * err:+6.1f}%)  calibrated "
                    f"{cal['time_s']:7.2f} s ({100 * err_cal:+6.1f}%; L "
                    f"{1e3 * cal['latency_s']:.2f} ms, compute "
                    f"{1e3 * cal['compute_s_per_iteration']:.1f} ms/it vs simulator "
                    f"{1e3 * pred['compute_s_per_iteration']:.1f})  "
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
