"""Plots of the link studies: scaling, compression ratio, regime map (matplotlib)."""

from __future__ import annotations

import os
from typing import Any

from .plots import log_axes, pyplot, save_figure

__all__ = ["plot_ratio", "plot_regime", "plot_scaling"]


def __dir__() -> list[str]:
    return __all__


def plot_scaling(out: str, data: dict[str, Any], *, title: str = "") -> str:
    """Speedup over M = 1 vs M, one panel per mode (weak / strong), ideal = M dashed."""
    plt = pyplot()
    modes = list(data)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.2 * len(modes), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        allm: list[int] = []
        for name, rows in data[mode].items():
            pts = [(r["M"], r["speedup"]) for r in rows if r["speedup"]]
            allm += [r["M"] for r in rows]
            if pts:
                ax.plot(*zip(*pts), marker="o", lw=1.4, label=name)
        if allm:
            ax.plot([1, max(allm)], [1, max(allm)], "k--", lw=0.8, label="ideal")
        ylabel = "scaled speedup M T(1)/T(M)" if mode == "weak" else "speedup T(1)/T(M)"
        log_axes(ax, "workers M", ylabel, f"{mode} scaling. {title}", xbase=2)
    fig.tight_layout()
    return save_figure(fig, os.path.join(out, "scaling.png"))


def plot_ratio(out: str, data: dict[str, Any], *, title: str = "") -> str:
    """Speedup T(1)/T(P) vs compression ratio: a color per P, a marker per method (its
    settings joined in order of ratio). The points of all methods were one line per P,
    qsgd, top-k and LAQ settings joined in order of ratio with nothing saying which was
    which."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    methods = list(dict.fromkeys(r["config"].split(" ")[0] for r in data["rows"]))
    markers = dict(zip(methods, "osD^vxP*"))
    procs = [P for P in data["procs"] if P != 1]
    colors = {P: plt.get_cmap("tab10")(i % 10) for i, P in enumerate(procs)}
    for P in procs:
        for method in methods:
            pts = sorted(
                (r["compression_ratio"], r["speedup"])
                for r in data["rows"]
                if r["P"] == P
                and r["config"].split(" ")[0] == method
                and r["speedup"]
                and r["compression_ratio"]
            )
            if pts:
                xs, ys = zip(*pts)
                style = {"marker": markers[method], "color": colors[P], "lw": 1.0, "ms": 5}
                ax.plot(xs, ys, label=f"{method} P={P}", **style)
    handles = [Line2D([], [], color=colors[P], lw=2, label=f"P={P}") for P in procs]
    handles += [Line2D([], [], color="0.3", marker=markers[m], ls="", label=m) for m in methods]
    log_axes(
        ax,
        "compression ratio (GD upload bytes / method upload bytes)",
        "speedup T(1)/T(P)",
        f"speedup vs compression ratio. {title}",
    )
    ax.legend(handles=handles, fontsize=7)  # colors for P, markers for the methods
    fig.tight_layout()
    return save_figure(fig, os.path.join(out, "ratio.png"))


def plot_regime(out: str, data: dict[str, Any]) -> str:
    """One panel per latency: cells colored by the first method to the tolerance."""
    plt = pyplot()
    import numpy as np

    names = data["algorithms"]
    lats, ratios, bws = data["latencies_ms"], data["ratios"], data["bandwidths_mbps"]
    width = max(4.2 * len(lats), 5.5)  # the title's width
    fig, axes = plt.subplots(1, len(lats), figsize=(width, 4.2), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, lat in zip(axes[0], lats):
        grid = np.full((len(ratios), len(bws)), np.nan)
        for c in data["cells"]:
            if c["latency_ms"] != lat or c["winner"] is None:
                continue
            i, j = ratios.index(c["ratio"]), bws.index(c["downlink_mbps"])
            grid[i, j] = names.index(c["winner"])
            ax.text(
                j,
                i,
                "only" if c["margin"] is None else f"{c['margin']:.1f}",  # was blank
                ha="center",
                va="center",
                fontsize=6,
            )
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=9, origin="lower", aspect="auto")
        ax.set_xticks(range(len(bws)), [f"{b:g}" for b in bws], rotation=60, fontsize=7)
        ax.set_yticks(range(len(ratios)), [f"{r:g}" for r in ratios], fontsize=7)
        ax.set_xlabel("downlink Mbit/s")
        ax.set_ylabel("down/up ratio")
        ax.set_title(f"latency {lat:g} ms", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(names))]
    # The legend sat over the title in the upper right (with one or two panels it hid it):
    # the title on top, the legend in a row of its own below it.
    fig.suptitle(
        "first to the tolerance\n(number: runner-up's time / winner's; 'only': no runner-up; "
        "blank: none did)",
        fontsize=9,
        y=0.99,
    )
    fig.legend(
        handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.9), fontsize=8, ncol=len(names)
    )
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return save_figure(fig, os.path.join(out, "regime.png"))
