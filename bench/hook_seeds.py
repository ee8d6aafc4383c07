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

Step times are left out of that table on purpose: they are medians of one launch each and
belong to the timing tables (``--rounds``), not to a spread over seeds.

Reports of ``--suite tc`` (time to all-reduce's target loss over tc-shaped links) give a
second kind of table, per model and rank count: each hook's speed-up over the all-reduce
run *of the same launch* (all-reduce's time to its own target divided by the hook's), as the
geometric mean over seeds with its range, per link rate; the steps each seed took to the
target; the median step per rate (range over seeds); the bytes received per rank and step;
and the test accuracy against the same launch's all-reduce (mean / worst seed). A hook that
did not reach the target in some seed is counted ("reached k of n") and left out of that
rate's mean::

    for s in 0 1 2 3 4; do python bench/bench_hooks.py --suite tc --tc-model cnn \
        --rates 100mbit,1gbit --tc-nprocs 2 --seed $s --tc-hooks allreduce,laq,fp16 \
        --out bench/measured/hooks_tc_cnn_seed$s.json; done        # as root (tc)
    python bench/hook_seeds.py bench/measured/hooks_tc_cnn_seed[0-4].json \
        --out bench/measured/hooks_tc_cnn_seeds.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
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


def geomean(vals: list[float]) -> float:
    """Geometric mean (NaN for no value): the average of speed-up ratios."""
    return math.exp(statistics.fmean(map(math.log, vals))) if vals else math.nan


@dataclass
class TcRun:
    """One seed's run of one hook in a tc cell."""

    speedup: float | None  # all-reduce's time to the target over this hook's; None: missed
    steps: int | None  # steps to the target (None likewise)
    step_ms: float  # median step
    recv_kb: float  # received per rank and step
    acc_delta: float  # test accuracy minus the same launch's all-reduce's (points)


def collect_tc(reports: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[TcRun]]]]:
    """``{model/ranks: {hook: {rate: [one run per seed]}}}`` from tc reports.

    The speed-up and the accuracy are taken against the all-reduce run of the same launch
    (same seed, same link), which every report must hold; a hook that failed in a launch is
    left out of that seed only.
    """
    out: dict[str, dict[str, dict[str, list[TcRun]]]] = {}
    for rep in reports:
        for key, block in rep.get("tc", {}).items():
            parts = key.split("/")
            # bench_hooks.py names the MLP's cells "rate/ranks" (as before --tc-model existed)
            model, rate, ranks = parts if len(parts) == 3 else ["mlp", *parts]
            hooks = block["hooks"]
            base = hooks.get("allreduce", {})
            if base.get("error") or not base.get("time_to_target_s"):
                raise ValueError(f"{key}: a report has no successful all-reduce run")
            for name, run in hooks.items():
                if run.get("error"):
                    continue
                t = run.get("time_to_target_s")
                per_rate = out.setdefault(f"{model}/{ranks}", {}).setdefault(name, {})
                per_rate.setdefault(rate, []).append(
                    TcRun(
                        speedup=base["time_to_target_s"] / t if t else None,
                        steps=run.get("steps_to_target") if t else None,
                        step_ms=run["step_ms"],
                        recv_kb=run["recv_kb"],
                        acc_delta=100.0 * (run["test_acc"] - base["test_acc"]),
                    )
                )
    return out


def _speedup_text(runs: list[TcRun]) -> str:
    got = [r.speedup for r in runs if r.speedup is not None]
    if not got:
        return f"target not reached ({len(runs)} seeds)"
    text = f"{geomean(got):.2f}x [{min(got):.2f}, {max(got):.2f}]"
    return text if len(got) == len(runs) else f"{text}, reached {len(got)} of {len(runs)}"


def _range_text(vals: list[float], digits: int) -> str:
    lo, hi = f"{min(vals):.{digits}f}", f"{max(vals):.{digits}f}"
    return lo if lo == hi else f"{lo}-{hi}"


def markdown_tc(data: dict[str, dict[str, dict[str, list[TcRun]]]], seeds: list[Any]) -> str:
    lines = [
        f"Seeds {', '.join(str(s) for s in seeds)}: time to all-reduce's target loss as a "
        "speed-up over the same launch's all-reduce, geometric mean over seeds [range].",
        "",
    ]
    for key, hooks in data.items():
        model, ranks = key.split("/")
        rates = list(next(iter(hooks.values())))
        lines += [
            f"**{model}**, {ranks} ranks, tc",
            "",
            "| hook | "
            + " | ".join(f"speed-up, {r}" for r in rates)
            + " | steps to the target, per seed | "
            + " | ".join(f"median step ms, {r}" for r in rates)
            + " | recv KB/step | acc - all-reduce, mean / worst (points) |",
            "|---|" + "---:|" * (2 * len(rates) + 3),
        ]
        for name, per_rate in hooks.items():
            runs = [r for rate in rates for r in per_rate.get(rate, [])]
            first = per_rate.get(rates[0], [])
            steps = " / ".join("-" if r.steps is None else str(r.steps) for r in first)
            deltas = [r.acc_delta for r in runs]
            cells = [_speedup_text(per_rate.get(rate, [])) for rate in rates]
            cells.append(steps)
            cells += [
                _range_text([r.step_ms for r in per_rate[rate]], 1) if per_rate.get(rate) else "-"
                for rate in rates
            ]
            cells.append(_range_text([r.recv_kb for r in runs], 1))
            cells.append(f"{statistics.fmean(deltas):+.1f} / {min(deltas):+.1f}")
            lines.append(f"| {_LABEL.get(name, name)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "reports", nargs="+", help="bench_hooks.py JSON reports (--suite table and/or tc)"
    )
    p.add_argument("--out", default=None, help="write the markdown table here (.md)")
    args = p.parse_args(argv)
    reports = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.reports]
    seeds = [r.get("args", {}).get("seed", "?") for r in reports]
    if len(set(map(str, seeds))) != len(seeds):
        p.error(f"the reports must come from different seeds, got {seeds}")
    parts = []
    if any(r.get("table") for r in reports):
        parts.append(markdown(collect(reports), seeds))
    if any(r.get("tc") for r in reports):
        parts.append(markdown_tc(collect_tc(reports), seeds))
    if not parts:
        p.error("no 'table' or 'tc' results in these reports (bench_hooks.py --out files)")
    text = "\n".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
