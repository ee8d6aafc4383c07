"""Time to reach a loss target with DDP over a bandwidth-limited link: all-reduce vs LAQ vs QSGD.

Each rank runs in its own Linux network namespace, connected to a bridge by a veth pair whose
two ends are shaped with ``tc`` (token-bucket rate limit, optional netem delay), so every byte a rank sends
or receives crosses a link of the given bandwidth. This needs root and ``ip``/``tc``; the
script checks and, if namespaces are not possible, says so and falls back to the
bandwidth/latency model ``time = compute + bytes / bandwidth + rounds * latency`` fed with the
bytes each rank really sent over loopback (measured from the interface counters). The output
states which of the two was used.

Workload: an MLP (64 -> hidden -> 10, ReLU) on the digits data (laqcore.problems), full-batch
gradient descent, the data split contiguously over the ranks, DDP with

* ``allreduce``: no hook (DDP's own all-reduce of float32 buckets),
* ``laq``: ``laqcore.torch.laq_hook`` (``--bits``-bit innovations, 8 by default; lazy uploads),
* ``qsgd``: ``laqcore.torch.qsgd_hook``.

The target is the training loss that plain all-reduce reaches after ``--target-iters``
iterations with the same number of processes; every method then runs until its own loss is at
or below that target (or ``--max-iters``). Reported per (processes, method): wall time,
iterations, bytes sent per rank (hook statistics) and bytes that crossed each rank's interface
(kernel counters, TCP/IP headers included), plus the ratios to all-reduce and the 4 -> 8
process scaling.

Usage (as root)::

    python bench/bench_distributed.py --nprocs 2,4,8 --rate 100mbit --out bench/results
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

SUBNET = "10.78.0"
_RUNS: list[str] = []


# --------------------------------------------------------------------------------------
# network namespaces
# --------------------------------------------------------------------------------------
def _sh(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True)


#: The token bucket holds this many milliseconds of traffic at the link's rate (tbf's burst).
#: On this 2-core VM no size gives a faithful link for every kind of traffic
#: (docs/results_hooks.md, "The token bucket"; bench/tbf_probe.py, 1 Gbit/s): with 8 ms (1
#: MB), the bucket of every recording before session 23, a 340 KB gloo all-reduce takes 0.31x
#: bytes / rate, a message that fits the bucket after an idle gap leaves at the veth's speed;
#: with 0.25 ms single messages cross at the rate but an all-reduce, both directions at once,
#: takes 1.6-1.8x. 1 ms is the closest for all-reduce (0.79x at 340 KB, 1.05x at 21 MB) and
#: errs in its favour where it errs; a 340 KB message after idle crosses in 0.70x.
DEFAULT_BURST_MS = 1.0
#: The smallest burst: two full Ethernet frames (a packet larger than the bucket never leaves).
MIN_BURST_BYTES = 2 * 1514


def burst_bytes(rate: str, burst_ms: float) -> int:
    """tbf's burst for ``rate``: ``burst_ms`` of traffic at that rate, at least
    :data:`MIN_BURST_BYTES` (the kernel's high-resolution timers release the queue between
    ticks, so the bucket need not hold a timer tick of traffic).

    >>> burst_bytes("1gbit", 0.25), burst_bytes("100mbit", 8.0), burst_bytes("1mbit", 0.25)
    (31250, 100000, 3028)
    """
    return max(MIN_BURST_BYTES, int(_parse_rate(rate) / 8 * burst_ms / 1e3))


def add_burst_argument(ap: argparse.ArgumentParser, flag: str = "--burst-ms") -> None:
    """The benches' option for :class:`Netns`'s token bucket (one definition for all)."""
    ap.add_argument(
        flag,
        type=float,
        default=DEFAULT_BURST_MS,
        help="tc tbf burst in ms of traffic at the rate (see bench_distributed.DEFAULT_BURST_MS)",
    )


class Netns:
    """N namespaces ``<tag>i`` with interface ``<tag>n<i>`` at 10.78.0.(i+1), bridged."""

    def __init__(
        self, n: int, rate: str, delay_ms: float, burst_ms: float = DEFAULT_BURST_MS
    ) -> None:
        if not burst_ms > 0:
            raise ValueError(f"burst_ms must be > 0, got {burst_ms}")
        self.n = n
        self.tag = f"lqb{os.getpid() % 10000}"
        self.bridge = f"{self.tag}br"
        self.rate = rate
        self.delay_ms = delay_ms
        self.burst_ms = burst_ms

    def ns(self, i: int) -> str:
        return f"{self.tag}{i}"

    def iface(self, i: int) -> str:
        return f"{self.tag}n{i}"

    def _shape(self, dev: str, prefix: str = "") -> None:
        if self.delay_ms > 0:
            # netem (delay) is not available in every kernel; it is only needed for delays.
            _sh(f"{prefix}tc qdisc add dev {dev} root handle 1: netem delay {self.delay_ms}ms")
            parent = "parent 1:1 handle 10:"
        else:
            parent = "root"
        burst, latency = self._bucket()
        _sh(
            f"{prefix}tc qdisc add dev {dev} {parent} tbf rate {self.rate} burst {burst} "
            f"latency {latency}"
        )

    def _bucket(self) -> tuple[int, str]:
        """The token bucket's burst (bytes) and queue latency: :func:`burst_bytes`; a
        generous queue (latency) avoids drops and the TCP retransmission stalls they cause,
        which would not be about the methods compared."""
        return burst_bytes(self.rate, self.burst_ms), "200ms"

    def describe(self) -> dict[str, Any]:
        """The shaping, for the reports: rate, burst (ms of traffic and bytes), delay."""
        return {
            "rate": self.rate,
            "burst_ms": self.burst_ms,
            "burst_bytes": self._bucket()[0],
            "delay_ms": self.delay_ms,
        }

    def __enter__(self) -> Netns:
        _sh(f"ip link add {self.bridge} type bridge")
        _sh(f"ip link set {self.bridge} up")
        for i in range(self.n):
            ns, host, inner = self.ns(i), f"{self.tag}h{i}", self.iface(i)
            _sh(f"ip netns add {ns}")
            _sh(f"ip link add {host} type veth peer name {inner}")
            _sh(f"ip link set {inner} netns {ns}")
            _sh(f"ip link set {host} master {self.bridge}")
            _sh(f"ip link set {host} up")
            _sh(f"ip netns exec {ns} ip addr add {SUBNET}.{i + 1}/24 dev {inner}")
            _sh(f"ip netns exec {ns} ip link set {inner} up")
            _sh(f"ip netns exec {ns} ip link set lo up")
            self._shape(host)  # the rank's downlink
            self._shape(inner, prefix=f"ip netns exec {ns} ")  # its uplink
        return self

    def __exit__(self, *exc: Any) -> None:
        for i in range(self.n):
            subprocess.run(f"ip netns del {self.ns(i)}", shell=True, capture_output=True)
            subprocess.run(f"ip link del {self.tag}h{i}", shell=True, capture_output=True)
        subprocess.run(f"ip link del {self.bridge}", shell=True, capture_output=True)


def netns_available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"'{tool}' not found"
    try:
        with Netns(1, "100mbit", 0.0):
            pass
    except subprocess.CalledProcessError as err:
        return False, f"'{err.cmd}' failed: {err.stderr.strip()}"
    return True, "ok"


# --------------------------------------------------------------------------------------
# one rank
# --------------------------------------------------------------------------------------
def _iface_bytes(iface: str | None) -> tuple[int, int]:
    if iface is None:
        return 0, 0
    base = f"/sys/class/net/{iface}/statistics/"
    with open(base + "tx_bytes") as a, open(base + "rx_bytes") as b:
        return int(a.read()), int(b.read())


def rank_main(cfg: dict[str, Any]) -> None:
    import datetime

    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.problems.datasets import load_digits

    torch.set_num_threads(1)
    rank, world = cfg["rank"], cfg["world"]
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://{cfg['master']}:{cfg['port']}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    data = load_digits()
    X = torch.tensor(np.asarray(data.X)[: cfg["samples"]], dtype=torch.float32)
    y = torch.tensor(np.asarray(data.y)[: cfg["samples"]], dtype=torch.int64)
    lo, hi = rank * len(X) // world, (rank + 1) * len(X) // world
    Xs, ys = X[lo:hi], y[lo:hi]
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, cfg["hidden"]), torch.nn.ReLU(), torch.nn.Linear(cfg["hidden"], 10)
    )
    ddp = DDP(model)
    state = None
    if cfg["method"] == "laq":
        from laqcore.torch import LAQState, laq_hook

        state = LAQState(bits=cfg["bits"], warmup_steps=2)
        ddp.register_comm_hook(state, laq_hook)
    elif cfg["method"] == "qsgd":
        from laqcore.torch import QSGDState, qsgd_hook

        state = QSGDState(levels=16, seed=1)
        ddp.register_comm_hook(state, qsgd_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=cfg["lr"])
    n_local = float(hi - lo)
    losses: list[float] = []
    dist.barrier()
    tx0, rx0 = _iface_bytes(cfg.get("iface"))
    t0 = time.perf_counter()
    it = 0
    while it < cfg["max_iters"]:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(Xs), ys)
        loss.backward()
        opt.step()
        it += 1
        # Global loss (sample-weighted mean over ranks) for the stop test: one tiny
        # all-reduce that every method pays.
        tot = torch.tensor([loss.item() * n_local, n_local], dtype=torch.float64)
        dist.all_reduce(tot)
        losses.append(float(tot[0] / tot[1]))
        if cfg["target"] is not None and losses[-1] <= cfg["target"]:
            break
    elapsed = time.perf_counter() - t0
    tx1, rx1 = _iface_bytes(cfg.get("iface"))
    out = {
        "rank": rank,
        "time_s": elapsed,
        "iterations": it,
        "final_loss": losses[-1],
        "losses": losses,
        "iface_tx_bytes": tx1 - tx0,
        "iface_rx_bytes": rx1 - rx0,
        "params": sum(p.numel() for p in model.parameters()),
        "stats": None if state is None else {k: float(v) for k, v in state.stats().items()},
    }
    # Report first, then leave without the interpreter's teardown: gloo's threads sometimes
    # abort ("terminate called without an active exception") while being destroyed, which
    # says nothing about the run that already finished.
    print(json.dumps(out), flush=True)
    dist.barrier()
    os._exit(0)


# --------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------
def run_config(
    n: int,
    method: str,
    target: float | None,
    args: argparse.Namespace,
    net: Netns | None,
) -> list[dict[str, Any]]:
    # A fresh port per run: the previous run's store socket may linger in TIME_WAIT.
    _RUNS.append(method)
    port = 29500 + (os.getpid() + 17 * len(_RUNS)) % 20000
    configs = [
        {
            "rank": r,
            "world": n,
            "method": method,
            "target": target,
            "lr": args.lr,
            "hidden": args.hidden,
            "bits": args.bits,
            "samples": args.samples,
            "max_iters": args.max_iters,
            "port": port,
            "master": f"{SUBNET}.1" if net else "127.0.0.1",
            "iface": net.iface(r) if net else None,
        }
        for r in range(n)
    ]
    return launch_ranks(__file__, configs, net, args.run_timeout, f"{method}, n={n}")


def launch_ranks(
    script: str,
    configs: list[dict[str, Any]],
    net: Netns | None,
    timeout: float,
    label: str,
) -> list[dict[str, Any]]:
    """Run ``script --rank-config <file>`` once per config (rank r inside namespace r when
    ``net`` is given, else on loopback), with one OpenMP thread and gloo on the rank's
    interface; return each rank's last stdout line parsed as JSON. A failed rank raises
    ``RuntimeError`` with the tail of its stderr; no rank outlives the call."""
    tmp = tempfile.mkdtemp(prefix="lqbench")
    procs: list[subprocess.Popen[str]] = []
    try:
        for r, cfg in enumerate(configs):
            path = os.path.join(tmp, f"cfg{r}.json")
            with open(path, "w") as fh:
                json.dump(cfg, fh)
            cmd = [sys.executable, os.path.abspath(script), "--rank-config", path]
            env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
            if net:
                env["GLOO_SOCKET_IFNAME"] = net.iface(r)
                cmd = ["ip", "netns", "exec", net.ns(r), *cmd]
            procs.append(
                subprocess.Popen(
                    cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
        outs = []
        for p in procs:
            so, se = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"rank failed ({label}):\n{se[-3000:]}")
            outs.append(json.loads(so.strip().splitlines()[-1]))
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(outs: list[dict[str, Any]]) -> dict[str, Any]:
    st = [o["stats"] for o in outs if o["stats"]]
    return {
        "time_s": max(o["time_s"] for o in outs),
        "iterations": outs[0]["iterations"],
        "final_loss": outs[0]["final_loss"],
        "iface_bytes_per_rank": sum(o["iface_tx_bytes"] for o in outs) / len(outs),
        "hook_bytes_sent_per_rank": (sum(s["bytes_sent"] for s in st) / len(st)) if st else None,
        "uploads_skipped_per_rank": (sum(s["uploads_skipped"] for s in st) / len(st))
        if st
        else None,
        "params": outs[0]["params"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rank-config", help=argparse.SUPPRESS)
    ap.add_argument("--nprocs", default="2,4,8")
    ap.add_argument("--methods", default="allreduce,laq,qsgd")
    ap.add_argument("--rate", default="100mbit", help="link rate per rank and direction (tc)")
    ap.add_argument("--delay-ms", type=float, default=0.0, help="added one-way delay (netem)")
    add_burst_argument(ap)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument(
        "--samples",
        type=int,
        default=512,
        help="training samples used (of 1797), split over the ranks",
    )
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--bits", type=int, default=8, help="LAQ bits per coordinate")
    ap.add_argument("--target-iters", type=int, default=100)
    ap.add_argument("--max-iters", type=int, default=400)
    ap.add_argument("--run-timeout", type=float, default=300)
    ap.add_argument(
        "--model-only",
        action="store_true",
        help="skip namespaces: loopback + bandwidth/latency model",
    )
    ap.add_argument("--latency-ms", type=float, default=0.1, help="model: per-round latency")
    ap.add_argument("--out", default=None, help="directory for bench_distributed.json")
    args = ap.parse_args()
    if args.rank_config:
        with open(args.rank_config) as fh:
            rank_main(json.load(fh))  # prints its JSON line and exits the process
        return 1

    ok, why = (False, "--model-only given") if args.model_only else netns_available()
    mode = "netns+tc" if ok else "model"
    print(
        f"# link: {mode} ({'each rank in its own namespace, veth shaped by tc tbf' if ok else why})"
    )
    print(
        f"# rate {args.rate}, delay {args.delay_ms} ms, MLP 64-{args.hidden}-10, "
        f"{args.samples} samples, full batch, lr {args.lr}, LAQ {args.bits} bits, "
        f"machine: {os.cpu_count()} cores"
    )
    rate_bps = _parse_rate(args.rate)
    report: dict[str, Any] = {
        "mode": mode,
        "why": why,
        "rate": args.rate,
        "burst_ms": args.burst_ms,
        "runs": {},
    }
    for n in [int(v) for v in args.nprocs.split(",")]:
        net_ctx = Netns(n, args.rate, args.delay_ms, args.burst_ms) if ok else None
        try:
            if net_ctx:
                net_ctx.__enter__()
            ref = run_config(
                n,
                "allreduce",
                None,
                argparse.Namespace(**{**vars(args), "max_iters": args.target_iters}),
                net_ctx,
            )
            target = ref[0]["losses"][-1]
            for method in args.methods.split(","):
                outs = run_config(n, method, target, args, net_ctx)
                s = summarize(outs)
                if not ok:
                    # The model: measured compute time on loopback plus the transfer time of
                    # the bytes this rank really sent, plus one latency per iteration and
                    # collective (2 collectives: gradient exchange + loss).
                    s["measured_loopback_time_s"] = s["time_s"]
                    s["time_s"] = (
                        s["time_s"]
                        + 8 * s["iface_bytes_per_rank"] / rate_bps
                        + (2 * s["iterations"] * args.latency_ms / 1000)
                    )
                s["target_loss"] = target
                report["runs"][f"{n}/{method}"] = s
                print(
                    f"n={n} {method:9s} time {s['time_s']:7.2f} s  iters {s['iterations']:4d}  "
                    f"loss {s['final_loss']:.4f} (target {target:.4f})  "
                    f"iface bytes/rank {s['iface_bytes_per_rank'] / 1e6:8.2f} MB",
                    flush=True,
                )
        finally:
            if net_ctx:
                net_ctx.__exit__()
    print("# ratios (all-reduce time / method time, same process count):")
    runs = report["runs"]
    for key, s in runs.items():
        n, method = key.split("/")
        base = runs.get(f"{n}/allreduce")
        if base and method != "allreduce":
            ratio = base["time_s"] / s["time_s"]
            s["speedup_vs_allreduce"] = ratio
            print(f"  n={n} {method}: {ratio:.2f}x")
    for method in args.methods.split(","):
        a, b = runs.get(f"4/{method}"), runs.get(f"8/{method}")
        if a and b:
            print(f"# 4 -> 8 processes, {method}: {a['time_s'] / b['time_s']:.2f}x faster")
            report.setdefault("scaling_4_to_8", {})[method] = a["time_s"] / b["time_s"]
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "bench_distributed.json")
        with open(path, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {path}")
    return 0


def _parse_rate(text: str) -> float:
    t = text.lower()
    for suffix, mult in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if t.endswith(suffix):
            return float(t[: -len(suffix)]) * mult
    return float(t)


if __name__ == "__main__":
    sys.exit(main())
