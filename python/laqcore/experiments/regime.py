"""``laqcore regime-map``: which method reaches the tolerance first, over link regimes.

Every algorithm runs once on the problem (cached, :mod:`.runcache`); the link/time model
(:mod:`laqcore.network`) then gives its time to tolerance for every link of the grid:
downlink bandwidth (10 Mbit/s .. 100 Gbit/s), uplink = downlink / ratio (ratio 1 .. 100) and
the one-way latency. The output names the winner of each cell and its margin over the
runner-up, and the time of every method (``regime.json``), with one plot panel per latency.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from ..serialization import json_safe, write_json
from .options import (
    add_algorithm_options,
    add_problem_options,
    algorithm_overrides,
    link_from_args,
    problem_kwargs,
)
from .plots import remove_stale_plots
from .runcache import run_for_study
from .runs import laq_upload_rate

__all__ = ["add_parser", "regime_map"]


def __dir__() -> list[str]:
    return __all__


def _floats(text: str, name: str, *, positive: bool = False) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} takes comma-separated numbers, got {text!r}") from None
    # NaN and inf passed a "< 0" test, as did a 0 bandwidth or ratio: the link model
    # refused them only after every algorithm had run.
    if not vals or not all(math.isfinite(v) and (v > 0 if positive else v >= 0) for v in vals):
        raise ValueError(f"{name} needs finite numbers {'>' if positive else '>='} 0, got {text!r}")
    return list(dict.fromkeys(vals))  # a repeat gave a row of twice the cells, out of columns


def regime_map(args: argparse.Namespace) -> dict[str, Any]:
    """Run the algorithms and evaluate every link of the grid; returns the map."""
    from ..network import Link
    from ..problems import make_problem

    names = [s.strip() for s in args.algorithms.split(",") if s.strip()]
    bws = _floats(args.bandwidths_mbps, "--bandwidths-mbps", positive=True)
    ratios = _floats(args.ratios, "--ratios", positive=True)
    lats = _floats(args.latencies_ms, "--latencies-ms")
    kw = problem_kwargs(args)
    prob = make_problem(**kw)
    over = algorithm_overrides(args)
    runs: dict[str, Any] = {}
    for n in names:
        extra = {}
        if n.startswith("random") and args.upload_rate == "auto":
            # LAQ's measured rate (the check put 'laq' earlier); 'auto' was dropped and the
            # 0.2 default ran, cached under the same key
            s = runs["laq"].summary
            extra["upload_rate"] = laq_upload_rate(s["uploads"], s["iterations"], prob.num_workers)
        runs[n] = run_for_study(args, kw, n, {**over, **extra}, problem=prob)
    compute = None if args.compute_ms is None else args.compute_ms / 1e3
    cells: list[dict[str, Any]] = []
    for lat in lats:
        for ratio in ratios:
            for bw in bws:
                link = Link(
                    bw / ratio * 1e6,
                    bw * 1e6,
                    lat / 1e3,
                    topology=args.topology,
                    broadcast=args.broadcast,
                )
                times = {n: r.time_to_tolerance(link, compute) for n, r in runs.items()}
                done = sorted((t, n) for n, t in times.items() if t is not None)
                cells.append(
                    {
                        "latency_ms": lat,
                        "ratio": ratio,
                        "downlink_mbps": bw,
                        "times": times,
                        "winner": done[0][1] if done else None,
                        "margin": done[1][0] / done[0][0] if len(done) > 1 else None,
                    }
                )
    summary = {
        n: {
            "iterations": r.summary["iterations"],
            "reached": r.reached,
            "uplink_bits": r.summary["uplink_bits"],
            "total_bits": r.summary["total_bits"],
            "compute_s": r.trace.worker_step_s + r.trace.server_step_s,
        }
        for n, r in runs.items()
    }
    return {
        "algorithms": names,
        "bandwidths_mbps": bws,
        "ratios": ratios,
        "latencies_ms": lats,
        "runs": summary,
        "cells": cells,
    }


def _cell(c: dict[str, Any]) -> str:
    """``winner(margin)``; ``winner(only)`` when no other method reached eps (it read
    "(0.00)", a margin of zero, where the winner was infinitely ahead)."""
    if c["winner"] is None:
        return "-"
    return f"{c['winner']}({'only' if c['margin'] is None else format(c['margin'], '.2f')})"


def _print(data: dict[str, Any]) -> None:
    for n, s in data["runs"].items():
        print(
            f"{n:<10} {s['iterations']:>6} it  reached={s['reached']}  total bits "
            f"{s['total_bits']:.3e}  compute {s['compute_s'] * 1e3:.3f} ms/it"
        )
    for lat in data["latencies_ms"]:
        # the rows were called "up/down ratio": they are downlink / uplink bandwidth
        print(
            f"\nlatency {lat:g} ms: first to F-F* <= eps (its margin: runner-up's time / its "
            "time; 'only': no other reached eps; '-': none did); rows: downlink/uplink "
            "bandwidth ratio, columns: downlink Mbit/s"
        )
        print(f"{'ratio':>6}" + "".join(f"{bw:>14g}" for bw in data["bandwidths_mbps"]))
        for ratio in data["ratios"]:
            row = [c for c in data["cells"] if c["latency_ms"] == lat and c["ratio"] == ratio]
            txt = [_cell(c) for c in row]
            print(f"{ratio:>6g}" + "".join(f"{t:>14}" for t in txt))


def _cmd(args: argparse.Namespace) -> int:
    from .checks import check_experiment
    from .runcache import check_study_cache

    link_from_args(args)
    # The map sets every cell's bandwidths and latency itself: these were accepted and ignored.
    given = [
        f for f in ("uplink_mbps", "downlink_mbps", "latency_ms") if getattr(args, f) is not None
    ]
    given += ["network"] if args.network != "edge" else []
    if given:
        flags = ", ".join("--" + f.replace("_", "-") for f in given)
        raise ValueError(
            f"{flags}: regime-map sets each cell's link itself (--bandwidths-mbps, --ratios, "
            "--latencies-ms)"
        )
    check_experiment(args, args.algorithms)  # names, flags, paths: before any run
    check_study_cache(args)
    data = regime_map(args)
    _print(data)
    # what every cell shares, said nowhere before: the downlink mode the bits are for, the
    # topology and delivery of every link, and where the compute time came from
    compute = "measured" if args.compute_ms is None else f"{args.compute_ms:g} ms (--compute-ms)"
    delivery = "broadcast" if args.broadcast else "unicast"
    print(
        f"every cell: downlink {args.downlink}, topology {args.topology}, {delivery} "
        f"downlink delivery, compute per iteration {compute}"
    )
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "regime.json")
        cfg = {k: v for k, v in vars(args).items() if k != "func"}
        write_json(path, json_safe({"config": cfg, **data}), indent=2)
        print(f"wrote {path}")
        written = []
        if not args.no_plots:
            from .study_plots import plot_regime

            written.append(plot_regime(args.out, data))
            print(f"wrote {written[0]}")
        remove_stale_plots(args.out, ["regime.png"], written)  # an earlier map's
    return 0


def add_parser(sub: Any) -> None:
    """Register ``regime-map`` (see :mod:`laqcore.cli`)."""
    from .options import add_network_options

    p = sub.add_parser("regime-map", help="fastest method to the tolerance over link regimes")
    p.add_argument("--algorithms", default="gd,qgd,lag-wk,laq", help="names")
    p.add_argument(
        "--bandwidths-mbps",
        default="10,30,100,300,1000,3000,10000,30000,100000",
        help="downlink bandwidths, Mbit/s",
    )
    p.add_argument("--ratios", default="1,3,10,30,100", help="downlink / uplink ratios")
    p.add_argument("--latencies-ms", default="0.05,1,20,100", help="one-way latencies, ms")
    p.add_argument("--eps", type=float, default=1e-6, help="tolerance on F - F*")
    p.add_argument("--max-iterations", "-K", type=int, default=5000, help="budget of each run")
    p.add_argument(
        "--cache",
        default=None,
        help="run cache directory (default $LAQCORE_CACHE_DIR or ~/.cache/laqcore)",
    )
    p.add_argument("--out", default=None, help="directory for regime.json and regime.png")
    p.add_argument("--no-plots", action="store_true", help="do not write regime.png")
    add_problem_options(p)
    add_algorithm_options(p)
    add_network_options(p)
    p.set_defaults(func=_cmd)
