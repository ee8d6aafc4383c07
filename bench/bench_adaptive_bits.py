"""Adaptive LAQ bit width (issue 13.3) against every fixed width.

    python bench/bench_adaptive_bits.py [--dataset digits] [--fractions 0.5,2] [--entropy]
        [--block-size B] [--width-block B] [--err-coef C]
        [--out bench/measured/adaptive_bits.json]

LAQ (softmax, M = 10, alpha = 0.02, eps = 1e-6, at most --max-iterations iterations) on
``--dataset`` (``digits`` or ``libsvm:PATH``) with b in {2, 3, 4, 6, 8} and with
``adaptive_bits=F``; uplink bits to reach eps and their ratio to the best fixed b that reaches
it. ``--entropy`` counts every arm's uploads entropy-coded (``entropy_coding=True``: same
iterates and uploads, coded sizes). ``--block-size B`` gives every arm, fixed and adaptive, the
blockwise radius (one float32 radius per B coordinates, counted in the frames). ``--err-coef C``
gives every arm the rule's error weight C (``Params.err_coef``; the paper's 3 by default).
``--width-block B`` gives the adaptive arms a width per block of B coordinates instead
(``Params.width_block``, :mod:`laqcore.laq_widths`; the fixed arms keep the paper's frames;
with ``--entropy`` the width arms stay uncoded: their frames have no entropy coding).
Per adaptive arm, the histogram of the widths it sent (with ``--width-block``: of the blocks'
widths in the frames sent). A ratio is given only for arms that reach eps.
Deterministic (no timing).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from laqcore.bench.timing import emit_report
from laqcore.laq_widths import LAQWidthsPayload
from laqcore.lazy_state import LazyUploader
from provenance import bench_command, source_info


def run_arm(
    problem: Any, kw: dict[str, Any], args: argparse.Namespace, choose: Any = None
) -> dict[str, Any]:
    """One arm; the widths sent are counted by wrapping LazyUploader.step. ``choose(uploader,
    grad, rhs)``, when given, picks the payload of every upload after the first instead of
    ``LazyUploader.propose_adaptive`` (bench/bench_adaptive_criteria.py)."""
    # LAQ_WIDTHS frames are not entropy coded (simulate refuses the pair): those arms run plain
    coded = bool(args.entropy) and "width_block" not in kw
    widths: collections.Counter[int] = collections.Counter()
    block_widths: collections.Counter[int] = collections.Counter()
    step, propose = LazyUploader.step, LazyUploader.propose_adaptive

    def chosen(self: LazyUploader, grad: Any, rhs: float) -> Any:
        if self.uploads == 0:
            return self.propose(grad)
        return choose(self, np.asarray(grad, np.float32), rhs)

    def counting_step(self: LazyUploader, grad: Any, rhs: float) -> Any:
        payload = step(self, grad, rhs)
        if isinstance(payload, LAQWidthsPayload):
            block_widths.update(payload.block_widths.tolist())
        elif payload is not None:
            widths[payload.bits] += 1
        return payload

    LazyUploader.step = counting_step  # type: ignore[method-assign]
    if choose is not None:
        LazyUploader.propose_adaptive = chosen  # type: ignore[method-assign]
    try:
        algo = laqcore.get_algorithm("laq", alpha=args.alpha, **kw)
        r = laqcore.simulate(
            problem,
            algo,
            eps=args.eps,
            max_iterations=args.max_iterations,
            entropy_coding=coded,
        )
    finally:
        LazyUploader.step = step  # type: ignore[method-assign]
        LazyUploader.propose_adaptive = propose  # type: ignore[method-assign]
    return {
        "iterations": r.iterations,
        "uploads": r.uploads,
        "bits": r.bits,
        "reached": r.reached_tolerance,
        "entropy_coded": coded,
        "widths_sent": dict(sorted(widths.items())),
        **({"block_widths_sent": dict(sorted(block_widths.items()))} if block_widths else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--fractions", default="0.5,2")
    ap.add_argument("--alpha", type=float, default=0.02)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--max-iterations", type=int, default=5000)
    ap.add_argument("--entropy", action="store_true", help="count entropy-coded uploads")
    ap.add_argument("--block-size", type=int, default=None, help="every arm's radius block")
    ap.add_argument("--width-block", type=int, default=None, help="the adaptive arms' width block")
    ap.add_argument(
        "--err-coef", type=float, default=None, help="every arm's rule error weight (default 3)"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    problem = laqcore.make_problem(args.dataset, model="softmax", workers=10)
    rows = []
    arms: list[tuple[str, dict[str, Any]]] = [(f"b={b}", {"bits": b}) for b in (2, 3, 4, 6, 8)]
    wb = {} if args.width_block is None else {"width_block": args.width_block}
    arms += [
        (f"adaptive F={f}", {"adaptive_bits": float(f), **wb}) for f in args.fractions.split(",")
    ]
    common = {} if args.block_size is None else {"block_size": args.block_size}
    if args.err_coef is not None:
        common["err_coef"] = args.err_coef
    for label, kw in arms:
        rows.append({"setting": label, **run_arm(problem, {**kw, **common}, args)})
        print(rows[-1], file=sys.stderr, flush=True)
    fixed = [r["bits"] for r in rows if r["reached"] and r["setting"].startswith("b=")]
    best = min(fixed) if fixed else None
    for r in rows:
        r["bits_over_best_fixed"] = None if best is None or not r["reached"] else r["bits"] / best
    doc = {
        "command": bench_command(__file__, sys.argv[1:]),
        **source_info(),  # commit, modified
        "problem": f"{args.dataset} softmax M=10",
        "alpha": args.alpha,
        "eps": args.eps,
        "entropy_coding": args.entropy,
        "block_size": args.block_size,
        "width_block": args.width_block,
        "err_coef": 3.0 if args.err_coef is None else args.err_coef,
        "rows": rows,
    }
    emit_report(doc, args.out)


if __name__ == "__main__":
    main()
