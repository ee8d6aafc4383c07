"""Bytes each rank of ``laqcore launch`` receives: the two-phase exchange vs the all-gather.

Weak scaling, the same per-rank model and data at every world size N: the digits softmax
model (650 parameters), 2 workers per rank (M = 2N), ``max_samples = 200 N`` (each worker
holds the same number of samples), gloo ranks on loopback. For each exchange of
:func:`laqcore.distributed.engine.run_engine` (``--exchange``), the bytes every rank received
over the run (control included, from the sizes of the tensors the collectives filled:
``wire["bytes_received"]``) per iteration, averaged over the ranks, divided by ``(N - 1)/N``
(the share of the data any bandwidth-optimal collective must receive). Goal (issue 15.4):
that figure at 4 ranks <= 1.15x the figure at 2 ranks. GD uploads every iteration (the worst
case); LAQ skips. Loss-monitoring all-reduces are not part of the exchange and not counted.

With ``--downlink delta:laq:B`` (two-phase only) the owners publish their chunk of the
server state re-quantized to B bits instead of exactly.

Usage::

    python bench/bench_engine_exchange.py --worlds 2,4 --iterations 20 \\
        --out bench/measured/engine_exchange.json
    python bench/bench_engine_exchange.py --worlds 2,4 --iterations 20 --exchanges two-phase \\
        --downlink delta:laq:8 --out bench/measured/engine_exchange_laq8.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def measure(
    world: int, algorithm: str, exchange: str, iterations: int, downlink: str
) -> dict[str, Any]:
    from laqcore.distributed import EngineConfig, run_processes
    from laqcore.distributed.engine import run_engine

    cfg = EngineConfig(
        problem={"dataset": "digits", "workers": 2 * world, "max_samples": 200 * world},
        algorithm=algorithm,
        max_iterations=iterations,
        eps=0.0,
        eval_every=iterations,
        exchange=exchange,
        downlink=downlink,
        record_history=False,
    )
    t0 = time.perf_counter()
    outs = run_processes(run_engine, world, cfg, pg_timeout_s=60, deadline_s=600)
    wall = time.perf_counter() - t0
    wires = [o.result["wire"] for o in outs]
    received = [w["bytes_received"] / iterations for w in wires]
    mean = sum(received) / world
    return {
        "world": world,
        "algorithm": algorithm,
        "exchange": wires[0]["exchange"],
        "downlink": downlink,
        "iterations": iterations,
        "uploads": outs[0].result["result"]["uploads"],
        "received_per_rank_per_iteration": received,
        "received_mean": mean,
        "received_over_share": mean / ((world - 1) / world),
        "sent_per_rank_per_iteration": [w["bytes_sent"] / iterations for w in wires],
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worlds", default="2,4")
    ap.add_argument("--algorithms", default="gd,laq")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--exchanges", default="two-phase,all-gather")
    ap.add_argument("--downlink", default="delta")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    worlds = [int(w) for w in args.worlds.split(",")]
    rows = [
        measure(w, a, x, args.iterations, args.downlink)
        for a in args.algorithms.split(",")
        for x in args.exchanges.split(",")
        for w in worlds
    ]
    ratios = {}
    for r in rows:
        base = next(
            b
            for b in rows
            if (b["algorithm"], b["exchange"], b["world"])
            == (r["algorithm"], r["exchange"], worlds[0])
        )
        key = f"{r['algorithm']} {r['exchange']} N={r['world']} vs N={worlds[0]}"
        ratios[key] = r["received_over_share"] / base["received_over_share"]
        print(
            f"{r['algorithm']:4s} {r['exchange']:10s} N={r['world']}: "
            f"{r['received_mean']:9.0f} B/iteration/rank, / ((N-1)/N) = "
            f"{r['received_over_share']:9.0f}  ({ratios[key]:.3f}x N={worlds[0]})"
        )
    doc = {
        "command": "python bench/bench_engine_exchange.py --worlds "
        f"{args.worlds} --algorithms {args.algorithms} --iterations {args.iterations} "
        f"--exchanges {args.exchanges} --downlink {args.downlink}",
        "machine": f"{platform.machine()} {platform.processor()} {os.cpu_count()} CPUs",
        "load_1min": os.getloadavg()[0],
        "note": "byte counts do not depend on the load (deterministic runs); wall_s does",
        "rows": rows,
        "ratios": ratios,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
