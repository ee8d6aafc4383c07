"""Break-even bandwidth of every compressor: below it, compressing pays on a link.

    python bench/break_even.py [--n 4194304] [--repeats 7] [--out bench/measured/break_even.json]

Sending n float32 over one link of bandwidth B costs ``32 n / B`` seconds; sending them
compressed costs ``t_enc + t_dec + 8 S / B``, where S is the frame's size in bytes (header,
metadata and CRC included) and the times are the sender's ``compress`` + ``to_bytes`` and the
receiver's ``from_bytes`` + ``decompress``, measured here on one thread. Compression is the
faster of the two exactly when ``B < B* = (32 n - 8 S) / (t_enc + t_dec)``, the break-even
bandwidth this script reports per setting: the compressor's cost measured apart from any
communication, in the unit a reader compares with their network (peer libraries publish
neither: docs/performance.md). It is a single-link figure: a collective over N ranks moves
other amounts (the DDP hooks' own time-to-target runs are in docs/results_hooks.md).

Input: a Gaussian vector (seeded), quantized against zero (LAQ's innovation quantizer with no
previous upload). Every setting also entropy-coded where it has a code stream. Times are
medians of interleaved samples (:func:`laqcore.bench.timing.time_interleaved`), next to a
memcpy of the 4n bytes in the same run; on a shared machine the break-even figures move with
its load, the frame sizes do not.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from laqcore.bench.timing import SHARED_MACHINE, emit_report, machine_info, time_interleaved

#: (label, registry name, keyword arguments) of every measured setting.
SETTINGS: list[tuple[str, str, dict[str, Any]]] = [
    *[(f"laq {b} bit", "laq", {"bits": b}) for b in (2, 4, 8)],
    *[(f"qsgd levels {s}", "qsgd", {"levels": s, "seed": 0}) for s in (1, 7, 127)],
    ("terngrad", "terngrad", {"seed": 0}),
    ("sign (scaled)", "sign", {}),
    ("top-k 1%", "topk", {"ratio": 0.01}),
    ("rotation levels 7", "rotation", {"levels": 7, "seed": 0}),
]


def measure(
    x: np.ndarray, name: str, kwargs: dict[str, Any], entropy: bool, repeats: int
) -> dict[str, Any]:
    """Frame size, encode and decode seconds (median, min) and the break-even bandwidth."""
    comp = laqcore.get_compressor(name, entropy=entropy, **kwargs)
    frame = comp.compress(x, step=0).to_bytes()
    n = x.size

    def encode() -> None:
        comp.compress(x, step=0).to_bytes()

    def decode() -> None:
        comp.decompress(comp.from_bytes(frame, expected_n=n))

    copy = np.empty_like(x)
    (enc, enc_min), (dec, dec_min), (mem, _) = time_interleaved(
        [encode, decode, lambda: np.copyto(copy, x)], repeats, min_time=0.05
    )
    saved_bits = 32 * n - 8 * len(frame)
    return {
        "bits_per_coord": 8 * len(frame) / n,
        "frame_bytes": len(frame),
        "encode_s": enc,
        "decode_s": dec,
        "encode_s_min": enc_min,
        "decode_s_min": dec_min,
        "memcpy_s": mem,
        "break_even_gbps": saved_bits / (enc + dec) / 1e9,
    }


def measure_fp16(x: np.ndarray, repeats: int) -> dict[str, Any] | None:
    """PyTorch's fp16_compress_hook's coding (a float16 cast each way, no frame), when
    torch is installed: the reference point of a cast that costs almost nothing."""
    try:
        import torch
    except ImportError:
        return None
    t = torch.from_numpy(x)
    half = t.half()
    copy = np.empty_like(x)
    torch.set_num_threads(1)
    (enc, enc_min), (dec, dec_min), (mem, _) = time_interleaved(
        [lambda: t.half(), lambda: half.float(), lambda: np.copyto(copy, x)], repeats, 0.05
    )
    return {
        "bits_per_coord": 16.0,
        "frame_bytes": 2 * x.size,
        "encode_s": enc,
        "decode_s": dec,
        "encode_s_min": enc_min,
        "decode_s_min": dec_min,
        "memcpy_s": mem,
        "break_even_gbps": 16 * x.size / (enc + dec) / 1e9,
    }


def markdown(rows: list[dict[str, Any]], n: int) -> str:
    head = (
        f"| setting (n = {n}, 1 thread) | bits / coord | encode ms | decode ms | "
        "x memcpy (enc + dec) | break-even Gbit/s |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['setting']}{' + entropy' if r['entropy'] else ''} | {r['bits_per_coord']:.3f} "
            f"| {r['encode_s'] * 1e3:.2f} | {r['decode_s'] * 1e3:.2f} "
            f"| {(r['encode_s'] + r['decode_s']) / r['memcpy_s']:.1f} | {r['break_even_gbps']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2**22, help="float32 coordinates per vector")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved samples per timing")
    ap.add_argument(
        "--out", type=Path, default=None, help="JSON report (the table goes beside it as .md)"
    )
    args = ap.parse_args(argv)
    if args.n < 1024 or args.repeats < 1:
        ap.error("--n must be >= 1024 and --repeats >= 1")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    x = np.random.default_rng(0).standard_normal(args.n).astype(np.float32)
    rows = []
    with laqcore.num_threads(1):
        for label, name, kwargs in SETTINGS:
            for entropy in (False, True):
                try:
                    row = measure(x, name, kwargs, entropy, args.repeats)
                except ValueError:  # no code stream to entropy-code (top-k)
                    continue
                rows.append({"setting": label, "entropy": entropy, **row})
                print(markdown(rows[-1:], args.n).splitlines()[-1], flush=True)
    fp16 = measure_fp16(x, args.repeats)
    if fp16 is not None:
        rows.append(
            {"setting": "float16 cast (torch; PyTorch's fp16 hook)", "entropy": False, **fp16}
        )
    table = markdown(rows, args.n)
    print(table)
    report = {"machine": machine_info(None, SHARED_MACHINE), "n": args.n, "rows": rows}
    emit_report(report, args.out)
    if args.out is not None:
        args.out.with_suffix(".md").write_text(table + "\n")


if __name__ == "__main__":
    main()
