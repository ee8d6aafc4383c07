"""PNG plots of the simulator commands (matplotlib, imported when a plot is drawn)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["plot_results"]


def __dir__() -> list[str]:
    return __all__


def plot_results(out: str, results: list[Any], *, title: str = "") -> list[str]:
    """PNG plots of the residual vs iterations / uploads / uplink bits / total bits /
    modelled time (log y; the loss for
    nonconvex problems, which have no F*). Returns the paths, or raises ImportError with an
    installation hint when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "plots need matplotlib: pip install 'laqcore[plot]' (or pass --no-plots)"
        ) from err
    # Nonconvex problems have no F*: plot the loss itself.
    metric = "residual"
    if not any(
        np.isfinite(np.asarray(r.history.get("residual", []), dtype=float)).any() for r in results
    ):
        metric = "loss"
    paths = []
    for key, label in (
        ("iterations", "iterations"),
        ("uploads", "uploads (communication rounds)"),
        ("bits", "uplink bits"),
        ("total_bits", "total bits (uplink + downlink)"),
        ("time", "modelled time (s)"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        drawn = 0
        for r in results:
            y = np.asarray(r.history.get(metric, []), dtype=np.float64)
            if y.size == 0 or not np.isfinite(y).any():
                continue
            if key == "iterations":
                x = np.arange(y.size, dtype=np.float64)
            elif key == "total_bits":
                x = np.asarray(r.history["bits"], float) + np.asarray(r.history["downlink_bits"])
            elif key in r.history:
                x = np.asarray(r.history[key], dtype=np.float64)
            else:
                continue
            drawn += 1
            y = np.where(y > 0, y, np.nan)
            name = r.algorithm if r.seed == 0 else f"{r.algorithm} (seed {r.seed})"
            ax.plot(x, y, label=name, lw=1.5)
        ax.set_yscale("log")
        if key in ("bits", "total_bits"):
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("F - F*" if metric == "residual" else "F (loss)")
        if title:
            ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out, f"{metric}_vs_{key}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
