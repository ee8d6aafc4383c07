"""Text tables of the simulator commands: the paper-style table of ``run``/``compare`` and
the mean ± std table of ``sweep``."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["format_sweep", "format_table"]


def __dir__() -> list[str]:
    return __all__


def format_table(results: list[Any]) -> str:
    """The paper-style table: iterations, uploads, bits, accuracy (and bits relative to GD)."""
    gd_bits = next((r.bits for r in results if r.algorithm == "gd"), None)
    head = f"{'algorithm':<14}{'seed':>5}{'iterations':>11}{'uploads':>9}{'bits':>11}"
    head += f"{'bits/GD':>9}{'F-F*':>10}{'test acc':>9}  reached"
    lines = [head, "-" * len(head)]
    for r in results:
        rel = f"{r.bits / gd_bits:.4f}" if gd_bits else "-"
        res = "-" if r.final_residual is None else f"{r.final_residual:.1e}"
        reached = "yes" if r.reached_tolerance else ("DIVERGED" if r.diverged else "no")
        lines.append(
            f"{r.algorithm:<14}{r.seed:>5}{r.iterations:>11}{r.uploads:>9}{r.bits:>11.3e}"
            f"{rel:>9}{res:>10}{r.test_accuracy:>9.4f}  {reached}"
        )
    return "\n".join(lines)


def _fmt(mean: float, std: float, spec: str) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:{spec}}±{std:{spec}}"


def format_sweep(table: list[dict[str, Any]], keys: list[str]) -> str:
    """One line per (algorithm, grid point): mean ± std over seeds of every measure."""
    head = f"{'algorithm':<14}" + "".join(f"{k:>10}" for k in keys)
    head += f"{'iterations':>16}{'uploads':>16}{'bits':>22}{'test acc':>16}{'reached':>9}"
    lines = [head, "-" * len(head)]
    for t in table:
        line = f"{t['algorithm']:<14}" + "".join(f"{t[k]!s:>10}" for k in keys)
        line += f"{_fmt(t['iterations_mean'], t['iterations_std'], '.0f'):>16}"
        line += f"{_fmt(t['uploads_mean'], t['uploads_std'], '.0f'):>16}"
        line += f"{_fmt(t['bits_mean'], t['bits_std'], '.3e'):>22}"
        line += f"{_fmt(t['test_accuracy_mean'], t['test_accuracy_std'], '.4f'):>16}"
        line += f"{t['reached_fraction']:>9.2f}"
        lines.append(line)
    return "\n".join(lines)
