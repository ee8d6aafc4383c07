"""Command-line options shared by every command that builds a problem or an algorithm
(``problem``, ``run``, ``compare``, ``sweep`` and the distributed ``launch``), so the same
flag means the same thing everywhere, and their conversion to keyword arguments."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = [
    "PARAM_FLAGS",
    "DefaultInt",
    "add_algorithm_options",
    "add_network_options",
    "add_problem_options",
    "add_run_options",
    "algorithm_from_args",
    "algorithm_names",
    "DEFAULT_EPS",
    "algorithm_overrides",
    "param_flag",
    "param_defaults",
    "downlink_from_args",
    "link_from_args",
    "problem_from_args",
    "problem_kwargs",
    "setup_cache",
    "split_names",
]


def __dir__() -> list[str]:
    return __all__


#: ``--eps``: the official code's tolerance on ``F - F*``.
DEFAULT_EPS = 1e-6


class DefaultInt(int):
    """An integer flag's default, which stays this type unless the flag is given: a flag with
    a default (``--workers``) can then be told from its absence (``sweep`` refuses
    ``--workers`` beside ``--grid workers=...``). Behaves, prints and serialises as the int."""


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
        "--model",
        default="softmax",
        choices=["softmax", "logistic", "least-squares", "mlp"],
        help="objective (softmax: the paper's Dense(10); mlp: one hidden ReLU layer)",
    )
    g.add_argument("--workers", "-M", type=int, default=DefaultInt(10), help="number of workers M")
    g.add_argument(
        "--partition",
        default="contiguous",
        choices=["contiguous", "iid", "dirichlet"],
        help="how the training samples are split over the workers (contiguous: the paper's)",
    )
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
    g.add_argument(
        "--normalize",
        default=None,
        choices=["none", "maxabs", "standard"],
        help="feature normalisation of mnist / libsvm:PATH (default maxabs: each column / "
        "its max |x|, MNIST pixels / 255); printed in the problem description",
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
        "normalize": getattr(args, "normalize", None),
        "seed": args.data_seed,
    }


def problem_from_args(args: argparse.Namespace) -> Any:
    from ..problems import make_problem

    return make_problem(**problem_kwargs(args))


def param_defaults(field: str) -> str:
    """The default of the :class:`~laqcore.algorithms.base.Params` field ``field`` in every
    algorithm that reads it, for help texts: the most common value, then each other value
    with the algorithms that have it (``"0.02; 0.008: sgd, qsgd, ..."``). Read from the
    registry, so a help text cannot drift from the algorithms' real defaults."""
    from ..algorithms import ALGORITHMS

    by_value: dict[Any, list[str]] = {}
    for name, cls in ALGORITHMS.items():
        if field in cls.USES:
            by_value.setdefault(getattr(cls.default_params(), field), []).append(name)
    if not by_value:
        raise ValueError(f"no registered algorithm reads {field!r}")
    ordered = sorted(by_value.items(), key=lambda item: -len(item[1]))
    others = [f"{value}: {', '.join(names)}" for value, names in ordered[1:]]
    return "; ".join([str(ordered[0][0]), *others])


def add_algorithm_options(p: argparse.ArgumentParser) -> None:
    """Flags for algorithm hyper-parameters; unset flags keep each algorithm's default."""
    g = p.add_argument_group(
        "algorithm parameters (unset = each algorithm's default, official LAQ code values; "
        "each algorithm gets the ones it reads, and one that none of them reads is an error)"
    )

    def number(flag: str, kind: type, text: str) -> None:
        """A Params field's flag; '{}' in ``text`` becomes the registry's defaults."""
        field = flag[2:].replace("-", "_")
        g.add_argument(flag, type=kind, dest=field, help=text.format(param_defaults(field)))

    number("--alpha", float, "step size ({})")
    number("--bits", int, "bits per coordinate ({})")
    g.add_argument(
        "--adaptive-bits",
        type=float,
        dest="adaptive_bits",
        metavar="F",
        help="LAQ family: per upload the smallest b in 1..8 with err_coef ||eps_b||^2 <= F x the "
        "rule's iterate-difference term (the frame carries b; --bits: the first upload's width)",
    )
    g.add_argument(
        "--block-size",
        type=int,
        dest="block_size",
        help="LAQ quantizer: one radius per block of this many coordinates (a multiple of 8; "
        "default: one global radius, as in the paper)",
    )
    g.add_argument(
        "--width-block",
        type=int,
        dest="width_block",
        metavar="B",
        help="LAQ family, with --adaptive-bits F: a width (0/2/3/4 bits) and radius per block of "
        "B coordinates meeting the same error budget with the fewest bits (a multiple of 8)",
    )
    number("--D", int, "lazy-rule history depth ({})")
    number("--ck", float, "lazy-rule weight: xi_d = ck/D ({})")
    g.add_argument("--xi", type=float, help="constant xi_d instead of the ck schedule")
    number("--t-bar", int, "forced upload after t_bar skips ({}; 0 = upload every iteration)")
    number(
        "--err-coef",
        float,
        "LAQ/SLAQ rule: weight of the quantization-error term err_coef (||eps||^2 + "
        "||eps_hat||^2) ({})",
    )
    g.add_argument(
        "--no-lag-forced",
        dest="lag_forced",
        action="store_const",
        const=False,
        default=None,
        help="LAG-WK without the forced upload after t_bar skips (default: forced, as in the "
        "reference LAQ code's comparison)",
    )
    number("--batch", int, "minibatch per worker (stochastic methods, {})")
    number("--levels", int, "QSGD levels s ({})")
    number("--bucket-size", int, "QSGD bucket ({})")
    number("--ratio", float, "kept fraction for sparsifiers ({})")
    number("--period", int, "PQASGD averaging period ({})")
    number("--max-delay", int, "AsyLPG delay bound ({})")
    number("--epoch", int, "AsyLPG SVRG epoch length ({})")
    number("--model-bits", int, "AsyLPG model bits ({})")
    number("--momentum", float, "Acc-AsyLPG momentum ({})")
    g.add_argument(
        "--upload-rate",
        dest="upload_rate",
        default=None,
        help="random-select: upload probability, or 'auto' = LAQ's measured rate "
        f"({param_defaults('upload_rate')})",
    )
    number("--local-steps", int, "one-shot averaging: local steps before the upload ({})")
    number("--threshold", float, "dynamic averaging divergence threshold ({})")


def add_run_options(p: argparse.ArgumentParser, *, entropy_coding: bool = True) -> None:
    """The run options; ``entropy_coding=False`` leaves out ``--entropy-coding`` (``launch``:
    the engine sends its frames uncoded, so the flag would be recorded and ignored)."""
    g = p.add_argument_group("run")
    g.add_argument(
        "--max-iterations",
        "-K",
        type=int,
        default=5000,
        help="iteration budget K: the run stops after K iterations if it has not reached "
        "--eps (or diverged) before",
    )
    g.add_argument(
        "--eps",
        type=float,
        default=DEFAULT_EPS,
        help="stop at F - F* <= eps (convex problems; 0 = run all K iterations)",
    )
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
    if entropy_coding:
        g.add_argument(
            "--entropy-coding",
            action="store_true",
            help="send LAQ/QSGD/TernGrad/sign uploads entropy-coded (rANS, laqcore.entropy): "
            "same iterates and uploads, uplink bits counted from the coded frames (the "
            "downlink still counts the relayed frames uncoded, as the engine sends them; "
            "only the runs of those algorithms are coded, and their results say so)",
        )
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


def add_network_options(p: argparse.ArgumentParser) -> None:
    """``--downlink`` and the link/time model (:mod:`laqcore.downlink`, :mod:`laqcore.network`)."""
    g = p.add_argument_group("communication: downlink and link/time model")
    g.add_argument(
        "--downlink",
        default="delta",
        help="what moves down: delta (default: the other uploaders' frames, nothing when "
        "nobody uploaded; the engine's exchange), delta:f32 (float32 sum of the change), "
        "delta:laq:B (the step re-quantized to B bits against the workers' copy), model "
        "(theta as float64 to every worker every iteration), model:f32, model:laq:B",
    )
    g.add_argument(
        "--downlink-chunks",
        type=int,
        default=None,
        metavar="N",
        help="with delta:laq:B: model `laqcore launch --nproc N --downlink delta:laq:B` (the "
        "server state re-quantized in the N owner chunks of its two-phase exchange; the "
        "engine then gives exactly this run)",
    )
    g.add_argument(
        "--network",
        default="edge",
        choices=["datacenter", "cluster-1g", "edge"],
        help="link preset: datacenter (10 Gbit/s both ways, 0.05 ms), cluster-1g (1 Gbit/s, "
        "0.2 ms), edge (default: up 5 Mbit/s, down 50 Mbit/s, 20 ms); the flags below "
        "override its fields",
    )
    g.add_argument("--uplink-mbps", type=float, default=None, help="worker -> server Mbit/s")
    g.add_argument("--downlink-mbps", type=float, default=None, help="server -> worker Mbit/s")
    g.add_argument("--latency-ms", type=float, default=None, help="one-way latency, ms")
    g.add_argument(
        "--topology",
        default="ps",
        choices=["ps", "allreduce", "allgather", "two-phase", "chunked"],
        help="ps (default: parameter server), allreduce (ring), allgather (the engine's "
        "--exchange all-gather), two-phase (gather at one node, it sends the downlink), "
        "chunked (the DDP hook's owner-chunk exchange, with --downlink delta:laq:B as the "
        "hook; the engine's --exchange two-phase)",
    )
    g.add_argument(
        "--broadcast",
        action="store_true",
        help="one downlink transmission reaches every worker (ps and two-phase topologies; "
        "default: unicast copies)",
    )
    g.add_argument(
        "--compute-ms",
        type=float,
        default=None,
        help="compute time per iteration for the time model (default: measured per worker "
        "step in the run; noisy on a loaded machine)",
    )


def link_from_args(args: argparse.Namespace) -> Any:
    """The :class:`laqcore.network.Link` of the flags (raises ValueError on bad values)."""
    from ..network import make_link

    for flag in ("uplink_mbps", "downlink_mbps", "latency_ms", "compute_ms"):
        v = getattr(args, flag, None)
        # a bandwidth of 0 failed later, under the link's internal name (uplink_bps)
        positive = flag.endswith("mbps")
        if v is not None and not ((v > 0 if positive else v >= 0) and v < float("inf")):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"--{flag.replace('_', '-')} must be a finite number {bound}")
    return make_link(
        getattr(args, "network", "edge"),
        uplink_mbps=getattr(args, "uplink_mbps", None),
        downlink_mbps=getattr(args, "downlink_mbps", None),
        latency_ms=getattr(args, "latency_ms", None),
        topology=getattr(args, "topology", "ps"),
        broadcast=bool(getattr(args, "broadcast", False)),
    )


def downlink_from_args(args: argparse.Namespace) -> Any:
    """The parsed ``--downlink`` mode (raises ValueError on a bad value)."""
    from ..downlink import parse_downlink

    mode = parse_downlink(getattr(args, "downlink", "delta"))
    chunks = getattr(args, "downlink_chunks", None)
    if chunks is not None and (chunks < 1 or not mode.quantized or mode.kind != "delta"):
        raise ValueError(f"--downlink-chunks needs N >= 1 and --downlink delta:laq:B, got {chunks}")
    workers = getattr(args, "workers", None)
    if chunks is not None and workers is not None and chunks > workers:
        raise ValueError(
            f"--downlink-chunks {chunks} models `laqcore launch --nproc {chunks}`, whose "
            f"processes host >= 1 worker each: it needs N <= --workers ({workers})"
        )
    return mode


PARAM_FLAGS = (
    "alpha",
    "bits",
    "block_size",
    "adaptive_bits",
    "width_block",
    "D",
    "ck",
    "xi",
    "t_bar",
    "err_coef",
    "lag_forced",
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


def param_flag(field: str) -> str:
    """The command-line flag that sets :class:`~laqcore.algorithms.Params` field ``field``."""
    return "--no-lag-forced" if field == "lag_forced" else "--" + field.replace("_", "-")


def algorithm_from_args(name: str, args: argparse.Namespace, **extra: Any) -> Any:
    """Build algorithm ``name`` from the CLI flags it reads (plus ``extra`` overrides).

    Flags another algorithm of the same command reads are left out
    (:func:`laqcore.algorithms.own_overrides`); the command's checks have made sure each
    flag is read by one of its algorithms (:func:`laqcore.experiments.checks.check_experiment`).
    """
    from ..algorithms import get_algorithm, own_overrides

    kw = own_overrides(name, algorithm_overrides(args))
    kw.update(extra)
    kw.setdefault("seed", getattr(args, "seed", 0))
    return get_algorithm(name, **kw)


def setup_cache(args: argparse.Namespace) -> None:
    if getattr(args, "cache_dir", None):
        os.environ["LAQCORE_CACHE_DIR"] = args.cache_dir


def algorithm_names() -> str:
    """The registered algorithm names, for help texts (``-a``, ``--algorithms``)."""
    from ..algorithms import available_algorithms

    return ", ".join(available_algorithms())


def split_names(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError("--algorithms must name at least one algorithm")
    return names
