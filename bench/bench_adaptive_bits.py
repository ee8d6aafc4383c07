"""Adaptive LAQ bit width (issue 13.3) against every fixed width, on digits.

    python bench/bench_adaptive_bits.py [--fractions 0.1,0.5,2] [--out bench/measured/adaptive_bits.json]

LAQ on the README's digits problem (softmax, M = 10, alpha = 0.02, eps = 1e-6, at most 5000
iterations) with b in {2, 3, 4, 6, 8} and with ``adaptive_bits=F``; uplink bits to reach eps
and their ratio to the best fixed b. Deterministic (no timing).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import laqcore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fractions", default="0.1,0.5,2")
    ap.add_argument("--alpha", type=float, default=0.02)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    problem = laqcore.make_problem("digits", model="softmax", workers=10)
    rows = []
    for label, kw in [(f"b={b}", {"bits": b}) for b in (2, 3, 4, 6, 8)] + [
        (f"adaptive F={f}", {"adaptive_bits": float(f)}) for f in args.fractions.split(",")
    ]:
        algo = laqcore.get_algorithm("laq", alpha=args.alpha, **kw)
        r = laqcore.simulate(problem, algo, eps=1e-6, max_iterations=5000)
        rows.append(
            {
                "setting": label,
                "iterations": r.iterations,
                "uploads": r.uploads,
                "bits": r.bits,
                "reached": r.reached_tolerance,
            }
        )
        print(rows[-1], flush=True)
    best = min(r["bits"] for r in rows if r["reached"] and r["setting"].startswith("b="))
    for r in rows:
        r["bits_over_best_fixed"] = r["bits"] / best
    doc = {"problem": "digits softmax M=10", "alpha": args.alpha, "eps": 1e-6, "rows": rows}
    print(json.dumps(doc, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
