"""Every option, name and output path of ``run``, ``compare``, ``sweep`` and ``launch``,
checked before any work starts: a misspelled algorithm or an ``--out`` that is a file is one
clear line (``laqcore <command>: error: ...``, exit status 2) within a second, never after a
long run. The values themselves are checked by :mod:`laqcore._validate` and by each
algorithm's own parameter checks (an algorithm is built once per name here, cheaply).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._validate import (
    UINT64_MAX,
    check_output_dir,
    check_positive_int,
    check_real,
    check_uint64,
)
from .options import (
    DEFAULT_EPS,
    algorithm_from_args,
    algorithm_overrides,
    downlink_from_args,
    param_flag,
    split_names,
)

__all__ = [
    "check_algorithm_names",
    "check_experiment",
    "check_flag",
    "check_problem_options",
    "check_run_options",
    "check_seed_range",
]


def __dir__() -> list[str]:
    return __all__


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_flag(check: Any, args: argparse.Namespace, dest: str, **kw: Any) -> None:
    """``check(value, "--dest", **kw)`` on ``args.dest`` when it is set (an absent or None
    option is skipped), a TypeError reported as the ValueError of every other bad flag."""
    value = getattr(args, dest, None)
    if value is not None:
        try:
            check(value, _flag(dest), **kw)
        except TypeError as err:  # argparse already converted; keep one error type
            raise ValueError(str(err)) from None


def check_problem_options(args: argparse.Namespace) -> None:
    """The problem flags: dataset name (and its file or directory), sizes and weights."""
    from ..problems import available_datasets
    from ..problems.datasets.registry import libsvm_path
    from ..problems.objectives import MODELS
    from ..problems.problem import check_settings_used

    name = args.dataset
    known = [d for d in available_datasets() if not d.endswith(":PATH")]
    if name.startswith("libsvm:"):
        path = libsvm_path(name, args.data_dir)
        if path and os.path.isdir(path):  # "no such file" for a directory misled
            raise ValueError(f"--dataset {name}: {path!r} is a directory; expected a LIBSVM file")
        if not path or not os.path.isfile(path):
            raise ValueError(f"--dataset {name}: no such file {path!r}")
    elif name not in known:
        raise ValueError(
            f"--dataset: unknown dataset {name!r}; available: {', '.join(available_datasets())}"
        )
    if name == "mnist" and args.data_dir is None:
        raise ValueError("--dataset mnist needs --data-dir DIR (holding mnist.npz or IDX files)")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        raise ValueError(f"--data-dir {args.data_dir!r} is not a directory")
    check_flag(check_positive_int, args, "workers")
    check_flag(check_positive_int, args, "hidden")
    check_flag(check_positive_int, args, "max_samples")
    check_flag(check_uint64, args, "data_seed")
    check_flag(check_real, args, "dirichlet_alpha", positive=True)
    check_flag(check_real, args, "l2", minimum=0.0)
    check_settings_used(
        name,
        args.model,
        args.partition,
        dirichlet_alpha=args.dirichlet_alpha,
        hidden=args.hidden,
        data_dir=args.data_dir,
        test_fraction=args.test_fraction,
    )
    eps = getattr(args, "eps", DEFAULT_EPS)
    if eps not in (DEFAULT_EPS, 0.0) and not MODELS[args.model].convex:
        raise ValueError(
            f"--eps {eps:g}: the {args.model} model is nonconvex, so there is no F* to stop "
            "at; its runs use the whole --max-iterations budget"
        )
    fraction = check_real(args.test_fraction, "--test-fraction", minimum=0.0)
    if fraction >= 1.0:
        raise ValueError(f"--test-fraction must be in [0, 1), got {fraction}")


def check_run_options(args: argparse.Namespace) -> None:
    """The run flags: budget, tolerance, evaluation period, threads and output paths."""
    check_flag(check_positive_int, args, "max_iterations")
    check_flag(check_real, args, "eps", minimum=0.0)
    check_flag(check_positive_int, args, "eval_every")
    check_flag(check_positive_int, args, "blas_threads", minimum=0)
    check_flag(check_positive_int, args, "seeds")
    check_seed_range(args, "seed")
    if getattr(args, "out", None) is not None:
        check_output_dir(args.out, "--out")
    if getattr(args, "cache_dir", None) is not None:
        check_output_dir(args.cache_dir, "--cache-dir")


def check_seed_range(args: argparse.Namespace, dest: str) -> None:
    """With ``--seeds N``, the seeds ``--<dest>``, ..., ``--<dest> + N - 1`` all fit in
    uint64 (a seed past it failed only when its run started, after the others had run)."""
    seeds, start = getattr(args, "seeds", None), getattr(args, dest, None)
    if seeds is not None and start is not None and start + seeds - 1 > UINT64_MAX:
        raise ValueError(
            f"{_flag(dest)} {start} with --seeds {seeds}: the last seed, "
            f"{start + seeds - 1}, is above 2**64 - 1"
        )


def _check_used(names: list[str], field: str, label: str) -> None:
    """Parameter ``field`` (set by ``label``) is read by one of ``names``: each algorithm
    gets only the parameters it reads, so one that none of them reads would change nothing."""
    from ..algorithms import algorithm_parameters, available_algorithms

    if any(field in algorithm_parameters(n) for n in names):
        return
    users = [n for n in available_algorithms() if field in algorithm_parameters(n)]
    raise ValueError(
        f"{label}: {', '.join(names)} {'does' if len(names) == 1 else 'do'} not use it, so it "
        f"would change nothing (it is a parameter of {', '.join(users)})"
    )


def check_algorithm_names(given: list[str]) -> list[str]:
    """The registry names of ``given``: each known (else the message lists the known ones)
    and none twice under two spellings (the same runs twice, whose rows would read as two
    seeds of one algorithm)."""
    from ..algorithms import get_algorithm

    names = [get_algorithm(n).name for n in given]
    for i, name in enumerate(names):
        if name in names[:i]:
            spellings = [g for g, n in zip(given, names) if n == name]
            raise ValueError(
                f"--algorithms names {name} more than once ({', '.join(map(repr, spellings))})"
            )
    return names


def _check_algorithms(names: list[str], args: argparse.Namespace) -> None:
    """Each name is known and accepts the given hyper-parameters, each of which one of
    them reads; ``--upload-rate auto`` has an ``laq`` run before the random-select one to
    take its rate from."""
    from ..algorithms import ALGORITHMS, check_entropy_codable

    names = check_algorithm_names(names)
    for field in algorithm_overrides(args):
        _check_used(names, field, param_flag(field))
    if getattr(args, "entropy_coding", False):
        widths = None if getattr(args, "width_block", None) is None else "--width-block"
        check_entropy_codable([ALGORITHMS[n] for n in names], "--entropy-coding", widths)
    seen: list[str] = []
    for name in names:
        try:
            alg = algorithm_from_args(name, args)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: {err} (from the algorithm-parameter flags)") from None
        auto = getattr(args, "upload_rate", None) == "auto"
        if alg.name.startswith("random") and auto and "laq" not in seen:
            raise ValueError(
                f"--upload-rate auto: {name!r} takes LAQ's upload rate, so 'laq' must come "
                "earlier in --algorithms"
            )
        seen.append(alg.name)


def check_experiment(
    args: argparse.Namespace, names: list[str] | str, *, grid: dict[str, list[Any]] | None = None
) -> list[str]:
    """Check everything ``run``/``compare``/``sweep``/``launch`` will use; return the names.

    ``names`` is one algorithm name or a comma-separated ``--algorithms`` value (or a list);
    ``grid`` (``sweep --grid``) gives values that replace a flag at some grid point: each is
    checked with every algorithm too.
    """
    name_list = split_names(names) if isinstance(names, str) else list(names)
    check_problem_options(args)
    check_run_options(args)
    _check_algorithms(name_list, args)
    for key in grid or {}:
        if key != "workers":
            _check_used(name_list, key, f"--grid {key}")
    for key, values in (grid or {}).items():
        for value in values:
            point = argparse.Namespace(**{**vars(args), key: value})
            if key == "workers":
                check_problem_options(point)
                downlink_from_args(point)  # --downlink-chunks N needs N <= every M
            else:
                _check_algorithms(name_list, point)
    return name_list
