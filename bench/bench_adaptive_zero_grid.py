"""PROTOTYPE (bench-only): LAQ on a zero-level grid, fixed and adaptive widths (issue 13.3).

    python bench/bench_adaptive_zero_grid.py [--dataset digits] [--fractions 0.5,2,3]
        [--diagnose] [--out bench/measured/adaptive_zero_grid.json]

LAQ's grid (docs/algorithms.md, "LAQ innovation quantizer") has 2^b levels
``-R + 2 tau R k``, ``tau = 1 / (2^b - 1)``, and no zero level: at b = 2 every small innovation
coordinate costs an error of R/3. This script tries the untried alternative, a grid of
``2^b - 1`` levels symmetric around 0 (b >= 2; K = 2^(b-1) - 1, levels ``R j / K`` for
j = -K..K, so b = 2 is {-R, 0, R} and b = 3 has 7 levels; one code value unused),
deterministic nearest rounding ``j = clip(floor(v K / R + 1/2), -K, K)``, the same frame size as
LAQ's (b bits per code + one float32 radius + the frame's fixed bytes).

The zero grid is a numpy quantizer injected into the simulator for the duration of an arm
(``laqcore.laq.laq_quantize`` and ``laqcore.laq._accumulate`` are swapped, so the worker's
``q_prev`` and the server's aggregate both add the zero-grid ``dQ``); it is *not* library code,
and ``--entropy`` / ``--block-size`` are not supported here. Arms (the setting of
``bench/bench_adaptive_bits.py``: softmax, M = 10, alpha = 0.02, eps = 1e-6, at most 5000
iterations; the first upload of every adaptive arm uses LAQ's default ``bits`` = 4):

* ``paper b=B`` / ``zero b=B``: fixed width B in {2, 3, 4, 6, 8} on either grid;
* ``paper adaptive F``: the library's ``adaptive_bits=F`` (smallest b in 1..8 with
  3 ||eps_b||^2 <= F rhs, else 8), for reference;
* ``zero adaptive F``: the same criterion with widths 2..8 on the zero grid;
* ``mixed adaptive F``: per upload, for b = 1..8 the grid with the smaller error at that
  width (b = 1: the paper grid only), the first b meeting the criterion (the frame would carry
  the grid in one flag).

Every ratio is to the cheapest fixed run over *both* grids that reaches eps (and, for
reference, to the cheapest paper-grid fixed run). Deterministic (no timing).

``--diagnose`` runs no arms: along one paper-grid b = 3 run (``--max-iterations``, 2000 by
default here) it quantizes, at every iteration of every worker after its first upload, the
same innovation v at b = 2, 3, 4 on both grids and reports the medians of ||eps_b||^2 /
||v||^2 and ||dQ_b||^2 / ||v||^2 and the share of those iterations at which the LAQ rule
||dQ||^2 >= rhs + 3 (||eps||^2 + ||eps_hat||^2) would upload (the clock aside).
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


class ZeroGridPayload(DecodedPayload):
    """A LAQ payload whose codes index the zero-level grid; ``dq`` is its decoded innovation."""


def zero_grid_quantize(
    grad: Any, prev: Any, bits: int, block_size: int | None = None
) -> ZeroGridPayload:
    """Quantize ``grad - prev`` on the 2^bits - 1 levels ``R j / K``, j = -K..K (float32)."""
    if block_size is not None or not 2 <= bits <= 8:
        raise ValueError("the zero-grid prototype needs a global radius and 2 <= bits <= 8")
    g = np.asarray(grad, dtype=np.float32)
    p = np.zeros_like(g) if prev is None else np.asarray(prev, dtype=np.float32)
    v = g - p
    radius = np.float32(np.abs(v).max())
    k = (1 << (bits - 1)) - 1
    if radius > 0:
        j = np.floor(v.astype(np.float64) * (k / float(radius)) + 0.5)
        codes = (np.clip(j, -k, k) + k).astype(np.uint8)
    else:
        codes = np.full(g.shape[0], k, dtype=np.uint8)
    table = ((np.arange(2 * k + 1) - k) * (float(radius) / k)).astype(np.float32)
    table[0], table[-1] = -radius, radius
    dq = table[codes]
    packed = laqcore.pack_bits(codes, bits)
    payload: ZeroGridPayload = decoded_payload(
        ZeroGridPayload, g, p, dq, packed, float(radius), bits
    )
    return payload


def zero_grid() -> contextlib.AbstractContextManager[None]:
    """Every LAQ quantization of the simulator on the zero grid while inside."""
    return decoded_payloads(zero_grid_quantize)


def _propose(up: LazyUploader, grad: Any, bits: int, grid: str) -> LAQPayload:
    quantize = zero_grid_quantize if grid == "zero" else PAPER_QUANTIZE
    payload = quantize(grad, up.q_prev, bits)
    up._iq._pending = payload  # what commit() will apply
    return payload


def _err_sq(p: LAQPayload) -> float:
    assert p.err_sq is not None  # every proposal has it
    return p.err_sq


def adaptive(frac: float, grids: tuple[str, ...]) -> Callable[[LazyUploader, Any, float], Any]:
    """The library's criterion over the widths and grids given (smallest b first)."""

    def choose(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
        for b in range(1, 9):
            options = [_propose(up, grad, b, g) for g in grids if b >= 2 or g == "paper"]
            if not options:
                continue
            best = min(options, key=_err_sq)
            up._iq._pending = best
            if 3.0 * _err_sq(best) <= frac * rhs:
                break
        return best

    return choose


def diagnose(problem: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The ``--diagnose`` statistics (module docstring) along a paper-grid b = 3 run."""
    seen: list[list[float]] = []
    step = LazyUploader.step

    def spy(self: LazyUploader, grad: Any, rhs: float) -> Any:
        if self.uploads:
            g = np.asarray(grad, dtype=np.float32)
            v = (g - self.q_prev).astype(np.float64)
            v2 = float(np.dot(v, v))
            row = []
            for b in (2, 3, 4):
                for quantize in (PAPER_QUANTIZE, zero_grid_quantize):
                    p = quantize(g, self.q_prev, b)
                    assert p.err_sq is not None
                    passes = p.innov_sq >= rhs + 3.0 * (p.err_sq + self.err_hat_sq)
                    row += [p.err_sq / v2, p.innov_sq / v2, float(passes)]
            seen.append(row)
        return step(self, grad, rhs)

    LazyUploader.step = spy  # type: ignore[method-assign]
    try:
        algo = laqcore.get_algorithm("laq", alpha=args.alpha, bits=3)
        laqcore.simulate(problem, algo, eps=args.eps, max_iterations=args.max_iterations)
    finally:
        LazyUploader.step = step  # type: ignore[method-assign]
    a = np.array(seen)
    out: dict[str, Any] = {"iterations_seen": len(seen)}
    for i, (b, grid) in enumerate((b, g) for b in (2, 3, 4) for g in ("paper", "zero")):
        out[f"{grid} b={b}"] = {
            "median_err_over_innovation": float(np.median(a[:, 3 * i])),
            "median_dq_over_innovation": float(np.median(a[:, 3 * i + 1])),
            "share_rule_uploads": float(a[:, 3 * i + 2].mean()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--fractions", default="0.5,2,3")
    ap.add_argument("--widths", default="2,3,4,6,8")
    ap.add_argument("--alpha", type=float, default=0.02)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--max-iterations", type=int, default=None, help="5000 (2000 diagnosing)")
    ap.add_argument("--diagnose", action="store_true", help="the error statistics only")
    ap.add_argument("--no-paper-adaptive", action="store_true", help="skip the library arms")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    args.entropy = False
    problem = laqcore.make_problem(args.dataset, model="softmax", workers=10)
    if args.max_iterations is None:
        args.max_iterations = 2000 if args.diagnose else 5000
    if args.diagnose:
        doc = {
            "command": bench_command(__file__, sys.argv[1:]),
            **source_info(),  # commit, modified
            "problem": f"{args.dataset} softmax M=10, LAQ b=3 (paper grid), alpha={args.alpha}",
            "max_iterations": args.max_iterations,
            "diagnosis": diagnose(problem, args),
        }
        emit_report(doc, args.out)
        return
    fracs = [float(f) for f in args.fractions.split(",")]
    arms: list[tuple[str, str, dict[str, Any], Any]] = []
    for b in (int(w) for w in args.widths.split(",")):
        arms += [(f"paper b={b}", "paper", {"bits": b}, None)]
        arms += [(f"zero b={b}", "zero", {"bits": b}, None)]
    for f in fracs:
        if not args.no_paper_adaptive:
            arms += [(f"paper adaptive F={f:g}", "paper", {"adaptive_bits": f}, None)]
        arms += [(f"zero adaptive F={f:g}", "zero", {}, adaptive(f, ("zero",)))]
        arms += [(f"mixed adaptive F={f:g}", "zero", {}, adaptive(f, ("paper", "zero")))]
    rows = []
    for label, grid, kw, choose in arms:
        ctx = zero_grid() if grid == "zero" else contextlib.nullcontext()
        with ctx:
            row = run_arm(problem, kw, args, choose)
        rows.append({"setting": label, **row})
        print(rows[-1], file=sys.stderr, flush=True)

    def best(prefixes: tuple[str, ...]) -> float | None:
        bits = [
            r["bits"]
            for r in rows
            if r["reached"] and " b=" in r["setting"] and r["setting"].startswith(prefixes)
        ]
        return min(bits) if bits else None

    both, paper = best(("paper", "zero")), best(("paper",))
    for r in rows:
        r["bits_over_best_fixed_both_grids"] = None if both is None else r["bits"] / both
        r["bits_over_best_fixed_paper_grid"] = None if paper is None else r["bits"] / paper
    doc = {
        "command": bench_command(__file__, sys.argv[1:]),
        **source_info(),  # commit, modified
        "prototype": "zero-level grid injected by this script (numpy), not library code",
        "problem": f"{args.dataset} softmax M=10",
        "alpha": args.alpha,
        "eps": args.eps,
        "max_iterations": args.max_iterations,
        "best_fixed_both_grids": both,
        "best_fixed_paper_grid": paper,
        "rows": rows,
    }
    emit_report(doc, args.out)


if __name__ == "__main__":
    main()
