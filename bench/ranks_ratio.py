"""Issue 15.4's figure from bench/bench_hook_variants.py reports: received bytes per rank and
step at 4 ranks vs 2 ranks, each divided by (N - 1) / N, split by the two-phase exchange's
phases.

Usage (the reports of the same model, seed and variants at 2 and 4 ranks)::

    python bench/ranks_ratio.py bench/measured/ranks_mlp_2ranks_seed0.json \\
        bench/measured/ranks_mlp_4ranks_seed0.json ... --out bench/measured/ranks_ratio.json

``--pair A B`` compares variant A at 2 ranks with variant B at 4 ranks instead: a setting
chosen by the number of ranks (e.g. no lazy downlink at 2 ranks, 0.25 at 4).

For every (model, seed, variant) present at both widths it prints rank 0's skip rate, the
skip rate of all ranks (``1 - uploads_all_ranks / N``), the share of steps in which some rank
uploaded and the share that moved a downlink (the same unless a lazy downlink deferred
some), the received KB per step (the trainer's meter over the
steps after its timing warm-up) and the ratio of the normalized figures, then per phase
(control with the slots' lengths, phase-1 uplink chunks, phase-2 publications, their
padding; the hook's ``stats()`` over every compressed step) the normalized bytes at 2 and 4
ranks. ``uplink at 2-rank rate``: the ratio with the 4-rank uplink rescaled to the 2-rank
runs' upload rate of all ranks, i.e. the part of the excess the uploads alone explain; what
remains is the downlink, which moves whenever any rank uploads. ``acc - no hook``: test
accuracy against the ``allreduce`` run of the same report, in points.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

PHASES = ("control", "uplink", "downlink_payload", "downlink_padding")
_PREFIX = "laqstate:"  # bench_hook_variants.py's name of an LAQState(**json) variant


def _norm(x: float, n: int) -> float:
    return x / ((n - 1) / n)


def _rows(paths: list[str]) -> dict[tuple[str, int, str], dict[int, dict[str, Any]]]:
    runs: dict[tuple[str, int, str], dict[int, dict[str, Any]]] = {}
    for p in paths:
        with open(p) as fh:
            rep = json.load(fh)
        cfg = rep["config"]
        n = int(cfg["nprocs"])
        base = next((r for r in rep["results"] if r["variant"] == "allreduce"), None)
        for r in rep["results"]:
            if r["variant"] == "allreduce" or "recv_parts_per_step" not in r:
                continue
            acc = None if base is None else 100.0 * (r["test_acc"] - base["test_acc"])
            key = (cfg["model"], int(cfg["seed"]), r["variant"])
            runs.setdefault(key, {})[n] = r | {"acc_vs_allreduce": acc, "source": p}
    return runs


def _matched(
    paths: list[str], pair: tuple[str, str] | None
) -> list[tuple[str, int, str, dict[str, Any], dict[str, Any]]]:
    """(model, seed, variant, 2-rank run, 4-rank run): each variant against itself, or with
    ``pair = (A, B)`` variant A's 2-rank run against variant B's 4-rank run (a setting that
    depends on the number of ranks), labelled ``A -> B``."""
    runs = _rows(paths)
    if pair is None:
        return [
            (m, s, v, by_n[2], by_n[4])
            for (m, s, v), by_n in sorted(runs.items())
            if 2 in by_n and 4 in by_n
        ]
    two, four = (_PREFIX + v if v.startswith("{") else v for v in pair)
    out = []
    for m, s in sorted({(m, s) for m, s, _ in runs}):
        a, b = runs.get((m, s, two), {}).get(2), runs.get((m, s, four), {}).get(4)
        if a is not None and b is not None:
            out.append((m, s, f"{two} -> {four}", a, b))
    return out


def compare(paths: list[str], pair: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """One entry per (model, seed, variant) measured at 2 and 4 ranks (``pair``: see
    :func:`_matched`)."""
    out = []
    for model, seed, variant, a, b in _matched(paths, pair):
        pa, pb = a["recv_parts_per_step"], b["recv_parts_per_step"]
        ua, ub = a["uploads_all_ranks"] / 2, b["uploads_all_ranks"] / 4
        total_a = _norm(pa["total"], 2)
        rescaled = pb["total"] - pb["uplink"] + (pb["uplink"] * ua / ub if ub else 0.0)
        out.append(
            {
                "model": model,
                "seed": seed,
                "variant": variant,
                "skipped_rank0": [a["skipped"], b["skipped"]],
                "skipped_all_ranks": [1.0 - ua, 1.0 - ub],
                "rounds_with_uploads": [a["rounds_with_uploads"], b["rounds_with_uploads"]],
                # reports from before the lazy downlink: every round with an upload
                "downlink_rounds": [
                    x.get("downlink_rounds", x["rounds_with_uploads"]) for x in (a, b)
                ],
                "recv_kb_per_step": [a["recv_kb_per_step"], b["recv_kb_per_step"]],
                "ratio": _norm(b["recv_kb_per_step"], 4) / _norm(a["recv_kb_per_step"], 2),
                "ratio_hook_stats": _norm(pb["total"], 4) / total_a,
                "ratio_uplink_at_2rank_rate": _norm(rescaled, 4) / total_a,
                "normalized_parts": {
                    k: [_norm(pa[k], 2), _norm(pb[k], 4)] for k in (*PHASES, "total")
                },
                "acc_vs_allreduce_points": [a["acc_vs_allreduce"], b["acc_vs_allreduce"]],
                "sources": [a["source"], b["source"]],
            }
        )
    return out


def over_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, standard deviation and extremes over seeds, per (model, variant): the ratio, the
    received KB per step and the accuracy against no hook at 2 and at 4 ranks."""
    from hook_seeds import spread as stat  # bench/ is on the path (script or tests)

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["variant"]), []).append(r)

    out = []
    for (model, variant), rs in sorted(groups.items()):
        entry: dict[str, Any] = {
            "model": model,
            "variant": variant,
            "seeds": [r["seed"] for r in rs],
        }
        entry["ratio"] = stat([r["ratio"] for r in rs])
        for i, n in enumerate((2, 4)):
            entry[f"recv_kb_{n}"] = stat([r["recv_kb_per_step"][i] for r in rs])
            accs = [r["acc_vs_allreduce_points"][i] for r in rs]
            if all(a is not None for a in accs):
                entry[f"acc_{n}"] = stat(accs)
            entry[f"skipped_{n}"] = stat([100.0 * r["skipped_all_ranks"][i] for r in rs])
        out.append(entry)
    return out


def _ms(e: dict[str, Any], k: str, fmt: str) -> str:
    """``mean ± sd`` of the statistic ``k`` of a summary entry, ``-`` where it is missing."""
    return f"{e[k]['mean']:{fmt}} ± {e[k]['sd']:.1f}" if k in e else "-"


def _acc(e: dict[str, Any], k: str) -> str:
    """Accuracy against no hook: ``mean ± sd [worst seed]``."""
    return f"{_ms(e, k, '+.1f')} [{e[k]['min']:+.1f}]" if k in e else "-"


def _seeds_md(summary: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "over seeds (mean ± sd; ratio: [min, max]; accuracy: worst seed in brackets):",
        "| model | variant | seeds | ratio 4 / 2 ranks | recv KB/step, 2 / 4 ranks "
        "| skipped (%), 2 / 4 ranks | acc - no hook, 2 ranks | acc - no hook, 4 ranks |",
        "|---" * 8 + "|",
    ]
    for e in summary:
        r = e["ratio"]
        lines.append(
            f"| {e['model']} | `{e['variant'].replace(_PREFIX, '')}` | {len(e['seeds'])} "
            f"| **{r['mean']:.3f}x** ± {r['sd']:.3f} [{r['min']:.3f}, {r['max']:.3f}] "
            f"| {_ms(e, 'recv_kb_2', '.1f')} / {_ms(e, 'recv_kb_4', '.1f')} "
            f"| {_ms(e, 'skipped_2', '.0f')} / {_ms(e, 'skipped_4', '.0f')} "
            f"| {_acc(e, 'acc_2')} | {_acc(e, 'acc_4')} |"
        )
    return lines


def _pair(v: list[Any], fmt: str) -> str:
    return " / ".join("-" if x is None else format(x, fmt) for x in v)


def report_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The per-seed table, the bytes by phase and (over several seeds) the summary, as
    markdown; printed and written beside ``--out`` as ``.md``."""
    out = [
        "| model, seed | variant | skipped rank 0, 2 / 4 ranks | all ranks | steps with uploads "
        "| with a downlink | recv KB/step | ratio | uplink at 2-rank rate "
        "| acc - no hook (points) |",
        "|---" * 10 + "|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']}, {r['seed']} | `{r['variant'].replace(_PREFIX, '')}` "
            f"| {_pair(r['skipped_rank0'], '.0%')} | {_pair(r['skipped_all_ranks'], '.0%')} "
            f"| {_pair(r['rounds_with_uploads'], '.0%')} | {_pair(r['downlink_rounds'], '.0%')} "
            f"| {_pair(r['recv_kb_per_step'], '.1f')} "
            f"| **{r['ratio']:.3f}x** | {r['ratio_uplink_at_2rank_rate']:.3f}x "
            f"| {_pair(r['acc_vs_allreduce_points'], '+.1f')} |"
        )
    out.append("\nnormalized bytes per step, 2 / 4 ranks (received / ((N-1)/N)):")
    for r in rows:
        parts = ", ".join(f"{k} {_pair(v, '.0f')}" for k, v in r["normalized_parts"].items())
        out.append(f"  {r['model']} s{r['seed']} {r['variant'].replace(_PREFIX, '')}: {parts}")
    summary = over_seeds(rows)
    if any(len(e["seeds"]) > 1 for e in summary):
        out.extend(_seeds_md(summary))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="bench_hook_variants.py JSON reports")
    ap.add_argument(
        "--out", default=None, help="JSON with every comparison (and the tables as .md beside)"
    )
    ap.add_argument(
        "--pair",
        nargs=2,
        metavar=("AT_2", "AT_4"),
        default=None,
        help="compare variant AT_2's 2-rank runs with variant AT_4's 4-rank runs (JSON of "
        "LAQState arguments, e.g. '{}' '{\"lazy_downlink\": 0.25}')",
    )
    args = ap.parse_args(argv)
    rows = compare(args.reports, None if args.pair is None else tuple(args.pair))
    text = "\n".join(report_lines(rows))
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
            fh.write(text + "\n")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
