"""Simulator subcommands of the ``laqcore`` CLI: ``problem`` (so far).

:func:`add_problem_options` and :func:`problem_from_args` are shared with every command that
builds a problem (``run``, ``compare``, ``sweep`` and the distributed ``launch``), so the
same flags mean the same thing everywhere.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["add_parser", "add_problem_options", "problem_from_args", "problem_kwargs"]


def __dir__() -> list[str]:
    return __all__


def add_problem_options(p: argparse.ArgumentParser) -> None:
    """Flags that define the problem: data, model, workers, partition."""
    g = p.add_argument_group("problem")
    g.add_argument("--dataset", default="digits",
                   help="digits (embedded, default), mnist (needs --data-dir), libsvm:PATH, "
                   "synthetic, synthetic-binary, synthetic-regression, synthetic-lag, "
                   "synthetic-lag-binary")
    g.add_argument("--data-dir", default=None, help="directory holding local data files")
    g.add_argument("--model", default="softmax",
                   choices=["softmax", "logistic", "least-squares", "mlp"])
    g.add_argument("--workers", "-M", type=int, default=10, help="number of workers M")
    g.add_argument("--partition", default="contiguous",
                   choices=["contiguous", "iid", "dirichlet"])
    g.add_argument("--dirichlet-alpha", type=float, default=0.5,
                   help="concentration of the Dirichlet partition (small = skewed)")
    g.add_argument("--test-fraction", type=float, default=0.2,
                   help="held-out fraction when the dataset has no test set")
    g.add_argument("--l2", type=float, default=0.01,
                   help="L2 weight: f_m carries (l2/2)||theta||^2 (paper: 0.01)")
    g.add_argument("--hidden", type=int, default=200, help="hidden units of the mlp model")
    g.add_argument("--max-samples", type=int, default=None,
                   help="keep only this many training samples (quick runs)")
    g.add_argument("--data-seed", type=int, default=0,
                   help="seed of the test split, random partitions and MLP initialisation")


def problem_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`laqcore.problems.make_problem` given by the flags."""
    return {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "model": args.model,
        "workers": args.workers,
        "partition_kind": args.partition,
        "dirichlet_alpha": args.dirichlet_alpha,
        "test_fraction": args.test_fraction,
        "l2": args.l2,
        "hidden": args.hidden,
        "max_samples": args.max_samples,
        "seed": args.data_seed,
    }


def problem_from_args(args: argparse.Namespace) -> Any:
    from .problems import make_problem

    return make_problem(**problem_kwargs(args))


def _cmd_problem(args: argparse.Namespace) -> int:
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


def add_parser(sub: Any) -> None:
    """Register this module's subcommands (see :mod:`laqcore.cli`)."""
    p = sub.add_parser(
        "problem", help="describe a problem (sizes, per-worker smoothness, optimal value F*)"
    )
    add_problem_options(p)
    p.set_defaults(func=_cmd_problem)
