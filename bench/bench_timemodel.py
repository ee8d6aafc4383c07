"""Predicted vs measured time: the link/time model against the real distributed engine.

Every rank of :func:`laqcore.distributed.engine.run_engine` (the engine behind ``laqcore
launch``; ``--exchange``: its default two-phase exchange or the all-gather one) runs in its
own Linux network namespace behind a veth pair shaped with ``tc`` (token bucket on both
ends; the namespaces of bench_distributed.py; ``--burst tight``: 1.5 timer ticks, so the rate
binds even for small messages). The same run is simulated (identical upload decisions: the
engine is tested equal to the simulator), and its time is predicted from the trace's payload
sizes, round by round, as the engine's collectives (:func:`engine_rounds`): every round a
control all-gather and the loss all-reduce (M float64); ``two-phase``: in a round with
uploads, one all-to-all (each uploading rank's bundle of slices of chunk j to owner j) and
one all-gather of the owners' chunks of the server state; ``all-gather``: one padded
all-gather of the rank bundles if every rank uploads, else one broadcast per uploading rank.
The collectives are priced in two ways:

``nominal``
    the shaped rate, a fixed one-way latency per message step (``--model-latency-ms``),
    ring all-gather and all-reduce, gloo's binomial-tree broadcast, a direct all-to-all;
    compute: the simulator's worker steps (``ceil(M / N)`` per rank) and server update.
``calibrated``
    each collective timed in the ranks *before* the run, at message sizes that depend only
    on the rate, not on the run (:func:`calibrate`): the control all-gather (one int64), the
    loss all-reduce, and all-gather, broadcast and all-to-all at three sizes
    (``--calib-seconds``: what the link carries in 0.02, 0.1 and 0.5 s), interpolated
    piecewise linearly (beyond the largest along the last segment). Compute per round is
    the engine's own (each round's wall time outside collectives on its slowest rank: a
    synchronous round waits for the last rank). Nothing is fitted to the timed run.

Each (processes, method) is run ``--repeats`` times; every repeat has its own calibration
and its own error, and the summary gives the median and the worst repeat.

Data: a synthetic LIBSVM file (``--features`` features, ``--classes`` classes; softmax model),
written by this script (``--write-libsvm PATH`` writes one and exits). Needs root, ``ip``
and ``tc``.

Usage (as root)::

    python bench/bench_timemodel.py --nprocs 2,4 --algorithms gd,laq \\
        --iterations gd=5,laq=200 --features 2000 --rate 1mbit --repeats 3 \\
        --out bench/measured/timemodel_1mbit.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_distributed import SUBNET, Netns, _parse_rate, launch_ranks  # noqa: E402

#: The engine's replica check (an all-gather of a 32-byte digest) runs every this many rounds.
REPLICA_CHECK_EVERY = 100
#: Transport's padded all-gather is used when the padding is at most this share of the bytes.
PAD_TOLERANCE = 0.125


class TightNetns(Netns):
    """bench_distributed's namespaces with a small token bucket (the rate binds at once) and
    a queue of 2 s of traffic, deep enough that nothing is dropped: with 400 ms, transfers
    in both directions at once lost packets and their time varied 2x from call to call."""

    def _bucket(self) -> tuple[int, str]:
        return max(3000, int(_parse_rate(self.rate) / 8 / 250 * 1.5)), "2000ms"


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
    calibration = calibrate(cfg["workers"], cfg["sizes"], cfg["exchange"] == "two-phase")
    extra: dict[str, Any] = {}
    if "exchange" in {f.name for f in dataclasses.fields(EngineConfig)}:
        extra["exchange"] = cfg["exchange"]
    ec = EngineConfig(
        problem=cfg["problem"],
        algorithm=cfg["algorithm"],
        max_iterations=cfg["iterations"],
        eps=0.0,
        eval_every=10**9,
        record_history=False,
        replica_check_every=REPLICA_CHECK_EVERY,
        **extra,
    )
    out = run_engine(cfg["rank"], cfg["world"], ec)
    print(
        json.dumps(
            {
                "wall_time": out["result"]["wall_time"],
                "iterations": out["result"]["iterations"],
                "wire": out["wire"],
                "calib": calibration,
                "round_compute_s": out["round_compute_s"],
            }
        ),
        flush=True,
    )
    dist.barrier()
    os._exit(0)


def calibrate(
    M: int, sizes: list[int], alltoall: bool = False, gap_s: float = 0.003
) -> dict[str, Any]:
    """Seconds per call of the collectives the engine uses, on this link and machine, timed
    in the ranks before the run: the control all-gather (one int64) and the loss all-reduce
    (M float64), alternated as in a round, 80 times; an all-gather (S bytes per rank) and a
    broadcast (S bytes, from rank 0) at each of ``sizes`` (and with ``alltoall`` an
    all-to-all of S bytes to every peer). Every call is followed by a short
    pause (``gap_s``, like the compute between a run's collectives) and the cost is the mean
    time per call, so that waiting for peers the scheduler put aside counts as in a run."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    one = torch.zeros(1, dtype=torch.int64)
    ones = [torch.zeros(1, dtype=torch.int64) for _ in range(world)]
    vec = torch.zeros(M, dtype=torch.float64)

    def run(ops: dict[str, Any], reps: int) -> dict[str, float]:
        for op in ops.values():
            op()
        dist.barrier()
        spent = dict.fromkeys(ops, 0.0)
        for _ in range(reps):
            for name, op in ops.items():
                t0 = time.perf_counter()
                op()
                spent[name] += time.perf_counter() - t0
                time.sleep(gap_s)
        return {name: v / reps for name, v in spent.items()}

    out: dict[str, Any] = run(
        {
            "control_s": lambda: dist.all_gather(ones, one),
            "monitor_s": lambda: dist.all_reduce(vec),
        },
        80,
    )
    out["allgather_s"], out["broadcast_s"], out["alltoall_s"] = [], [], []
    for i, size in enumerate(sizes):
        buf = torch.zeros(size, dtype=torch.uint8)
        bufs = [torch.empty_like(buf) for _ in range(world)]
        reps = (8, 3, 2)[min(i, 2)]
        out["allgather_s"].append(
            run({"ag": lambda b=bufs, x=buf: dist.all_gather(b, x)}, reps)["ag"]
        )
        out["broadcast_s"].append(run({"bc": lambda x=buf: dist.broadcast(x, src=0)}, reps)["bc"])
        if alltoall:
            # S bytes to every peer (the own block stays local: zero-sized)
            split = [0 if r == dist.get_rank() else size for r in range(world)]
            a2a_in = torch.zeros(size * (world - 1), dtype=torch.uint8)
            a2a_out = torch.empty_like(a2a_in)
            op = lambda o=a2a_out, x=a2a_in, sp=split: dist.all_to_all_single(o, x, sp, sp)  # noqa: E731
            out["alltoall_s"].append(run({"a2a": op}, reps)["a2a"])
    return out


def calib_sizes(rate_bps: float, seconds: list[float]) -> list[int]:
    """The calibration sizes (bytes): what the link carries in ``seconds``."""
    return [max(1000, int(rate_bps / 8 * s)) for s in seconds]


def priced(sizes: list[int], costs: list[float], x: np.ndarray) -> np.ndarray:
    """Cost of a collective of ``x`` bytes: piecewise linear through the calibrated
    ``(sizes, costs)``, extended beyond the last size along the last segment."""
    s, c = np.asarray(sizes, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    slope = max((c[-1] - c[-2]) / (s[-1] - s[-2]), 0.0)
    out: np.ndarray = np.where(x <= s[-1], np.interp(x, s, c), c[-1] + slope * (x - s[-1]))
    return out


def measure(
    n: int, algorithm: str, iterations: int, args: argparse.Namespace, net: Netns, rep: int
) -> dict[str, Any]:
    port = 29500 + (os.getpid() * 7 + n * 131 + rep * 17 + len(algorithm)) % 20000
    configs = [
        {
            "rank": r,
            "world": n,
            "algorithm": algorithm,
            "problem": args.problem,
            "iterations": iterations,
            "workers": args.workers,
            "sizes": args.sizes,
            "exchange": args.exchange,
            "port": port,
            "master": f"{SUBNET}.1",
        }
        for r in range(n)
    ]
    outs = launch_ranks(__file__, configs, net, args.run_timeout, f"{algorithm}, n={n}")
    # A collective ends for everyone when its slowest rank is done: the largest per-call
    # time over the ranks.
    calib = {k: np.max([o["calib"][k] for o in outs], axis=0).tolist() for k in outs[0]["calib"]}
    return {
        "time_s": max(o["wall_time"] for o in outs),
        "iterations": outs[0]["iterations"],
        "wire": outs[0]["wire"],
        "calibration": calib,
        # A round waits for its slowest rank: per round, the max over ranks.
        "round_compute_s": np.max([o["round_compute_s"] for o in outs], axis=0).tolist(),
        "engine_exchange_s": [o["wire"]["exchange_s"] for o in outs],
        "engine_monitor_s": [o["wire"]["monitor_s"] for o in outs],
    }


def simulate_trace(prob: Any, algorithm: str, iterations: int) -> Any:
    """The simulator's run of the same configuration (same decisions as the engine)."""
    from laqcore._blas import blas_threads
    from laqcore.algorithms import get_algorithm
    from laqcore.simulator import simulate

    with blas_threads(1):  # as the ranks (OMP_NUM_THREADS=1)
        res = simulate(
            prob,
            get_algorithm(algorithm),
            max_iterations=iterations,
            eps=0.0,
            eval_every=10**9,
            record_history=False,
        )
    return res


def node_frames(trace: Any, n: int) -> np.ndarray:
    """``(iterations, n)``: bytes of each rank's upload bundle (0: the rank skips); a
    bundle is its workers' payloads plus a 12-byte header, 8 bytes per item and a CRC."""
    flags = trace.uploader_flags()
    cnt = trace.series("up_count")
    mean = np.where(cnt > 0, trace.series("up_bytes") / np.maximum(cnt, 1), 0.0)
    per_node = np.stack([flags[:, r::n].sum(axis=1) for r in range(n)], axis=1)
    return np.where(per_node > 0, per_node * mean[:, None] + 16 + 8 * per_node, 0.0)


class NominalPrice:
    """Collective costs on a nominal link: ``rate`` bit/s each way, one-way latency ``L``
    per message step (ring all-gather and all-reduce, gloo's binomial-tree broadcast, a
    direct all-to-all)."""

    def __init__(self, rate: float, latency_s: float, n: int, M: int) -> None:
        self.rate, self.L, self.n, self.M = rate, latency_s, n, M

    def control(self, ints: int = 1) -> float:
        return (self.n - 1) * (self.L + 64.0 * ints / self.rate)

    def monitor(self) -> float:
        return 2 * (self.n - 1) * (self.L + 64.0 * self.M / (self.n * self.rate))

    def allgather(self, size: np.ndarray) -> np.ndarray:
        return (self.n - 1) * (self.L + 8.0 * size / self.rate)

    def broadcast(self, size: np.ndarray) -> np.ndarray:
        return int(np.ceil(np.log2(self.n))) * (self.L + 8.0 * size / self.rate)

    def alltoall(self, size: np.ndarray) -> np.ndarray:
        return self.L + 8.0 * (self.n - 1) * size / self.rate


class CalibratedPrice:
    """Collective costs from the ranks' calibration (:func:`calibrate`)."""

    def __init__(self, calib: dict[str, Any], sizes: list[int]) -> None:
        self.c, self.sizes = calib, sizes

    def control(self, ints: int = 1) -> float:
        return float(self.c["control_s"])

    def monitor(self) -> float:
        return float(self.c["monitor_s"])

    def allgather(self, size: np.ndarray) -> np.ndarray:
        return priced(self.sizes, self.c["allgather_s"], size)

    def broadcast(self, size: np.ndarray) -> np.ndarray:
        return priced(self.sizes, self.c["broadcast_s"], size)

    def alltoall(self, size: np.ndarray) -> np.ndarray:
        return priced(self.sizes, self.c["alltoall_s"], size)


def engine_rounds(
    trace: Any, n: int, layout: dict[str, Any], price: Any, compute: np.ndarray
) -> dict[str, np.ndarray]:
    """Per round of the engine: compute + control all-gather + the exchange's payload
    collectives + the loss all-reduce, each priced by ``price``; every
    REPLICA_CHECK_EVERY rounds one more small all-gather.

    ``all-gather`` exchange: one padded all-gather of the rank bundles if every rank
    uploads, else one broadcast per uploading rank. ``two-phase``: nothing more if nobody
    uploads, else one all-to-all (each uploading rank sends every other rank the bundle of
    its uploads' slices of that rank's chunk; priced at its busiest link, as an all-to-all
    of that many bytes per peer) and one all-gather of the owners' chunks of the server
    state (``layout["state_bytes"]`` per chunk, padded to the largest)."""
    frames = node_frames(trace, n)
    K = frames.shape[0]
    any_up = (frames > 0).any(axis=1)
    if layout["exchange"] == "two-phase":
        chunk = np.where(frames > 0, frames / n + 16 + 8 * layout["slots"] + 64, 0.0)
        sent = (n - 1) * chunk
        recv = chunk.sum(axis=1, keepdims=True) - chunk
        busiest = np.maximum(sent, recv).max(axis=1) / (n - 1)
        state = np.full(K, float(layout["state_bytes"]))
        payload = np.where(any_up, price.alltoall(busiest) + price.allgather(state), 0.0)
        ints = 1 + n + 2 * layout["slots"]  # status, uplink size per chunk, (worker, bytes)
    else:
        real = frames.sum(axis=1)
        biggest = frames.max(axis=1)
        padded = biggest * n
        everyone = (frames > 0).all(axis=1) & (padded - real <= PAD_TOLERANCE * real)
        gather = price.allgather(biggest)
        bcasts = ((frames > 0) * price.broadcast(frames)).sum(axis=1)
        payload = np.where(everyone, gather, bcasts)
        ints = 1
    k = np.arange(1, K + 1)
    control = price.control(ints) + price.control(4) * (k % REPLICA_CHECK_EVERY == 0)
    monitor = np.full(K, price.monitor())
    return {"compute": compute, "control": control, "monitor": monitor, "payload": payload}


def engine_layout(prob: Any, algorithm: str, n: int, exchange: str) -> dict[str, Any]:
    """What the model needs of the engine's exchange: its kind, the slots per rank, and
    (two-phase) the bytes of the largest chunk of the server state an owner publishes."""
    from laqcore.algorithms import get_algorithm
    from laqcore.distributed.engine_exchange import resolve_exchange
    from laqcore.distributed.two_phase import chunk_bounds

    alg = get_algorithm(algorithm)
    M = prob.num_workers
    smooth = prob.smoothness() if alg.needs_smoothness else None
    server = alg.make_server(prob.initial_point(), M, smooth)
    unit = resolve_exchange(exchange, alg, server)
    out: dict[str, Any] = {"exchange": "all-gather", "slots": -(-M // n), "state_bytes": 0}
    if unit is not None:
        itemsize = np.asarray(server.fold({}, 0, 0)).dtype.itemsize
        widest = max(e - s for s, e in chunk_bounds(prob.dim, n, unit))
        out.update(exchange="two-phase", state_bytes=widest * itemsize)
    return out


def predict(
    n: int, algorithm: str, res: Any, args: argparse.Namespace, meas: dict[str, Any]
) -> dict[str, Any]:
    """Both models' time for the run ``meas`` (see the module docstring)."""
    trace = res.trace
    M = args.workers
    layout = args.layouts[(algorithm, n)]
    sim_compute = trace.worker_step_s * -(-M // n) + trace.server_step_s
    nominal = engine_rounds(
        trace,
        n,
        layout,
        NominalPrice(_parse_rate(args.rate), args.model_latency_ms / 1e3, n, M),
        np.full(trace.iterations, sim_compute),
    )
    compute = np.asarray(meas["round_compute_s"], dtype=np.float64)
    parts = engine_rounds(
        trace, n, layout, CalibratedPrice(meas["calibration"], args.sizes), compute
    )
    return {
        "exchange": layout["exchange"],
        "nominal_s": float(sum(v.sum() for v in nominal.values())),
        "nominal_parts_s": {k: float(v.sum()) for k, v in nominal.items()},
        "calibrated_s": float(sum(v.sum() for v in parts.values())),
        "calibrated_parts_s": {k: float(v.sum()) for k, v in parts.items()},
        "uploads": res.uploads,
        "uplink_bits": res.bits,
    }


def parse_iterations(text: str, algorithms: list[str]) -> dict[str, int]:
    """``60`` (every method) or ``gd=5,laq=200``."""
    if "=" not in text:
        return {a: int(text) for a in algorithms}
    given = {k: int(v) for k, v in (item.split("=") for item in text.split(","))}
    missing = [a for a in algorithms if a not in given]
    if missing:
        raise SystemExit(f"--iterations names no count for {', '.join(missing)}")
    return given


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key in dict.fromkeys((r["nprocs"], r["algorithm"]) for r in rows):
        group = [r for r in rows if (r["nprocs"], r["algorithm"]) == key]
        errs = [r["rel_error_calibrated"] for r in group]
        med_m = statistics.median(r["measured_s"] for r in group)
        med_p = statistics.median(r["calibrated_s"] for r in group)
        out.append(
            {
                "nprocs": key[0],
                "algorithm": key[1],
                "repeats": len(group),
                "measured_s": [r["measured_s"] for r in group],
                "calibrated_s": [r["calibrated_s"] for r in group],
                "rel_error_calibrated": errs,
                "median_measured_s": med_m,
                "median_calibrated_s": med_p,
                "median_rel_error": med_p / med_m - 1,
                "worst_rel_error": max(errs, key=abs),
                "nominal_rel_error": [r["rel_error_nominal"] for r in group],
            }
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rank-config", help=argparse.SUPPRESS)
    ap.add_argument("--write-libsvm", default=None, help="write the data file and exit")
    ap.add_argument("--nprocs", default="2,4")
    ap.add_argument("--algorithms", default="gd,laq")
    ap.add_argument("--rate", default="1mbit", help="tc rate per rank and direction")
    ap.add_argument(
        "--model-latency-ms",
        type=float,
        default=0.1,
        help="the nominal model's one-way latency of a veth hop + TCP/gloo",
    )
    ap.add_argument(
        "--burst",
        default="tight",
        choices=["tight", "bench"],
        help="token bucket: tight (1.5 timer ticks) or bench_distributed's default "
        "(DEFAULT_BURST_MS of traffic)",
    )
    ap.add_argument(
        "--calib-seconds",
        default="0.02,0.1,0.5",
        help="the calibration message sizes, as seconds of the link's rate",
    )
    ap.add_argument(
        "--exchange",
        default="two-phase",
        choices=["two-phase", "all-gather"],
        help="the engine's exchange (laqcore launch --exchange; two-phase is its default)",
    )
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--features", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--iterations", default="gd=5,laq=200", help="60, or gd=5,laq=200")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--run-timeout", type=float, default=600)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.rank_config:
        with open(args.rank_config) as fh:
            rank_main(json.load(fh))
        return 1
    if args.write_libsvm:
        write_libsvm(args.write_libsvm, args.samples, args.features, args.classes)
        return 0
    from laqcore.problems import make_problem

    algorithms = args.algorithms.split(",")
    iterations = parse_iterations(args.iterations, algorithms)
    rate = _parse_rate(args.rate)
    args.sizes = calib_sizes(rate, [float(v) for v in args.calib_seconds.split(",")])
    data = os.path.join(tempfile.mkdtemp(prefix="lqtm"), "synthetic.svm")
    write_libsvm(data, args.samples, args.features, args.classes)
    args.problem = {"dataset": f"libsvm:{data}", "workers": args.workers}
    prob = make_problem(**args.problem)
    prob.optimal_value()  # solve F* once (cached for the ranks)
    sims = {a: simulate_trace(prob, a, iterations[a]) for a in algorithms}
    nprocs = [int(v) for v in args.nprocs.split(",")]
    args.layouts = {
        (a, n): engine_layout(prob, a, n, args.exchange) for a in algorithms for n in nprocs
    }
    print(
        f"# {args.exchange} exchange, {args.rate} per rank and direction ({args.burst} bucket), "
        f"dim {prob.dim}, "
        f"M={args.workers}, iterations {iterations}, {args.repeats} repeats, calibration "
        f"sizes {args.sizes} B, {os.cpu_count()} cores (shared), load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    shaper = TightNetns if args.burst == "tight" else Netns
    for n in nprocs:
        with shaper(n, args.rate, 0.0) as net:
            for rep in range(args.repeats):
                for alg in algorithms:
                    t0 = time.perf_counter()
                    load = os.getloadavg()[0]
                    meas = measure(n, alg, iterations[alg], args, net, rep)
                    pred = predict(n, alg, sims[alg], args, meas)
                    err_nom = pred["nominal_s"] / meas["time_s"] - 1
                    err_cal = pred["calibrated_s"] / meas["time_s"] - 1
                    rows.append(
                        {
                            "nprocs": n,
                            "algorithm": alg,
                            "repeat": rep,
                            "load_average": [load, os.getloadavg()[0]],
                            "measured_s": meas["time_s"],
                            "nominal_s": pred["nominal_s"],
                            "rel_error_nominal": err_nom,
                            "calibrated_s": pred["calibrated_s"],
                            "rel_error_calibrated": err_cal,
                            "prediction": pred,
                            "measurement": {
                                k: v
                                for k, v in meas.items()
                                if k not in ("wire", "round_compute_s")
                            },
                            "wire": meas["wire"],
                        }
                    )
                    parts = pred["calibrated_parts_s"]
                    print(
                        f"n={n} {alg:<4} rep {rep}: measured {meas['time_s']:6.2f} s  "
                        f"calibrated {pred['calibrated_s']:6.2f} s ({100 * err_cal:+5.1f}%: "
                        + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
                        + f")  nominal {pred['nominal_s']:6.2f} s ({100 * err_nom:+5.1f}%)  "
                        f"load {load:.1f}  ({time.perf_counter() - t0:.0f} s)",
                        flush=True,
                    )
    summary = summarize(rows)
    for s in summary:
        print(
            f"n={s['nprocs']} {s['algorithm']:<4} median measured {s['median_measured_s']:.2f} s,"
            f" calibrated {s['median_calibrated_s']:.2f} s ({100 * s['median_rel_error']:+.1f}%),"
            f" worst repeat {100 * s['worst_rel_error']:+.1f}%"
        )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            info = {k: v for k, v in vars(args).items() if k != "layouts"}
            info["layouts"] = {f"{a}/{n}": v for (a, n), v in args.layouts.items()}
            json.dump({"args": info, "summary": summary, "rows": rows}, fh, indent=2)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
