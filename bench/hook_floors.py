"""The floors under the LAQ DDP hook's step time on a small model (issue 15.6's evidence).

For each link (``--rates``: ``none`` is loopback, else every rank in its own network
namespace behind a ``tc``-shaped veth, bench/bench_distributed.py's ``Netns``; needs root)
and each number of ranks (``--nprocs``), one launch of the bench trainer
(bench/hook_trainer.py: DDP, DataLoader, SGD momentum, one torch thread per rank) runs:

1. ``local``: a hook that communicates nothing (returns the local gradient): the compute +
   DDP floor of *any* hook;
2. ``allreduce``: no hook (DDP's C++ all-reduce), the reference;
3. ``laq``: ``LAQState(exchange="two-phase")`` (``LAQState()`` before ``exchange="auto"``)
   with wall-clock timers around the hook's phases (the labels of
   bench/profile_laq_hook.py; the collectives' times include waiting for the slower rank),
   recording the sizes of the collectives of its two-phase exchange (run with the
   collectives NCCL uses, ``_host_messages`` off: on gloo the exchange has run as rounds of
   messages since session 22, whose floors this bench does not measure);
4. ``collectives``: those collectives alone, at the sizes LAQ used (means over its steps and
   ranks): the control all-gather of ``k`` int64 per rank, the uplink ``all_to_all_single``
   (the same bytes to every other rank), the downlink all-gather of one row per rank; each
   timed ``--reps`` times in a loop of its own, and the three back to back (medians). The
   gathers run as the exchange runs them on gloo (an all-to-all of ``world`` copies,
   laqcore.distributed.two_phase) and, for comparison, as gloo's all-gather (a ring:
   ``(ring)`` in the report).

The report (stdout, and ``--out`` JSON with a markdown table beside it) derives per launch:

* ``exchange floor`` = local step + the three collectives back to back x their calls per step:
  the smallest step any hook with this exchange can have, with free CPU work;
* ``laq floor`` = exchange floor + LAQ's CPU per step (its hook time minus the time in its
  collectives);
* the step LAQ needs for "``x`` times faster than all-reduce to the target":
  ``allreduce step x target_steps / (x x laq_steps)`` for ``x`` = 3 and 1 (``--laq-steps``:
  LAQ's steps to all-reduce's 200-step loss, about 270 on the MLP).

Usage (as root for shaped links; hold the quiet lock)::

    python bench/hook_floors.py --model mlp --nprocs 2,4 --rates none,100mbit,1gbit \\
        --out bench/measured/hook_floors_mlp.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# Timer labels of the hook's collectives (bench/profile_laq_hook.py's PHASES).
COLLECTIVE_PHASES = ("control all-gather", "uplink all-to-all", "downlink all-gather")


# --------------------------------------------------------------------------------------
# one rank
# --------------------------------------------------------------------------------------
class SizeLog:
    """Wraps the two-phase exchange's collectives and records their sizes per call."""

    def __init__(self) -> None:
        self.control: list[int] = []  # int64s per rank
        self.uplink: list[float] = []  # bytes this rank sent to each other rank (mean)
        self.rows: list[int] = []  # bytes per rank of each downlink all-gather

    def install(self) -> None:
        from laqcore.distributed.two_phase import TwoPhaseExchange as X

        ints, a2a, rows = X._all_gather_ints, X._all_to_all, X._gather_rows
        log = self

        def all_gather_ints(ex: Any, values: list[int], tag: str) -> Any:
            log.control.append(len(values))
            return ints(ex, values, tag)

        def all_to_all(ex: Any, send: list[Any], recv_sizes: list[int], tag: str) -> Any:
            others = [int(a.shape[0]) for j, a in enumerate(send) if j != ex.rank]
            log.uplink.append(sum(others) / max(len(others), 1))
            return a2a(ex, send, recv_sizes, tag)

        def gather_rows(ex: Any, send: Any, name: str, what: str) -> Any:
            log.rows.append(int(send.shape[0]))
            return rows(ex, send, name, what)

        init = X.__init__

        def collectives_init(ex: Any, *args: Any, **kwargs: Any) -> None:
            init(ex, *args, **kwargs)
            ex._host_messages = False  # the three collectives, whose floors this bench measures

        X._all_gather_ints = all_gather_ints  # type: ignore[method-assign]
        X._all_to_all = all_to_all  # type: ignore[method-assign]
        X._gather_rows = gather_rows  # type: ignore[method-assign]
        X.__init__ = collectives_init  # type: ignore[method-assign]


def _agreed(values: list[float], reduce: Any) -> float:
    """The mean of ``values`` (0 if empty) averaged over the ranks."""
    import torch

    t = torch.tensor([float(np.mean(values)) if values else 0.0], dtype=torch.float64)
    reduce(t)
    return float(t.item()) / int(os.environ["WORLD_SIZE"])


def time_collectives(log: SizeLog, steps: int, reps: int, reduce: Any) -> dict[str, Any]:
    """Medians (ms) of the exchange's collectives alone at LAQ's mean sizes, and per step."""
    import torch
    import torch.distributed as dist

    import profile_laq_hook as prof

    world, rank = dist.get_world_size(), dist.get_rank()
    k = round(_agreed([float(v) for v in log.control], reduce))
    up = round(_agreed(log.uplink, reduce))
    row = round(_agreed([float(v) for v in log.rows], reduce))
    ctrl_out = [torch.empty(max(k, 1), dtype=torch.int64) for _ in range(world)]
    ctrl_in = torch.zeros(max(k, 1), dtype=torch.int64)
    splits = [0 if j == rank else up for j in range(world)]
    a2a_in = torch.zeros(up * (world - 1), dtype=torch.uint8)
    a2a_out = torch.empty(up * (world - 1), dtype=torch.uint8)
    rows_out = [torch.empty(max(row, 1), dtype=torch.uint8) for _ in range(world)]
    rows_in = torch.zeros(max(row, 1), dtype=torch.uint8)
    # The exchange's host gathers: an all-to-all of ``world`` copies (distributed/gather.py), and
    # gloo's own all-gather (a ring) for comparison.
    ctrl_copies, ctrl_whole = (
        ctrl_in.repeat(world),
        torch.empty(world * max(k, 1), dtype=torch.int64),
    )
    rows_copies, rows_whole = (
        rows_in.repeat(world),
        torch.empty(world * max(row, 1), dtype=torch.uint8),
    )
    ops = {
        "control all-gather": lambda: dist.all_to_all_single(ctrl_whole, ctrl_copies),
        "uplink all-to-all": lambda: dist.all_to_all_single(a2a_out, a2a_in, splits, splits),
        "downlink all-gather": lambda: dist.all_to_all_single(rows_whole, rows_copies),
    }
    rings = {
        "control all-gather (ring)": lambda: dist.all_gather(ctrl_out, ctrl_in),
        "downlink all-gather (ring)": lambda: dist.all_gather(rows_out, rows_in),
    }

    def seq() -> None:
        for op in ops.values():
            op()

    med: dict[str, float] = {}
    for name, op in [*ops.items(), ("sequence", seq), *rings.items()]:
        dist.barrier()
        med[name] = prof.median_ms(op, reps, warmup=10)
    calls = {
        "control all-gather": len(log.control) / steps,
        "uplink all-to-all": len(log.uplink) / steps,
        "downlink all-gather": len(log.rows) / steps,
    }
    per_step = sum(med[c] * calls[c] for c in ops)
    # The sequence holds one call of each; extra calls (a sized or tail round) at their own cost.
    extra = sum(med[c] * max(calls[c] - 1.0, 0.0) for c in ops)
    return {
        "sizes": {"control_int64s": k, "uplink_bytes_per_peer": up, "downlink_row_bytes": row},
        "calls_per_step": calls,
        "median_ms": med,
        "per_step_ms_alone": per_step,
        "per_step_ms_sequence": med["sequence"] + extra,
    }


def rank_main(path: str) -> None:
    """One rank: the ``local``, ``allreduce``, ``laq`` and ``collectives`` runs in order."""
    import torch
    import torch.distributed as dist

    import profile_laq_hook as prof
    from hook_meter import CommMeter
    from hook_trainer import load_data, train_one

    with open(path) as fh:
        cfg = json.load(fh)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=cfg["timeout"]))
    meter = CommMeter(dist.get_rank(), dist.get_world_size())
    meter.install()
    data = load_data(cfg["model"], cfg["seed"])
    train_one({**cfg, "steps": 20}, "allreduce", data, meter)  # untimed: caches, threads
    log = SizeLog()
    laq_steps = 0
    for run in cfg["runs"]:
        hook = run["hook"]
        if hook == "collectives":
            reduce = meter.orig["all_reduce"]
            res: dict[str, Any] = time_collectives(log, max(laq_steps, 1), cfg["reps"], reduce)
        else:
            if hook == "laq":
                prof._install()
                log.install()
                prof.TIMES.clear()
            # The two-phase exchange, whose collectives this script floors (on 2 ranks
            # LAQState() runs the all-gather since exchange="auto").
            res = train_one(cfg, "laq_2p" if hook == "laq" else hook, data, meter)
            if hook == "laq":
                laq_steps = int(res["steps"])
                res["phases_ms"] = {k: 1e3 * v / laq_steps for k, v in prof.TIMES.items()}
                res.pop("evals", None)
        res.update(rank=dist.get_rank(), run=run)
        print(json.dumps(res), flush=True)
    os._exit(0)  # as hook_trainer: no gloo teardown


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
def _mean(v: list[float]) -> float:
    return float(np.mean(v))


def combine(per_run: list[list[dict[str, Any]]], args: argparse.Namespace) -> dict[str, Any]:
    """The ranks' results of one launch, and the floors derived from them."""
    out: dict[str, Any] = {}
    for rs in per_run:
        bad = [r for r in rs if r.get("error")]
        if bad:
            raise RuntimeError(f"a rank failed: {bad[0]['error']}")
        hook = rs[0]["run"]["hook"]
        if hook == "collectives":
            c = rs[0]
            out[hook] = {
                "sizes": c["sizes"],
                "calls_per_step": c["calls_per_step"],
                "median_ms": {k: max(r["median_ms"][k] for r in rs) for k in c["median_ms"]},
                "per_step_ms_sequence": max(r["per_step_ms_sequence"] for r in rs),
                "per_step_ms_alone": max(r["per_step_ms_alone"] for r in rs),
            }
            continue
        out[hook] = {
            "step_ms": max(r["step_ms"] for r in rs),  # the slowest rank's median
            "step_ms_ranks": [r["step_ms"] for r in sorted(rs, key=lambda r: r["rank"])],
            "hook_ms": None if rs[0]["hook_ms"] is None else _mean([r["hook_ms"] for r in rs]),
            "final_loss": rs[0]["final_loss"],
        }
        if hook == "laq":
            labels = rs[0]["phases_ms"]
            ph = {k: _mean([r["phases_ms"].get(k, 0.0) for r in rs]) for k in labels}
            waiting = sum(ph.get(k, 0.0) for k in COLLECTIVE_PHASES)
            out[hook]["phases_ms_per_step_mean_over_ranks"] = ph
            out[hook]["in_collectives_ms"] = waiting
            out[hook]["cpu_ms"] = ph["hook total"] - waiting
    ar, local = out["allreduce"]["step_ms"], out["local"]["step_ms"]
    floor = local + out["collectives"]["per_step_ms_sequence"]
    need = {
        f"{x}x": ar * args.target_steps / (x * args.laq_steps) for x in (3, 1)
    }  # LAQ's step for x times faster to the target
    out["floors"] = {
        "local_step_ms": local,
        "exchange_floor_ms": floor,
        "laq_floor_ms": floor + out["laq"]["cpu_ms"],
        "laq_step_ms": out["laq"]["step_ms"],
        "allreduce_step_ms": ar,
        "laq_step_needed_ms": need,
    }
    return out


def markdown(report: dict[str, Any]) -> str:
    head = (
        "| link, ranks | all-reduce step | local-hook step | collectives (ctrl / a2a / dl / "
        "seq) | ring ctrl / dl | exchange floor | LAQ CPU | LAQ floor | LAQ step | needed for 3x "
        "/ 1x | load |\n"
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|\n"
    )
    lines = []
    for key, b in report["launches"].items():
        f, c = b["floors"], b["collectives"]["median_ms"]
        coll = " / ".join(f"{c[k]:.2f}" for k in (*COLLECTIVE_PHASES, "sequence"))
        ring = " / ".join(f"{c[f'{k} (ring)']:.2f}" for k in COLLECTIVE_PHASES[::2])
        load = f"{b['load_before'][0]:.1f} -> {b['load_after'][0]:.1f}"
        lines.append(
            f"| {key} | {f['allreduce_step_ms']:.2f} | {f['local_step_ms']:.2f} | {coll} | {ring} | "
            f"{f['exchange_floor_ms']:.2f} | {b['laq']['cpu_ms']:.2f} | {f['laq_floor_ms']:.2f}"
            f" | {f['laq_step_ms']:.2f} | {f['laq_step_needed_ms']['3x']:.2f} / "
            f"{f['laq_step_needed_ms']['1x']:.2f} | {load} |"
        )
    return "milliseconds per step (medians; phases are means)\n\n" + head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json") and not argv[0].startswith("-"):
        rank_main(argv[0])  # a rank, started by launch()
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from hook_trainer import MODELS, models_help

    ap.add_argument("--model", default="mlp", choices=list(MODELS), help=models_help())
    ap.add_argument("--nprocs", default="2,4")
    ap.add_argument("--rates", default="none,100mbit,1gbit", help="'none': loopback")
    from bench_distributed import add_burst_argument

    add_burst_argument(ap)
    ap.add_argument("--steps", type=int, default=120, help="steps per training run")
    ap.add_argument("--warm", type=int, default=10, help="steps left out of the medians")
    ap.add_argument("--reps", type=int, default=200, help="calls per timed collective")
    ap.add_argument("--target-steps", type=int, default=200, help="all-reduce's steps")
    ap.add_argument("--laq-steps", type=int, default=270, help="LAQ's steps to that loss")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1, help="divide hidden widths (smoke tests)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per launch")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from bench_distributed import Netns, netns_available
    from bench_hooks import launch, machine_info
    from provenance import bench_command

    report: dict[str, Any] = {
        "machine": machine_info(),
        "args": vars(args),
        "command": bench_command(__file__, argv),
        "launches": {},
    }
    cfg = {
        "model": args.model,
        "seed": args.seed,
        "batch": 32,
        "lr": 0.05,
        "optim": "momentum",
        "warm": args.warm,
        "steps": args.steps,
        "scale": args.scale,
        "timeout": 120,
        "reps": args.reps,
        "runs": [{"hook": h} for h in ("local", "allreduce", "laq", "collectives")],
    }
    for rate in args.rates.split(","):
        if rate != "none" and not netns_available()[0]:
            print(f"# {rate} skipped: {netns_available()[1]}")
            continue
        for n in [int(v) for v in args.nprocs.split(",")]:
            if rate == "none":
                per_run, info = launch(n, cfg, args.timeout, None, "hook_floors.py")
            else:
                with Netns(n, rate, 0.0, args.burst_ms) as net:
                    per_run, info = launch(n, cfg, args.timeout, net, "hook_floors.py")
            block = combine(per_run, args)
            block.update(load_before=info["load_before"], load_after=info["load_after"])
            report["launches"][f"{rate}/{n}"] = block
            print(f"{rate}/{n}: {json.dumps(block['floors'])}", flush=True)
    md = markdown(report)
    print(md)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
            fh.write(md + "\n")
        print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
