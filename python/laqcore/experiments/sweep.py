"""``laqcore sweep``: parameter grids with error bars, and per-method step-size tuning.

* ``--grid NAME=v1,v2,...`` (repeatable) spans a grid over any algorithm parameter
  (``alpha``, ``D``, ``bits``, ``ck``, ...) or ``workers``; every point runs every algorithm
  for ``--seeds N`` seeds and the table reports mean and standard deviation. Seed ``s``
  changes both the algorithm's randomness and the data: the held-out split and random
  partitions use ``--data-seed + s``, so deterministic methods get error bars too (a
  different training set per seed).
* ``--tune-step`` runs every algorithm over ``--step-grid`` and keeps, per algorithm, the step
  that reaches the tolerance with the fewest uplink bits (or, if none does, the lowest final
  residual; on a nonconvex model, which has none, the lowest final loss): every baseline is
  compared at its best step size.
* With a ``workers`` grid, ``alpha * M`` is kept fixed at its ``M = 10`` value (on by
  default, ``--no-scale-alpha`` turns it off), so worker scaling is not confounded with the
  effective step of ``theta -= alpha sum_m g_m`` (with a fixed step, M = 2 reaches no
  tolerance in the default budget).

Examples
--------
.. code-block:: console

    $ laqcore sweep --algorithms laq --grid alpha=0.01,0.015,0.02,0.04 --seeds 5
    $ laqcore sweep --algorithms gd,lag-wk,laq --grid workers=1,2,4,8,16
    $ laqcore sweep --algorithms gd,qgd,lag-wk,laq --tune-step
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
from typing import Any

import numpy as np

from .._blas import blas_threads
from ..algorithms.base import Params
from .checks import check_experiment, check_seed_range
from .options import (
    PARAM_FLAGS,
    DefaultInt,
    add_algorithm_options,
    add_network_options,
    add_problem_options,
    add_run_options,
    algorithm_names,
    downlink_from_args,
    link_from_args,
    problem_kwargs,
    setup_cache,
    split_names,
)
from .plots import write_plots
from .results import histories_path, write_results
from .runs import run_many
from .tables import format_sweep

__all__ = ["add_parser", "aggregate", "parse_grid", "run_sweep", "sweep_grid"]


def __dir__() -> list[str]:
    return __all__


#: Grid keys whose values are integers: the algorithms' integer parameters, plus the worker
#: count and the block size (optional in Params, so not in its list).
_INT_KEYS = {*Params.INTEGER_FIELDS, "workers", "block_size"}


def _parse_flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["alpha=0.01,0.02", "D=5,10"]`` -> ``{"alpha": [0.01, 0.02], "D": [5, 10]}``."""
    grid: dict[str, list[Any]] = {}
    allowed = set(PARAM_FLAGS) | {"workers"}
    for spec in specs:
        if "=" not in spec:
            raise ValueError(f"--grid expects NAME=v1,v2,..., got {spec!r}")
        key, vals = spec.split("=", 1)
        key = key.strip().replace("-", "_")
        if key not in allowed:
            raise ValueError(f"--grid: unknown parameter {key!r}; one of {sorted(allowed)}")
        if key in grid:  # the later one silently replaced the earlier
            raise ValueError(f"--grid {key} given twice; put its values in one --grid {key}=...")
        conv: Any = int if key in _INT_KEYS else float
        kind = f"{conv.__name__}s"
        if key == "lag_forced":  # a flag: 0.0/1.0 would be refused by Params as non-bools
            conv, kind = _parse_flag, "true/false (or 1/0)"
        try:
            values = [conv(v) for v in vals.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--grid {key}: values must be {kind}, got {vals!r}") from None
        if not values:
            raise ValueError(f"--grid {key}: no values")
        grid[key] = _unique(values)
    return grid


def _unique(values: list[Any]) -> list[Any]:
    """``values`` without repeats, in order: a value given twice ran its point twice and
    the table pooled both, as if over twice the seeds (``runs`` and the std were wrong)."""
    return list(dict.fromkeys(values))


#: The most runs a sweep draws in its plots (their legends and curves stay readable).
MAX_PLOTTED_RUNS = 24


def _stats(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample std (ddof 1) of the finite values; the std is None from one value
    (it was 0.0, which a table showed as a measured "±0" spread)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None


def _finite(x: float) -> float:
    """``x``, or +inf for NaN (no value) and overflow, for picking minima."""
    return x if math.isfinite(x) else math.inf


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std over seeds of one grid point's runs (``KEY_std`` None where fewer
    than two runs have a value: one seed, or one seed that reached the tolerance)."""
    out: dict[str, Any] = {"runs": len(rows)}
    for key in (
        "iterations",
        "uploads",
        "bits",
        "downlink_bits",
        "total_bits",
        "time_to_tolerance",
        "wall_time",
        "test_accuracy",
        "final_residual",
        "final_loss",
    ):
        mean, std = _stats([r.get(key, math.nan) for r in rows])
        out[f"{key}_mean"], out[f"{key}_std"] = mean, std
    out["reached_fraction"] = float(np.mean([bool(r["reached_tolerance"]) for r in rows]))
    return out


def sweep_grid(args: argparse.Namespace) -> dict[str, list[Any]]:
    """The grid of ``--grid`` specs, plus ``alpha`` over ``--step-grid`` with ``--tune-step``."""
    grid = parse_grid(args.grid or [])
    # An algorithm flag for a parameter the grid spans (or --tune-step's alpha) was silently
    # overridden by the grid's values, and results.json's config still showed the flag's.
    # (Those flags default to None; --workers's default 10 is a DefaultInt until it is given.)
    spanned = [*grid, *(["alpha"] if args.tune_step else [])]
    both = [
        k
        for k in spanned
        if (k in PARAM_FLAGS and getattr(args, k, None) is not None)
        or (k == "workers" and not isinstance(args.workers, DefaultInt))
    ]
    if both:
        k = both[0]
        flag = "--" + k.replace("_", "-")
        source = "--tune-step" if k == "alpha" and args.tune_step else f"--grid {k}"
        raise ValueError(f"{flag} and {source} both set {k}: give its values in one of them")
    if args.tune_step:
        if "alpha" in grid:
            raise ValueError("--tune-step sets alpha itself; do not also put alpha in --grid")
        try:
            grid["alpha"] = _unique([float(v) for v in args.step_grid.split(",") if v.strip()])
        except ValueError:
            raise ValueError(
                f"--step-grid expects comma-separated step sizes, got {args.step_grid!r}"
            ) from None
        if not grid["alpha"]:
            raise ValueError("--step-grid: no step sizes")
    return grid


def run_sweep(args: argparse.Namespace) -> dict[str, Any]:
    """Run the grid (or the step tuning) described by ``args``; return the results dict."""
    from ..problems import make_problem

    names = split_names(args.algorithms)
    grid = sweep_grid(args)
    keys = list(grid)
    points = [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())] or [{}]
    problems: dict[tuple[int, int], Any] = {}
    rows: list[dict[str, Any]] = []
    results_all: list[Any] = []
    labels: list[str] = []  # legend entries: the algorithm, the grid point and the seed
    for point in points:
        M = int(point.get("workers", args.workers))
        for s in range(args.seeds):
            key = (M, s)
            if key not in problems:
                kw = problem_kwargs(args)
                kw.update(workers=M, seed=args.data_seed + s)
                problems[key] = make_problem(**kw)
            prob = problems[key]
            ns = argparse.Namespace(**vars(args))
            for k, v in point.items():
                if k != "workers":
                    setattr(ns, k, v)
            scale = 10.0 / M if args.scale_alpha and "workers" in point else 1.0
            for res in run_many(prob, names, ns, [args.seed + s], alpha_scale=scale):
                row = res.summary()
                row.update({f"grid_{k}": v for k, v in point.items()})
                row["alpha"] = res.params["alpha"]
                row["data_seed"] = args.data_seed + s
                rows.append(row)
                results_all.append(res)
                at = "".join(f" {k}={v}" for k, v in point.items())
                seed = f" (seed {res.seed})" if args.seeds > 1 else ""
                labels.append(f"{res.algorithm}{at}{seed}")
    table: list[dict[str, Any]] = []
    for point in points:
        for name in names:
            sel = [
                r
                for r in rows
                if r["algorithm"] == name and all(r[f"grid_{k}"] == v for k, v in point.items())
            ]
            table.append({"algorithm": name, **point, **aggregate(sel)})
    best: dict[str, Any] = {}
    if args.tune_step:
        for name in names:
            cands = [t for t in table if t["algorithm"] == name]
            reached = [t for t in cands if t["reached_fraction"] == 1.0]
            if reached:
                pick = min(reached, key=lambda t: t["bits_mean"])
            else:  # the lowest final F - F*, or, without an F* (nonconvex), the lowest loss
                pick = min(
                    cands,
                    key=lambda t: (
                        _finite(t["final_residual_mean"]),
                        _finite(t["final_loss_mean"]),
                    ),
                )
            best[name] = pick
    return {
        "points": points,
        "rows": rows,
        "table": table,
        "best": best,
        "results": results_all,
        "labels": labels,
    }


def _cmd_sweep(args: argparse.Namespace) -> int:
    downlink_from_args(args)
    link_from_args(args)
    check_experiment(args, args.algorithms, grid=sweep_grid(args))
    check_seed_range(args, "data_seed")  # seed s also shifts the data seed
    setup_cache(args)
    with blas_threads(args.blas_threads):
        out = run_sweep(args)
    keys = list(out["points"][0]) if out["points"] else []
    print(format_sweep(out["table"], keys, out["results"]))
    if args.scale_alpha and "workers" in keys and "alpha" not in keys:
        # the steps the rows ran with, shown nowhere: the table has no alpha column
        steps = {(r["algorithm"], r["grid_workers"]): r["alpha"] for r in out["rows"]}
        print(
            "steps (--scale-alpha: alpha x 10 / M): "
            + ", ".join(f"{n} M={m}: {a:g}" for (n, m), a in steps.items())
        )
    if out["best"]:
        print("\nbest step size per algorithm (reaches eps with fewest bits):")
        for name, t in out["best"].items():
            # Where no step reached eps on every seed the pick is the lowest final F-F*.
            why = (
                "" if t["reached_fraction"] == 1.0 else "  (no step reached eps: lowest F-F*/loss)"
            )
            print(
                f"  {name:<14} alpha={t['alpha']:<8} bits={t['bits_mean']:.3e} "
                f"iterations={t['iterations_mean']:.0f} reached={t['reached_fraction']:.2f}{why}"
            )
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        cfg = {k: v for k, v in vars(args).items() if k != "func"}
        # results.json also carries the per-point aggregates and the tuned steps, in the one
        # write (it was written, read back and written again: Ctrl-C in between left the
        # plain summaries, without the table and the runs' grid points)
        extra = {"table": out["table"], "best": out["best"]}
        path = write_results(args.out, cfg, out["results"], runs=out["rows"], extra=extra)
        print(f"wrote {path} (summaries, table) and {histories_path(args.out)} (curves)")
        draw = not args.no_plots and len(out["results"]) <= MAX_PLOTTED_RUNS
        if not args.no_plots and not draw:  # it said nothing, and left older plots there
            print(
                f"no plots: {len(out['results'])} runs, more than {MAX_PLOTTED_RUNS} curves "
                "to a plot (fewer grid points or seeds; the curves are in histories.json)"
            )
        write_plots(args.out, out["results"], draw=draw, names=out["labels"])
    return 0


def add_parser(sub: Any) -> None:
    """Register ``sweep`` (see :mod:`laqcore.cli`)."""
    p = sub.add_parser(
        "sweep", help="parameter grid over seeds (mean/std), worker scaling, step tuning"
    )
    p.add_argument(
        "--algorithms", default="laq", help=f"comma-separated names: {algorithm_names()}"
    )
    p.add_argument(
        "--grid",
        action="append",
        metavar="NAME=v1,v2,...",
        help="grid axis over a parameter (alpha, D, bits, ck, ...) or workers; repeatable",
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds per grid point (data + algorithm)")
    p.add_argument(
        "--tune-step",
        action="store_true",
        help="per-algorithm step-size grid; reports each method's best step",
    )
    p.add_argument(
        "--step-grid", default="0.005,0.01,0.02,0.04,0.08", help="step sizes tried by --tune-step"
    )
    p.add_argument(
        "--scale-alpha",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with a workers grid: alpha = alpha * 10 / M, keeping alpha*M fixed (default on)",
    )
    add_problem_options(p)
    add_algorithm_options(p)
    add_run_options(p)
    add_network_options(p)
    p.set_defaults(func=_cmd_sweep)
