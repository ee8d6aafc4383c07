"""What one small exchange costs on gloo, by the ways laqcore's exchanges can move it.

Two ranks, each in its own process (one torch thread), exchange a ``--bytes`` message per
round, ``--rounds`` rounds, with ``--busy-ms`` of busy work (a spin loop, standing for the
backward pass) before each round; the medians and means of the rounds' wall time on rank 0:

* ``message, receive posted with the send``: ``irecv`` + ``isend``, then wait (the all-gather
  exchange's round of messages until session 22);
* ``message, receive posted ahead``: the receive of round t+1 posted as round t ends
  (``laqcore.distributed.messages.PostedMessages``, what the exchanges run now);
* ``all_to_all_single``: the same bytes as one collective (the all-to-all rounds);
* ``all_reduce fp32``/``fp16``: DDP's all-reduce of the MLP's 85,002 gradients, for scale.

``--link none`` runs on loopback; a rate (``1gbit``) puts each rank in its own network
namespace behind a veth shaped by tc (bench/bench_distributed.py's ``Netns``; root only).

Usage::

    python bench/bench_messages.py --link none --out bench/measured/messages_loopback.json
    python bench/bench_messages.py --link 1gbit --out bench/measured/messages_1gbit.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
PORT = 29731
MLP_PARAMETERS = 85_002


def _busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def _rank_main(cfg: dict[str, Any]) -> None:
    """One rank: every way in turn (the first twice, to see drift); prints its times (rank 0)
    or ``[]`` as its last stdout line."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from laqcore.distributed.gather import HostGather
    from laqcore.distributed.messages import PostedMessages

    torch.set_num_threads(1)
    rank = cfg["rank"]
    dist.init_process_group(
        "gloo", init_method=f"tcp://{cfg['master']}:{PORT}", rank=rank, world_size=2
    )
    peer, n = 1 - rank, cfg["bytes"]
    send = torch.full((n,), rank, dtype=torch.uint8)
    inbox = torch.empty(n, dtype=torch.uint8)
    gather = HostGather(None, 2, torch.device("cpu"), lambda what, fn, *a, **k: fn(*a, **k))
    mail = PostedMessages(None, rank, 2, lambda what, fn, *a, **k: fn(*a, **k), gather.ints)
    message = np.full(n, rank, np.uint8)

    def with_send() -> None:
        works = [dist.irecv(inbox, src=peer, tag=7), dist.isend(send, dst=peer, tag=7)]
        for w in works:
            w.wait()

    def ahead() -> None:
        mail.send([message, message], n, "bench")
        mail.repost(n, "bench")

    def all_to_all() -> None:
        dist.all_to_all_single(torch.empty(2 * n, dtype=torch.uint8), torch.cat([send, send]))

    grads32 = torch.zeros(MLP_PARAMETERS)
    grads16 = torch.zeros(MLP_PARAMETERS, dtype=torch.float16)
    ways = [
        ("message, receive posted with the send", with_send),
        ("message, receive posted ahead", ahead),
        ("all_to_all_single", all_to_all),
        ("all_reduce fp32 (85,002)", lambda: dist.all_reduce(grads32)),
        ("all_reduce fp16 (85,002)", lambda: dist.all_reduce(grads16)),
        ("message, receive posted with the send (again)", with_send),
        ("message, receive posted ahead (again)", ahead),
    ]
    rows = []
    for name, fn in ways:
        times = []
        for _ in range(cfg["rounds"]):
            _busy(cfg["busy_ms"])
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        rows.append(
            {"way": name, "median_ms": float(np.median(times)), "mean_ms": float(np.mean(times))}
        )
        dist.barrier()
    dist.destroy_process_group()
    print(json.dumps(rows if rank == 0 else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--link", default="none", help="none (loopback) or a tc rate, e.g. 1gbit")
    ap.add_argument("--bytes", type=int, default=10_000, help="message size")
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--busy-ms", type=float, default=1.0, help="busy work before each round")
    ap.add_argument("--out", help="JSON report (a .md table is written beside)")
    ap.add_argument("--rank-config", help=argparse.SUPPRESS)
    sys.path.insert(0, str(HERE))
    from bench_distributed import add_burst_argument

    add_burst_argument(ap)
    args = ap.parse_args(argv)
    if args.rank_config:
        _rank_main(json.loads(Path(args.rank_config).read_text()))
        return 0
    if args.bytes < 1 or args.rounds < 1 or args.busy_ms < 0:
        ap.error("--bytes and --rounds must be >= 1, --busy-ms >= 0")
    if args.link != "none" and os.geteuid() != 0:
        ap.error("a shaped link needs root (network namespaces and tc)")
    from bench_distributed import SUBNET, Netns, launch_ranks

    load = os.getloadavg()[0]
    cfg = {"bytes": args.bytes, "rounds": args.rounds, "busy_ms": args.busy_ms}
    with contextlib.ExitStack() as stack:
        net = (
            None
            if args.link == "none"
            else stack.enter_context(Netns(2, args.link, 0.0, args.burst_ms))
        )
        master = "127.0.0.1" if net is None else f"{SUBNET}.1"
        configs = [{**cfg, "rank": r, "master": master} for r in range(2)]
        got = launch_ranks(__file__, configs, net, 600.0, f"messages, link {args.link}")
    rows = cast("list[dict[str, Any]]", got[0])  # rank 0's line: its rows (rank 1 prints [])
    report: dict[str, Any] = {
        "link": args.link,
        "burst_ms": args.burst_ms,
        "bytes": args.bytes,
        "rounds": args.rounds,
        "busy_ms": args.busy_ms,
        "load_before_after": [load, os.getloadavg()[0]],
        "rows": rows,
    }
    lines = [
        f"{args.bytes}-byte exchange between 2 gloo ranks, link {args.link}, {args.rounds} "
        f"rounds after {args.busy_ms} ms of busy work each (load {load:.1f} -> "
        f"{report['load_before_after'][1]:.1f}):",
        "",
        "| way | median ms | mean ms |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['way']} | {r['median_ms']:.3f} | {r['mean_ms']:.3f} |" for r in rows]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
