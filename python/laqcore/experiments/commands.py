"""The ``problem``, ``run`` and ``compare`` subcommands of the ``laqcore`` CLI (the
many-worker simulator; ``sweep`` is in :mod:`laqcore.experiments.sweep`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._blas import blas_threads
from .checks import check_experiment, check_problem_options, check_run_options
from .options import (
    add_algorithm_options,
    add_network_options,
    add_problem_options,
    add_run_options,
    algorithm_from_args,
    algorithm_names,
    downlink_from_args,
    link_from_args,
    problem_from_args,
    setup_cache,
)
from .plots import write_plots
from .results import histories_path, run_config, write_results
from .runs import run_many, simulate_args
from .tables import format_sweep, format_table, has_tolerance

__all__ = ["add_parser", "warn_stopped_short"]


def __dir__() -> list[str]:
    return __all__


def _outcome(result: Any) -> tuple[Any, ...]:
    """What a run produced (the seed and timings aside): equal for runs that are the same."""
    return (result.iterations, result.uploads, result.bits, result.downlink_bits, result.final_loss)


def warn_stopped_short(args: argparse.Namespace, results: list[Any]) -> None:
    """One stderr line naming the runs that used their whole budget before the tolerance
    (runs without one, nonconvex or ``--eps 0``, are not "short")."""
    stopped = [
        r.algorithm
        for r in results
        if has_tolerance(r) and not r.reached_tolerance and not r.diverged
    ]
    if stopped:
        print(
            f"laqcore: warning: {', '.join(dict.fromkeys(stopped))} stopped at the budget "
            f"(--max-iterations {args.max_iterations}) before F-F* <= {args.eps:g}",
            file=sys.stderr,
        )


def _finish(args: argparse.Namespace, prob: Any, results: list[Any]) -> None:
    if getattr(prob, "normalize", None):
        print(f"features: {prob.normalize} normalisation (--normalize)")
    print(format_table(results))
    if getattr(args, "seeds", 1) > 1:
        from .sweep import aggregate

        rows = [r.summary() for r in results]
        names = list(dict.fromkeys(r.algorithm for r in results))
        table = [
            {"algorithm": n, **aggregate([r for r in rows if r["algorithm"] == n])} for n in names
        ]
        print(f"\nmean ± std over {args.seeds} seeds:")
        print(format_sweep(table, []))
        same = [n for n in names if len({_outcome(r) for r in results if r.algorithm == n}) == 1]
        if same:
            print(
                f"note: {', '.join(same)} gave the same run for every seed (nothing random: "
                f"full gradients, deterministic rounding), so {'its' if len(same) == 1 else 'their'}"
                " ± is 0; `laqcore sweep --seeds` also varies the data split"
            )
    warn_stopped_short(args, results)
    if not args.out:
        return
    path = write_results(args.out, run_config(args, prob), results)
    print(f"wrote {path} (summaries) and {histories_path(args.out)} (per-iteration curves)")
    write_plots(args.out, results, draw=not args.no_plots, title=prob.name)


def _cmd_problem(args: argparse.Namespace) -> int:
    check_problem_options(args)
    check_run_options(args)
    setup_cache(args)
    prob = problem_from_args(args)
    info = prob.describe()
    if prob.convex:
        info["f_star"] = prob.optimal_value()
    try:
        info["smoothness"] = [round(float(v), 6) for v in prob.smoothness()]
    except ValueError:
        info["smoothness"] = None
    print(json.dumps(info, indent=2))
    return 0


def _check_network(args: argparse.Namespace) -> None:
    """Bad --downlink / link values fail before any work starts."""
    downlink_from_args(args)
    link_from_args(args)


def _cmd_run(args: argparse.Namespace) -> int:
    _check_network(args)
    check_experiment(args, [args.algorithm])
    setup_cache(args)
    with blas_threads(args.blas_threads):
        prob = problem_from_args(args)
        alg = algorithm_from_args(args.algorithm, args)
        _finish(args, prob, [simulate_args(prob, alg, args)])
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    _check_network(args)
    names = check_experiment(args, args.algorithms)
    setup_cache(args)
    with blas_threads(args.blas_threads):
        prob = problem_from_args(args)
        results = run_many(prob, names, args, list(range(args.seed, args.seed + args.seeds)))
        _finish(args, prob, results)
    return 0


def add_parser(sub: Any) -> None:
    """Register this module's subcommands (see :mod:`laqcore.cli`)."""
    p = sub.add_parser(
        "problem", help="describe a problem (sizes, per-worker smoothness, optimal value F*)"
    )
    add_problem_options(p)
    p.add_argument("--cache-dir", default=None, help="where F* values are cached")
    p.set_defaults(func=_cmd_problem)

    p = sub.add_parser("run", help="simulate one algorithm; writes OUT/results.json")
    p.add_argument("--algorithm", "-a", default="laq", help=f"one of: {algorithm_names()}")
    add_problem_options(p)
    add_algorithm_options(p)
    add_run_options(p)
    add_network_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "compare",
        help="simulate several algorithms on one problem: table, results.json, plots",
    )
    p.add_argument(
        "--algorithms",
        default="gd,qgd,lag-wk,laq",
        help=f"comma-separated names, run in this order: {algorithm_names()}",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="algorithm seeds seed, seed+1, ... (minibatches, rounding; the data "
        "stay fixed: `laqcore sweep --seeds` also varies the data split)",
    )
    add_problem_options(p)
    add_algorithm_options(p)
    add_run_options(p)
    add_network_options(p)
    p.set_defaults(func=_cmd_compare)
