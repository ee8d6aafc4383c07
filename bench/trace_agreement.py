"""How much of a rank's gradient the ranks agree on, and how stale the default's skips are.

Runs ``LAQState()`` (``bench/bench_hook_variants.py --trace``) in the bench trainers and
reads two statistics off rank 0's trace (docs/results_hooks.md, "A noisy image task"):

* **agreement** ``(M sum ||avg||^2 - sum ||g_m||^2) / ((M - 1) sum ||g_m||^2)`` over the
  compressed steps in which every rank uploaded (from step 10 on): with ``E||g_m||^2 = S + N``
  (signal plus one rank's minibatch noise) and ``E||avg||^2 = S + N / M``, the share ``S / (S
  + N)`` of a rank's gradient energy that the ranks have in common;
* **skipped innovation** the median of ``||dQ||^2 / ||g_m||^2`` over the steps rank 0 skipped:
  how far the stale contribution left in the aggregate is from the rank's current gradient;
* **consecutive cosine** the median, from step 10 on, of the cosine between the averaged
  gradients the hook returned at consecutive steps (a trace whose rows lack the column,
  recorded before it existed, gives NaN): how steadily training moves in one direction.

Usage::

    python bench/trace_agreement.py --runs cnn:momentum,mlp:momentum,bncnn:momentum,bncnn:nesterov_onecycle \\
        --seeds 0,1,2,3,4 --out bench/measured/trace_agreement.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_hook_variants import TRACE_COLUMNS  # noqa: E402


def statistics(trace: list[list[Any]], nprocs: int, first_step: int = 10) -> dict[str, float]:
    """``agreement`` and ``skipped_innovation`` (the module docstring) of one trace."""
    rows = [dict(zip(TRACE_COLUMNS, r)) for r in trace]
    full = [r for r in rows if r["step"] >= first_step and r["uploaders"] == nprocs]
    g = sum(r["grad_sq"] for r in full)
    avg = sum(r["out_sq"] for r in full)
    ratios = [r["innov_sq"] / r["grad_sq"] for r in rows if not r["upload"] and r["grad_sq"] > 0]
    cosines = [
        r["out_prev_dot"] / np.sqrt(r["out_sq"] * before["out_sq"])
        for before, r in zip(rows, rows[1:])
        if r["step"] >= first_step
        and r["step"] == before["step"] + 1  # the dot product is with the step before
        and r.get("out_prev_dot") is not None
        and r["out_sq"] * before["out_sq"] > 0
    ]
    return {
        "agreement": (nprocs * avg - g) / ((nprocs - 1) * g) if g > 0 else float("nan"),
        "skipped_innovation": float(np.median(ratios)) if ratios else float("nan"),
        "skipped": sum(1 for r in rows if not r["upload"]) / max(len(rows), 1),
        "consecutive_cos": float(np.median(cosines)) if cosines else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="cnn:momentum,mlp:momentum,bncnn:momentum")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"nprocs": args.nprocs, "steps": args.steps, "runs": {}}
    for run in args.runs.split(","):
        model, optim = run.split(":")
        per_seed = []
        for seed in (int(s) for s in args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "trace.json")
                cmd = [sys.executable, os.path.join(HERE, "bench_hook_variants.py")]
                cmd += ["--model", model, "--nprocs", str(args.nprocs), "--seed", str(seed)]
                cmd += ["--steps", str(args.steps), "--variants", "[{}]", "--out", out]
                cmd += ["--trace", str(args.steps), "--optim-config", optim]
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                with open(out) as fh:
                    result = json.load(fh)["results"][0]
            stats = statistics(result["trace"], args.nprocs)
            per_seed.append({"seed": seed, "test_acc": result["test_acc"], **stats})
            print(f"{run:28s} seed {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in stats.items()))
        report["runs"][run] = per_seed
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
