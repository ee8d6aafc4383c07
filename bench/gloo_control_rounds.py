"""Pinned or not, what one small exchange adds to an iteration on gloo (docs/ddp.md, "Pinned
ranks" and "gloo's loop thread").

Two ranks (laqcore's launcher, one torch thread each) run ``--iters`` iterations of
``--busy-ms`` of busy work (standing for the backward pass) followed by one exchange of
``--bytes`` bytes, in each of these ways:

* ``none``: no exchange (the floor);
* ``messages``: ``isend`` to the peer, wait, then the receive of the next iteration posted
  ahead, as ``laqcore.distributed.messages.PostedMessages`` does (the Transport's control
  phase with ``control="messages"``);
* ``all_to_all``: one ``all_to_all_single`` of the same bytes per peer (what the
  Transport's frames take with ``control="collectives"``, after the control all-gather);
* ``all_reduce``: an all-reduce of the same bytes of float32, for scale.

Once with the ranks free to run on every CPU and once with every thread of rank r pinned to
CPU r mod the CPUs (``os.sched_setaffinity`` on each of its threads, after the process group
started its own). Per way: the mean, median and 90th percentile of the iteration's wall
time on rank 0 (the first 30 iterations left out), and the share of iterations more than
1 ms above the median. Loopback only; ``--reps`` repeats the whole grid.

Two kinds of busy work (``--work``), since the slow mode depended on it: ``matmul``, products
of a 256 x 256 matrix scaled by 1e-3 each time (its entries soon underflow to zeros), and
``tanh``, ``tanh(W @ W)`` of a 128 x 128 matrix. With ``matmul`` pinned ranks lost the slow
mode with the collectives and kept it with the messages; with ``tanh`` both kept it
(bench/measured/gloo_control_rounds.json). The trainers, not this loop, decided
``control="auto"`` (docs/ddp.md, "Pinned ranks"). The slow mode is gloo's TCP loop thread
spinning on a pair lock whose holder it keeps off the CPU until the scheduler's tick
(docs/ddp.md, "gloo's loop thread"); the options below show it.

``--fifo`` puts threads of each rank at real-time priority (``SCHED_FIFO`` 1; root only)
once its process group is up, to see whose scheduling the slow mode is: ``others``, every
thread but the one running the loop (gloo's ``gloo_tcp_loop`` and ``pt_gloo_runloop``,
the store's); ``gloo_tcp_loop``, that thread alone. A thread that polls at real-time
priority starves the others of its CPU until the kernel's real-time throttling (950 ms of
each second) stops it: iterations of hundreds of milliseconds say so. ``--idle-loop`` puts
gloo's loop thread under ``SCHED_IDLE`` instead (``laqcore.distributed.idle_gloo_loop``,
no privilege needed).

Usage::

    python bench/gloo_control_rounds.py --out bench/measured/gloo_control_rounds.json
    python bench/gloo_control_rounds.py --reps 1 --fifo others --out bench/measured/gloo_control_rounds_fifo.json
    python bench/gloo_control_rounds.py --reps 1 --work matmul --iters 100 --fifo gloo_tcp_loop --out bench/measured/gloo_control_rounds_fifo_loop.json
    python bench/gloo_control_rounds.py --idle-loop --out bench/measured/gloo_control_rounds_idle_loop.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np

WAYS = ("none", "messages", "all_to_all", "all_reduce")
FIFO = ("none", "others", "gloo_tcp_loop")
WORKS = ("matmul", "tanh")
WARM = 30


def _pin_threads(cpu: int) -> None:
    """Every thread of this process (gloo's included) on ``cpu``."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {cpu})


def _raise_threads(which: str) -> None:
    """Threads of this process at ``SCHED_FIFO`` priority 1: every one but the caller
    (``which="others"``) or gloo's TCP loop threads (``which="gloo_tcp_loop"``, found as
    ``laqcore.distributed.idle_gloo_loop`` finds them)."""
    from laqcore.distributed.gloo_threads import gloo_loop_threads

    if which == "others":
        caller = threading.get_native_id()
        tids = [t for t in map(int, os.listdir("/proc/self/task")) if t != caller]
    else:
        tids = gloo_loop_threads()
    for tid in tids:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))


def _rank(rank: int, world: int, cfg: dict[str, Any]) -> dict[str, Any] | None:
    import torch
    import torch.distributed as dist

    if cfg["pin"]:
        _pin_threads(rank % (os.cpu_count() or 1))
    if cfg["fifo"] != "none":
        _raise_threads(cfg["fifo"])
    if cfg["idle_loop"]:
        from laqcore.distributed import idle_gloo_loop

        idle_gloo_loop()
    peer, n, way = 1 - rank, cfg["bytes"], cfg["way"]
    inbox = torch.zeros(n, dtype=torch.uint8)
    message = torch.full((n,), rank, dtype=torch.uint8)
    a2a_in, a2a_out = torch.zeros(2 * n, dtype=torch.uint8), torch.zeros(2 * n, dtype=torch.uint8)
    floats = torch.zeros(max(n // 4, 1))
    work = torch.randn(256, 256) if cfg["work"] == "matmul" else torch.randn(128, 128)
    posted: Any = dist.irecv(inbox, src=peer, tag=11) if way == "messages" else None
    times: list[float] = []
    for _ in range(cfg["iters"]):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < cfg["busy_ms"] / 1e3:
            work = work @ work * 1e-3 if cfg["work"] == "matmul" else torch.tanh(work @ work)
        if way == "messages":
            dist.isend(message, dst=peer, tag=11).wait()
            posted.wait()
            posted = dist.irecv(inbox, src=peer, tag=11)
        elif way == "all_to_all":
            dist.all_to_all_single(a2a_out, a2a_in)
        elif way == "all_reduce":
            dist.all_reduce(floats)
        times.append(time.perf_counter() - t0)
    if posted is not None:  # the last receive posted ahead: one more message completes it
        dist.isend(message, dst=peer, tag=11).wait()
        posted.wait()
    dist.barrier()
    if rank != 0:
        return None
    ms = 1e3 * np.asarray(times[WARM:])
    median = float(np.median(ms))
    return {
        "mean_ms": round(float(ms.mean()), 3),
        "median_ms": round(median, 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "slow_share": round(float(np.mean(ms > median + 1.0)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    from laqcore.distributed import run_processes

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bytes", type=int, default=8000)
    ap.add_argument("--busy-ms", type=float, default=2.0)
    ap.add_argument("--iters", type=int, default=400)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--work", choices=[*WORKS, "both"], default="both")
    ap.add_argument(
        "--fifo",
        choices=FIFO,
        default="none",
        help="threads of each rank at SCHED_FIFO 1 (root): every one but the loop's, or "
        "gloo's TCP loop alone",
    )
    ap.add_argument(
        "--idle-loop",
        action="store_true",
        help="gloo's TCP loop thread under SCHED_IDLE (laqcore.distributed.idle_gloo_loop)",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.fifo != "none" and os.geteuid() != 0:
        ap.error("--fifo needs root (SCHED_FIFO)")
    if args.fifo != "none" and args.idle_loop:
        ap.error("--fifo and --idle-loop set the same threads' policy: give one")
    if args.iters <= WARM:
        ap.error(f"--iters must exceed the {WARM} iterations left out")
    if not hasattr(os, "sched_setaffinity"):
        ap.error("pinning needs os.sched_setaffinity (Linux)")
    rows = []
    works = WORKS if args.work == "both" else (args.work,)
    for rep in range(args.reps):
        for work in works:
            for pin in (False, True):
                for way in WAYS:
                    cfg = {"pin": pin, "way": way, "work": work, "iters": args.iters}
                    out = run_processes(
                        _rank,
                        2,
                        {
                            **cfg,
                            "bytes": args.bytes,
                            "busy_ms": args.busy_ms,
                            "fifo": args.fifo,
                            "idle_loop": args.idle_loop,
                        },
                    )
                    row = {"rep": rep, "work": work, "pinned": pin, "way": way}
                    rows.append({**row, **out[0].result})
                    print(json.dumps(rows[-1]), flush=True)
    report = {
        "args": vars(args),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
