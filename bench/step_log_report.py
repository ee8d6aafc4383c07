"""Step times of a ``bench_hooks.py --step-log`` report, split by how many ranks uploaded.

For every tc launch and hook with a step log, prints the slower rank's step time per step
(after ``--warm`` steps): mean, median and 90th percentile, and for laqcore's hooks the same
per number of ranks that uploaded at that step (0: every rank skipped, nothing but the
statuses crossed the link). A step that is as long with 0 uploads as with all of them is not
the link's.

Usage::

    python bench/step_log_report.py bench/measured/hooks_tc_s26_cnn_steplog_seed0.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def rows(report: dict[str, Any], warm: int) -> list[str]:
    out = []
    for link, launch in report.get("tc", {}).items():
        for hook, run in launch["hooks"].items():
            log = run.get("step_log")
            if not log:
                continue
            ms = 1e3 * np.array([rank["seconds"] for rank in log]).max(axis=0)[warm:]
            line = (
                f"{link:15s} {hook:10s} steps {len(ms) + warm:4d}  mean {ms.mean():6.2f}  "
                f"median {np.median(ms):6.2f}  p90 {np.percentile(ms, 90):6.2f}"
            )
            flags = [rank["uploaded"] for rank in log]
            if flags[0] and flags[0][0] is not None:
                count = np.array(flags, dtype=float)[:, warm:].sum(axis=0)
                for k in range(len(log) + 1):
                    sel = count == k
                    if sel.any():
                        line += (
                            f"  | {k} up: {int(sel.sum()):3d} steps, mean {ms[sel].mean():5.2f}"
                            f" median {np.median(ms[sel]):5.2f}"
                        )
            out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="bench_hooks.py --step-log JSON reports")
    ap.add_argument("--warm", type=int, default=10, help="steps left out (the bench's --warm)")
    args = ap.parse_args(argv)
    for path in args.reports:
        with open(path) as fh:
            report = json.load(fh)
        print(path)
        lines = rows(report, args.warm)
        print("\n".join(lines) if lines else "  (no step log: run bench_hooks.py --step-log)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
