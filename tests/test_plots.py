"""Plots of the simulator commands: residual vs uploads on a log x axis (LAG-WK and LAQ
upload 10-100x less than GD), identical curves distinguishable (issue 14, item 5)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from laqcore.experiments.plots import PANELS, curve_style, draw_panel, plot_results  # noqa: E402


def _run(name: str, uploads_per_iteration: int) -> SimpleNamespace:
    k = np.arange(50)
    history = {
        "residual": list(0.5**k),
        "loss": list(1 + 0.5**k),
        "uploads": list(k * uploads_per_iteration),
        "bits": list(k * uploads_per_iteration * 1000),
        "downlink_bits": list(k * 10),
        "time": list(k * 0.01),
    }
    return SimpleNamespace(algorithm=name, seed=0, history=history)


def test_uploads_and_bits_on_log_x_iterations_linear():
    import matplotlib.pyplot as plt

    runs = [_run("gd", 10), _run("laq", 1)]
    for key, label in PANELS:
        fig = draw_panel(runs, key, label, "residual")
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        assert ax.get_xscale() == ("log" if key in ("uploads", "bits", "total_bits") else "linear")
        plt.close(fig)


def test_identical_curves_have_different_styles():
    import matplotlib.pyplot as plt

    runs = [_run("gd", 10), _run("qgd", 10), _run("lag-wk", 2), _run("laq", 1)]
    fig = draw_panel(runs, "iterations", "iterations", "residual")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4
    styles = {(ln.get_linestyle(), ln.get_marker()) for ln in lines}
    assert len(styles) == 4
    gd, qgd = lines[0], lines[1]
    np.testing.assert_array_equal(gd.get_ydata(), qgd.get_ydata())  # the same curve...
    assert gd.get_linewidth() > qgd.get_linewidth()  # ...the first drawn wider underneath
    assert gd.get_markevery() != qgd.get_markevery()  # markers at different points
    plt.close(fig)


def test_curve_styles_differ_for_many_curves():
    styles = [curve_style(i, 100, 6) for i in range(6)]
    assert len({(s["linestyle"], s["marker"]) for s in styles}) == 6


def test_plot_results_writes_every_panel(tmp_path):
    paths = plot_results(str(tmp_path), [_run("gd", 10), _run("laq", 1)], title="t")
    assert [p.rsplit("/", 1)[-1] for p in paths] == [f"residual_vs_{k}.png" for k, _ in PANELS]
    assert all((tmp_path / p.rsplit("/", 1)[-1]).stat().st_size > 0 for p in paths)


def test_sweep_legend_names_the_grid_point(tmp_path, monkeypatch):
    """A sweep's curves are told apart by their grid point: with --grid bits=2,4 the legend
    read 'laq' twice (and 'laq (seed 1)' twice), whichever curve was which."""
    from laqcore import cli

    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[list[str]] = []
    monkeypatch.setattr(
        "laqcore.experiments.plots.plot_results",
        lambda out, results, *, title, names: seen.append(names) or [],
    )
    argv = ["sweep", "--algorithms", "laq", "--grid", "bits=2,4", "--seeds", "2", "-K", "3"]
    argv += ["--dataset", "digits", "-M", "2", "--max-samples", "60", "-q"]
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 0
    assert seen == [
        ["laq bits=2 (seed 0)", "laq bits=2 (seed 1)", "laq bits=4 (seed 0)", "laq bits=4 (seed 1)"]
    ]
    runs = [_run("laq", 1), _run("laq", 1)]
    fig = draw_panel(runs, "iterations", "iterations", "residual", names=["a", "b"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]


def test_plots_of_an_earlier_run_are_removed(tmp_path, monkeypatch, capsys):
    """A results directory holds no plot of runs other than its results.json's: after
    `--no-plots`, a sweep too large to plot, or a nonconvex run (loss_vs_*) where a convex
    one had been (residual_vs_*), the earlier PNGs stayed beside the new results."""
    from laqcore import cli
    from laqcore.experiments import sweep

    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "o"
    out.mkdir()
    (out / "loss_vs_bits.png").write_bytes(b"old")
    (out / "notes.png").write_bytes(b"mine")  # not a plot this command writes: kept
    argv = ["compare", "--algorithms", "gd", "-K", "3", "--dataset", "digits", "-M", "2"]
    argv += ["--max-samples", "60", "-q", "--out", str(out)]
    assert cli.main(argv) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["notes.png", *(f"residual_vs_{k}.png" for k, _ in PANELS)])
    assert "removed 1 plots of an earlier run" in capsys.readouterr().out
    assert cli.main([*argv, "--no-plots"]) == 0
    assert [p.name for p in out.glob("*.png")] == ["notes.png"]
    assert cli.main(argv) == 0
    monkeypatch.setattr(sweep, "MAX_PLOTTED_RUNS", 1)
    argv[0:3] = ["sweep", "--algorithms", "gd", "--seeds", "2"]
    assert cli.main(argv) == 0
    assert [p.name for p in out.glob("*.png")] == ["notes.png"]
    assert "no plots: 2 runs, more than 1 curves" in capsys.readouterr().out


def test_regime_plot_legend_clear_of_the_title(tmp_path, monkeypatch):
    """The legend was drawn over the title (both at the top right), hiding what the cell
    numbers mean; the text table called its rows "up/down" ratios (they are down/up)."""
    import matplotlib.pyplot as plt

    from laqcore.experiments import study_plots

    cells = [{"latency_ms": 1.0, "ratio": 1.0, "downlink_mbps": 10.0, "winner": "laq", "margin": 2}]
    data = {"algorithms": ["gd", "laq"], "latencies_ms": [1.0], "ratios": [1.0]}
    data.update(bandwidths_mbps=[10.0], cells=cells)
    figs = []
    monkeypatch.setattr(study_plots, "save_figure", lambda fig, path: figs.append(fig) or path)
    study_plots.plot_regime(str(tmp_path), data)
    (fig,) = figs
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    assert not title.overlaps(legend)
    assert "blank: none did" in fig._suptitle.get_text()
    assert [t.get_text() for t in fig.axes[0].texts] == ["2.0"]
    cells[0]["margin"] = None  # the only one to reach eps: it was a blank, as "none did"
    study_plots.plot_regime(str(tmp_path), data)
    assert [t.get_text() for t in figs[-1].axes[0].texts] == ["only"]
    plt.close(figs[-1])
    plt.close(fig)
    from laqcore.experiments.regime import _print

    out = []
    monkeypatch.setattr("builtins.print", lambda *a, **k: out.append(" ".join(map(str, a))))
    _print({**data, "runs": {}})
    assert "rows: downlink/uplink bandwidth ratio, columns: downlink Mbit/s" in "\n".join(out)


def test_ratio_plot_tells_the_methods_apart(tmp_path, monkeypatch):
    """ratio.png joined every method's points into one line per P (qsgd, top-k and LAQ
    settings in order of ratio), no point saying which method it was."""
    import matplotlib.pyplot as plt

    from laqcore.experiments import study_plots

    def row(config, P, ratio, speedup):
        return {"config": config, "P": P, "compression_ratio": ratio, "speedup": speedup}

    rows = [row("gd", 1, 1.0, 1.0), row("gd", 4, 1.0, 1.1)]
    for P in (1, 4):
        rows += [row(f"qsgd levels={s}", P, r, 1 + P * r / 100) for s, r in ((1, 13), (4, 7))]
        rows += [row(f"laq bits={b}", P, r, 1 + P * r / 50) for b, r in ((2, 14), (4, 7.5))]
    figs = []
    monkeypatch.setattr(study_plots, "save_figure", lambda fig, path: figs.append(fig) or path)
    study_plots.plot_ratio(str(tmp_path), {"procs": [1, 4], "rows": rows})
    (fig,) = figs
    ax = fig.axes[0]
    assert sorted(ln.get_label() for ln in ax.get_lines()) == ["gd P=4", "laq P=4", "qsgd P=4"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["P=4", "gd", "qsgd", "laq"]
    plt.close(fig)


def test_variance_plot_labels_the_bits_axis(tmp_path, monkeypatch):
    """On a base-10 log axis a panel whose points all lay between 1 and 10 bits per
    coordinate had no x label at all (minor labels were blanked); base 2 labels 1, 2, 4, 8."""
    import matplotlib.pyplot as plt

    from laqcore.experiments import variance

    recs = [
        {"source": "gaussian", "family": "qsgd-l2", "entropy": e, "bits_per_coord": b, "n": 64}
        | {"nmse": 1 / b}
        for b in (1.5, 3.0, 6.0, 9.0)
        for e in (False, True)
    ]
    figs = []
    monkeypatch.setattr(variance, "save_figure", lambda fig, path: figs.append(fig) or path)
    variance._plot(recs, tmp_path / "v.png")
    (fig,) = figs
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    assert [t for t in labels if t] == ["2", "4", "8"]
    plt.close(fig)


def test_plot_results_from_python_runs(tmp_path):
    """Runs of laqcore.simulate plotted from Python: the output directory is created (the
    first figure failed with FileNotFoundError), a run without a link has no empty time
    panel, and runs that cannot be plotted are refused by name."""
    import laqcore

    prob = laqcore.make_problem("digits", workers=2, max_samples=60)
    runs = [
        laqcore.simulate(prob, laqcore.get_algorithm(a), max_iterations=3, f_star=0.0)
        for a in ("gd", "laq")
    ]
    paths = plot_results(str(tmp_path / "new" / "dir"), runs)
    names = [f"residual_vs_{k}.png" for k, _ in PANELS if k != "time"]
    assert [p.rsplit("/", 1)[-1] for p in paths] == names
    assert sorted(p.name for p in (tmp_path / "new" / "dir").iterdir()) == sorted(names)
    bare = laqcore.simulate(
        prob, laqcore.get_algorithm("gd"), max_iterations=3, f_star=0.0, record_history=False
    )
    with pytest.raises(ValueError, match="run.s. gd hold no history to plot"):
        plot_results(str(tmp_path), [runs[1], bare])
    with pytest.raises(ValueError, match="at least one run"):
        plot_results(str(tmp_path), [])
