"""The ``laqcore bench`` subcommand (also ``python -m laqcore.bench``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .._help import HelpFormatter
from .._validate import check_output_file
from ..serialization import write_json
from .cases import KERNELS
from .contended import run_contended
from .report import markdown_table, plot
from .runner import run

__all__ = ["add_arguments", "add_parser", "main", "run_cli"]


def __dir__() -> list[str]:
    return __all__


DESCRIPTION = (
    "Kernel throughput against memcpy, numpy and torch. For every kernel, size n, bit width "
    "and thread count it times the laqcore kernel, a memcpy of the bytes the kernel streams, "
    "a vectorised numpy implementation and torch tensor ops doing the same job (median of "
    "short interleaved samples; every baseline's output is checked first)."
)


def _parse_sizes(text: str) -> list[int]:
    """``"10:24"`` (exponents, inclusive), ``"10:24:2"`` (with step), or a comma list of
    counts and powers of two such as ``"1000,2^16,2^24"``."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3) or not 0 <= parts[0] <= parts[1] <= 40:
                raise ValueError
            step = parts[2] if len(parts) == 3 else 1
            if step < 1:
                raise ValueError
            return [2**e for e in range(parts[0], parts[1] + 1, step)]
        counts = [2 ** int(p[2:]) if p.startswith("2^") else int(p) for p in text.split(",")]
        if not all(1 <= n <= 2**40 for n in counts):  # as the exponent form's 0..40
            raise ValueError
        return counts
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected LO:HI[:STEP] exponents in 0..40 or comma-separated counts in "
            f"1..2^40, got {text!r}"
        ) from None


def _parse_ints(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` (used by ``laqcore bench``)."""
    parser.add_argument(
        "--kernels",
        type=lambda s: s.split(","),
        default=None,
        help=f"comma-separated subset of: {', '.join(KERNELS)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="exponents LO:HI[:STEP] of n, or counts like 1000,2^20 (default 10:24; --quick: "
        "2^10,2^16,2^20; --contended: 2^16,2^20)",
    )
    parser.add_argument(
        "--bits",
        type=_parse_ints,
        default=[1, 2, 4, 8],
        help="comma-separated bit widths (default 1,2,4,8)",
    )
    parser.add_argument(
        "--threads",
        type=_parse_ints,
        default=None,
        help="comma-separated thread counts (default: 1 and all)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="samples per figure, median taken (default 21; --quick: 3; --contended: 41 rounds)",
    )
    parser.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="minimum seconds per sample (default 0.001; --quick: 0.0005)",
    )
    parser.add_argument("--quick", action="store_true", help="small fast sweep (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--plot", metavar="FILE", help="draw GB/s against n (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table at the end")
    parser.add_argument(
        "--contended",
        action="store_true",
        help="time 1 thread against --threads (default 2,4) under --load busy processes; "
        "prints each count's slowdown over 1 thread (sizes default 2^16,2^20; bits 4)",
    )
    parser.add_argument(
        "--load",
        type=int,
        default=None,
        help="--contended: competing busy processes (default: one per CPU)",
    )


def add_parser(subparsers: Any) -> None:
    """Register the ``bench`` subcommand of the ``laqcore`` command (see cli.py)."""
    parser = subparsers.add_parser(
        "bench",
        help="kernel throughput against memcpy, numpy and torch",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``laqcore bench`` with parsed arguments; returns the exit status."""
    for path, flag in ((args.json, "--json"), (args.plot, "--plot")):
        if path:  # before the sweep: an unwritable path must not cost a long run
            check_output_file(path, flag)
    # A flag the chosen mode does not read would change nothing: an error, not ignored.
    if args.contended:
        unused = [
            flag
            for flag, value in (
                ("--min-time", args.min_time),
                ("--quick", args.quick),
                ("--no-torch", args.no_torch),
                ("--plot", args.plot),
                ("--markdown", args.markdown),
            )
            if value
        ]
        if unused:
            raise ValueError(
                f"{', '.join(unused)}: --contended does not use "
                f"{'it' if len(unused) == 1 else 'them'} (it times the laqcore kernels only, "
                "--repeats rounds each)"
            )
    elif args.load is not None:
        raise ValueError("--load sets the competing processes of --contended only")
    if args.contended:
        report = run_contended(
            kernels=args.kernels,
            sizes=args.sizes or (2**16, 2**20),
            bits=args.bits if args.bits != [1, 2, 4, 8] else (4,),
            threads=args.threads or (2, 4),
            load=args.load,
            rounds=args.repeats or 41,
            seed=args.seed,
            log=lambda line: print(line, flush=True),
        )
        print(
            f"# {report['machine']['cpu']}, {report['machine']['cpu_count']} cpus, "
            f"{report['load']} competing busy processes"
        )
        if args.json:
            write_json(args.json, report, indent=1)
        return 0
    same = ("kernels", "sizes", "bits", "threads", "repeats", "min_time", "quick", "seed")
    report = run(
        **{name: getattr(args, name) for name in same},
        use_torch=not args.no_torch,
        log=lambda line: print(line, flush=True),
    )
    m = report["machine"]
    print(f"# {m['cpu']}, {m['cpu_count']} cpus, simd={m['simd']}, torch={m['torch']}")
    if args.json:
        write_json(args.json, report, indent=1)
    if args.plot:
        plot(report, args.plot)
    if args.markdown:
        print(markdown_table(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m laqcore.bench``."""
    parser = argparse.ArgumentParser(
        prog="laqcore bench", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    add_arguments(parser)
    try:
        return run_cli(parser.parse_args(argv))
    except ValueError as err:
        parser.error(str(err))  # NoReturn: exits with status 2
