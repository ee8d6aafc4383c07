"""The link studies (regime-map, scaling, ratio-study) on tiny settings."""

from __future__ import annotations

import json

import pytest

from laqcore import cli
from laqcore.experiments import scaling


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path / "cache"))


def test_regime_map_picks_the_fastest(tmp_path, capsys, cache):
    out = tmp_path / "rm"
    argv = ["regime-map", "--algorithms", "gd,laq", "--dataset", "digits", "--workers", "3"]
    argv += ["--max-samples", "300", "--eps", "1e-2", "--bandwidths-mbps", "10,100000"]
    argv += ["--ratios", "1,10", "--latencies-ms", "0.05,20", "--out", str(out), "--no-plots"]
    assert cli.main(argv) == 0
    data = json.loads((out / "regime.json").read_text())
    assert len(data["cells"]) == 8
    for c in data["cells"]:
        times = {k: v for k, v in c["times"].items() if v is not None}
        assert c["winner"] == min(times, key=times.__getitem__)
    # the slow asymmetric link favours the method that moves fewer bits
    slow = next(c for c in data["cells"] if c["downlink_mbps"] == 10 and c["ratio"] == 10)
    assert slow["winner"] == "laq"
    # the settings every cell shares (the downlink mode, topology, compute) were not printed
    expect = "every cell: downlink delta, topology ps, unicast downlink delivery, compute per "
    assert expect + "iteration measured" in capsys.readouterr().out
    # cached: a second call does not simulate again
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "ran " not in capsys.readouterr().err


def test_scaling_and_ratio_study(tmp_path, monkeypatch, capsys, cache):
    out = tmp_path / "sc"
    argv = ["scaling", "--mode", "strong", "--workers-list", "1,2", "--algorithms", "gd"]
    argv += ["--eps", "1e-1", "--out", str(out), "--no-plots"]
    assert cli.main(argv) == 0
    # the progress lines go to stderr (they were in the middle of stdout's table output)
    std = capsys.readouterr()
    assert std.err.count("  ran gd ") == 2 and "ran " not in std.out
    rows = json.loads((out / "scaling.json").read_text())["scaling"]["strong"]["gd"]
    assert [r["M"] for r in rows] == [1, 2] and rows[0]["speedup"] == 1.0
    assert rows[1]["speedup"] == pytest.approx(rows[0]["time"] / rows[1]["time"])
    monkeypatch.setattr(scaling, "RATIO_CONFIGS", [("gd", {}), ("laq", {"bits": 2})])
    argv = ["ratio-study", "--procs", "2", "--eps", "1e-1", "--out", str(out), "--no-plots"]
    assert cli.main(argv) == 0
    data = json.loads((out / "ratio.json").read_text())["ratio"]
    assert data["procs"] == [1, 2]
    laq = [r for r in data["rows"] if r["config"] == "laq bits=2"]
    assert laq[0]["compression_ratio"] > 5  # 2-bit codes vs float32
    gd = [r for r in data["rows"] if r["config"] == "gd"]
    assert gd[0]["compression_ratio"] == 1.0 and gd[0]["speedup"] == 1.0


def test_bad_study_options(capsys, cache):
    assert cli.main(["scaling", "--workers-list", "0,2"]) == 2
    assert ">= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        # n=0 gave empty vectors (numpy warnings), n=-1 numpy's "negative dimensions",
        # steps=0 an empty list that measure() failed on with an IndexError
        (("gaussian", 0, 3), ValueError, "n must be >= 1"),
        (("gaussian", -1, 3), ValueError, "n must be >= 1"),
        (("gaussian", 2.5, 3), TypeError, "n must be an integer"),
        (("gaussian", 16, 0), ValueError, "steps must be >= 1"),
        (("gaussian", 16, 2, -1), ValueError, "seed must be in"),
    ],
)
def test_variance_vector_source_arguments(args, error, match):
    from laqcore.experiments.variance import vector_source

    with pytest.raises(error, match=match):
        vector_source(*args)


def test_variance_measure_needs_vectors():
    from laqcore.experiments.variance import measure, vector_source

    with pytest.raises(ValueError, match="at least one vector"):
        measure([], "qsgd", "qsgd", {}, False)
    record = measure(vector_source("gaussian", 16, 2), "qsgd", "qsgd", {}, False)
    assert record["n"] == 16 and record["nmse"] > 0


def test_study_runs_honour_downlink_chunks(tmp_path, capsys, cache):
    """--downlink-chunks reaches the studies' runs and their cache key: it was dropped, so
    the study ran (or loaded from the cache) the unchunked downlink and said nothing."""
    argv = ["regime-map", "--algorithms", "laq", "--dataset", "digits", "--workers", "2"]
    argv += ["--max-samples", "100", "-K", "20", "--eps", "0", "--downlink", "delta:laq:4"]
    argv += ["--bandwidths-mbps", "10", "--ratios", "1", "--latencies-ms", "1"]

    def bits(extra):
        out = tmp_path / "-".join(extra or ["plain"])
        assert cli.main([*argv, *extra, "--out", str(out), "--no-plots"]) == 0
        return json.loads((out / "regime.json").read_text())["runs"]["laq"]

    plain, chunked = bits([]), bits(["--downlink-chunks", "2"])
    assert capsys.readouterr().err.count("ran laq") == 2  # the second not a cache hit
    assert chunked["total_bits"] != plain["total_bits"]
    assert bits(["--downlink-chunks", "2"]) == chunked  # and cached under its own key
    assert "ran " not in capsys.readouterr().err
    # N <= every M (scaling's M = 1 included), checked before the first run, naming the flag
    argv = ["scaling", "--mode", "strong", "--workers-list", "2", "--algorithms", "laq"]
    assert cli.main([*argv, "--downlink", "delta:laq:4", "--downlink-chunks", "2"]) == 2
    assert "--downlink-chunks 2" in capsys.readouterr().err


def test_regime_map_upload_rate_auto_runs_at_laqs_rate(tmp_path, cache):
    """--upload-rate auto (help: "LAQ's measured rate") was dropped by regime-map: the 0.2
    default ran, and was cached under the key of a plain random-select run."""
    out = tmp_path / "rm"
    argv = ["regime-map", "--algorithms", "laq,random-select", "--upload-rate", "auto"]
    argv += ["--dataset", "digits", "--workers", "3", "--max-samples", "200", "-K", "60"]
    argv += ["--eps", "0", "--bandwidths-mbps", "10", "--ratios", "1", "--latencies-ms", "1"]
    assert cli.main([*argv, "--out", str(out), "--no-plots"]) == 0
    runs = json.loads((out / "regime.json").read_text())["runs"]
    laq_rate = runs["laq"]["uplink_bits"] / runs["laq"]["iterations"]
    rs_rate = runs["random-select"]["uplink_bits"] / runs["random-select"]["iterations"]
    assert rs_rate < 4 * laq_rate  # at 0.2 (60 of 180 worker-iterations) it was ~20x LAQ's


def test_weak_scaling_cache_tells_data_seeds_apart(tmp_path, capsys, cache):
    """The weak-scaling problem's run-cache key lacked --data-seed: a second data seed got
    the first one's cached runs (same numbers, no run)."""
    argv = ["scaling", "--mode", "weak", "--workers-list", "2", "--algorithms", "gd"]
    argv += ["-K", "5", "--eps", "0", "--no-plots"]
    for seed in ("0", "1"):
        assert cli.main([*argv, "--data-seed", seed]) == 0
        assert "ran gd" in capsys.readouterr().err
    assert cli.main([*argv, "--data-seed", "1"]) == 0
    assert "ran " not in capsys.readouterr().err


def test_run_cache_sees_a_changed_data_file(tmp_path, capsys, cache):
    """A libsvm:PATH file rewritten under the same name is new data: the run cache keyed it
    by the name and returned the runs of the former content."""
    path = tmp_path / "d.svm"
    argv = ["regime-map", "--algorithms", "gd", "--dataset", f"libsvm:{path}", "--model"]
    argv += ["logistic", "-M", "2", "-K", "5", "--eps", "0", "--bandwidths-mbps", "10"]
    argv += ["--ratios", "1", "--latencies-ms", "1", "--no-plots"]
    for scale in (1, 3):  # the second file: the first feature times 3
        rows = [f"{i % 2} 1:{scale * (-1) ** i * (i + 1) / 10} 2:{i / 10}" for i in range(20)]
        path.write_text("\n".join(rows) + "\n")
        assert cli.main(argv) == 0
        assert "ran gd" in capsys.readouterr().err
    assert cli.main(argv) == 0  # the same content again: cached
    assert "ran " not in capsys.readouterr().err


def test_study_tables_say_what_their_cells_are(capsys, cache, monkeypatch):
    """scaling and ratio-study printed '-s/-x' and '-' cells (eps not reached) with no word
    on why, nor on what a cell or the 'ratio' column was."""
    argv = ["scaling", "--mode", "strong", "--workers-list", "1,2", "--algorithms", "gd"]
    assert cli.main([*argv, "-K", "3", "--eps", "1e-3"]) == 0
    out, err = capsys.readouterr()
    assert "ran " not in out
    assert "gd                   -s/-x" in out and "'-': eps not reached" in out
    assert "modelled time to eps" in out
    assert "eps 0.001 not reached within --max-iterations 3: gd at M=1 (strong)" in err
    monkeypatch.setattr(scaling, "RATIO_CONFIGS", [("gd", {})])
    assert cli.main(["ratio-study", "--procs", "2", "-K", "3"]) == 0
    out, err = capsys.readouterr()
    assert "ratio: compression ratio, GD's upload bytes / the method's" in out
    assert "not reached within --max-iterations 3: gd at P=1, gd at P=2" in err


def test_scaling_without_m1_still_has_speedups(tmp_path, cache):
    """--workers-list 2 (no M = 1) gave every speedup as None ('-x'), the base T(1) never
    run; M = 1 is now always run, as ratio-study's P = 1."""
    out = tmp_path / "sc"
    argv = ["scaling", "--mode", "strong", "--workers-list", "2", "--algorithms", "gd"]
    assert cli.main([*argv, "--eps", "1e-1", "--out", str(out), "--no-plots"]) == 0
    rows = json.loads((out / "scaling.json").read_text())["scaling"]["strong"]["gd"]
    assert [r["M"] for r in rows] == [1, 2]
    assert rows[1]["speedup"] == pytest.approx(rows[0]["time"] / rows[1]["time"])


def test_ratio_study_with_one_p_draws_no_empty_plot(tmp_path, capsys, cache, monkeypatch):
    """--procs 1: one point per config, no speedup to draw; it wrote an empty ratio.png
    with matplotlib's "No artists with labels found to put in legend" warning."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(scaling, "RATIO_CONFIGS", [("gd", {})])
    out = tmp_path / "r"
    assert cli.main(["ratio-study", "--procs", "1", "-K", "3", "--out", str(out)]) == 0
    std = capsys.readouterr()
    assert "no plot: the speedups T(1)/T(P) need a P > 1" in std.out
    assert "No artists" not in std.err and not (out / "ratio.png").exists()


def test_studies_leave_no_plot_of_an_earlier_run(tmp_path, capsys, cache, monkeypatch):
    """--no-plots (or ratio-study's P = 1, which draws none) kept the previous command's
    scaling.png / ratio.png / regime.png / variance.png beside the new JSON."""
    out = tmp_path / "o"
    out.mkdir()
    for name in ("scaling.png", "ratio.png", "regime.png", "variance.png", "mine.png"):
        (out / name).write_bytes(b"old")
    monkeypatch.setattr(scaling, "RATIO_CONFIGS", [("gd", {})])
    common = ["-K", "2", "--out", str(out), "--no-plots"]
    assert cli.main(["scaling", "--mode", "strong", "--workers-list", "1", *common]) == 0
    assert cli.main(["ratio-study", "--procs", "1", *common]) == 0
    argv = ["regime-map", "--algorithms", "gd", "--dataset", "digits", "-M", "2"]
    assert cli.main([*argv, "--max-samples", "40", *common]) == 0
    argv = ["variance", "--sources", "gaussian", "--n", "64", "--steps", "1", "-q"]
    assert cli.main([*argv, "--out", str(out), "--no-plots"]) == 0
    assert [p.name for p in out.glob("*.png")] == ["mine.png"]
    assert "removed 1 plots of an earlier run" in capsys.readouterr().out


def test_every_results_json_field_is_documented():
    """The JSON fields of results.json and the sweep table were documented nowhere (which
    are measured, which bits, what time means); docs/results_simulator.md now lists them,
    and a field added later without a word there fails here."""
    from pathlib import Path

    from laqcore import get_algorithm
    from laqcore.experiments.sweep import aggregate
    from laqcore.problems import make_problem
    from laqcore.simulator import simulate

    doc = Path(__file__).parent.parent / "docs" / "results_simulator.md"
    if not doc.exists():  # the wheel's tests run from a copy outside the checkout
        pytest.skip("needs the source checkout's docs/")
    section = doc.read_text().split("## Output files and their fields")[1]
    prob = make_problem("digits", workers=2, max_samples=40)
    run = simulate(prob, get_algorithm("gd"), max_iterations=2, eps=0.0).summary()
    stats = {k.rsplit("_", 1)[0] for k in aggregate([run]) if k.endswith(("_mean", "_std"))}
    missing = [k for k in [*run, *stats, "reached_fraction"] if f"`{k}`" not in section]
    assert not missing, f"not in docs/results_simulator.md's field list: {missing}"


def test_regime_map_sole_finisher_is_not_a_zero_margin():
    """A cell whose winner was the only method to reach eps printed 'laq(0.00)', a margin
    of zero, where the others never got there."""
    from laqcore.experiments.regime import _cell

    assert _cell({"winner": "laq", "margin": None}) == "laq(only)"
    assert _cell({"winner": "laq", "margin": 1.5}) == "laq(1.50)"
    assert _cell({"winner": None, "margin": None}) == "-"


def test_regime_map_repeated_values_keep_the_table_aligned(capsys, cache):
    """--ratios 1,1 printed each cell twice in one row, under columns that were not its."""
    argv = ["regime-map", "--algorithms", "gd", "--dataset", "digits", "-M", "2", "-K", "2"]
    argv += ["--max-samples", "40", "--ratios", "1,1", "--bandwidths-mbps", "10,10"]
    assert cli.main([*argv, "--latencies-ms", "1,1"]) == 0
    out = capsys.readouterr().out
    assert out.count("latency 1 ms") == 1
    assert [ln.split() for ln in out.splitlines() if ln.lstrip().startswith("1 ")] == [["1", "-"]]


def test_study_tables_name_the_link_and_the_downlink(capsys, cache):
    """A preset with a flag changed was only 'custom link', and no study table named the
    --downlink mode its bits and times were for."""
    argv = ["scaling", "--mode", "strong", "--workers-list", "1", "--algorithms", "gd"]
    argv += ["-K", "2", "--network", "datacenter", "--uplink-mbps", "1", "--downlink", "model"]
    assert cli.main(argv) == 0
    head = next(ln for ln in capsys.readouterr().out.splitlines() if "strong scaling" in ln)
    assert "custom link (up 1 Mbit/s, down 10000 Mbit/s, 0.05 ms, ps" in head
    assert "downlink model" in head


def test_interrupted_study_says_it_resumes_from_the_cache(tmp_path, capsys, cache, monkeypatch):
    """Ctrl-C in a study printed only 'interrupted': nothing said the finished runs were
    cached and that running the command again continues from them."""
    from laqcore.experiments import runcache

    real, calls = runcache.run_cached, []

    def run_then_interrupt(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(runcache, "run_cached", run_then_interrupt)
    argv = ["scaling", "--mode", "strong", "--workers-list", "1,2", "--algorithms", "gd"]
    assert cli.main([*argv, "-K", "2"]) == 130
    err = capsys.readouterr().err
    assert f"cached in {tmp_path / 'cache'}; the same command continues from them" in err
    monkeypatch.setattr(runcache, "run_cached", real)
    assert cli.main([*argv, "-K", "2"]) == 0
    assert capsys.readouterr().err.count("  ran gd ") == 1  # M = 1 came from the cache


def test_study_runs_show_the_simulators_progress(tmp_path, monkeypatch):
    """A study's run printed nothing until it had finished (minutes at M = 1024): it now
    has the simulator's stderr progress line (runs over a second), unless log=False."""
    from laqcore import simulator
    from laqcore.experiments.runcache import run_cached

    seen = []
    real = simulator.simulate
    monkeypatch.setattr(
        simulator, "simulate", lambda *a, **kw: seen.append(kw["progress"]) or real(*a, **kw)
    )
    kw = {"dataset": "digits", "workers": 2, "max_samples": 40}
    for log, cache in ((True, "a"), (False, "b")):
        run_cached(kw, "gd", {}, max_iterations=2, eps=0.0, cache=str(tmp_path / cache), log=log)
    assert seen == [True, False]
