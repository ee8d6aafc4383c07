"""``laqcore scaling`` and ``laqcore ratio-study``: time to accuracy as workers are added.

Both run every (problem, algorithm) once (cached, :mod:`.runcache`) and apply the link/time
model (:mod:`laqcore.network`) to the recorded payload sizes, so they scale past the machine
(M = 1024 simulated workers) and the link can be changed without re-running.

``scaling``
    Time-to-accuracy speedup over M = 1 vs M for each algorithm. ``weak``: a synthetic
    problem whose per-worker data is fixed (``--per-worker`` samples; the problem grows with
    M), speedup reported as the scaled speedup ``M * T(1) / T(M)`` (work per second);
    ``strong``: the digits data split over M workers, speedup ``T(1) / T(M)``. Ideal = M.
    Every method steps with ``alpha = 0.2 / M`` (GD's 0.02 at M = 10, ``alpha * M`` fixed:
    the step on F = (1/M) sum f_m) on full local gradients.

The workers' gradients are evaluated in one batched product
(:meth:`laqcore.problems.Problem.use_batched`; ``--per-worker-eval`` turns it off), which
makes M = 1024 affordable; the time model still charges each worker's step one worker's own
gradient time. With the default
``delta`` downlink every worker receives the other uploaders' frames, so a unicast downlink
carries O(M^2) bytes per round when everyone uploads; ``--broadcast`` sends each round's
frames once to all workers (``--downlink delta:f32`` sends their float32 sum instead).

``ratio-study``
    The reviewers' question: speedup on P workers over 1, vs the compression ratio (GD's
    upload bytes / the method's), for QSGD levels, top-k ratios and LAQ bits on the same full
    local gradients (``batch`` larger than any shard).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

from ..serialization import json_safe, write_json
from .options import downlink_from_args, link_from_args, split_names
from .plots import remove_stale_plots
from .runcache import CachedRun, run_for_study
from .tables import link_text

__all__ = ["add_parser", "ratio_study", "scaling_study"]


def __dir__() -> list[str]:
    return __all__


def _ints(text: str, name: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} takes comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise ValueError(f"{name} needs integers >= 1, got {text!r}")
    return sorted(set(vals))


def _weak_problem(M: int, per_worker: int, features: int, seed: int) -> tuple[dict[str, Any], Any]:
    from ..problems import make_problem
    from ..problems.datasets.synthetic import make_classification

    n = math.ceil(M * per_worker / 0.8)
    kw: dict[str, Any] = {"synthetic": "classification", "n": n, "d": features, "classes": 10}
    kw["M"] = M
    if seed:  # the run-cache key: --data-seed 1 got the cached runs of seed 0's data
        kw["seed"] = seed  # (absent for 0: the runs cached before keep their keys)
    ds = make_classification(n=n, d=features, num_classes=10, seed=seed)
    return kw, make_problem(ds, model="softmax", workers=M, test_fraction=0.2, seed=seed)


def _strong_problem(M: int, seed: int) -> tuple[dict[str, Any], Any]:
    from ..problems import make_problem

    kw: dict[str, Any] = {"dataset": "digits", "workers": M, "seed": seed}
    return kw, make_problem("digits", workers=M, seed=seed)


def _alpha(M: int) -> float:
    """GD's step 0.02 at M = 10, with ``alpha * M`` fixed; the same for every method (all
    use full local gradients here, so the stochastic methods' smaller default does not apply)."""
    return 0.2 / M


def _run(
    args: argparse.Namespace, kw: dict[str, Any], prob: Any, name: str, over: dict[str, Any]
) -> CachedRun:
    """One cached full-gradient run of ``name`` (batched evaluation unless turned off)."""
    return run_for_study(args, kw, name, over, problem=prob, batched=not args.per_worker_eval)


def _time(run: CachedRun, args: argparse.Namespace) -> float | None:
    compute = None if args.compute_ms is None else args.compute_ms / 1e3
    return run.time_to_tolerance(link_from_args(args), compute)


def scaling_study(args: argparse.Namespace) -> dict[str, Any]:
    """Run the worker-scaling study; returns ``{mode: {algorithm: [{M, time, speedup}]}}``."""
    workers = _ints(args.workers_list, "--workers-list")
    if workers[0] != 1:  # the speedup's base, as ratio-study's P = 1: without it every
        workers = [1, *workers]  # speedup was '-' and the table blamed eps
    names = [s.strip() for s in args.algorithms.split(",") if s.strip()]
    modes = ["weak", "strong"] if args.mode == "both" else [args.mode]
    out: dict[str, Any] = {}
    for mode in modes:
        table: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for M in workers:
            if mode == "weak":
                kw, prob = _weak_problem(M, args.per_worker, args.features, args.data_seed)
            else:
                kw, prob = _strong_problem(M, args.data_seed)
            for name in names:
                over = {"alpha": _alpha(M), "batch": 10**9}
                run = _run(args, kw, prob, name, over)
                table[name].append(
                    {
                        "M": M,
                        "iterations": run.summary["iterations"],
                        "reached": run.reached,
                        "total_bits": run.summary["total_bits"],
                        "time": _time(run, args),
                    }
                )
        for rows in table.values():
            t1 = rows[0]["time"] if rows and rows[0]["M"] == 1 else None
            for r in rows:
                r["speedup"] = None
                if t1 is not None and r["time"]:
                    r["speedup"] = (r["M"] if mode == "weak" else 1) * t1 / r["time"]
        out[mode] = table
    return out


#: (algorithm, parameter overrides) of the compression-ratio study.
RATIO_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("gd", {}),
    *[("qsgd", {"levels": s}) for s in (1, 4, 16, 64)],
    *[("topk-ef", {"ratio": r}) for r in (0.01, 0.05, 0.2)],
    *[("laq", {"bits": b}) for b in (1, 2, 4, 8)],
]


def ratio_study(args: argparse.Namespace) -> dict[str, Any]:
    """Speedup T(1)/T(P) vs compression ratio; returns ``{"rows": [...]}``."""
    procs = _ints(args.procs, "--procs")
    if procs[0] != 1:
        procs = [1, *procs]
    rows: list[dict[str, Any]] = []
    gd_bytes: float | None = None
    for name, extra in RATIO_CONFIGS:
        times: dict[int, float | None] = {}
        per_upload = 0.0
        for P in procs:
            kw, prob = _strong_problem(P, args.data_seed)
            over = {**extra, "alpha": _alpha(P), "batch": 10**9}
            run = _run(args, kw, prob, name, over)
            times[P] = _time(run, args)
            cnt = sum(run.trace.up_count)
            if P == procs[-1] and cnt:
                per_upload = sum(run.trace.up_bytes) / cnt
        if name == "gd":
            gd_bytes = per_upload
        label = name + "".join(f" {k}={v}" for k, v in extra.items())
        ratio = gd_bytes / per_upload if gd_bytes and per_upload else None
        for P in procs:
            t1, tp = times[1], times[P]
            rows.append(
                {
                    "config": label,
                    "P": P,
                    "compression_ratio": ratio,
                    "time": tp,
                    "speedup": t1 / tp if t1 and tp else None,
                }
            )
    return {"procs": procs, "rows": rows}


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _report(args: argparse.Namespace, kind: str, data: dict[str, Any]) -> None:
    link = link_from_args(args).describe()
    where = f"{link['name']} link, {link['downlink_delivery']} downlink"
    # the link's numbers and the --downlink mode: "custom link" (a preset with a flag
    # changed) said neither, and no table named the downlink mode the bits were counted for
    detail = f"{link_text(link)}; downlink {args.downlink}"
    if kind == "scaling":
        for mode, table in data.items():
            print(f"\n{mode} scaling, time to F-F* <= {args.eps:g} ({detail}):")
            print(
                f"{'algorithm':<10}" + "".join(f"{r['M']:>16}" for r in next(iter(table.values())))
            )
            for name, rows in table.items():
                cells = [f"{_fmt(r['time'], '.3g')}s/{_fmt(r['speedup'], '.2f')}x" for r in rows]
                print(f"{name:<10}" + "".join(f"{c:>16}" for c in cells))
        print(
            "cells: modelled time to eps (measured compute + the link) / speedup over M = 1 "
            "(weak: M T(1)/T(M), strong: T(1)/T(M); ideal M); '-': eps not reached"
        )
        missed = [
            f"{name} at M={r['M']} ({mode})"
            for mode, table in data.items()
            for name, rows in table.items()
            for r in rows
            if not r["reached"]
        ]
    else:
        print(f"\nspeedup T(1)/T(P) to F-F* <= {args.eps:g} ({detail}):")
        procs = data["procs"]
        print(f"{'config':<20}{'ratio':>8}" + "".join(f"{'P=' + str(p):>9}" for p in procs))
        configs = list(dict.fromkeys(r["config"] for r in data["rows"]))
        for c in configs:
            rs = [r for r in data["rows"] if r["config"] == c]
            line = f"{c:<20}{_fmt(rs[0]['compression_ratio'], '.1f'):>8}"
            line += "".join(f"{_fmt(r['speedup'], '.2f'):>9}" for r in rs)
            print(line)
        print(
            "ratio: compression ratio, GD's upload bytes / the method's (per upload, at the "
            "largest P); P=N: speedup T(1)/T(N) of modelled times to eps; '-': eps not reached"
        )
        missed = [f"{r['config']} at P={r['P']}" for r in data["rows"] if r["time"] is None]
    if missed:  # the '-' cells said nothing of why
        print(
            f"laqcore: warning: eps {args.eps:g} not reached within --max-iterations "
            f"{args.max_iterations}: {', '.join(missed)}",
            file=sys.stderr,
        )
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"{kind}.json")
        cfg = {k: v for k, v in vars(args).items() if k != "func"}
        write_json(path, json_safe({"config": cfg, "link": link, kind: data}), indent=2)
        print(f"wrote {path}")
        # P = 1 only: an empty plot, and matplotlib's "No artists with labels" warning
        empty = kind == "ratio" and max(data["procs"]) == 1
        if not args.no_plots and empty:
            print("no plot: the speedups T(1)/T(P) need a P > 1 in --procs")
        written = []
        if not args.no_plots and not empty:
            from .study_plots import plot_ratio, plot_scaling

            plot = plot_scaling if kind == "scaling" else plot_ratio
            written.append(plot(args.out, data, title=f"{where}, eps {args.eps:g}"))
            print(f"wrote {written[0]}")
        remove_stale_plots(args.out, [f"{kind}.png"], written)


def _common(p: argparse.ArgumentParser, eps: float, iters: int) -> None:
    from .options import add_network_options

    p.add_argument("--eps", type=float, default=eps, help="tolerance on F - F*")
    p.add_argument("--max-iterations", "-K", type=int, default=iters, help="budget of each run")
    p.add_argument(
        "--data-seed", type=int, default=0, help="seed of the data (weak) and the test split"
    )
    p.add_argument(
        "--cache",
        default=None,
        help="run cache directory (default $LAQCORE_CACHE_DIR or ~/.cache/laqcore)",
    )
    p.add_argument("--out", default=None, help="directory for the JSON and the plot")
    p.add_argument("--no-plots", action="store_true", help="do not write the PNG plot")
    p.add_argument(
        "--per-worker-eval",
        action="store_true",
        help="evaluate the workers' gradients one by one instead of in one batched product "
        "(same values up to rounding; the time model charges one worker's own gradient "
        "time either way)",
    )
    add_network_options(p)


def _check_study(args: argparse.Namespace, names: list[str], values: tuple[str, str]) -> None:
    """Everything the study will use, before its first run: the algorithm names, the
    values lists, the budget, tolerance and output paths (a typo found after minutes of
    runs would lose them)."""
    from .._validate import check_positive_int, check_uint64
    from .checks import check_algorithm_names, check_flag, check_run_options
    from .runcache import check_study_cache

    link_from_args(args)
    check_algorithm_names(names)
    # the values of M or P; --downlink-chunks N needs N <= each, and M = P = 1 always runs
    # (was the simulator's "downlink_chunks must be in [0, 1]", naming no flag)
    _ints(*values)
    downlink_from_args(argparse.Namespace(**{**vars(args), "workers": 1}))
    check_run_options(args)
    check_flag(check_uint64, args, "data_seed")  # numpy's own message names no parameter
    # scaling's weak-scaling data (absent from the ratio study): -1 was numpy's "negative
    # dimensions are not allowed"
    check_flag(check_positive_int, args, "per_worker")
    check_flag(check_positive_int, args, "features")
    check_study_cache(args)


def _cmd_scaling(args: argparse.Namespace) -> int:
    _check_study(args, split_names(args.algorithms), (args.workers_list, "--workers-list"))
    _report(args, "scaling", scaling_study(args))
    return 0


def _cmd_ratio(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(name for name, _ in RATIO_CONFIGS))  # one per setting: once each
    _check_study(args, names, (args.procs, "--procs"))
    _report(args, "ratio", ratio_study(args))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``scaling`` and ``ratio-study`` (see :mod:`laqcore.cli`)."""
    p = sub.add_parser("scaling", help="time-to-accuracy speedup vs workers M (link model)")
    p.add_argument(
        "--mode",
        default="both",
        choices=["weak", "strong", "both"],
        help="weak (the data grow with M), strong (one data set split over M) or both",
    )
    p.add_argument(
        "--workers-list",
        default="1,4,16,64,256,1024",
        help="values of M (M = 1, the speedups' base, is always run)",
    )
    p.add_argument("--algorithms", default="gd,qgd,lag-wk,laq,qsgd,terngrad,topk-ef", help="names")
    p.add_argument("--per-worker", type=int, default=20, help="weak: samples per worker")
    p.add_argument("--features", type=int, default=50, help="weak: synthetic features")
    _common(p, 1e-3, 2000)
    p.set_defaults(func=_cmd_scaling)
    p = sub.add_parser("ratio-study", help="speedup on P workers vs the compression ratio")
    p.add_argument("--procs", default="1,2,4,8,16,64", help="values of P")
    _common(p, 1e-3, 2000)
    p.set_defaults(func=_cmd_ratio)
