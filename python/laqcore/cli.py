"""The ``laqcore`` command line.

Subcommands live in separate modules; this file only assembles them. A module joins the
command by exposing ``add_parser(subparsers)``, which adds its parser(s) to the argparse
sub-parser action and sets ``func=<handler(args) -> int>`` as a default. To add one, append its
module name to :data:`SUBCOMMAND_MODULES` (one line). Keep those modules cheap to import:
heavy or optional dependencies (torch, matplotlib) are imported inside the handlers, so
``laqcore --help`` works everywhere.

Examples
--------
.. code-block:: console

    $ laqcore problem --dataset digits --workers 10
    $ laqcore compare --dataset digits --algorithms gd,qgd,lag-wk,laq --workers 10 --out out/
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from ._help import HelpFormatter

__all__ = ["SUBCOMMAND_MODULES", "build_parser", "main"]


def __dir__() -> list[str]:
    return __all__


#: Modules that contribute subcommands, each exposing ``add_parser(subparsers)``.
SUBCOMMAND_MODULES: list[str] = [
    "laqcore.experiments.commands",  # problem, run, compare (the many-worker simulator)
    "laqcore.experiments.sweep",  # sweep (parameter grids over seeds, step tuning)
    "laqcore.experiments.scaling",  # scaling, ratio-study (link/time model over M)
    "laqcore.experiments.regime",  # regime-map (fastest method per link regime)
    "laqcore.experiments.variance",  # variance (compressor error vs bits per coordinate)
    "laqcore.bench",  # bench (kernel throughput against memcpy, numpy and torch)
    "laqcore.distributed.cli",  # launch (the run options across N torch.distributed processes)
]


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every registered subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="laqcore",
        description="Communication-efficient distributed learning: LAQ, LAG, quantized and "
        "sparsified SGD, simulated or across processes.",
    )
    parser.add_argument("--version", action="version", version=f"laqcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    for subparser in sub.choices.values():  # every subcommand's --help shows the defaults
        subparser.formatter_class = HelpFormatter
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Warnings as the commands' own lines (``laqcore: warning: ...``), without the source
    file and line a library user would want but a command-line user cannot act on."""
    kind = "" if category is UserWarning else f"{category.__name__}: "
    print(f"laqcore: warning: {kind}{message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``laqcore`` script; returns the process exit status.

    User errors (bad options, missing data files) and running out of memory print one
    ``laqcore: error: ...`` line and return 2 instead of a traceback; a closed output pipe
    (``| head``) returns 141 quietly, Ctrl-C 130.
    """
    try:  # the subcommands' modules are imported here: Ctrl-C often lands in it
        parser = build_parser()
    except KeyboardInterrupt:
        print("laqcore: interrupted", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(func(args) or 0)
    except BrokenPipeError:
        # The reader went away (`laqcore bench | head`): stop quietly, as other tools do.
        # stdout is pointed at /dev/null so that the flush at exit does not fail again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a descriptor (tests, notebooks)
            pass
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except (ValueError, OSError, ImportError) as err:
        # User errors and missing optional dependencies (torch, matplotlib): one line.
        print(f"laqcore {args.command}: error: {err}", file=sys.stderr)
        return 2
    except MemoryError as err:  # sizes asked for (bench --sizes 2^40, variance --n 10**14)
        print(f"laqcore {args.command}: error: out of memory: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("laqcore: interrupted", file=sys.stderr)
        if hasattr(args, "cache"):  # a link study: its finished runs are kept
            from .experiments.runcache import study_cache

            print(
                f"laqcore: the runs that finished are cached in {study_cache(args)}; the same "
                "command continues from them",
                file=sys.stderr,
            )
        return 130


if __name__ == "__main__":  # pragma: no cover - exercised through `python -m laqcore`
    sys.exit(main())
