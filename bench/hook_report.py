"""Combining the ranks' results of bench/bench_hooks.py, the goal checks and the markdown."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

_LABEL = {
    "allreduce": "no hook (all-reduce)",
    "again": "no hook, run again last",
    "fp16": "PyTorch fp16_compress_hook",
    "powersgd1": "PyTorch PowerSGD rank 1",
    "powersgd4": "PyTorch PowerSGD rank 4",
    "laq2": "laqcore LAQ 2 bit",
    "laq4": "laqcore LAQ 4 bit",
    "laq8": "laqcore LAQ 8 bit",
    "laq": "laqcore LAQ, `LAQState()`",
    "laq_lr": "laqcore LAQ, `LAQState(lr=lr)`",
    "laq2d2": "laqcore LAQ, `LAQState(bits=2, downlink_bits=2, warmup_steps=0)`",
    "laq_plain": "laqcore LAQ, `LAQState(entropy=False)`",
    "laq_paper": "laqcore LAQ, `LAQState(rule_scale='average', stale_cap=None)`",
    "laq_auto": "laqcore LAQ, `LAQState(lazy_downlink='auto')`",
    "laq_cap1": "laqcore LAQ, `LAQState(stale_cap=1)`",
    "laq_streak": "laqcore LAQ, `LAQState(streak_penalty=0.75)`",
    "laq_ef": "laqcore LAQ, `LAQState(error_feedback=1)`",
    "laq_ef5": "laqcore LAQ, `LAQState(error_feedback=0.5)`",
    "laq_ef0": "laqcore LAQ, `LAQState(error_feedback=0)` (paper's rule alone)",
    "laq_fallback": "laqcore LAQ, `LAQState(fallback=True)`",
    "local": "no communication (local gradient)",
    "qsgd": "laqcore QSGD",
    "qsgd_l2": "laqcore QSGD, `norm='l2'` (paper)",
    "terngrad": "laqcore TernGrad",
    "rotation": "laqcore rotation",
}


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals) if vals else math.nan


def summarize(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """One hook run: the ranks' results combined (slowest rank's time, mean bytes)."""
    errors = [r["error"] for r in ranks if r.get("error")]
    if errors or not ranks:
        return {"error": errors[0] if errors else "no output", "ranks": len(ranks)}
    r0 = min(ranks, key=lambda r: r["rank"])
    out: dict[str, Any] = {
        "params": r0["params"],
        "steps": r0["steps"],
        "step_ms": max(r["step_ms"] for r in ranks),
        "step_mean_ms": max(r["step_mean_ms"] for r in ranks),
        "hook_ms": None if r0["hook_ms"] is None else _mean([r["hook_ms"] for r in ranks]),
        "span_ms": None if r0["span_ms"] is None else _mean([r["span_ms"] for r in ranks]),
        "sent_kb": _mean([r["sent_per_step"] for r in ranks]) / 1e3,
        "recv_kb": _mean([r["recv_per_step"] for r in ranks]) / 1e3,
        "final_loss": _f(r0["final_loss"]),
        "test_acc": r0["test_acc"],
        "time_to_target_s": None,
        "steps_to_target": r0.get("steps_to_target"),
        "wall_s": max(r["wall_s"] for r in ranks),
    }
    if r0.get("time_to_target_s") is not None:
        out["time_to_target_s"] = max(_f(r["time_to_target_s"]) for r in ranks)
    if "target" in r0:
        out["target"] = r0["target"]
    if r0.get("step_log"):  # --step-log: each rank's, in rank order
        out["step_log"] = [r["step_log"] for r in sorted(ranks, key=lambda r: r["rank"])]
    if r0.get("evals"):  # (step, seconds of training, global training loss): the curve
        out["evals"] = r0["evals"]
    if "iface_tx" in r0:
        out["iface_mb_per_rank"] = _mean([(r["iface_tx"] + r["iface_rx"]) / 2e6 for r in ranks])
    if "final_scale" in r0:
        out["final_scale"] = r0["final_scale"]
    if "fallback" in r0:  # LAQState(fallback=True): identical on every rank
        out["fallback"] = r0["fallback"]
    st = [r["stats"] for r in ranks if r.get("stats")]
    if st:
        out["stats"] = st
        tried = [_f(s.get("uploads", 0)) + _f(s.get("uploads_skipped", 0)) for s in st]
        if all(t > 0 for t in tried):
            out["skipped_frac"] = _mean(
                [_f(s.get("uploads_skipped", 0)) / t for s, t in zip(st, tried)]
            )
    return out


def pool_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One hook's summaries from several rounds of the same launch: the first round's,
    with step and hook times replaced by their medians over the rounds, and every round's
    times and bytes kept under ``rounds`` (bytes and accuracy repeat exactly: same seed)."""
    if len(runs) == 1 or any(r.get("error") for r in runs):
        return next((r for r in runs if r.get("error")), runs[0])
    keys = ("step_ms", "step_mean_ms", "hook_ms", "span_ms")
    out = dict(runs[0])
    for k in keys:
        vals = sorted(_f(r[k]) for r in runs if r.get(k) is not None)
        if vals:
            mid = len(vals) // 2
            out[k] = vals[mid] if len(vals) % 2 else 0.5 * (vals[mid - 1] + vals[mid])
    out["rounds"] = [
        {k: r.get(k) for k in (*keys, "recv_kb", "final_loss", "test_acc")} for r in runs
    ]
    return out


def error_line(text: str, width: int) -> str:
    """An error message fit for a table cell: its last line that names an error, one line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if "Error" in ln or "error" in ln]
    line = (named or lines or ["?"])[-1]
    return line.replace("|", "/")[:width]


def _cell(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def _rounds_note(hooks: dict[str, Any]) -> str:
    rounds = max((len(s.get("rounds", [])) for s in hooks.values()), default=0)
    if rounds < 2:
        return ""
    return f", {rounds} rounds in alternating order (times: medians over the rounds)"


def _table_md(key: str, block: dict[str, Any]) -> list[str]:
    model, n = key.split("/")
    hooks = block["hooks"]
    base = hooks.get("allreduce", {})
    params = next((s["params"] for s in hooks.values() if "params" in s), 0)
    la = block["launch"]
    lines = [
        f"**{model}** ({params:,} parameters), {n} ranks, {next(iter(hooks.values())).get('steps', '-')} steps"
        f"{_rounds_note(hooks)} - load average {la['load_before'][0]:.1f} -> "
        f"{la['load_after'][0]:.1f}",
        "",
        "| hook | step ms | vs all-reduce | in hook ms | hook to grads ms | sent KB/step | "
        "recv KB/step | final loss | test acc | uploads skipped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h, s in hooks.items():
        if s.get("error"):
            lines.append(f"| {_LABEL.get(h, h)} | failed: {error_line(s['error'], 90)} ||||||||| ")
            continue
        ratio = s["step_ms"] / base["step_ms"] if base.get("step_ms") else None
        lines.append(
            f"| {_LABEL.get(h, h)} | {s['step_ms']:.1f} | {_cell(ratio, '.2f')}x | "
            f"{_cell(s['hook_ms'], '.1f')} | {_cell(s['span_ms'], '.1f')} | "
            f"{s['sent_kb']:.1f} | {s['recv_kb']:.1f} | {_cell(s['final_loss'], '.3g')} | "
            f"{s['test_acc']:.3f} | {_cell(s.get('skipped_frac'), '.0%')} |"
        )
    return [*lines, ""]


def tc_key(key: str) -> tuple[str, str, str]:
    """(model, rate, ranks) of a tc block's key: ``rate/n`` (the MLP) or ``model/rate/n``."""
    parts = key.split("/")
    return ("mlp", *parts) if len(parts) == 2 else (parts[0], parts[1], parts[2])  # type: ignore[return-value]


def _every(block: dict[str, Any]) -> str:
    """``", evaluated every N steps"`` where the report records it (since session 41)."""
    every = block.get("eval_every")
    return "" if every is None else f", evaluated every {every} step{'s' if every != 1 else ''}"


def _tc_md(key: str, block: dict[str, Any]) -> list[str]:
    model, rate, n = tc_key(key)
    hooks = block["hooks"]
    base = hooks.get("allreduce", {})
    la = block["launch"]
    lines = [
        f"**{model}, {rate}**, {n} ranks, target loss {_cell(base.get('target'), '.4f')} "
        f"(all-reduce after {base.get('steps', '-')} steps{_every(block)}) - load average "
        f"{la['load_before'][0]:.1f} -> {la['load_after'][0]:.1f}",
        "",
        "| hook | time to target s | speed-up vs all-reduce | steps | final loss | test acc | "
        "MB/rank on the link |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    t0 = base.get("time_to_target_s")
    for h, s in hooks.items():
        if s.get("error"):
            lines.append(f"| {_LABEL.get(h, h)} | failed: {error_line(s['error'], 90)} |||||| ")
            continue
        t = s.get("time_to_target_s")
        sp = t0 / t if t and t0 else None
        lines.append(
            f"| {_LABEL.get(h, h)} | {_cell(t, '.2f') if t else 'not reached'} | "
            f"{_cell(sp, '.2f')}x | {s['steps']} | {_cell(s['final_loss'], '.4g')} | "
            f"{s['test_acc']:.3f} | {_cell(s.get('iface_mb_per_rank'), '.1f')} |"
        )
    return [*lines, ""]


def _optim_md(block: dict[str, Any]) -> list[str]:
    runs = block["runs"]
    configs = list(dict.fromkeys(k.split("/")[0] for k in runs))
    hooks = list(dict.fromkeys(k.split("/")[1] for k in runs))
    la = block["launch"]
    lines = [
        "Test accuracy (final training loss), recv KB per rank per step, LAQ's skipped "
        f"uploads; {max((s.get('steps', 0) for s in runs.values()), default=0)} steps, "
        f"load average {la['load_before'][0]:.1f} -> {la['load_after'][0]:.1f}:",
        "",
        "| config (CNN, 2 ranks) | " + " | ".join(_LABEL.get(h, h) for h in hooks) + " |",
        "|---|" + "---:|" * len(hooks),
    ]
    for c in configs:
        cells = []
        for h in hooks:
            s = runs.get(f"{c}/{h}", {"error": "not run"})
            if s.get("error"):
                cells.append(f"failed: {error_line(s['error'], 70)}")
            else:
                cell = f"acc {s['test_acc']:.3f} (loss {_cell(s['final_loss'], '.3g')})"
                cell += f", {s['recv_kb']:.1f} KB"
                if h.startswith("laq") and s.get("skipped_frac") is not None:
                    cell += f", {100 * s['skipped_frac']:.0f}% skipped"
                cells.append(cell)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 15's goals, each with the numbers it was judged on (``None``: not measured)."""
    out: list[dict[str, Any]] = []

    def add(goal: str, ok: bool | None, detail: str) -> None:
        out.append({"goal": goal, "met": ok, "detail": detail})

    for key, block in report.get("tc", {}).items():
        _, rate, n = tc_key(key)
        h = block["hooks"]
        ar, laq, ps4 = h.get("allreduce", {}), h.get("laq", {}), h.get("powersgd4", {})
        t_ar, t_laq = ar.get("time_to_target_s"), laq.get("time_to_target_s")
        if not (t_ar and t_laq):
            add(f"{key}: LAQ reaches the target", False, "LAQ or all-reduce did not reach it")
            continue
        sp = t_ar / t_laq
        if rate.startswith("100mbit"):
            add(f"{key}: LAQ >= 3x faster than all-reduce", sp >= 3, f"{sp:.2f}x")
            t_ps = ps4.get("time_to_target_s")
            acc_ok = laq["test_acc"] >= ps4.get("test_acc", 1.0) - 0.01
            add(
                f"{key}: LAQ ahead of PowerSGD rank 4 at equal accuracy",
                bool(t_ps) and t_laq < t_ps and acc_ok if t_ps else False,
                f"LAQ {t_laq:.2f} s acc {laq['test_acc']:.3f}; PowerSGD-4 "
                f"{_cell(t_ps, '.2f')} s acc {_cell(ps4.get('test_acc'), '.3f')}",
            )
        else:
            add(f"{key}: LAQ not slower than all-reduce", sp >= 1, f"{sp:.2f}x")
    for key, block in report.get("table", {}).items():
        model, n = key.split("/")
        h = block["hooks"]
        laq, qsgd, tern, ar = (h.get(k, {}) for k in ("laq", "qsgd", "terngrad", "allreduce"))
        if model in ("mlp", "big") and laq.get("step_ms") and qsgd.get("step_ms"):
            r = laq["step_ms"] / qsgd["step_ms"]
            detail = f"{r:.2f}x"
            if "rounds" in laq and "rounds" in qsgd:
                per = [a["step_ms"] / b["step_ms"] for a, b in zip(laq["rounds"], qsgd["rounds"])]
                detail += " (medians; round by round " + ", ".join(f"{v:.2f}x" for v in per) + ")"
            add(f"{key}: LAQ step <= 1.1x QSGD's", r <= 1.1, detail)
        if model == "cnn" and laq.get("step_ms") and ar.get("test_acc") is not None:
            sk = laq.get("skipped_frac", 0.0)
            acc = laq["test_acc"] - ar["test_acc"]
            by = tern.get("sent_kb")
            ok = sk >= 0.3 and acc >= -0.01 and by is not None and laq["sent_kb"] <= by
            add(
                f"{key}: CNN >= 30% skipped, within 1 point, bytes <= TernGrad's",
                ok,
                f"skipped {sk:.0%}, acc {acc * 100:+.1f} points, sent {laq['sent_kb']:.1f} KB "
                f"vs TernGrad {_cell(by, '.1f')} KB per step",
            )
    # issue 15.4: received bytes / ((N-1)/N) at 4 ranks within 1.15x of the 2-rank figure
    table = report.get("table", {})
    for model in dict.fromkeys(k.split("/")[0] for k in table):
        two, four = table.get(f"{model}/2"), table.get(f"{model}/4")
        if not (two and four):
            continue
        for h in ("laq", "qsgd", "terngrad"):
            a, b = two["hooks"].get(h, {}), four["hooks"].get(h, {})
            if a.get("recv_kb") and b.get("recv_kb"):
                r = (b["recv_kb"] / 0.75) / (a["recv_kb"] / 0.5)
                add(
                    f"{model}: {h} recv/((N-1)/N) at 4 ranks <= 1.15x 2 ranks'",
                    r <= 1.15,
                    f"{r:.2f}x ({a['recv_kb']:.1f} KB at 2, {b['recv_kb']:.1f} KB at 4)",
                )
    return out


def markdown(report: dict[str, Any], only: str | None = None) -> str:
    lines: list[str] = []
    if only in (None, "table"):
        for key, block in report.get("table", {}).items():
            lines += _table_md(key, block)
    if only in (None, "tc"):
        for key, block in report.get("tc", {}).items():
            lines += _tc_md(key, block)
    if only in (None, "optim") and report.get("optim"):
        lines += _optim_md(report["optim"])
    if only is None and report.get("goals"):
        lines += ["| goal (issue 15) | met | measured |", "|---|---|---|"]
        for g in report["goals"]:
            met = {True: "yes", False: "**no**", None: "-"}[g["met"]]
            lines.append(f"| {g['goal']} | {met} | {g['detail']} |")
    return "\n".join(lines)


def summary_md(report: dict[str, Any]) -> str:
    """The condensed tables of the README: one row per hook, one column per run."""
    lines: list[str] = []
    if report.get("table"):
        lines += _hook_grid(
            report["table"],
            "Step time in ms (x all-reduce's), recv KB per rank per step, test accuracy:",
            _step_cell,
        )
    if report.get("tc"):
        lines += _hook_grid(
            report["tc"],
            "Time to the all-reduce's loss over tc-shaped links, s (speed-up vs all-reduce), "
            "test accuracy:",
            _time_to_target_cell,
        )
    return "\n".join(lines)


# A cell of a summary grid: (this hook's run, the same launch's all-reduce run) -> text.
Cell = Callable[[dict[str, Any], dict[str, Any]], str]


def _hook_grid(runs: dict[str, Any], title: str, cell: Cell) -> list[str]:
    """One row per hook (in the order the launches ran them), one column per launch
    (``model/nprocs``): ``cell(run, allreduce_run)``; "-" where a launch did not run the
    hook (merged reports), "failed: ..." where it failed."""
    keys = list(runs)
    hooks = list(dict.fromkeys(h for k in keys for h in runs[k]["hooks"]))
    head = " | ".join(f"{k.replace('/', ', ')} ranks" for k in keys)
    lines = [title, "", f"| hook | {head} |", "|---|" + "---:|" * len(keys)]
    for h in hooks:
        cells = []
        for k in keys:
            s = runs[k]["hooks"].get(h, {})
            if not s:
                cells.append("-")
            elif s.get("error"):
                cells.append("failed: " + error_line(s["error"], 60))
            else:
                cells.append(cell(s, runs[k]["hooks"].get("allreduce", {})))
        lines.append(f"| {_LABEL.get(h, h)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _step_cell(s: dict[str, Any], allreduce: dict[str, Any]) -> str:
    base = allreduce.get("step_ms")
    r = f" ({s['step_ms'] / base:.1f}x)" if base else ""
    sk = s.get("skipped_frac")
    sk_txt = f", {sk:.0%} skipped" if sk else ""
    return f"{s['step_ms']:.1f}{r}, {s['recv_kb']:.0f} KB, {s['test_acc']:.3f}{sk_txt}"


def _time_to_target_cell(s: dict[str, Any], allreduce: dict[str, Any]) -> str:
    t0, t = allreduce.get("time_to_target_s"), s.get("time_to_target_s")
    if not t:
        return f"not reached in {s['steps']} steps, {s['test_acc']:.3f}"
    sp = f" ({t0 / t:.2f}x)" if t0 else ""
    return f"{t:.1f}{sp}, {s['test_acc']:.3f}"
