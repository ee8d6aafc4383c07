"""Other per-upload width criteria for adaptive LAQ (issue 13.3), against the best fixed b.

    python bench/bench_adaptive_criteria.py [--dataset digits] [--criteria a,b] [--block-size B]
        [--out FILE.json]

The setting of ``bench/bench_adaptive_bits.py`` (LAQ, softmax, M = 10, alpha = 0.02,
eps = 1e-6, at most 5000 iterations); each arm replaces ``LazyUploader.propose_adaptive``
(the width of every upload after the first, which uses LAQ's default ``bits`` = 4, as in
``bench_adaptive_bits.py``) by one criterion:

* ``relgrad``: the smallest b >= 2 with ||eps_b||^2 <= 0.01 ||g_m||^2 (the error of the
  gradient the server holds for worker m, relative to that gradient);
* ``gain2`` / ``gain3``: the b >= 2 (>= 3) with the most rule-side progress per frame bit,
  (||innovation||^2 - ||eps_b||^2) / (b n + 32);
* ``innov``: the smallest b >= 3 with ||eps_b||^2 <= 0.1 ||innovation||^2;
* ``rhs3``: the library's criterion, 3 ||eps_b||^2 <= F rhs, with F = 2 and b >= 3;
* ``same``: the smallest b >= 3 for which the rule's inequality still says "upload" (the
  decision b = 8 would take, at the fewest bits); b = 3 when it does not hold at any width
  (the upload is then skipped, or forced by the clock);
* ``clock1`` / ``clock2``: b = 3, except for uploads only the clock forces (``clock >=
  t_bar`` and the rule's inequality at b = 3 says "skip"): those at 1 (2) bits. Most uploads
  are forced by the clock, and such an innovation is small by the rule's own measure;
* ``joint``: the width *and* the radius block together: among b in 2..8 and blocks
  B in {none, 128, 64, 32, 16}, the pair with the fewest frame bits b n + 32 ceil(n / B) (the
  radii counted) whose error term 3 ||eps||^2 is <= 2 rhs (the library's criterion with
  F = 2); b = 8 with B = 16 if none is. The frame carries b and B.

``--block-size B``: the blockwise radius of every arm (and of ``joint``'s first upload).
Bits count uploads only, as in the simulator. Deterministic (no timing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from bench_adaptive_bits import run_arm
from laqcore.bench.timing import emit_report
from laqcore.laq_payload import LAQPayload
from laqcore.lazy_state import LazyUploader
from provenance import bench_command, source_info

Choose = Callable[[LazyUploader, Any, float], LAQPayload]


def _first(up: LazyUploader, grad: Any, widths: range, ok: Callable[[LAQPayload], bool]) -> Any:
    """The first width whose proposal satisfies ``ok`` (the last width if none does)."""
    for b in widths:
        p = up._iq.propose(grad, bits=b)
        if ok(p):
            break
    return p


def relgrad(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
    g2 = float(np.dot(grad, grad))
    return _first(up, grad, range(2, 9), lambda p: p.err_sq <= 0.01 * g2)


def _gain(lo: int) -> Choose:
    def choose(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
        gains = {}
        for b in range(lo, 9):
            p = up._iq.propose(grad, bits=b)
            gains[b] = (p.innov_sq - p.err_sq) / (b * up.n + 32)
        return up._iq.propose(grad, bits=max(gains, key=gains.__getitem__))

    return choose


def innov(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
    return _first(up, grad, range(3, 9), lambda p: p.err_sq <= 0.1 * p.innov_sq)


def rhs3(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
    return _first(up, grad, range(3, 9), lambda p: 3.0 * p.err_sq <= 2.0 * rhs)


def same(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
    rule, err_hat = up.rule, up._iq.err_hat_sq
    assert rule is not None  # noqa: S101 - LAQ has a rule

    def uploads(p: LAQPayload) -> bool:  # the inequality alone (clock 0: nothing forced)
        return bool(rule.should_upload_unchecked(p.innov_sq, rhs, p.err_sq, err_hat, 0))

    p = _first(up, grad, range(3, 9), uploads)
    return p if uploads(p) else up._iq.propose(grad, bits=3)


def _clock(low: int) -> Choose:
    def choose(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
        rule = up.rule
        assert rule is not None  # noqa: S101 - LAQ has a rule
        p = up._iq.propose(grad, bits=3)
        forced = rule.t_bar is not None and up.clock >= rule.t_bar
        skip = not rule.should_upload_unchecked(p.innov_sq, rhs, p.err_sq, up._iq.err_hat_sq, 0)
        return up._iq.propose(grad, bits=low) if forced and skip else p

    return choose


_JOINT_BLOCKS = (None, 128, 64, 32, 16)


def joint(up: LazyUploader, grad: Any, rhs: float) -> LAQPayload:
    def frame_bits(b: int, blk: int | None) -> int:
        return b * up.n + 32 * (1 if blk is None else -(-up.n // blk))

    pairs = sorted(
        (frame_bits(b, blk), b, i) for b in range(2, 9) for i, blk in enumerate(_JOINT_BLOCKS)
    )
    pairs.append((0, 8, len(_JOINT_BLOCKS) - 1))  # none qualifies: the most precise frame
    for _, b, i in pairs:
        up._iq.block_size = _JOINT_BLOCKS[i]  # the quantizer of this proposal only
        p = up._iq.propose(grad, bits=b)
        if 3.0 * p.err_sq <= 2.0 * rhs:
            break
    return p


CRITERIA: dict[str, Choose] = {
    "relgrad": relgrad,
    "gain2": _gain(2),
    "gain3": _gain(3),
    "innov": innov,
    "rhs3": rhs3,
    "same": same,
    "clock1": _clock(1),
    "clock2": _clock(2),
    "joint": joint,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--criteria", default=",".join(CRITERIA))
    ap.add_argument("--block-size", type=int, default=None, help="every arm's radius block")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    problem = laqcore.make_problem(args.dataset, model="softmax", workers=10)
    # bench_adaptive_bits.py's setting; adaptive_bits only makes the uploader ask for a width.
    setting = argparse.Namespace(alpha=0.02, eps=1e-6, max_iterations=5000, entropy=False)
    rows = []
    kw: dict[str, Any] = {"adaptive_bits": 1.0}
    if args.block_size is not None:
        kw["block_size"] = args.block_size
    for name in args.criteria.split(","):
        arm = run_arm(problem, kw, setting, CRITERIA[name])
        rows.append({"criterion": name, **arm})
        print(rows[-1], file=sys.stderr, flush=True)
    emit_report(
        {
            "command": bench_command(__file__, sys.argv[1:]),
            **source_info(),  # commit, modified
            "problem": args.dataset,
            "block_size": args.block_size,
            "rows": rows,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
