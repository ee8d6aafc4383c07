"""Running algorithms on a problem from command-line options: one run, or every algorithm
for every seed (``compare`` and ``sweep``)."""

from __future__ import annotations

import argparse
from typing import Any

from .options import algorithm_from_args, downlink_from_args, link_from_args

__all__ = ["laq_upload_rate", "run_many", "simulate_args"]


def __dir__() -> list[str]:
    return __all__


def simulate_args(prob: Any, alg: Any, args: argparse.Namespace) -> Any:
    """Simulate ``alg`` on ``prob`` with the run options (iterations, eps, progress) and
    the communication options (downlink mode, link/time model)."""
    from ..simulator import simulate

    compute_ms = getattr(args, "compute_ms", None)
    # In a compare over a mix, only the runs of codable algorithms are coded (and say so in
    # their results); check_experiment refused the flag when none of them is codable.
    coded = bool(getattr(args, "entropy_coding", False)) and type(alg).entropy_codable
    return simulate(
        prob,
        alg,
        max_iterations=args.max_iterations,
        eps=args.eps,
        eval_every=args.eval_every,
        progress=not args.quiet,
        downlink=downlink_from_args(args),
        downlink_chunks=getattr(args, "downlink_chunks", None) or 0,
        link=link_from_args(args),
        compute_s=None if compute_ms is None else compute_ms / 1e3,
        entropy_coding=coded,
    )


def laq_upload_rate(uploads: int, iterations: int, workers: int) -> float:
    """random-select's ``--upload-rate auto``: LAQ's uploads per worker and iteration."""
    if iterations == 0:
        raise ValueError("--upload-rate auto needs 'laq' earlier in --algorithms")
    return max(float(uploads) / float(iterations * workers), 1e-6)


def _auto_rate(results: list[Any], workers: int) -> float:
    laq = next((r for r in results if r.algorithm == "laq"), None)
    if laq is None:
        raise ValueError("--upload-rate auto needs 'laq' earlier in --algorithms")
    return laq_upload_rate(laq.uploads, laq.iterations, workers)


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
    from ..algorithms import get_algorithm

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
            res = simulate_args(prob, algorithm_from_args(name, args, **extra), args)
            done.append(res)
        results.extend(done)
    return results
