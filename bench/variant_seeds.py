"""Accuracy, bytes and skips of ``bench_hook_variants.py`` runs over seeds, one table.

Reads reports of launches that differ only in ``--seed`` (same model, width and optimizer
config; refused otherwise) and prints, per variant, the test accuracy minus the ``allreduce``
run's *of the same seed* for every seed (points), their mean and worst seed, the received KB
per rank and step and the share of uploads skipped (ranges over seeds). Reports recorded
with ``--curve`` add, per seed, the steps a variant took to reach the training loss the
``allreduce`` run of that seed had at step ``--target-step`` (the tc suite's target, without
the clock), and its losses summed over the curve's points up to that step divided by the
``allreduce`` run's (1.0: no lag)::

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


def _curve_figures(curve: Any, ref: Any, target_step: int) -> tuple[int | None, float] | None:
    """(first step at or below ``ref``'s loss at ``target_step`` or ``None``, the summed
    losses up to that step over ``ref``'s), or ``None`` without both curves."""
    if not curve or not ref:
        return None
    ref_at = {int(p[0]): float(p[-1]) for p in ref}
    if target_step not in ref_at:
        raise ValueError(f"the allreduce curve has no point at step {target_step}")
    target = ref_at[target_step]
    hit = next((int(p[0]) for p in curve if float(p[-1]) <= target), None)
    mine = sum(float(p[-1]) for p in curve if int(p[0]) <= target_step)
    theirs = sum(v for s, v in ref_at.items() if s <= target_step)
    return hit, mine / theirs


def table(reports: list[dict[str, Any]], target_step: int = 200) -> list[dict[str, Any]]:
    """One row per variant, in the order of the first report: ``deltas`` (points, one per
    seed in report order), ``kb`` and ``skipped`` (per seed; ``None`` where not measured),
    and with curves ``hits`` and ``lag`` (:func:`_curve_figures`, per seed)."""
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
        ref = runs["allreduce"].get("curve")
        for name, r in runs.items():
            row = rows.setdefault(
                name,
                {"variant": name, "deltas": [], "kb": [], "skipped": [], "hits": [], "lag": []},
            )
            row["deltas"].append(100.0 * (float(r["test_acc"]) - base))
            row["kb"].append(r.get("recv_kb_per_step"))
            row["skipped"].append(r.get("skipped"))
            fig = _curve_figures(r.get("curve"), ref, target_step)
            row["hits"].append(None if fig is None else fig[0])
            row["lag"].append(None if fig is None else fig[1])
    return list(rows.values())


def _range(vals: list[Any], scale: float, fmt: str) -> str:
    got = [scale * v for v in vals if v is not None]
    if not got:
        return "-"
    lo, hi = min(got), max(got)
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def markdown(rows: list[dict[str, Any]], seeds: list[Any], target_step: int = 200) -> list[str]:
    names = ", ".join(str(s) for s in seeds)
    curves = any(lag is not None for row in rows for lag in row.get("lag", []))
    head = (
        f"| variant | acc - all-reduce, seeds {names} (points) | mean | worst | recv KB/step | "
        "skipped (%) |"
    )
    rule = "|---|---|---:|---:|---:|---:|"
    if curves:
        head += f" steps to all-reduce's step-{target_step} loss | mean | loss / all-reduce's |"
        rule += "---|---:|---:|"
    out = [head, rule]
    for row in rows:
        s = spread(row["deltas"])
        per = " / ".join(f"{d:+.1f}" for d in row["deltas"])
        line = (
            f"| `{row['variant']}` | {per} | {s['mean']:+.1f} | {s['min']:+.1f} | "
            f"{_range(row['kb'], 1.0, '.1f')} | {_range(row['skipped'], 100.0, '.0f')} |"
        )
        if curves:
            hits = row.get("hits", [])
            reached = [h for h in hits if h is not None]
            mean = f"{sum(reached) / len(reached):.0f}" if len(reached) == len(hits) else "-"
            per_hit = " / ".join("-" if h is None else str(h) for h in hits)
            line += f" {per_hit} | {mean} | {_range(row.get('lag', []), 1.0, '.2f')} |"
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="bench_hook_variants.py JSON reports")
    ap.add_argument("--out", default=None, help="markdown table (and a .json beside it)")
    ap.add_argument(
        "--target-step",
        type=int,
        default=200,
        help="with --curve reports: the all-reduce step whose loss is the target",
    )
    args = ap.parse_args(argv)
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    rows = table(reports, args.target_step)
    cfg = reports[0]["config"]
    optim = cfg.get("optim_config") or "momentum (0.9)"
    if not cfg.get("optim_config") or cfg.get("lr_effective"):
        # Older reports recorded the --lr flag, which an --optim-config then overrode.
        optim += f", lr {cfg['lr']}"
    head = (
        f"**{cfg['model']}**, {cfg['nprocs']} ranks, {cfg['steps']} steps, optimizer config {optim}"
    )
    seeds = [r["config"].get("seed") for r in reports]
    text = "\n".join([head, "", *markdown(rows, seeds, args.target_step)])
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
