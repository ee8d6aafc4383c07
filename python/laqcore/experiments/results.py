"""Result files of the simulator commands: ``OUT/results.json`` (the configuration and one
summary per run) and ``OUT/histories.json`` (the per-iteration curves of every run)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..serialization import json_safe, write_json

__all__ = ["RUN_KEYS", "histories_path", "laqcore_version", "run_config", "write_results"]


def __dir__() -> list[str]:
    return __all__


def run_config(args: argparse.Namespace, prob: Any) -> dict[str, Any]:
    cfg = {k: v for k, v in vars(args).items() if k != "func"}
    cfg["problem"] = prob.describe()
    cfg["f_star"] = prob.optimal_value()
    cfg["laqcore_version"] = laqcore_version()
    return cfg


def laqcore_version() -> str:
    from .. import __version__

    return __version__


#: Keys of every ``runs`` entry of results.json (what the tests and the README rely on).
RUN_KEYS = (
    "algorithm",
    "seed",
    "iterations",
    "uploads",
    "bits",
    "uplink_bits",
    "downlink_bits",
    "total_bits",
    "time_to_tolerance",
    "final_residual",
    "test_accuracy",
    "reached_tolerance",
)


def histories_path(out: str) -> str:
    """Where :func:`write_results` writes the per-iteration curves."""
    return os.path.join(out, "histories.json")


def write_results(
    out: str,
    config: dict[str, Any],
    results: list[Any],
    *,
    runs: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write ``out/results.json`` (config + run summaries) and ``out/histories.json``
    (per-iteration curves); return the results path.

    ``runs`` replaces the summaries (``sweep``'s carry the grid point), ``extra`` adds keys
    (``sweep``'s ``table`` and ``best``) in the same single write."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "results.json")
    if runs is None:
        runs = [r.summary() for r in results]
    # Each file whole or not at all (Ctrl-C during the write); the long one first, so a
    # new results.json never sits beside the previous run's curves.
    write_json(
        histories_path(out),
        [json_safe({"algorithm": r.algorithm, "seed": r.seed, **r.history}) for r in results],
    )
    write_json(path, json_safe({"config": config, "runs": runs, **(extra or {})}), indent=2)
    return path
