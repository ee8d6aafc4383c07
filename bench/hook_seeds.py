"""Accuracy and bytes of the DDP hooks over several seeds: error bars for bench/bench_hooks.py.

One launch of ``bench_hooks.py --suite table`` is deterministic on one machine, but its test
accuracy (297 digits images: one image is 0.34 points) moves by a few images with the float
rounding of another host CPU or another seed, for PyTorch's own hooks as much as for
laqcore's. This script reads the reports of launches that differ only in ``--seed`` and
prints, per model and hook, the mean and standard deviation over seeds of the test accuracy,
of its difference to the no-hook run *of the same seed*, of the bytes received per rank and
step, and of the share of uploads skipped::

    python bench/bench_hooks.py --suite table --models mlp,cnn --nprocs 2 --steps 300 \\
        --no-warmup-run --out bench/measured/hooks_2ranks.json               # seed 0
    for s in 1 2 3 4; do
      python bench/bench_hooks.py --suite table --models mlp,cnn --nprocs 2 --steps 300 \\
          --no-warmup-run --seed $s --out bench/measured/hooks_2ranks_seed$s.json
    done
    python bench/hook_seeds.py bench/measured/hooks_2ranks.json \\
        bench/measured/hooks_2ranks_seed[1-4].json --out bench/measured/hooks_2ranks_seeds.md

Step times are left out on purpose: they are medians of one launch each and belong to the
timing tables (``--rounds``), not to a spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hook_report import _LABEL  # noqa: E402


def spread(vals: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for a single value), minimum and maximum over seeds
    (all NaN for no value). Also used by bench/ranks_ratio.py."""
    if not vals:
        return dict.fromkeys(("mean", "sd", "min", "max"), math.nan)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "sd": sd, "min": min(vals), "max": max(vals)}


def collect(reports: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{model/ranks: {hook: {metric: [one value per seed]}}}`` from table reports.

    Every report must hold the no-hook run (``allreduce``) of each model, since accuracy is
    compared seed by seed; a hook that failed in some launch is left out of that seed only.
    """
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for rep in reports:
        for key, block in rep.get("table", {}).items():
            hooks = block["hooks"]
            base = hooks.get("allreduce", {})
            if base.get("error") or base.get("test_acc") is None:
                raise ValueError(f"{key}: a report has no successful no-hook (allreduce) run")
            for name, run in hooks.items():
                if run.get("error"):
                    continue
                m = out.setdefault(key, {}).setdefault(name, {})
                m.setdefault("acc", []).append(100.0 * run["test_acc"])
                m.setdefault("acc_delta", []).append(100.0 * (run["test_acc"] - base["test_acc"]))
                m.setdefault("recv_kb", []).append(run["recv_kb"])
                if run.get("skipped_frac") is not None:
                    m.setdefault("skipped", []).append(100.0 * run["skipped_frac"])
    return out


def markdown(data: dict[str, dict[str, dict[str, list[float]]]], seeds: list[Any]) -> str:
    lines = [f"Seeds {', '.join(str(s) for s in seeds)}: mean ± standard deviation over seeds.", ""]
    for key, hooks in data.items():
        model, ranks = key.split("/")
        lines += [
            f"**{model}**, {ranks} ranks",
            "",
            "| hook | test acc (%) | acc - no hook, same seed (points) | worst seed (points) "
            "| recv KB/step | uploads skipped (%) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, m in hooks.items():
            acc, d, kb = spread(m["acc"]), spread(m["acc_delta"]), spread(m["recv_kb"])
            sk = None if "skipped" not in m else spread(m["skipped"])
            sk_txt = "-" if sk is None else f"{sk['mean']:.0f} ± {sk['sd']:.0f}"
            lines.append(
                f"| {_LABEL.get(name, name)} | {acc['mean']:.1f} ± {acc['sd']:.1f} "
                f"| {d['mean']:+.1f} ± {d['sd']:.1f} | {d['min']:+.1f} "
                f"| {kb['mean']:.1f} ± {kb['sd']:.1f} | {sk_txt} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="bench_hooks.py --suite table JSON reports")
    p.add_argument("--out", default=None, help="write the markdown table here (.md)")
    args = p.parse_args(argv)
    reports = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.reports]
    seeds = [r.get("args", {}).get("seed", "?") for r in reports]
    if len(set(map(str, seeds))) != len(seeds):
        p.error(f"the reports must come from different seeds, got {seeds}")
    text = markdown(collect(reports), seeds)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
