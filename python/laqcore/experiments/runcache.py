"""Cached simulator runs for the link studies (``scaling``, ``ratio-study``, ``regime-map``).

A study needs each (problem, algorithm, parameters) run once: the time model is applied
afterwards to the recorded payload sizes (:class:`laqcore.network.TrafficTrace`), so one run
serves every link setting. Runs are cached under ``CACHE/runs/<key>.json`` (the run summary)
and ``<key>.npz`` (the trace), ``key`` a hash of everything that defines the run, including
the code that produced it (:func:`_code_fingerprint`): a fixed or changed algorithm reruns.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..network import Link, TrafficTrace, round_times
from ..serialization import json_safe, write_json

__all__ = ["CachedRun", "check_study_cache", "run_cached", "run_for_study", "study_cache"]


def __dir__() -> list[str]:
    return __all__


@functools.cache
def _code_fingerprint() -> str:
    """A hash of the installed laqcore: every Python module of the package and the compiled
    extension. Part of every run's cache key, so that a behaviour fix or a new version never
    serves runs of the code before it (the key used to hold a manual counter, which a fix
    could forget to bump). Computed once per process (about 2 MB read)."""
    from .. import _core

    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    files = sorted(package.rglob("*.py")) + [Path(_core.__file__).resolve()]
    for path in files:
        digest.update(
            str(path.relative_to(package) if package in path.parents else path.name).encode()
        )
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


@dataclass
class CachedRun:
    """One run's summary (``results.json`` keys) and its traffic trace."""

    summary: dict[str, Any]
    trace: TrafficTrace

    @property
    def reached(self) -> bool:
        return bool(self.summary["reached_tolerance"])

    def time_to_tolerance(self, link: Link, compute_s: float | None = None) -> float | None:
        """Modelled seconds to the tolerance under ``link`` (None if it was not reached)."""
        if not self.reached:
            return None
        times = round_times(self.trace, link, compute_s=compute_s)
        return float(times[: int(self.summary["iterations"])].sum())


def run_cached(
    problem_kw: dict[str, Any],
    algorithm: str,
    overrides: dict[str, Any],
    *,
    max_iterations: int,
    eps: float,
    downlink: str = "delta",
    downlink_chunks: int = 0,
    cache: str,
    problem: Any = None,
    log: bool = True,
    batched: bool = False,
) -> CachedRun:
    """Run (or load) ``algorithm`` on the problem ``make_problem(**problem_kw)``.

    ``problem`` may pass the already built problem (it must match ``problem_kw``).
    ``downlink_chunks``: the simulator's chunked ``delta:laq:B`` downlink (part of the key).
    ``batched``: evaluate the workers' gradients in one batched product
    (:meth:`laqcore.problems.Problem.use_batched`; equal up to rounding, part of the key).
    """
    spec: dict[str, Any] = {
        "problem": problem_kw,
        "algorithm": algorithm,
        "overrides": overrides,
        "max_iterations": max_iterations,
        "eps": eps,
        "downlink": downlink,
        # 2: traces carry per-round compute samples (the charged compute is their
        # stratified median, laqcore.network.trace); older cached traces are run again.
        "trace": 2,
        "code": _code_fingerprint(),
    }
    if batched:
        spec["batched"] = True
    if downlink_chunks:
        # in the key only when set: the unchunked runs cached before keep their keys
        spec["downlink_chunks"] = downlink_chunks
    from ..problems import make_problem
    from ..problems.datasets import reads_files

    dataset = problem_kw.get("dataset")
    if isinstance(dataset, str) and reads_files(dataset):
        # The data of mnist and libsvm:PATH is the files' content, not their names: a file
        # changed under the same name got the runs of its former content.
        problem = make_problem(**problem_kw) if problem is None else problem
        spec["data"] = problem.fingerprint()
    key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]
    base = os.path.join(cache, "runs", key)
    if os.path.exists(base + ".json") and os.path.exists(base + ".npz"):
        try:
            with open(base + ".json", encoding="utf-8") as fh:
                summary = json.load(fh)
            return CachedRun(summary, TrafficTrace.load(base + ".npz"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # cut short by an interrupted write (before they were atomic): run again
    from ..algorithms import get_algorithm, own_overrides
    from ..simulator import simulate

    prob = make_problem(**problem_kw) if problem is None else problem
    prob.use_batched(batched)
    res = simulate(
        prob,
        # A study's common settings (e.g. scaling's batch for the stochastic methods) go to
        # the algorithms that read them.
        get_algorithm(algorithm, **own_overrides(algorithm, overrides)),
        max_iterations=max_iterations,
        eps=eps,
        eval_every=max_iterations,
        record_history=False,
        downlink=downlink,
        downlink_chunks=downlink_chunks,
        # the simulator's stderr progress line for runs over a second: a study's long runs
        # (M = 1024, thousands of iterations) said nothing until each had finished
        progress=log,
    )
    assert res.trace is not None  # the simulator always records it
    summary = json_safe({**res.summary(), "spec": spec})
    os.makedirs(os.path.dirname(base), exist_ok=True)
    res.trace.save(base + ".npz")
    write_json(base + ".json", summary)  # last and atomic: it marks the entry complete
    if log:
        print(
            f"  ran {algorithm:<9} M={prob.num_workers:<5} {overrides} -> {res.iterations} it, "
            f"reached={res.reached_tolerance} ({res.wall_time:.1f} s)",
            file=sys.stderr,  # progress, as the simulator's: stdout keeps the study's table
            flush=True,
        )
    return CachedRun(summary, res.trace)


def study_cache(args: argparse.Namespace) -> str:
    """A study's run-cache directory: ``--cache``, else the package's cache directory
    (:func:`laqcore.problems.optimum.cache_dir`: ``$LAQCORE_CACHE_DIR`` or ``~/.cache``)."""
    from ..problems.optimum import cache_dir

    return str(args.cache) if args.cache else cache_dir()


def check_study_cache(args: argparse.Namespace) -> None:
    """:func:`study_cache` can hold the runs; checked before the first one (a file there
    failed with "Not a directory" after it)."""
    from .._validate import check_output_dir

    env = "$LAQCORE_CACHE_DIR" if os.environ.get("LAQCORE_CACHE_DIR") else "the cache directory"
    what = "--cache" if args.cache else env
    check_output_dir(study_cache(args), what)


def run_for_study(
    args: argparse.Namespace,
    problem_kw: dict[str, Any],
    algorithm: str,
    overrides: dict[str, Any],
    *,
    problem: Any = None,
    batched: bool = False,
) -> CachedRun:
    """:func:`run_cached` with the options every study command shares.

    ``--max-iterations``, ``--eps``, ``--downlink``, ``--downlink-chunks`` and ``--cache``
    (:func:`study_cache`) come from ``args``.
    """
    return run_cached(
        problem_kw,
        algorithm,
        overrides,
        max_iterations=args.max_iterations,
        eps=args.eps,
        downlink=args.downlink,
        downlink_chunks=getattr(args, "downlink_chunks", None) or 0,
        cache=study_cache(args),
        problem=problem,
        batched=batched,
    )
