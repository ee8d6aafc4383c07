"""What LAQ_WIDTHS frames (``width_block``, laqcore.laq_widths) carry, and what they cost.

    python bench/bench_width_frames.py [--dataset digits] [--fraction 1] [--block 16]
        [--out bench/measured/width_frames.json]
    python bench/bench_width_frames.py --timing [--n 1048576] [--repeat 5]
        [--out bench/measured/width_frames_timing.json]

Contents (default): the digits LAQ run of ``bench_adaptive_bits.py`` (softmax, M = 10,
alpha = 0.02, eps = 1e-6) with ``adaptive_bits=F, width_block=B``; every width frame sent is
parsed into its fields and the empirical entropy (bits per symbol, over all frames sent) of
each part is reported next to its packed width: the table indices (2 bits), the radius
exponents (3 bits) and the codes of each width. The ideal saving an entropy coder could reach
on the frames, before any per-frame table, is the sum over parts of count x (packed bits -
entropy). Deterministic.

``--timing``: on one thread, an innovation of ``--n`` float32 coordinates (Student-t with 3
degrees of freedom, seed 0), the median wall time of ``laq_quantize`` at 3 bits (the
global radius), ``laq_quantize`` with ``block_size=16``, ``laq_quantize_widths`` (blocks of
16, F such that the cap binds, and a budget of 1% of ||v||^2) and the decoders' ``laq_apply``
of each, with their ratios to the first; the machine and thread count are in the report.
"""

from __future__ import annotations

import argparse
import collections
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from laqcore.bench.timing import emit_report
from laqcore.laq_widths import LAQWidthsPayload, laq_quantize_widths
from laqcore.lazy_state import LazyUploader
from provenance import bench_command, source_info


def _entropy(counts: collections.Counter[int]) -> float:
    c = np.array(list(counts.values()), dtype=np.float64)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def frame_parts(p: LAQWidthsPayload) -> dict[str, list[int]]:
    """The symbols of a width frame's body: its table indices, exponents and, per width, its
    codes (the layout of cpp/include/laqcore/laq_widths.hpp, read bit by bit)."""
    bits = np.unpackbits(np.asarray(p.packed), bitorder="little").tolist()
    pos = 0

    def take(width: int) -> int:
        nonlocal pos
        value = sum(bits[pos + k] << k for k in range(width))
        pos += width
        return value

    w = p.block_widths.tolist()
    parts: dict[str, list[int]] = collections.defaultdict(list)
    parts["index"] = [take(2) for _ in w]
    parts["exponent"] = [take(3) for b in w if b > 0]
    for j, b in enumerate(w):
        if b > 0:
            size = min(p.block_size, p.n - j * p.block_size)
            parts[f"codes w={b}"] += [take(b) for _ in range(size)]
    return parts


def contents(args: argparse.Namespace) -> dict[str, Any]:
    frames: list[LAQWidthsPayload] = []
    step = LazyUploader.step

    def recording(self: LazyUploader, grad: Any, rhs: float) -> Any:
        out = step(self, grad, rhs)
        if isinstance(out, LAQWidthsPayload):
            frames.append(out)
        return out

    LazyUploader.step = recording  # type: ignore[method-assign]
    try:
        problem = laqcore.make_problem(args.dataset, model="softmax", workers=10)
        algo = laqcore.get_algorithm(
            "laq", alpha=0.02, adaptive_bits=args.fraction, width_block=args.block
        )
        r = laqcore.simulate(problem, algo, eps=1e-6, max_iterations=5000)
    finally:
        LazyUploader.step = step  # type: ignore[method-assign]
    counts: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    for p in frames:
        for name, symbols in frame_parts(p).items():
            counts[name].update(symbols)
    widths = {"index": 2, "exponent": 3} | {f"codes w={b}": b for b in range(1, 9)}
    parts = {}
    saving = 0.0
    for name, c in sorted(counts.items()):
        n = sum(c.values())
        h = _entropy(c)
        parts[name] = {"symbols": n, "packed_bits": widths[name], "entropy_bits": h}
        saving += n * (widths[name] - h)
    frame_bits = 8 * sum(p.nbytes for p in frames)
    return {
        "problem": f"{args.dataset} softmax M=10",
        "adaptive_bits": args.fraction,
        "width_block": args.block,
        "run_bits": r.bits,
        "run_uploads": r.uploads,
        "reached": r.reached_tolerance,
        "width_frames": len(frames),
        "width_frame_bits": frame_bits,
        "parts": parts,
        "ideal_saving_bits": saving,
        "ideal_saving_share": saving / frame_bits,
    }


def _median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def timing(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    g = rng.standard_t(3, args.n).astype(np.float32)
    v_sq = float(np.dot(g.astype(np.float64), g))
    cases = {
        "laq_quantize b=3": lambda: laqcore.laq_quantize(g, None, 3),
        "laq_quantize b=3 block_size=16": lambda: laqcore.laq_quantize(g, None, 3, 16),
        "laq_quantize_widths B=16 (cap binds)": lambda: laq_quantize_widths(g, None, 16, np.inf),
        "laq_quantize_widths B=16 (budget 1%)": lambda: laq_quantize_widths(
            g, None, 16, 0.01 * v_sq
        ),
    }
    rows = {}
    with laqcore.num_threads(1):
        for name, fn in cases.items():
            payload = fn()
            out = np.zeros(args.n, dtype=np.float32)
            rows[name] = {
                "quantize_s": _median_time(fn, args.repeat),
                "apply_s": _median_time(
                    lambda p=payload, o=out: laqcore.laq_apply(o, p), args.repeat
                ),
                "frame_bytes": payload.nbytes,
            }
    base = rows["laq_quantize b=3"]
    for r in rows.values():
        r["quantize_over_laq"] = r["quantize_s"] / base["quantize_s"]
        r["apply_over_laq"] = r["apply_s"] / base["apply_s"]
    return {
        "n": args.n,
        "threads": 1,
        "repeat": args.repeat,
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--fraction", type=float, default=1.0, help="adaptive_bits F")
    ap.add_argument("--block", type=int, default=16, help="width_block")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    body = timing(args) if args.timing else contents(args)
    emit_report(
        {"command": bench_command(__file__, sys.argv[1:]), **source_info(), **body}, args.out
    )


if __name__ == "__main__":
    main()
