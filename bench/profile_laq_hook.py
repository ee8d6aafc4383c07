"""Where one rank's LAQ DDP hook spends its time, phase by phase (issue 15.1).

Runs an ordinary DDP trainer (the bench's models from ``hook_trainer``: ``big`` is the MLP
512-2048-2048-10 of 5,267,466 parameters) on ``--nprocs`` gloo ranks with ``LAQState(exchange="two-phase")`` (or
the keyword arguments of ``--kwargs``; ``LAQState()`` before ``exchange="auto"``), one torch thread per rank, and wraps the hook's
phases with wall-clock timers: bucket gather and scatter, the proposal (quantize + pack), the
upload split (slicing + rANS encoding of the chunks for the other owners), the control
all-gather and the uplink all-to-all (on gloo: one round of messages), the owner's decode +
accumulate, the publication (downlink re-quantization, apply, encode), the downlink
all-gather (on gloo: a round of messages), the decode of the other
owners' publications, the average (``replica / N``), the uploader's commit and the norms of
the lazy rule. Nested timers (indented names) are part of the phase above them. The
collectives' times include waiting for the slower rank.

``--clock thread`` times the phases in this thread's CPU time (``time.thread_time``) instead:
on a loaded machine the wall-clock phases include the time the rank was descheduled, and the
collectives' the time spent waiting for the other rank, where CPU time counts only the work
(for a collective: the Python around it, the backend's calls and the wait's system calls).

Rank 0's milliseconds per step (means over the steps after ``--warm``) go to stdout and, with
``--out``, to a JSON file, together with the load average and the per-step medians of the
whole step. Timers cost about a microsecond per call; numbers on a shared machine vary with
its load, so compare runs made one after the other.

With ``--kernels`` it instead times, in this process, the kernels of one step at the size of
the ``big`` model with 2 ranks (medians of 21 calls, 4-bit codes in blocks of 256, random
normal gradients) next to a ``memcpy`` (``numpy.copyto``) of the bytes they read.

Usage::

    python bench/profile_laq_hook.py --model big --nprocs 2 --steps 13 --warm 3 \\
        --out bench/measured/hook_profile_big.json
    python bench/profile_laq_hook.py --kernels --out bench/measured/hook_kernels_big.json
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch

from laqcore.distributed import run_processes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

TIMES: collections.defaultdict[str, float] = collections.defaultdict(float)
CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
#: The timers' clock (``--clock``), set in each rank before the timers are installed.
clock = CLOCKS["wall"]
CALLS: collections.Counter[str] = collections.Counter()

# (module, attribute path, label); a label starting with two spaces is nested in the one above.
PHASES = (
    ("laqcore.torch._state", "HookState._run", "hook total"),
    ("laqcore.torch._layout", "BucketLayout.gather", "bucket gather (torch -> flat)"),
    # With error feedback the gather adds w r too (one pass from the buckets; the layout's
    # copy above only where the buckets are not float32 on the CPU or a loss scale divides)
    ("laqcore.torch.laq_state", "LAQState._gather", "bucket gather + error feedback (w r)"),
    ("laqcore.lazy_state", "LazyUploader.propose", "propose (quantize + pack)"),
    ("laqcore.torch.laq_state", "LAQState._decide", "lazy rule decision"),
    ("laqcore.distributed.exchange_codecs", "LAQChunkCodec.split", "uplink split (slice + encode)"),
    # gloo: control + uplink as one round of messages, the publications as another
    # (laqcore.distributed.messages); NCCL: the three collectives
    (
        "laqcore.distributed.two_phase",
        "TwoPhaseExchange._uplink_messages",
        "control + uplink messages",
    ),
    ("laqcore.distributed.two_phase", "TwoPhaseExchange._all_gather_ints", "control all-gather"),
    ("laqcore.distributed.two_phase", "TwoPhaseExchange._all_to_all", "uplink all-to-all"),
    ("laqcore.distributed.exchange_codecs", "LAQChunkCodec.receive", "owner: decode + accumulate"),
    ("laqcore.distributed.exchange_codecs", "laq_accumulate", "  laq_accumulate"),
    ("laqcore.distributed.exchange_codecs", "laq_accumulate_all", "  laq_accumulate_all"),
    ("laqcore.distributed.exchange_codecs", "LAQChunkCodec.publish", "owner: publish"),
    ("laqcore.distributed.exchange_codecs", "laq_quantize", "  downlink quantize"),
    ("laqcore.distributed.two_phase", "TwoPhaseExchange._publish_messages", "downlink messages"),
    ("laqcore.distributed.two_phase", "TwoPhaseExchange._publish_slotted", "downlink all-gather"),
    ("laqcore.distributed.exchange_codecs", "LAQChunkCodec.apply", "apply others' publications"),
    ("laqcore.distributed.exchange_codecs", "laq_frame", "  frame decode (CRC + rANS)"),
    ("laqcore.distributed.exchange_codecs", "entropy_frame", "  frame encode (rANS + CRC)"),
    ("laqcore.distributed.exchange_codecs", "laq_apply", "  laq_apply (replica += dQ)"),
    ("laqcore.distributed.exchange_codecs", "LAQChunkCodec.result", "average (replica / N)"),
    ("laqcore.distributed.exchange_codecs", "laq_apply_average", "  fused apply + average"),
    # The all-gather exchange (exchange="all-gather", "auto" on 2 ranks up to 2^20 coordinates)
    ("laqcore.torch._exchange", "LAQAllGather._encode", "all-gather: frame encode"),
    ("laqcore.distributed.transport", "Transport.exchange", "all-gather: transport"),
    ("laqcore.distributed.transport", "Transport._messages", "  statuses + frames that fit"),
    ("laqcore.distributed.gather", "HostGather.frames", "  frames all-to-all (no fit)"),
    ("laqcore.torch._exchange", "LAQAllGather._decode", "all-gather: frame decode"),
    ("laqcore.torch._exchange", "LAQAllGather._add", "all-gather: aggregate += dQ"),
    ("laqcore.torch._exchange", "LAQAllGather._finish", "all-gather: average"),
    ("laqcore.lazy_state", "LazyUploader.commit", "commit (q_prev += dQ)"),
    ("laqcore.torch.laq_state", "_norm_sq", "norms for the lazy rule"),
    ("laqcore.torch._layout", "BucketLayout.scatter", "bucket scatter (flat -> torch)"),
)


def _wrap(owner: Any, name: str, label: str) -> None:
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[label] += clock() - t0
            CALLS[label] += 1

    setattr(owner, name, timed)


def _install() -> None:
    """Wrap every phase this version of the code has (a name that is not there, such as
    ``laq_apply`` in the codecs once the apply was fused with the average, is left out)."""
    import importlib

    for module, path, label in PHASES:
        owner: Any = importlib.import_module(module)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        if hasattr(owner, name):
            _wrap(owner, name, label)


def _rank_body(rank: int, world: int, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """One rank under laqcore's launcher (its process group, one torch thread); rank 0
    returns the report."""
    global clock
    clock = CLOCKS[cfg["clock"]]
    from torch.nn.parallel import DistributedDataParallel as DDP

    from hook_trainer import build_model, load_data
    from laqcore.torch import LAQState, laq_hook

    _install()
    torch.manual_seed(cfg["seed"])
    x, y, _, _ = load_data(cfg["model"], cfg["seed"])
    ddp = DDP(build_model(cfg["model"]))
    state = LAQState(**cfg["kwargs"])
    ddp.register_comm_hook(state, laq_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=cfg["lr"], momentum=0.9)
    batch, rows = cfg["batch"], len(x) - cfg["batch"]
    steps: list[float] = []
    for s in range(cfg["steps"]):
        if s == cfg["warm"]:
            TIMES.clear()
            CALLS.clear()
        i = (rank * 997 + s * batch) % rows
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(ddp(x[i : i + batch]), y[i : i + batch]).backward()
        opt.step()
        steps.append(time.perf_counter() - t0)
    if rank != 0:
        return None
    k = cfg["steps"] - cfg["warm"]
    labels = [label for _, _, label in PHASES]
    return {
        "ms_per_step": {lb: round(1e3 * TIMES[lb] / k, 3) for lb in labels if lb in TIMES},
        "calls_per_step": {lb: CALLS[lb] / k for lb in labels if lb in CALLS},
        "step_median_ms": round(1e3 * float(np.median(steps[cfg["warm"] :])), 1),
        "stats": {
            key: float(v)
            for key, v in state.stats().items()
            if key in ("uploads", "uploads_skipped", "bytes_received", "downlink_tail_rounds")
        },
    }


def median_ms(fn: Any, reps: int = 21, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in ms over ``reps`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _median_ms(fn: Any, reps: int = 21) -> float:
    return round(median_ms(fn, reps), 3)


def kernels(n: int = 5_267_466, world: int = 2) -> dict[str, float]:
    """Milliseconds per call of the step's kernels at ``n`` coordinates (chunks of n / world)."""
    import zlib

    from laqcore import _core, laq_accumulate, laq_apply, laq_quantize
    from laqcore.distributed.exchange_codecs import laq_frame
    from laqcore.distributed.slicing import chunk_bounds, slice_payload
    from laqcore.entropy import _code_parts, entropy_frame
    from laqcore.laq import laq_accumulate_all, laq_apply_average

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    g = (rng.standard_normal(n) * 1e-2).astype(np.float32)
    q = (g * np.float32(0.5)).astype(np.float32)
    out = np.empty_like(g)
    p = laq_quantize(g, q, 4, 256)
    start, stop = chunk_bounds(n, world, 256)[-1]  # the last owner's chunk
    chunk = slice_payload(p, start, stop)
    _, packed, bits, count = _code_parts(chunk)
    mode, stream = _core.entropy.encode_packed(packed, count, bits)
    frame = np.frombuffer(entropy_frame(chunk), np.uint8)
    owned = np.zeros(chunk.n, np.float32)
    small = np.empty_like(packed)
    t = torch.from_numpy(out)
    # The error feedback's gather from two bucket pieces: torch.cat, then g += w r, then
    # r = g' - q_prev (session 40's three passes) against one add_scaled_difference per piece
    # reading the pieces, the last g' and q_prev (r kept implicit).
    buckets = torch.from_numpy(g.copy())
    pieces = [buckets[: n // 2], buckets[n // 2 :]]
    host = [(0, pieces[0].numpy()), (n // 2, pieces[1].numpy())]
    flat, fed, r = torch.empty(n), (g * np.float32(1.5)).astype(np.float32), np.empty_like(g)

    def unfused() -> None:
        torch.cat(pieces, out=flat)
        _core.lazy.add_scaled(flat.numpy(), r, 0.5)
        np.subtract(flat.numpy(), q, out=r)

    def fused() -> None:
        dst = flat.numpy()
        for begin, piece in host:
            end = begin + len(piece)
            _core.lazy.add_scaled_difference(
                dst[begin:end], piece, fed[begin:end], q[begin:end], 0.5
            )

    return {
        "memcpy of n float32 (numpy.copyto)": _median_ms(lambda: np.copyto(out, g)),
        "gather of two pieces (torch.cat)": _median_ms(lambda: torch.cat(pieces, out=flat)),
        "gather + feedback, unfused (cat, g += w r, r = g' - q)": _median_ms(unfused),
        "gather + feedback, fused (add_scaled_difference)": _median_ms(fused),
        "quantize n (grad, q_prev -> 4-bit codes)": _median_ms(lambda: laq_quantize(g, q, 4, 256)),
        "laq_apply n (q += dQ)": _median_ms(lambda: laq_apply(out, p)),
        "replica / N into out (numpy.divide)": _median_ms(
            lambda: np.divide(g, np.float32(world), out=out)
        ),
        "laq_apply_average n (q += dQ; out = q / N)": _median_ms(
            lambda: laq_apply_average(q, p, world, out)
        ),
        "norm of n float32 (torch)": _median_ms(lambda: float(torch.linalg.vector_norm(t))),
        "laq_accumulate of a chunk": _median_ms(lambda: laq_accumulate(owned, chunk)),
        "laq_accumulate_all of two chunks (one pass)": _median_ms(
            lambda: laq_accumulate_all(owned, [chunk, chunk])
        ),
        "memcpy of a chunk's packed codes": _median_ms(lambda: np.copyto(small, packed)),
        "rANS encode of a chunk (encode_packed)": _median_ms(
            lambda: _core.entropy.encode_packed(packed, count, bits)
        ),
        "frame encode of a chunk (entropy_frame)": _median_ms(lambda: entropy_frame(chunk)),
        "rANS decode of a chunk (decode_packed)": _median_ms(
            lambda: _core.entropy.decode_packed(stream, count, bits, mode)
        ),
        "frame decode of a chunk (CRC, rANS, checks)": _median_ms(
            lambda: laq_frame(frame, chunk.n)
        ),
        "CRC-32 of a chunk's frame": _median_ms(lambda: zlib.crc32(frame)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from hook_trainer import MODELS, models_help

    ap.add_argument("--model", default="big", choices=list(MODELS), help=models_help())
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=13)
    ap.add_argument("--warm", type=int, default=3, help="steps left out of the means")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--kwargs",
        default='{"exchange": "two-phase"}',
        help="LAQState keyword arguments (JSON; default: the two-phase exchange, whose phases "
        "this script times, which LAQState() runs from 3 ranks on)",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--kernels", action="store_true", help="time the kernels, no training")
    ap.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="the phases' clock (see above)"
    )
    args = ap.parse_args()
    from bench_hooks import machine_info  # the hook benches' machine description (commit, ...)

    if args.kernels:
        load = os.getloadavg()[0]
        report_k = {"ms_per_call": kernels(), "machine": machine_info(), "load_average_1min": load}
        for label, ms in report_k["ms_per_call"].items():
            print(f"{label:<45}  {ms:8.3f} ms")
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(report_k, fh, indent=1)
        return
    if not 0 <= args.warm < args.steps:
        ap.error("need 0 <= --warm < --steps")
    cfg = {
        "model": args.model,
        "steps": args.steps,
        "warm": args.warm,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "kwargs": json.loads(args.kwargs),
        "clock": args.clock,
    }
    load_before = os.getloadavg()
    # laqcore's launcher: a free rendezvous port, and a rank that returned its report is
    # done even if gloo aborts its process at exit (torch.multiprocessing.spawn failed the
    # run then: "terminate called without an active exception", SIGABRT).
    outs = run_processes(_rank_body, args.nprocs, cfg, pg_timeout_s=120, deadline_s=1800)
    report = outs[0].result
    report["config"] = dict(cfg)
    report["config"]["nprocs"] = args.nprocs
    report["machine"] = machine_info() | {
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    width = max(len(k) for k in report["ms_per_step"])
    for label, ms in report["ms_per_step"].items():
        print(f"{label:<{width}}  {ms:8.2f} ms")
    print(f"{'step (median)':<{width}}  {report['step_median_ms']:8.1f} ms")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
