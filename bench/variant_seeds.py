"""Accuracy, bytes and skips of ``bench_hook_variants.py`` runs over seeds, one table.

Reads reports of launches that differ only in ``--seed`` (same model, width and optimizer
config; refused otherwise) and prints, per variant, the test accuracy minus the ``allreduce``
run's *of the same seed* for every seed (points), their mean and worst seed, the received KB
per rank and step and the share of uploads skipped (ranges over seeds)::

    for s in 0 1 2 3 4; do python bench/bench_hook_variants.py --model tf --nprocs 2 \\
        --steps 300 --seed $s --variants '["allreduce", {}, {"stale_cap": 1}]' \\
        --out bench/measured/tf_2ranks_seed$s.json; done
    python bench/variant_seeds.py bench/measured/tf_2ranks_seed[0-4].json \\
        --out bench/measured/tf_2ranks_seeds.md

(bench/ranks_ratio.py compares the same kind of reports across 2 and 4 ranks.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hook_seeds import spread  # noqa: E402

#: Config keys that must agree between the reports (everything but the seed and timing).
_SAME = ("model", "nprocs", "steps", "batch", "lr", "optim_config")


def table(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant, in the order of the first report: ``deltas`` (points, one per
    seed in report order), ``kb`` and ``skipped`` (per seed; ``None`` where not measured)."""
    if not reports:
        raise ValueError("no reports")
    first = reports[0]["config"]
    for rep in reports[1:]:
        bad = [k for k in _SAME if rep["config"].get(k) != first.get(k)]
        if bad:
            raise ValueError(f"reports differ in {bad}: compare runs that differ only in the seed")
    rows: dict[str, dict[str, Any]] = {}
    for rep in reports:
        runs = {r["variant"]: r for r in rep["results"]}
        if "allreduce" not in runs:
            raise ValueError(
                f"seed {rep['config'].get('seed')}: no 'allreduce' run to compare with"
            )
        for name, r in runs.items():  # a failed run has no accuracy: say which, not a TypeError
            if r.get("error") or r.get("test_acc") is None:
                raise ValueError(
                    f"seed {rep['config'].get('seed')}: run {name!r} failed ({r.get('error')})"
                )
        base = float(runs["allreduce"]["test_acc"])
        for name, r in runs.items():
            row = rows.setdefault(name, {"variant": name, "deltas": [], "kb": [], "skipped": []})
            row["deltas"].append(100.0 * (float(r["test_acc"]) - base))
            row["kb"].append(r.get("recv_kb_per_step"))
            row["skipped"].append(r.get("skipped"))
    return list(rows.values())


def _range(vals: list[Any], scale: float, fmt: str) -> str:
    got = [scale * v for v in vals if v is not None]
    if not got:
        return "-"
    lo, hi = min(got), max(got)
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def markdown(rows: list[dict[str, Any]], seeds: list[Any]) -> list[str]:
    names = ", ".join(str(s) for s in seeds)
    out = [
        f"| variant | acc - all-reduce, seeds {names} (points) | mean | worst | recv KB/step | "
        "skipped (%) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        s = spread(row["deltas"])
        per = " / ".join(f"{d:+.1f}" for d in row["deltas"])
        out.append(
            f"| `{row['variant']}` | {per} | {s['mean']:+.1f} | {s['min']:+.1f} | "
            f"{_range(row['kb'], 1.0, '.1f')} | {_range(row['skipped'], 100.0, '.0f')} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="bench_hook_variants.py JSON reports")
    ap.add_argument("--out", default=None, help="markdown table (and a .json beside it)")
    args = ap.parse_args(argv)
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    rows = table(reports)
    cfg = reports[0]["config"]
    head = (
        f"**{cfg['model']}**, {cfg['nprocs']} ranks, {cfg['steps']} steps, "
        f"optimizer config {cfg.get('optim_config') or 'momentum (0.9), lr ' + str(cfg['lr'])}"
    )
    text = "\n".join([head, "", *markdown(rows, [r["config"].get("seed") for r in reports])])
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
