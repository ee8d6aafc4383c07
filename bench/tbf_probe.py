"""How fast a message crosses the benches' tc-shaped link, for each token-bucket size.

The tc benches (bench_hooks.py's ``tc`` suite, bench_distributed.py, hook_floors.py,
bench_messages.py) shape each rank's veth with a tbf token bucket of ``--burst-ms`` ms of
traffic at the rate (:func:`bench_distributed.burst_bytes`). A message that fits the bucket
after an idle gap leaves at the veth's speed, not at the rate; a trainer's step is such a
gap followed by a message. This script measures it on the benches' own setup (two
namespaces on the bridge of :class:`bench_distributed.Netns`): rank 0 sleeps ``--gap-ms``,
sends a message of each ``--sizes`` bytes over TCP (TCP_NODELAY) and waits for a one-byte
reply sent once the whole message is in; the median over ``--repeats`` sends, per
``--burst-ms`` value, as seconds and as the effective rate. With ``--all-reduce`` the two
ranks instead run a gloo all-reduce of each size (float32, both directions at once, as DDP
does), after the same gap and a barrier: the median over ``--repeats`` calls against
bytes / rate (what a 2-rank ring all-reduce must move each way).

Usage (as root)::

    python bench/tbf_probe.py --rate 1gbit --burst-ms 8,1,0.25 \\
        --out bench/measured/tbf_probe_1gbit.json
    python bench/tbf_probe.py --rate 1gbit --burst-ms 8,2,0.25 --all-reduce \\
        --sizes 340000,21069864 --out bench/measured/tbf_probe_1gbit_allreduce.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_distributed import (  # noqa: E402
    SUBNET,
    Netns,
    _parse_rate,
    burst_bytes,
    launch_ranks,
    netns_available,
)

PORT = 5917


def _server() -> None:
    """Namespace 1: receive length-prefixed messages, answer one byte after each."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((f"{SUBNET}.2", PORT))
    srv.listen(1)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        head = conn.recv(8, socket.MSG_WAITALL)
        if len(head) < 8:
            return
        left = int.from_bytes(head, "little")
        while left:
            chunk = conn.recv(min(1 << 20, left))
            if not chunk:
                return
            left -= len(chunk)
        conn.sendall(b"k")


def _connect(deadline_s: float = 30.0) -> socket.socket:
    """Namespace 0's connection to the server, which starts at the same time."""
    give_up = time.monotonic() + deadline_s
    while True:
        try:
            return socket.create_connection((f"{SUBNET}.2", PORT), timeout=30)
        except ConnectionRefusedError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def _client(sizes: list[int], gap_s: float, repeats: int) -> dict[int, float]:
    """Namespace 0: the median seconds from send to reply, per message size."""
    conn = _connect()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = {}
    for size in sizes:
        message = size.to_bytes(8, "little") + bytes(size)
        times = []
        for _ in range(repeats):
            time.sleep(gap_s)
            t0 = time.perf_counter()
            conn.sendall(message)
            conn.recv(1)
            times.append(time.perf_counter() - t0)
        out[size] = sorted(times)[len(times) // 2]
    conn.close()
    return out


def _all_reduce_rank(rank: int, sizes: list[int], gap_s: float, repeats: int) -> None:
    """One of two ranks: gloo all-reduces of each size; rank 0 prints the medians."""
    import datetime

    import torch
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{SUBNET}.1:{PORT}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    out = {}
    for size in sizes:
        x = torch.ones(size // 4)
        times = []
        for _ in range(repeats + 2):  # the first two set up gloo's buffers
            time.sleep(gap_s)
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(x)
            times.append(time.perf_counter() - t0)
        out[size] = sorted(times[2:])[repeats // 2]
    print(json.dumps(out if rank == 0 else None), flush=True)
    # Leave without the interpreter's teardown: gloo's threads sometimes abort while being
    # destroyed (bench/hook_trainer.py does the same), after the result is out.
    os._exit(0)


def _rank_main(cfg: dict[str, Any]) -> None:
    """One end of a measurement (bench_distributed.launch_ranks runs rank r in namespace r);
    its last stdout line: the medians (rank 0) or ``null``."""
    sizes, gap_s, repeats = cfg["sizes"], cfg["gap_ms"] / 1e3, cfg["repeats"]
    if cfg["all_reduce"]:
        _all_reduce_rank(cfg["rank"], sizes, gap_s, repeats)  # prints, then leaves
    elif cfg["rank"] == 0:
        print(json.dumps(_client(sizes, gap_s, repeats)))
    else:
        _server()
        print(json.dumps(None))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--burst-ms", default="8,1,0.25", help="comma list of token buckets, ms")
    ap.add_argument("--sizes", default="20000,170000,340000,8000000", help="message bytes")
    ap.add_argument("--gap-ms", type=float, default=3.0, help="idle time before each message")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--out", default=None, help="JSON report")
    ap.add_argument(
        "--all-reduce", action="store_true", help="time gloo all-reduces instead of messages"
    )
    ap.add_argument("--rank-config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rank_config:
        with open(args.rank_config) as fh:
            _rank_main(json.load(fh))
        return 0
    ok, why = netns_available()
    if not ok:
        ap.error(f"needs network namespaces and tc: {why}")
    cfg = {
        "sizes": [int(v) for v in args.sizes.split(",")],
        "gap_ms": args.gap_ms,
        "repeats": args.repeats,
        "all_reduce": args.all_reduce,
    }
    what = "all-reduce" if args.all_reduce else "message"
    rate_bps = _parse_rate(args.rate)
    rows: list[dict[str, Any]] = []
    for burst_ms in [float(v) for v in args.burst_ms.split(",")]:
        with Netns(2, args.rate, 0.0, burst_ms) as net:
            configs = [{**cfg, "rank": r} for r in range(2)]
            medians = launch_ranks(__file__, configs, net, 600.0, f"tbf probe, {what}")[0]
        row = {"burst_ms": burst_ms, "burst_bytes": burst_bytes(args.rate, burst_ms)}
        row["messages"] = [
            {
                "bytes": int(n),
                "seconds": t,
                "gbit_per_s": int(n) * 8 / t / 1e9,
                "x_bytes_over_rate": t / (int(n) * 8 / rate_bps),
            }
            for n, t in medians.items()
        ]
        rows.append(row)
        cells = "  ".join(
            f"{m['bytes'] / 1e3:.0f} KB {m['seconds'] * 1e3:.2f} ms ({m['gbit_per_s']:.2f} Gbit/s,"
            f" {m['x_bytes_over_rate']:.2f}x bytes/rate)"
            for m in row["messages"]
        )
        print(
            f"{args.rate}, burst {burst_ms} ms = {row['burst_bytes']} B, {what}: {cells}",
            flush=True,
        )
    if args.out:
        report = {
            "command": "python bench/tbf_probe.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "rate": args.rate,
            "gap_ms": args.gap_ms,
            "all_reduce": args.all_reduce,
            "repeats": args.repeats,
            "load_average": os.getloadavg(),
            "rows": rows,
        }
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
