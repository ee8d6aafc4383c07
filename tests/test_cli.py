from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from laqcore import cli
from laqcore.experiments.results import RUN_KEYS


def test_help_lists_registered_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "problem" in out


def test_no_command_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: laqcore" in capsys.readouterr().err


def test_ctrl_c_while_the_subcommands_load_is_one_line(capsys, monkeypatch):
    """Ctrl-C right after Enter landed in the subcommands' imports (build_parser), outside
    the handler of the command itself: a traceback ending in KeyboardInterrupt."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["run"]) == 130
    assert capsys.readouterr().err == "laqcore: interrupted\n"


def test_every_registered_module_exposes_add_parser():
    import importlib

    for name in cli.SUBCOMMAND_MODULES:
        assert callable(importlib.import_module(name).add_parser)


def test_problem_command_prints_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path))
    assert cli.main(["problem", "--dataset", "digits", "--workers", "4"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dim"] == 650
    assert info["workers"] == 4
    assert len(info["smoothness"]) == 4
    assert 0 < info["f_star"] < 2.31


def test_user_errors_are_one_line_messages(capsys, tmp_path):
    assert cli.main(["problem", "--dataset", f"libsvm:{tmp_path}/missing.svm"]) == 2
    err = capsys.readouterr().err
    assert "missing.svm" in err
    assert "Traceback" not in err


def test_python_dash_m_entry_point():
    res = subprocess.run(
        [sys.executable, "-m", "laqcore", "--version"], capture_output=True, text=True, check=True
    )
    assert res.stdout.startswith("laqcore ")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path / "cache"))


TINY = ["--dataset", "digits", "--workers", "3", "--max-samples", "300", "--quiet"]
# For a sweep over --grid workers, which refuses --workers beside it.
TINY_ANY_M = [a for a in TINY if a not in ("--workers", "3")]


def run_tiny(out: Path, *argv: str) -> dict[str, Any]:
    """``laqcore <argv> --out <out>`` on the tiny digits problem; must succeed; returns its
    results.json."""
    assert cli.main([*argv, "--out", str(out), *TINY]) == 0
    return json.loads((out / "results.json").read_text())


def test_run_writes_results(tmp_path, capsys, cache):
    out = tmp_path / "run"
    data = run_tiny(out, "run", "--algorithm", "laq", "--max-iterations", "15", "--no-plots")
    (run,) = data["runs"]
    assert run["algorithm"] == "laq"
    assert run["iterations"] == 15
    assert data["config"]["workers"] == 3
    assert data["config"]["problem"]["dim"] == 650
    hist = json.loads((out / "histories.json").read_text())
    assert len(hist[0]["loss"]) == 16
    assert "laq" in capsys.readouterr().out


def test_err_coef_reaches_the_runs_rule(tmp_path, capsys, cache):
    """--err-coef sets Params.err_coef (recorded with the run) and changes the decisions: at
    2 bits the paper's weight 3 skips more than 0."""
    argv = ["run", "-a", "laq", "--bits", "2", "-K", "60", "--no-plots"]
    runs = {c: run_tiny(tmp_path / c, *argv, "--err-coef", c)["runs"][0] for c in ("0", "3")}
    assert runs["0"]["params"]["err_coef"] == 0.0 and runs["3"]["params"]["err_coef"] == 3.0
    assert runs["0"]["uploads"] > runs["3"]["uploads"], {c: r["uploads"] for c, r in runs.items()}


def test_a_run_without_a_tolerance_is_not_reported_as_stopped_short(tmp_path, capsys, cache):
    """The MLP has no F*, and --eps 0 asks for none: such a run uses its whole budget, so the
    table shows '-' (and the whole run's modelled time) instead of 'no', with no note or
    warning to raise --max-iterations; a convex run stopped short still gets both."""
    argv = ["run", "-a", "laq", "-K", "5", "--no-plots"]
    for extra in (["--model", "mlp", "--hidden", "8"], ["--eps", "0"]):
        run_tiny(tmp_path / "-".join(extra), *argv, *extra)
        out, err = capsys.readouterr()
        row = next(line for line in out.splitlines() if line.startswith("laq "))
        assert row.split()[-1] == "-" and ">" not in row
        assert "note: 'no'" not in out and "stopped at the budget" not in err
    run_tiny(tmp_path / "convex", *argv)
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("laq "))
    assert row.split()[-1] == "no" and ">" in row
    assert "note: 'no'" in out and "laq stopped at the budget (--max-iterations 5)" in err


def test_compare_seeds_says_which_runs_no_seed_changes(tmp_path, capsys, cache):
    run_tiny(
        tmp_path,
        "compare",
        "--algorithms",
        "gd,qsgd",
        "--batch",
        "16",
        "--seeds",
        "2",
        "-K",
        "4",
        "--no-plots",
    )
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if "gave the same run" in line)
    assert note.startswith("note: gd gave the same run for every seed") and "qsgd" not in note


def test_compare_table_json_and_plots(tmp_path, capsys, cache):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cmp"
    algorithms = "gd,qgd,lag-wk,laq,random-select"
    data = run_tiny(out, "compare", "--algorithms", algorithms, "--max-iterations", "20")
    assert [r["algorithm"] for r in data["runs"]] == ["gd", "qgd", "lag-wk", "laq", "random-select"]
    assert all(set(RUN_KEYS) <= set(r) for r in data["runs"])
    # random-select ran at LAQ's measured upload rate
    laq = data["runs"][3]
    assert data["runs"][4]["params"]["upload_rate"] == pytest.approx(
        laq["uploads"] / (laq["iterations"] * 3)
    )
    for name in ("iterations", "uploads", "bits", "total_bits", "time"):
        png = out / f"residual_vs_{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG"
    for r in data["runs"]:
        assert r["total_bits"] == r["uplink_bits"] + r["downlink_bits"]
        assert r["uplink_bits"] == r["bits"]
        assert r["downlink"] == "delta" and r["network"]["name"] == "edge"
        assert r["time_to_tolerance"] is None  # 20 iterations reach no tolerance
    table = capsys.readouterr().out
    assert "total/GD" in table and "bits include frame headers" in table
    assert "lag-wk" in table


def test_compare_link_options_and_downlink(tmp_path, capsys, cache):
    out = tmp_path / "link"
    args = ["compare", "--algorithms", "gd,laq", "--max-iterations", "15", "--out", str(out)]
    rc = cli.main(
        [*args, *TINY, "--downlink", "model:f32", "--network", "datacenter", "--latency-ms", "1"]
    )
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    for r in data["runs"]:
        assert r["downlink"] == "model:f32"
        assert r["network"]["latency_ms"] == 1 and r["network"]["uplink_mbps"] == 10000
    assert cli.main([*args, *TINY, "--downlink", "sideways"]) == 2
    assert "downlink mode" in capsys.readouterr().err


def test_sweep_grid_with_seeds(tmp_path, capsys, cache):
    out = tmp_path / "sw"
    grid = ["--grid", "alpha=0.01,0.02", "--grid", "D=2,10", "--seeds", "2"]
    data = run_tiny(
        out, "sweep", "--algorithms", "laq", *grid, "--max-iterations", "10", "--no-plots"
    )
    assert len(data["runs"]) == 8
    assert len(data["table"]) == 4
    row = data["table"][0]
    assert row["runs"] == 2
    assert "bits_std" in row
    assert {row["alpha"], row["D"]} == {0.01, 2}
    # Seeds change the data split, so deterministic LAQ still gets a spread.
    assert {r["data_seed"] for r in data["runs"]} == {0, 1}
    assert "±" in capsys.readouterr().out


def test_sweep_error_bars_are_sample_std_over_seeds(tmp_path, capsys, cache):
    """The ± is the sample std of the per-seed runs; with one seed there is none (it was
    0.0, shown as a measured "±0" spread), and the table says what its columns are."""
    argv = ["sweep", "--algorithms", "laq", "--max-iterations", "10", "--no-plots"]
    data = run_tiny(tmp_path / "s2", *argv, "--seeds", "3")
    (row,) = data["table"]
    assert row["bits_std"] == pytest.approx(np.std([r["bits"] for r in data["runs"]], ddof=1))
    capsys.readouterr()
    data = run_tiny(tmp_path / "s1", *argv, "--seeds", "1")
    (row,) = data["table"]
    assert row["runs"] == 1 and row["bits_std"] is None and row["bits_mean"] > 0
    out = capsys.readouterr().out
    assert "±" not in out.splitlines()[2]  # the row
    assert "mean ± sample std over each row's seeds" in out
    assert "time: edge link" in out  # the link the modelled time is for


def test_sweep_tune_step_without_a_tolerance_picks_the_lowest_loss(tmp_path, capsys, cache):
    """On the nonconvex MLP no step reaches a tolerance and there is no F*: the tuned step is
    the one with the lowest final loss (it used to be the grid's first, whatever it did)."""
    from laqcore.experiments import sweep

    argv = ["sweep", "--algorithms", "gd", "--tune-step", "--step-grid", "0.0001,0.05"]
    assert cli.main([*argv, "-K", "15", "--model", "mlp", "--hidden", "8", *TINY]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("  gd "))
    assert "alpha=0.05" in line and "(no step reached eps: lowest F-F*/loss)" in line
    rows = [{"reached_tolerance": False, "final_residual": None, "final_loss": v} for v in (2, 1)]
    assert [sweep.aggregate([r])["final_loss_mean"] for r in rows] == [2.0, 1.0]


def test_sweep_tune_step_and_workers(tmp_path, capsys, cache):
    rc = cli.main(
        [
            "sweep",
            "--algorithms",
            "gd,laq",
            "--tune-step",
            "--step-grid",
            "0.01,0.04",
            "--max-iterations",
            "10",
            "--eps",
            "10",
            *TINY,
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "best step size" in out
    assert "alpha=0.01" in out
    rc = cli.main(
        [
            "sweep",
            "--algorithms",
            "gd",
            "--grid",
            "workers=1,2",
            "--scale-alpha",
            "--max-iterations",
            "3",
            *TINY_ANY_M,
        ]
    )
    assert rc == 0


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["run", "--algorithm", "adam"], "unknown algorithm"),
        (["compare", "--algorithms", ","], "at least one"),
        (["sweep", "--grid", "alpha"], "NAME=v1"),
        (["sweep", "--grid", "speed=1"], "unknown parameter"),
        (["sweep", "--grid", "lag_forced=maybe"], "lag_forced: values must be true/false"),
        (["run", "--alpha", "-1"], "alpha"),
        (["compare", "--algorithms", "random-select", "--upload-rate", "auto"], "auto"),
    ],
)
def test_cli_user_errors(argv, match, capsys, cache):
    assert cli.main([*argv, *TINY, "--max-iterations", "2"]) == 2
    assert match in capsys.readouterr().err


def test_nonconvex_compare_plots_the_loss(tmp_path, cache):
    pytest.importorskip("matplotlib")
    out = tmp_path / "mlp"
    model = ["--model", "mlp", "--hidden", "8"]
    runs = run_tiny(out, "compare", *model, "--algorithms", "gd,laq", "--max-iterations", "5")[
        "runs"
    ]
    assert (out / "loss_vs_bits.png").read_bytes()[:4] == b"\x89PNG"
    assert all(r["final_residual"] is None and not r["reached_tolerance"] for r in runs)


def test_blas_thread_limit_is_scoped():
    from laqcore._blas import blas_threads, get_blas_threads, set_blas_threads

    before = get_blas_threads()
    if before is None:
        pytest.skip("numpy is not linked against a reachable OpenBLAS")
    with blas_threads(1):
        assert get_blas_threads() == 1
    assert get_blas_threads() == before
    with blas_threads(0):  # 0 = leave alone
        assert get_blas_threads() == before
    with pytest.raises(ValueError, match="BLAS thread count"):
        set_blas_threads(0)


def test_table_keeps_a_huge_regression_score_in_its_column(tmp_path, capsys, cache):
    """A diverged least-squares run's test score (-MSE) ran into the F-F* column:
    '5.3e+08-1056008341.5385  DIVERGED'."""
    argv = ["run", "--dataset", "synthetic-regression", "--model", "least-squares"]
    assert cli.main([*argv, "-K", "50", "-q", "--alpha", "5", "--no-plots"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "DIVERGED" in line)
    residual, score = row.split()[-3:-1]
    assert float(residual) > 1e6 and float(score) < -1e6, row


def test_sweep_grid_of_flags_and_block_sizes_builds_valid_params():
    """--grid lag_forced=0,1 gave 0.0 and 1.0 (floats), which Params now refuses as
    non-bools, and --grid block_size=8,16 gave 8.0 and 16.0 (refused as non-integers)."""
    from laqcore.algorithms import get_algorithm
    from laqcore.experiments.sweep import parse_grid

    grid = parse_grid(["lag_forced=0,true", "block_size=8,16"])
    assert grid == {"lag_forced": [False, True], "block_size": [8, 16]}
    for flag in grid["lag_forced"]:
        assert get_algorithm("lag-wk", lag_forced=flag).params.lag_forced is flag
    for size in grid["block_size"]:
        assert get_algorithm("laq", block_size=size).params.block_size == size


def test_table_shows_no_test_set_as_a_dash(tmp_path, capsys, cache):
    """--test-fraction 0 leaves no test set: the run table printed 'nan' where the sweep
    table and the JSON (null) say there is none."""
    argv = ["run", "-a", "gd", "--test-fraction", "0", "-K", "2", "-q", "--no-plots"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("gd "))
    assert "nan" not in row and row.split()[-2] == "-", row


def test_sweep_grid_repeats_do_not_pool_runs(tmp_path, capsys, cache):
    """--grid bits=4,4 ran the point twice and its table row pooled both (runs 2 from one
    seed, a std of identical copies); --grid bits=2 --grid bits=4 kept only the last."""
    data = run_tiny(tmp_path / "s", "sweep", "--grid", "bits=4,4", "-K", "3", "--no-plots")
    assert [(t["bits"], t["runs"]) for t in data["table"]] == [(4, 1)]
    assert cli.main(["sweep", "--grid", "bits=2", "--grid", "bits=4", *TINY]) == 2
    assert "--grid bits given twice" in capsys.readouterr().err


def test_sweep_workers_grid_says_the_scaled_steps(tmp_path, capsys, cache):
    """With --grid workers the step is alpha x 10 / M (--scale-alpha, on by default), but
    the table has no alpha column: nothing printed said which step each row ran with."""
    argv = ["sweep", "--algorithms", "gd", "--grid", "workers=2,4", "-K", "2"]
    assert cli.main([*argv, "--out", str(tmp_path / "s"), *TINY_ANY_M]) == 0
    out = capsys.readouterr().out
    assert "steps (--scale-alpha: alpha x 10 / M): gd M=2: 0.1, gd M=4: 0.05" in out


@pytest.mark.parametrize("command", ["scaling", "ratio-study", "regime-map", "variance"])
def test_study_help_explains_every_option(command):
    """--no-plots, --quiet and regime-map's --out were listed in --help with no word."""
    import argparse

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    bare = [a.option_strings for a in sub.choices[command]._actions if not a.help]
    assert bare == []


def test_regression_table_says_what_its_test_accuracy_is(tmp_path, capsys, cache):
    """A regression problem's "test acc" is the negative MSE (Problem.accuracy): the table
    printed -0.57 under an accuracy heading without a word; a classification table has no
    such line."""
    args = ["compare", "--algorithms", "gd,laq", "-K", "5", "--workers", "2", "--no-plots"]
    args += ["--quiet", "--max-samples", "200"]
    reg = ["--dataset", "synthetic-regression", "--model", "least-squares"]
    assert cli.main([*args, *reg, "--out", str(tmp_path / "reg")]) == 0
    assert "test acc < 0: a regression problem's negative mean squared error" in (
        capsys.readouterr().out
    )
    assert cli.main([*args, "--dataset", "digits", "--out", str(tmp_path / "cls")]) == 0
    assert "negative mean squared error" not in capsys.readouterr().out
