"""``laqcore launch``: the ``laqcore run`` options, executed across N processes.

Either starts N local processes itself (``--nproc N``, gloo over TCP on 127.0.0.1), or, when
started by ``torchrun`` (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` set), runs as one rank of the
torchrun job::

    laqcore launch --nproc 4 --algorithm laq --dataset digits --workers 8 --out out/
    torchrun --nproc-per-node 4 -m laqcore launch --algorithm laq --workers 8

Rank 0 prints the simulator's table and writes ``OUT/results.json`` (the simulator's format,
with a ``wire`` section in the config: the bytes that actually crossed between processes).
torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["add_parser"]


def __dir__() -> list[str]:
    return __all__


def _config(args: argparse.Namespace) -> Any:
    from ..experiments.options import algorithm_overrides, problem_kwargs
    from .engine_config import EngineConfig

    overrides = algorithm_overrides(args)
    overrides.setdefault("seed", args.seed)
    return EngineConfig(
        problem=problem_kwargs(args),
        algorithm=args.algorithm,
        overrides=overrides,
        max_iterations=args.max_iterations,
        eps=args.eps,
        eval_every=args.eval_every,
        nonfinite=args.nonfinite,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        replica_check_every=args.replica_check_every,
        exchange=args.exchange,
        downlink=args.downlink,
        progress=not args.quiet,
    )


def _rank_main(rank: int, world: int, cfg: Any) -> dict[str, Any]:
    from .engine import run_engine

    return run_engine(rank, world, cfg)


def _report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    from ..experiments.commands import warn_stopped_short
    from ..experiments.results import histories_path, write_results
    from ..experiments.tables import format_table
    from ..simulator import RunResult

    result = RunResult(**out["result"])
    print(format_table([result]))
    warn_stopped_short(args, [result])
    w = out["wire"]
    print(
        f"{w['processes']} processes, {w['exchange']} exchange: rank 0 sent {w['bytes_sent']} "
        f"and received {w['bytes_received']} bytes (control included; "
        f"{w['monitor_bytes']} bytes of loss monitoring, all ranks)"
    )
    if args.out:
        config = {k: v for k, v in vars(args).items() if k != "func"}
        config["wire"] = w
        path = write_results(args.out, config, [result])
        print(f"wrote {path} (summary) and {histories_path(args.out)} (per-iteration curves)")


def _require_torch() -> None:
    """One clear line (exit 2) when PyTorch is missing, before any process starts."""
    if importlib.util.find_spec("torch") is None:
        raise ImportError(
            "laqcore launch needs PyTorch (torch.distributed): pip install 'laqcore[torch]'"
        )


def _cmd_launch(args: argparse.Namespace) -> int:
    from .._validate import check_output_dir, check_positive_int
    from ..algorithms import get_algorithm
    from ..experiments.checks import check_experiment
    from ..experiments.options import algorithm_overrides
    from .engine_exchange import check_exchange
    from .launch import check_nproc, check_timeouts

    world = os.environ.get("WORLD_SIZE") if "RANK" in os.environ else None
    if world is None:  # processes this command starts (a typo must not start 100000)
        check_nproc(args.nproc, "--nproc")
    elif args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    if world is not None and args.nproc not in (2, int(world)):  # 2: the flag's default
        raise ValueError(
            f"--nproc {args.nproc}: under torchrun the processes are torchrun's "
            f"(WORLD_SIZE={world}); set the number with torchrun's --nproc-per-node"
        )
    procs = args.nproc if world is None else int(world)
    if procs > args.workers:  # each process hosts at least one worker
        raise ValueError(
            f"{procs} processes need at least as many workers, got --workers {args.workers}"
        )
    check_timeouts(args.timeout, args.deadline, ("--timeout", "--deadline"))
    check_positive_int(args.checkpoint_every, "--checkpoint-every", minimum=0)
    check_positive_int(args.replica_check_every, "--replica-check-every", minimum=0)
    if args.resume and not args.checkpoint_dir:
        raise ValueError("--resume needs --checkpoint-dir")
    if args.checkpoint_every and not args.checkpoint_dir:
        raise ValueError(
            f"--checkpoint-every {args.checkpoint_every} needs --checkpoint-dir (where the "
            "ranks write their checkpoints); without it none would be written"
        )
    if args.checkpoint_dir and not args.checkpoint_every and not args.resume:
        raise ValueError(
            "--checkpoint-dir: no checkpoint would be written without --checkpoint-every N "
            "(or read without --resume)"
        )
    check_experiment(args, [args.algorithm])  # names, values, paths: before spawning ranks
    check_exchange(
        args.exchange, get_algorithm(args.algorithm, **algorithm_overrides(args)), args.downlink
    )
    if args.checkpoint_dir:
        check_output_dir(args.checkpoint_dir, "--checkpoint-dir")
    if args.resume and world is None:  # torchrun's ranks may each read their own machine's
        from .checkpoint import checkpoint_path

        d = args.checkpoint_dir
        missing = [  # a rank stopped while writing its first checkpoint holds its previous
            os.path.basename(checkpoint_path(d, r))
            for r in range(procs)
            if not any(os.path.isfile(checkpoint_path(d, r, previous=p)) for p in (False, True))
        ]
        if missing:  # was one CheckpointError per rank, after spawning them
            raise ValueError(
                f"--resume: --checkpoint-dir {args.checkpoint_dir!r} holds no "
                f"{', '.join(missing)} for {procs} processes (nothing to resume)"
            )
    _require_torch()
    if args.cache_dir:
        os.environ["LAQCORE_CACHE_DIR"] = args.cache_dir
    cfg = _config(args)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        # Started by torchrun: this process is one rank; the rendezvous comes from the env.
        import torch.distributed as dist

        if args.backend == "nccl":
            from .launch import select_nccl_device

            select_nccl_device(int(os.environ["RANK"]))
        dist.init_process_group(args.backend, timeout=datetime.timedelta(seconds=args.timeout))
        try:
            out = _rank_main(dist.get_rank(), dist.get_world_size(), cfg)
        finally:
            dist.destroy_process_group()
        if int(os.environ["RANK"]) == 0:
            _report(args, out)
        return 0
    from .launch import LaunchError, run_processes

    try:
        with _sigterm_raises():
            outs = run_processes(
                _rank_main,
                args.nproc,
                cfg,
                backend=args.backend,
                pg_timeout_s=args.timeout,
                deadline_s=args.deadline,
            )
    except LaunchError as err:  # what each rank raised, in rank order: no traceback
        print(f"laqcore launch: error: {err}", file=sys.stderr)
        return 1
    except _Terminated:
        print("laqcore launch: terminated (SIGTERM); the ranks were stopped", file=sys.stderr)
        return 128 + signal.SIGTERM  # what a shell reports for a process ended by it
    _report(args, outs[0].result)
    return 0


class _Terminated(Exception):
    """The launcher received SIGTERM (a job scheduler, ``timeout``, ``kill``)."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` in the launcher, which then stops its ranks as for
    Ctrl-C (``run_processes``) and exits with one line. Killed by the signal itself, it
    ended with no word of it, and its multiprocessing resource tracker warned about
    "leaked semaphore objects" while the orphaned ranks noticed within half a second that
    their parent was gone (docs/ddp.md, "Faults")."""

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def add_parser(sub: Any) -> None:
    """Register ``launch`` (see the module docstring)."""
    from ..experiments.options import (
        add_algorithm_options,
        add_problem_options,
        add_run_options,
        algorithm_names,
    )

    p = sub.add_parser(
        "launch",
        help="run one algorithm across N processes (torch.distributed); writes OUT/results.json",
    )
    p.add_argument("--algorithm", "-a", default="laq", help=f"one of: {algorithm_names()}")
    g = p.add_argument_group("processes")
    g.add_argument(
        "--nproc",
        type=int,
        default=2,
        help="number of processes, at most 256 (under torchrun: torchrun's WORLD_SIZE; another "
        "explicit value is an error)",
    )
    g.add_argument(
        "--backend",
        default="gloo",
        choices=["gloo", "nccl"],
        help="torch.distributed backend",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds a collective waits for a dead or hung peer before failing",
    )
    g.add_argument(
        "--deadline",
        type=float,
        default=24 * 3600.0,
        help="wall-clock limit of the whole run in seconds",
    )
    g.add_argument(
        "--exchange",
        choices=["auto", "two-phase", "all-gather"],
        default="auto",
        help="two-phase: chunk j of every upload to owner j, which publishes its chunk of the "
        "server state (per-rank traffic flat in N); all-gather: every upload to every rank; "
        "auto (default): two-phase where the algorithm allows it",
    )
    g.add_argument(
        "--downlink",
        default="delta",
        help="delta (default): the owners publish the server state exactly; delta:laq:B "
        "(two-phase only): re-quantized to B bits against the ranks' copy, chunk by chunk "
        "(`laqcore run --downlink delta:laq:B --downlink-chunks N` gives the same run)",
    )
    g.add_argument(
        "--nonfinite",
        choices=["raise", "skip"],
        default="raise",
        help="NaN/Inf gradient: fail naming rank and iteration, or skip the upload",
    )
    g.add_argument(
        "--checkpoint-dir",
        default=None,
        help="where each rank writes rank<r>.ckpt (no pickle; SHA-256 checked at --resume)",
    )
    g.add_argument(
        "--checkpoint-every", type=int, default=0, help="checkpoint period in iterations (0: never)"
    )
    g.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    g.add_argument(
        "--replica-check-every",
        type=int,
        default=100,
        help="compare the ranks' server-replica digests every N iterations (0: never)",
    )
    add_problem_options(p)
    add_algorithm_options(p)
    add_run_options(p, entropy_coding=False)
    p.set_defaults(func=_cmd_launch)
