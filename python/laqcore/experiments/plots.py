"""PNG plots of the simulator commands (matplotlib, imported when a plot is drawn)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = [
    "PANELS",
    "curve_style",
    "draw_panel",
    "log_axes",
    "plot_results",
    "pyplot",
    "remove_stale_plots",
    "save_figure",
    "write_plots",
]


def __dir__() -> list[str]:
    return __all__


#: (x key, axis label) of every plot; a log x axis where runs differ by orders of magnitude.
PANELS = (
    ("iterations", "iterations"),
    ("uploads", "uploads (communication rounds)"),
    ("bits", "uplink bits"),
    ("total_bits", "total bits (uplink + downlink)"),
    ("time", "modelled time (s)"),
)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or ImportError with the installation hint
    (every plot of the experiments is drawn through it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "plots need matplotlib: pip install 'laqcore[plot]' (or pass --no-plots)"
        ) from err
    return plt


def log_axes(ax: Any, xlabel: str, ylabel: str, title: str, *, xbase: int = 10) -> None:
    """Log-log axes with labels, a small title, a light grid on both tick sets and the legend."""
    ax.set_xscale("log", base=xbase)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def save_figure(fig: Any, path: str | os.PathLike[str]) -> str:
    """Write ``fig`` as a 110 dpi PNG to ``path``, close it and return the path."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


LOG_X = frozenset({"uploads", "bits", "total_bits"})
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "x", "P")


def curve_style(index: int, points: int, curves: int) -> dict[str, Any]:
    """Line style, marker and marker positions of curve ``index`` of ``curves``: two runs
    with identical curves (GD and QGD's residuals) stay distinguishable, their markers
    placed at different points and the earlier curve drawn wider underneath."""
    step = max(1, points // 10)
    return {
        "linestyle": _LINESTYLES[index % len(_LINESTYLES)],
        "marker": _MARKERS[index % len(_MARKERS)],
        "markevery": ((index * step) // max(1, curves), step),
        "markersize": 4,
        "lw": max(0.8, 2.2 - 0.35 * index),
    }


def draw_panel(
    results: list[Any],
    key: str,
    label: str,
    metric: str,
    *,
    title: str = "",
    names: list[str] | None = None,
) -> Any:
    """One figure: ``metric`` (log y) against ``key`` for every run; returns the figure.

    ``names``: the legend entry of each run (default: the algorithm, and its seed if not 0).
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    drawn = 0
    for i, r in enumerate(results):
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
        y = np.where(y > 0, y, np.nan)
        if key in LOG_X:  # iteration 0 has no uploads or bits yet: not on a log axis
            y = np.where(x > 0, y, np.nan)
        if names is not None:
            name = names[i]
        else:
            name = r.algorithm if r.seed == 0 else f"{r.algorithm} (seed {r.seed})"
        ax.plot(x, y, label=name, **curve_style(drawn, y.size, len(results)))
        drawn += 1
    ax.set_yscale("log")
    if key in LOG_X:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("F - F*" if metric == "residual" else "F (loss)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_results(
    out: str, results: list[Any], *, title: str = "", names: list[str] | None = None
) -> list[str]:
    """PNG plots of the residual vs iterations / uploads / uplink bits / total bits /
    modelled time (log y; log x for uploads and bits; the loss for nonconvex problems, which
    have no F*); ``names``: the runs' legend entries (:func:`draw_panel`). Returns the paths,
    or raises ImportError with an installation hint when matplotlib is missing.

    ``out`` is created when missing (as ``write_results`` does; the first figure failed with
    FileNotFoundError). ``ValueError`` for no runs, or a run without its per-iteration
    history (``simulate(..., record_history=False)``), which drew empty axes. The time panel
    is left out when no run has a modelled time (``simulate`` without ``link=``).
    """
    pyplot()  # the installation hint before any work
    if not results:
        raise ValueError("plot_results needs at least one run")
    bare = [r.algorithm for r in results if not r.history.get("loss")]
    if bare:
        raise ValueError(
            f"run(s) {', '.join(bare)} hold no history to plot: simulate them with "
            "record_history=True (the default)"
        )
    os.makedirs(out, exist_ok=True)
    # Nonconvex problems have no F*: plot the loss itself.
    metric = "residual"
    if not any(
        np.isfinite(np.asarray(r.history.get("residual", []), dtype=float)).any() for r in results
    ):
        metric = "loss"
    paths = []
    for key, label in PANELS:
        if key == "time" and not any("time" in r.history for r in results):
            continue  # no link applied (simulate without link=): the panel would be empty
        fig = draw_panel(results, key, label, metric, title=title, names=names)
        paths.append(save_figure(fig, os.path.join(out, f"{metric}_vs_{key}.png")))
    return paths


def write_plots(
    out: str,
    results: list[Any],
    *,
    draw: bool = True,
    title: str = "",
    names: list[str] | None = None,
) -> None:
    """:func:`plot_results` into ``out`` (if ``draw``), printing each path, and the removal
    of the plots an earlier command left there that this one did not write again.

    The results files beside them were just replaced, so such a plot (kept by ``--no-plots``,
    a sweep too large to plot, or ``loss_vs_*`` of a nonconvex run beside new
    ``residual_vs_*``) showed runs that no longer existed as if they were these.
    """
    import sys

    written: list[str] = []
    if draw:
        try:
            written = plot_results(out, results, title=title, names=names)
        except ImportError as err:
            print(f"laqcore: {err}", file=sys.stderr)
        for path in written:
            print(f"wrote {path}")
    ours = [f"{metric}_vs_{key}.png" for metric in ("residual", "loss") for key, _ in PANELS]
    remove_stale_plots(out, ours, written)


def remove_stale_plots(out: str, names: list[str], written: list[str]) -> None:
    """Remove from ``out`` the plots ``names`` (a command's own file names) that this run
    did not write (``written``: paths), and say so: they showed an earlier run's results
    beside this one's."""
    keep = {os.path.basename(p) for p in written}
    stale = [n for n in names if n not in keep and os.path.isfile(os.path.join(out, n))]
    for name in stale:
        os.remove(os.path.join(out, name))
    if stale:
        print(f"removed {len(stale)} plots of an earlier run from {out}: {', '.join(stale)}")
