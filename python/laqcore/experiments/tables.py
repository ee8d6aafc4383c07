"""Text tables of the simulator commands: the paper-style table of ``run``/``compare`` and
the mean ± std table of ``sweep``."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_sweep", "format_table", "has_tolerance", "link_text"]


def __dir__() -> list[str]:
    return __all__


def _ratio(x: float, ref: float | None) -> str:
    return f"{x / ref:.4f}" if ref else "-"


def has_tolerance(result: Any) -> bool:
    """Whether ``result`` ran towards a tolerance ``F - F* <= eps``: a convex problem (an F*)
    and ``eps > 0``. Without one the run is a fixed budget, so "not reached" means nothing."""
    return getattr(result, "f_star", None) is not None and getattr(result, "eps", 0.0) > 0


def format_table(results: list[Any]) -> str:
    """The paper-style table: iterations, uploads, uplink / downlink / total bits (and total
    relative to GD), modelled time to the tolerance, residual, accuracy.

    Bits are whole frames: the codes plus each frame's header, metadata and CRC (24 bytes
    for LAQ), which dominates on tiny models."""
    gd = next((r for r in results if r.algorithm == "gd"), None)
    gd_total = getattr(gd, "total_bits", None) if gd is not None else None
    head = f"{'algorithm':<14}{'seed':>5}{'iterations':>11}{'uploads':>9}{'uplink':>11}"
    head += f"{'downlink':>11}{'total':>11}{'total/GD':>9}{'time (s)':>10}"
    head += f"{'F-F*':>10}{'test acc':>9}  reached"
    lines = [head, "-" * len(head)]
    for r in results:
        total = getattr(r, "total_bits", 0) or r.bits + r.downlink_bits
        res = "-" if r.final_residual is None else f"{r.final_residual:.1e}"
        reached = "yes" if r.reached_tolerance else ("DIVERGED" if r.diverged else "no")
        t = getattr(r, "time_to_tolerance", None)
        if not has_tolerance(r) and not r.diverged:
            reached = "-"  # a fixed budget: the time is the whole run's
            t_txt = "-" if getattr(r, "time_s", None) is None else f"{r.time_s:.4g}"
        elif t is None and getattr(r, "time_s", None) is not None:
            t_txt = f">{r.time_s:.3g}"
        else:
            t_txt = "-" if t is None else f"{t:.4g}"
        acc = r.test_accuracy  # regression: -MSE, which a diverged run makes huge
        if not math.isfinite(acc):  # no test set (--test-fraction 0), as the sweep table
            acc_txt = "-"
        else:
            acc_txt = f"{acc:.4f}" if abs(acc) < 100 else f"{acc:.1e}"  # <= 8 characters
        lines.append(
            f"{r.algorithm:<14}{r.seed:>5}{r.iterations:>11}{r.uploads:>9}{r.bits:>11.3e}"
            f"{r.downlink_bits:>11.3e}{total:>11.3e}{_ratio(total, gd_total):>9}{t_txt:>10}"
            f"{res:>10}{acc_txt:>9}  {reached}"
        )
    lines += _footer(results)
    if any(has_tolerance(r) and not r.reached_tolerance and not r.diverged for r in results):
        lines.append(
            "note: 'no' = stopped at the iteration budget (--max-iterations) before the "
            "tolerance; raise it, or the step (--alpha)"
        )
    return "\n".join(lines)


def link_text(net: dict[str, Any]) -> str:
    """``net`` (:meth:`laqcore.network.Link.describe`) in words: its name and numbers."""
    return (
        f"{net['name']} link (up {net['uplink_mbps']:g} Mbit/s, down "
        f"{net['downlink_mbps']:g} Mbit/s, {net['latency_ms']:g} ms, {net['topology']}, "
        f"{net['downlink_delivery']} downlink)"
    )


def _footer(results: list[Any], *, marker: bool = True) -> list[str]:
    """The line naming the runs' downlink and link (none without either), and what a
    negative test accuracy is; ``marker``: the table marks an unreached tolerance's time
    with '>'."""
    lines = []
    net = next((r.network for r in results if getattr(r, "network", None)), None)
    mode = next((r.downlink for r in results if getattr(r, "downlink", None)), None)
    if net is not None or mode is not None:
        parts = ["bits include frame headers and CRC"]
        if mode is not None:
            parts.append(f"downlink {mode}")
        if net is not None:
            parts.append(
                f"time: {link_text(net)}" + ("; '>' = tolerance not reached" if marker else "")
            )
        lines.append("; ".join(parts))
    # Problem.accuracy of a regression problem is the negative MSE, under the column an
    # accuracy heads; only then is it below 0.
    if any(getattr(r, "test_accuracy", 0.0) < 0 for r in results):
        lines.append("test acc < 0: a regression problem's negative mean squared error")
    return lines


def _fmt(mean: float, std: float | None, spec: str) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:{spec}}" if std is None else f"{mean:{spec}}±{std:{spec}}"


_SWEEP_COLUMNS = (
    ("iterations", "iterations", ".0f", 14),
    ("uploads", "uploads", ".0f", 14),
    ("bits", "uplink bits", ".2e", 20),
    ("total_bits", "total bits", ".2e", 20),
    ("time_to_tolerance", "time to tol (s)", ".3g", 18),
    ("final_residual", "F-F*", ".1e", 18),
    ("wall_time", "wall (s)", ".2f", 13),
    ("test_accuracy", "test acc", ".4f", 16),
)


def format_sweep(
    table: list[dict[str, Any]], keys: list[str], results: list[Any] | None = None
) -> str:
    """One line per (algorithm, grid point): mean ± std over seeds of every measure (the
    final residual and the simulator's wall time included; time to tolerance is modelled),
    then what the columns mean (and the link and downlink of ``results``, the runs)."""
    head = f"{'algorithm':<14}" + "".join(f"{k:>10}" for k in keys)
    head += "".join(f"{label:>{w}}" for _, label, _, w in _SWEEP_COLUMNS) + f"{'reached':>9}"
    lines = [head, "-" * len(head)]
    for t in table:
        line = f"{t['algorithm']:<14}" + "".join(f"{t[k]!s:>10}" for k in keys)
        for key, _, spec, w in _SWEEP_COLUMNS:
            mean, std = t.get(f"{key}_mean", math.nan), t.get(f"{key}_std", math.nan)
            line += f"{_fmt(mean, std, spec):>{w}}"
        line += f"{t['reached_fraction']:>9.2f}"
        lines.append(line)
    lines.append(
        "mean ± sample std over each row's seeds (no ±: from one run); uplink bits: worker "
        "-> server, total: uplink + downlink; time to tol: modelled, over the seeds that "
        "reached eps ('-': none did); wall: the simulator's measured time; reached: fraction "
        "of the seeds"
    )
    lines += _footer(results or [], marker=False)
    return "\n".join(lines)
