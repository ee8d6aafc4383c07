"""PROTOTYPE (bench-only): LAQ with a bit width per radius block, allocated by rate and
distortion (issue 13.3). The library's version (2-bit widths 0/2/3/4, 3-bit exponents, cap
0.3) is ``laqcore.laq_widths``; this script keeps the variants it was chosen from.

    python bench/bench_adaptive_blockwidths.py [--dataset digits] [--block 32]
        [--radius-code f32|log8|log2|log2s] [--width-field 4|3|2] [--ternary] [--cap 0.5]
        [--widths 2,3,4,6,8]
        [--targets rhs:2,rel:0.05] [--out bench/measured/adaptive_blockwidths.json]

Every criterion tried before (``bench_adaptive_bits.py``, ``bench_adaptive_criteria.py``,
``bench_adaptive_zero_grid.py``) picks one width per upload. This one picks a width b_j in
0..8 for every block j of ``--block`` coordinates: LAQ's grid on the block's own radius
R_j (v = grad - q_prev), b_j = 0 sending nothing for the block (dQ_j = 0, its error
||v_j||^2). The widths minimise the frame's bits subject to ||eps||^2 <= target, by the
Lagrangian allocation of rate-distortion theory: for a multiplier lam each block takes the b
minimising err_j(b) + lam bits_j(b), and lam is bisected (in log space) to the largest value
whose total error meets the target; high-energy blocks get more bits, blocks whose
innovation is small get few or none.

The frame, counted exactly (plus LAQ's fixed frame bytes): per block a width field
(``--width-field``: 4 bits, 3 with width 7 not offered, or 2 with widths 0, 2, 3, 4), per block sent a radius
(``--radius-code``: ``f32`` = max |v_j| in float32; ``log8`` / ``log2`` / ``log2s`` = an exponent e_j
of 8 / 4 / 3 bits with R_j = R_max 2^(-e_j / K), K = 8 / 2 / 2, rounded up from max |v_j|, and R_max
once per frame in float32) and b_j bits per coordinate; with ``--ternary`` width 1 is the grid
{-R, 0, R} instead, five trits a byte.

Targets (after the first upload, which is LAQ's global 4-bit one as in the other benches):

* ``rhs:F``: err_coef ||eps||^2 <= F rhs (the library's adaptive criterion, err_coef = 3),
  capped at ``--cap`` (0.5) ||v||^2 so that an upload forced by the clock still carries half its
  innovation's energy when rhs is huge;
* ``rel:K``: ||eps||^2 <= K ||v||^2.

The quantizer is numpy injected into the simulator (``bench/laq_prototypes.py``: the worker's
``q_prev`` and the server's aggregate add the prototype's dQ); it is *not* library code.
Ratios are to the cheapest of the fixed-width global-radius LAQ runs (``--widths``, b in
{2, 3, 4, 6, 8} by default) that reaches eps, as in ``bench_adaptive_bits.py`` (softmax,
M = 10, alpha = 0.02, eps = 1e-6, at most 5000 iterations). Deterministic (no timing).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from bench_adaptive_bits import run_arm
from laq_prototypes import (
    PAPER_QUANTIZE,
    DecodedPayload,
    decoded_payload,
    decoded_payloads,
)
from laqcore.bench.timing import emit_report
from laqcore.laq_payload import LAQPayload
from laqcore.lazy_state import LazyUploader
from provenance import bench_command, source_info

#: The width field: 4 bits (b_j in 0..8) or 3 (0..6 and 8: width 7 is not offered).
WIDTH_FIELDS = {4: tuple(range(9)), 3: (0, 1, 2, 3, 4, 5, 6, 8), 2: (0, 2, 3, 4)}
#: How a block's radius travels: "f32" exactly (32 bits a block); "logK" (K = 8, 2) as
#: e_j in 0..2^bits - 1 with R_j' = R_max 2^(-e_j / K) >= R_j (bits a block, plus R_max once
#: in float32): (bits a block, steps per octave or None, bits a frame).
RADIUS_CODES: dict[str, tuple[int, int | None, int]] = {
    "f32": (32, None, 0),
    "log8": (8, 8, 32),
    "log2": (4, 2, 32),
    "log2s": (3, 2, 32),
}
RADIUS_BITS = {k: v[0] for k, v in RADIUS_CODES.items()}
RADIUS_FRAME_BITS = {k: v[2] for k, v in RADIUS_CODES.items()}
WIDTH_FIELD_BITS = 4  # the default field
ERR_COEF = 3.0
CAP = 0.5  # the default --cap


class BlockWidthPayload(DecodedPayload):
    """A LAQ payload with one width per block; ``dq`` is its decoded innovation and
    ``frame_bytes`` its exact frame size (LAQ's fixed bytes + the packed block fields)."""

    frame_bytes: int

    @property
    def nbytes(self) -> int:
        return self.frame_bytes


def block_radii(vb: np.ndarray, code: str) -> np.ndarray:
    """The radius each block (row of ``vb``) is quantized with under ``code``
    (:data:`RADIUS_CODES`): its max |v| ("f32") or that rounded up to R_max 2^(-e / K)
    (the "logK" codes; 0 stays 0)."""
    r: np.ndarray = np.abs(vb).max(axis=1)
    top = r.max()
    bits, per_octave, _ = RADIUS_CODES[code]
    if per_octave is None or top == 0:
        return r
    with np.errstate(divide="ignore"):  # r = 0: inf -> the largest e
        e = np.clip(np.floor(-per_octave * np.log2(r / top)), 0, (1 << bits) - 1)
    return np.where(r > 0, top * 2.0 ** (-e / per_octave), 0.0)


def _block_errors(
    v: np.ndarray, block: int, code: str = "f32", ternary: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block j and width b in 0..8: the error ||dQ_j(b) - v_j||^2 (float64), the block's
    radius (:func:`block_radii`), and the codes' dQ for every b (b = 0: zeros). LAQ's grid:
    dQ = -R + code step, step = 2R / (2^b - 1), code = floor((v + R) / step + 1/2) (the
    library's formula), clipped to the grid (a "log8" radius is at least max |v_j|). With
    ``ternary`` width 1 is the grid {-R, 0, R} instead (nearest level)."""
    n = v.shape[0]
    nb = -(-n // block)
    pad = np.zeros(nb * block)
    pad[:n] = v
    vb = pad.reshape(nb, block)
    radius = block_radii(vb, code)
    dq = np.zeros((9, nb, block))
    for b in range(1, 9):
        top = (1 << b) - 1
        step = np.where(radius > 0, 2.0 * radius / top, 1.0)[:, None]
        codes = np.clip(np.floor((vb + radius[:, None]) / step + 0.5), 0, top)
        dq[b] = np.where(radius[:, None] > 0, -radius[:, None] + codes * step, 0.0)
    if ternary:
        r = np.where(radius > 0, radius, 1.0)[:, None]
        dq[1] = np.where(radius[:, None] > 0, r * np.clip(np.floor(vb / r + 0.5), -1, 1), 0.0)
    padding = (np.arange(nb * block) >= n).reshape(nb, block)
    dq[:, padding] = 0.0  # LAQ's grid has no zero: the padding's codes would decode to +-R/..
    err = ((dq - vb[None]) ** 2).sum(axis=2)  # (9, nb)
    return err, radius, dq


def allocate(
    v: np.ndarray,
    block: int,
    target: float,
    code: str = "f32",
    width_bits: int = WIDTH_FIELD_BITS,
    ternary: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Widths per block minimising the frame bits with total error <= target (Lagrangian,
    bisected over lam); returns (widths, dQ, bits of the block fields)."""
    n = v.shape[0]
    err, radius, dq = _block_errors(v, block, code, ternary)
    nb = err.shape[1]
    sizes = np.full(nb, block)
    sizes[-1] = n - block * (nb - 1)
    widths_range = np.arange(9)[:, None]
    bits = width_bits + np.where(widths_range > 0, RADIUS_BITS[code] + widths_range * sizes, 0)
    if ternary:  # width 1 is the ternary grid, five trits a byte
        bits[1] = width_bits + RADIUS_BITS[code] + 8 * -(-sizes // 5)
    offered = np.isin(np.arange(9), WIDTH_FIELDS[width_bits])
    err = np.where(offered[:, None], err, np.inf)  # a width the field cannot carry
    cols = np.arange(nb)

    def pick(lam: float) -> np.ndarray:
        return np.asarray(np.argmin(err + lam * bits, axis=0))

    lo, hi = -60.0, 60.0  # log2(lam): small lam -> precise, large -> cheap
    widest = max(WIDTH_FIELDS[width_bits])
    best = np.full(nb, widest)
    if err[widest].sum() <= target:
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            w = pick(2.0**mid)
            if err[w, cols].sum() <= target:
                best, lo = w, mid
            else:
                hi = mid
    flat = dq[best, cols].reshape(-1)[:n]
    return best, flat, float(bits[best, cols].sum())


def _choose(
    kind: str,
    value: float,
    block: int,
    seen: list[np.ndarray],
    code: str = "f32",
    width_bits: int = WIDTH_FIELD_BITS,
    ternary: bool = False,
    cap: float = CAP,
) -> Callable[[LazyUploader, Any, float], Any]:
    """The criterion ``kind:value`` (module docstring); every proposal's block widths are
    appended to ``seen``."""
    overhead: dict[int, int] = {}

    def choose(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
        g = np.asarray(grad, dtype=np.float32)
        p = np.asarray(up.q_prev, dtype=np.float32)
        v = (g - p).astype(np.float64)
        v2 = float(np.dot(v, v))
        if kind == "rhs":
            target = min(value * rhs / ERR_COEF, cap * v2)
        else:
            target = value * v2
        widths, dq64, bits = allocate(v, block, target, code, width_bits, ternary)
        n = g.shape[0]
        if n not in overhead:
            ref = PAPER_QUANTIZE(g, None, 1)
            overhead[n] = ref.nbytes - ref.body_nbytes
        # LAQ's fields are placeholders (frame_bytes counts the frame): one byte, max |v|
        payload: BlockWidthPayload = decoded_payload(
            BlockWidthPayload,
            g,
            p,
            dq64.astype(np.float32),
            np.zeros(1, np.uint8),
            float(np.abs(v).max()),
            8,
        )
        payload.frame_bytes = overhead[n] + -(-(int(bits) + RADIUS_FRAME_BITS[code]) // 8)
        seen.append(widths)
        up._iq._pending = payload  # what commit() will apply
        return payload

    return choose


def block_widths() -> contextlib.AbstractContextManager[None]:
    """The prototype's payloads decoded by the simulator while inside."""
    return decoded_payloads()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--block", type=int, default=32, help="coordinates per width block")
    ap.add_argument("--radius-code", choices=sorted(RADIUS_CODES), default="f32")
    ap.add_argument(
        "--width-field", type=int, choices=sorted(WIDTH_FIELDS), default=WIDTH_FIELD_BITS
    )
    ap.add_argument(
        "--ternary", action="store_true", help="width 1 is {-R, 0, R} (five trits a byte)"
    )
    ap.add_argument(
        "--cap", type=float, default=CAP, help="rhs targets: at most this share of ||v||^2"
    )
    ap.add_argument("--targets", default="rhs:0.5,rhs:1,rhs:2,rhs:3,rel:0.02,rel:0.05,rel:0.1")
    ap.add_argument("--widths", default="2,3,4,6,8", help="fixed global-radius widths")
    ap.add_argument("--alpha", type=float, default=0.02)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--max-iterations", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.entropy = False
    problem = laqcore.make_problem(args.dataset, model="softmax", workers=10)
    rows = []
    for b in (int(w) for w in args.widths.split(",")):
        rows.append({"setting": f"b={b}", **run_arm(problem, {"bits": b}, args)})
        print(rows[-1], file=sys.stderr, flush=True)
    for t in args.targets.split(","):
        kind, value = t.split(":")
        seen: list[np.ndarray] = []
        with block_widths():
            row = run_arm(
                problem,
                {"adaptive_bits": 1.0},
                args,
                _choose(
                    kind,
                    float(value),
                    args.block,
                    seen,
                    args.radius_code,
                    args.width_field,
                    args.ternary,
                    args.cap,
                ),
            )
        # widths_sent counts the frames (their nominal width 8); the blocks' widths here are
        # those of every proposal after the first upload, sent or skipped
        w = np.concatenate(seen)
        row["block_widths_proposed"] = {int(b): int(c) for b, c in enumerate(np.bincount(w)) if c}
        row["mean_block_width_proposed"] = float(w.mean())
        rows.append({"setting": f"block widths {t}", **row})
        print(rows[-1], file=sys.stderr, flush=True)
    fixed = [r["bits"] for r in rows if r["reached"] and r["setting"].startswith("b=")]
    best = min(fixed) if fixed else None
    for r in rows:
        r["bits_over_best_fixed"] = None if best is None else r["bits"] / best
    emit_report(
        {
            "command": bench_command(__file__, sys.argv[1:]),
            **source_info(),  # commit, modified
            "prototype": "per-block widths injected by this script (numpy), not library code",
            "problem": f"{args.dataset} softmax M=10",
            "alpha": args.alpha,
            "eps": args.eps,
            "block": args.block,
            "radius_code": args.radius_code,
            "width_field_bits": args.width_field,
            "ternary": args.ternary,
            "cap": args.cap,
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
