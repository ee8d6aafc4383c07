"""Simulator subcommands of the ``laqcore`` CLI: ``problem``, ``run``, ``compare`` (and
``sweep``, in :mod:`laqcore.sweep`).

:func:`add_problem_options` and :func:`problem_from_args` are shared with every command that
builds a problem (``run``, ``compare``, ``sweep`` and the distributed ``launch``), so the
same flags mean the same thing everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

from ._blas import blas_threads

__all__ = [
    "add_algorithm_options",
    "add_parser",
    "add_problem_options",
    "add_run_options",
    "algorithm_from_args",
    "algorithm_overrides",
    "format_table",
    "plot_results",
    "problem_from_args",
    "problem_kwargs",
    "run_many",
    "write_results",
]


def __dir__() -> list[str]:
    return __all__


def add_problem_options(p: argparse.ArgumentParser) -> None:
    """Flags that define the problem: data, model, workers, partition."""
    g = p.add_argument_group("problem")
    g.add_argument(
        "--dataset",
        default="digits",
        help="digits (embedded, default), mnist (needs --data-dir), libsvm:PATH, "
        "synthetic, synthetic-binary, synthetic-regression, synthetic-lag, "
        "synthetic-lag-binary",
    )
    g.add_argument("--data-dir", default=None, help="directory holding local data files")
    g.add_argument(
        "--model", default="softmax", choices=["softmax", "logistic", "least-squares", "mlp"]
    )
    g.add_argument("--workers", "-M", type=int, default=10, help="number of workers M")
    g.add_argument("--partition", default="contiguous", choices=["contiguous", "iid", "dirichlet"])
    g.add_argument(
        "--dirichlet-alpha",
        type=float,
        default=0.5,
        help="concentration of the Dirichlet partition (small = skewed)",
    )
    g.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="held-out fraction when the dataset has no test set",
    )
    g.add_argument(
        "--l2",
        type=float,
        default=0.01,
        help="L2 weight: f_m carries (l2/2)||theta||^2 (paper: 0.01)",
    )
    g.add_argument("--hidden", type=int, default=200, help="hidden units of the mlp model")
    g.add_argument(
        "--max-samples",
        type=int,
        default=None,
        help="keep only this many training samples (quick runs)",
    )
    g.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the test split, random partitions and MLP initialisation",
    )


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


def add_algorithm_options(p: argparse.ArgumentParser) -> None:
    """Flags for algorithm hyper-parameters; unset flags keep each algorithm's default."""
    g = p.add_argument_group(
        "algorithm parameters (unset = each algorithm's default, official LAQ code values)"
    )
    g.add_argument("--alpha", type=float, help="step size (LAQ/GD: 0.02, stochastic: 0.008)")
    g.add_argument("--bits", type=int, help="bits per coordinate (LAQ/QGD: 4, SLAQ: 3)")
    g.add_argument(
        "--block-size",
        type=int,
        dest="block_size",
        help="LAQ quantizer: one radius per block of this many coordinates (a multiple of 8; "
        "default: one global radius, as in the paper)",
    )
    g.add_argument("--D", type=int, dest="D", help="lazy-rule history depth (10)")
    g.add_argument("--ck", type=float, help="lazy-rule weight: xi_d = ck/D (0.8)")
    g.add_argument("--xi", type=float, help="constant xi_d instead of the ck schedule")
    g.add_argument(
        "--t-bar",
        type=int,
        dest="t_bar",
        help="forced upload after t_bar skips (100; 0 = upload every iteration)",
    )
    g.add_argument("--batch", type=int, help="minibatch per worker (stochastic methods, 500)")
    g.add_argument("--levels", type=int, help="QSGD levels s (10)")
    g.add_argument("--bucket-size", type=int, dest="bucket_size", help="QSGD bucket (512)")
    g.add_argument("--ratio", type=float, help="kept fraction for sparsifiers (0.1)")
    g.add_argument("--period", type=int, help="PQASGD averaging period (10)")
    g.add_argument("--max-delay", type=int, dest="max_delay", help="AsyLPG delay bound (4)")
    g.add_argument("--epoch", type=int, help="AsyLPG SVRG epoch length (50)")
    g.add_argument("--model-bits", type=int, dest="model_bits", help="AsyLPG model bits (8)")
    g.add_argument("--momentum", type=float, help="Acc-AsyLPG momentum (0.3)")
    g.add_argument(
        "--upload-rate",
        dest="upload_rate",
        default=None,
        help="random-select: upload probability, or 'auto' = LAQ's measured rate",
    )
    g.add_argument(
        "--local-steps",
        type=int,
        dest="local_steps",
        help="one-shot averaging: local steps before the upload (500)",
    )
    g.add_argument("--threshold", type=float, help="dynamic averaging divergence threshold")


def add_run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--max-iterations", "-K", type=int, default=5000)
    g.add_argument("--eps", type=float, default=1e-6, help="stop at F - F* <= eps (1e-6)")
    g.add_argument(
        "--eval-every",
        type=int,
        default=10,
        help="iterations between test-accuracy / gradient-norm evaluations",
    )
    g.add_argument("--seed", type=int, default=0, help="algorithm seed (minibatches, rounding)")
    g.add_argument("--out", default=None, help="output directory (results.json, plots)")
    g.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    g.add_argument(
        "--cache-dir",
        default=None,
        help="where F* values are cached (default $LAQCORE_CACHE_DIR or ~/.cache/laqcore)",
    )
    g.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="OpenBLAS threads for the per-worker products (default 1: small "
        "products run faster unthreaded, much faster on a busy machine; "
        "0 = leave numpy's setting)",
    )


PARAM_FLAGS = (
    "alpha",
    "bits",
    "block_size",
    "D",
    "ck",
    "xi",
    "t_bar",
    "batch",
    "levels",
    "bucket_size",
    "ratio",
    "period",
    "max_delay",
    "epoch",
    "model_bits",
    "momentum",
    "upload_rate",
    "local_steps",
    "threshold",
)


def algorithm_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Hyper-parameters given on the command line (unset ones omitted)."""
    out: dict[str, Any] = {}
    for name in PARAM_FLAGS:
        v = getattr(args, name, None)
        if v is None or (name == "upload_rate" and v == "auto"):
            continue
        if name == "upload_rate":
            try:
                v = float(v)
            except ValueError:
                raise ValueError(f"--upload-rate must be a number or 'auto', got {v!r}") from None
        out[name] = v
    return out


def algorithm_from_args(name: str, args: argparse.Namespace, **extra: Any) -> Any:
    """Build algorithm ``name`` from the CLI flags (plus ``extra`` overrides)."""
    from .algorithms import get_algorithm

    kw = algorithm_overrides(args)
    kw.update(extra)
    kw.setdefault("seed", getattr(args, "seed", 0))
    return get_algorithm(name, **kw)


def _setup_cache(args: argparse.Namespace) -> None:
    if getattr(args, "cache_dir", None):
        os.environ["LAQCORE_CACHE_DIR"] = args.cache_dir


def _simulate(prob: Any, alg: Any, args: argparse.Namespace) -> Any:
    from .simulator import simulate

    return simulate(
        prob,
        alg,
        max_iterations=args.max_iterations,
        eps=args.eps,
        eval_every=args.eval_every,
        progress=not args.quiet,
    )


def _config(args: argparse.Namespace, prob: Any) -> dict[str, Any]:
    cfg = {k: v for k, v in vars(args).items() if k != "func"}
    cfg["problem"] = prob.describe()
    cfg["f_star"] = prob.optimal_value()
    cfg["laqcore_version"] = _version()
    return cfg


def _version() -> str:
    from . import __version__

    return __version__


RUN_KEYS = (
    "algorithm",
    "seed",
    "iterations",
    "uploads",
    "bits",
    "final_residual",
    "test_accuracy",
    "reached_tolerance",
)


def write_results(out: str, config: dict[str, Any], results: list[Any]) -> str:
    """Write ``out/results.json`` (config + run summaries) and ``out/histories.json``
    (per-iteration curves); return the results path."""
    from .simulator import _json_safe

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.json")
    runs = [r.summary() for r in results]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(_json_safe({"config": config, "runs": runs}), fh, indent=2)
    with open(os.path.join(out, "histories.json"), "w", encoding="utf-8") as fh:
        json.dump(
            [_json_safe({"algorithm": r.algorithm, "seed": r.seed, **r.history}) for r in results],
            fh,
        )
    return path


def format_table(results: list[Any]) -> str:
    """The paper-style table: iterations, uploads, bits, accuracy (and bits relative to GD)."""
    gd_bits = next((r.bits for r in results if r.algorithm == "gd"), None)
    head = f"{'algorithm':<14}{'seed':>5}{'iterations':>11}{'uploads':>9}{'bits':>11}"
    head += f"{'bits/GD':>9}{'F-F*':>10}{'test acc':>9}  reached"
    lines = [head, "-" * len(head)]
    for r in results:
        rel = f"{r.bits / gd_bits:.4f}" if gd_bits else "-"
        res = "-" if r.final_residual is None else f"{r.final_residual:.1e}"
        reached = "yes" if r.reached_tolerance else ("DIVERGED" if r.diverged else "no")
        lines.append(
            f"{r.algorithm:<14}{r.seed:>5}{r.iterations:>11}{r.uploads:>9}{r.bits:>11.3e}"
            f"{rel:>9}{res:>10}{r.test_accuracy:>9.4f}  {reached}"
        )
    return "\n".join(lines)


def plot_results(out: str, results: list[Any], *, title: str = "") -> list[str]:
    """PNG plots of the residual vs iterations / uploads / bits (log y; the loss for
    nonconvex problems, which have no F*). Returns the paths, or raises ImportError with an
    installation hint when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "plots need matplotlib: pip install 'laqcore[plot]' (or pass --no-plots)"
        ) from err
    # Nonconvex problems have no F*: plot the loss itself.
    metric = "residual"
    if not any(
        np.isfinite(np.asarray(r.history.get("residual", []), dtype=float)).any() for r in results
    ):
        metric = "loss"
    paths = []
    for key, label in (
        ("iterations", "iterations"),
        ("uploads", "uploads (communication rounds)"),
        ("bits", "uplink bits"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        drawn = 0
        for r in results:
            y = np.asarray(r.history.get(metric, []), dtype=np.float64)
            if y.size == 0 or not np.isfinite(y).any():
                continue
            drawn += 1
            x = np.arange(y.size) if key == "iterations" else np.asarray(r.history[key])
            y = np.where(y > 0, y, np.nan)
            name = r.algorithm if r.seed == 0 else f"{r.algorithm} (seed {r.seed})"
            ax.plot(x, y, label=name, lw=1.5)
        ax.set_yscale("log")
        if key == "bits":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("F - F*" if metric == "residual" else "F (loss)")
        if title:
            ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out, f"{metric}_vs_{key}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _finish(args: argparse.Namespace, prob: Any, results: list[Any]) -> None:
    print(format_table(results))
    if not args.out:
        return
    path = write_results(args.out, _config(args, prob), results)
    print(f"wrote {path}")
    if not args.no_plots:
        try:
            for p in plot_results(args.out, results, title=prob.name):
                print(f"wrote {p}")
        except ImportError as err:
            print(f"laqcore: {err}", file=sys.stderr)


def _split_names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError("--algorithms must name at least one algorithm")
    return names


def _cmd_problem(args: argparse.Namespace) -> int:
    _setup_cache(args)
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


def _cmd_run(args: argparse.Namespace) -> int:
    _setup_cache(args)
    with blas_threads(args.blas_threads):
        prob = problem_from_args(args)
        alg = algorithm_from_args(args.algorithm, args)
        _finish(args, prob, [_simulate(prob, alg, args)])
    return 0


def _auto_rate(results: list[Any], workers: int) -> float:
    laq = next((r for r in results if r.algorithm == "laq"), None)
    if laq is None or laq.iterations == 0:
        raise ValueError("--upload-rate auto needs 'laq' earlier in --algorithms")
    rate = float(laq.uploads) / float(laq.iterations * workers)
    return max(rate, 1e-6)


def run_many(
    prob: Any,
    names: list[str],
    args: argparse.Namespace,
    seeds: list[int],
    *,
    alpha_scale: float = 1.0,
) -> list[Any]:
    """Run every algorithm for every seed (random-select at LAQ's rate with ``auto``).

    ``alpha_scale`` multiplies each algorithm's step (``--alpha`` or its own default).
    """
    from .algorithms import get_algorithm

    results: list[Any] = []
    for seed in seeds:
        done: list[Any] = []
        for name in names:
            extra: dict[str, Any] = {"seed": seed}
            if alpha_scale != 1.0:
                base = args.alpha if args.alpha is not None else get_algorithm(name).params.alpha
                extra["alpha"] = base * alpha_scale
            if name.startswith("random") and getattr(args, "upload_rate", None) in (None, "auto"):
                if any(r.algorithm == "laq" for r in done):
                    extra["upload_rate"] = _auto_rate(done, prob.num_workers)
                elif args.upload_rate == "auto":
                    raise ValueError("--upload-rate auto needs 'laq' earlier in --algorithms")
            res = _simulate(prob, algorithm_from_args(name, args, **extra), args)
            done.append(res)
        results.extend(done)
    return results


def _cmd_compare(args: argparse.Namespace) -> int:
    _setup_cache(args)
    with blas_threads(args.blas_threads):
        prob = problem_from_args(args)
        names = _split_names(args.algorithms)
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
    p.add_argument("--algorithm", "-a", default="laq", help="algorithm name (see compare)")
    add_problem_options(p)
    add_algorithm_options(p)
    add_run_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "compare",
        help="simulate several algorithms on one problem: table, results.json, plots",
    )
    p.add_argument(
        "--algorithms",
        default="gd,qgd,lag-wk,laq",
        help="comma-separated names: gd, qgd, lag-wk, lag-ps, laq, sgd, qsgd, ssgd, "
        "slaq, terngrad, ef-sign, topk-ef, sparse-qsgd, pqasgd, asylpg, "
        "sparse-asylpg, acc-asylpg, random-select, one-shot, dynamic-avg",
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
    p.set_defaults(func=_cmd_compare)

    from .sweep import add_sweep_parser

    add_sweep_parser(sub)
