"""``run``/``compare``/``sweep``/``launch``/``problem``/``bench`` check every option, name and
output path before any work: one ``laqcore <command>: error: ...`` line, exit status 2, and
neither a problem is built nor an algorithm simulated (issue 14, items 2, 3, 6)."""

from __future__ import annotations

import argparse
import re

import pytest

import laqcore.problems
import laqcore.simulator
from laqcore import cli
from laqcore._validate import check_output_dir, check_output_file


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts working (building data or simulating)."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the options were checked")

    monkeypatch.setattr(laqcore.problems, "make_problem", refuse)
    monkeypatch.setattr(laqcore.simulator, "simulate", refuse)


def _fails_with(capsys, argv: list[str], *parts: str) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"laqcore {argv[0]}: error: ")
    for part in parts:
        assert part in lines[0]


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (["compare", "--algorithms", "gd,lqa"], ["unknown algorithm 'lqa'", "laq"]),
        (["compare", "--algorithms", " , "], ["at least one algorithm"]),
        (["compare", "--algorithms", "laq,gd,LAQ"], ["names laq more than once ('laq', 'LAQ')"]),
        (["compare", "--seeds", "0"], ["--seeds must be >= 1"]),
        # the last seed past uint64: an OverflowError traceback, or an error after the
        # other seeds' runs (sweep: the data seed too)
        (["compare", "--seeds", str(10**20)], ["--seed 0 with --seeds", "above 2**64 - 1"]),
        (["compare", "--seed", str(2**64 - 1), "--seeds", "2"], ["the last seed, 1844"]),
        (["sweep", "--data-seed", str(2**64 - 1), "--seeds", "2"], ["--data-seed 1844"]),
        (["run", "-a", "laq", "--bits", "9"], ["laq:", "bits must be"]),
        (["run", "--alpha", "-1"], ["alpha must be"]),
        (["run", "--seed", "-1"], ["seed must be in [0, "]),  # was numpy's unnamed message
        (["run", "--data-seed", "-1"], ["--data-seed must be in [0, "]),
        (["run", "--max-samples", "0"], ["--max-samples must be >= 1"]),
        (["run", "-K", "0"], ["--max-iterations must be >= 1"]),
        (["run", "--eps", "nan"], ["--eps must be finite"]),
        (["run", "--eps", "-1"], ["--eps must be >= 0"]),
        (["run", "--eval-every", "0"], ["--eval-every"]),
        (["run", "--blas-threads", "-1"], ["--blas-threads"]),
        (["run", "--workers", "0"], ["--workers must be >= 1"]),
        (["run", "--test-fraction", "1.5"], ["--test-fraction must be in [0, 1)"]),
        (["run", "--dirichlet-alpha", "0"], ["--dirichlet-alpha must be > 0"]),
        (["run", "--dataset", "digitz"], ["unknown dataset 'digitz'", "digits"]),
        (["run", "--dataset", "mnist"], ["needs --data-dir"]),
        (["run", "--dataset", "libsvm:/nonexistent.svm"], ["no such file"]),
        (["run", "--dataset", "libsvm:/"], ["'/' is a directory; expected a LIBSVM file"]),
        (["run", "--data-dir", "/nonexistent-dir"], ["--data-dir", "not a directory"]),
        (
            ["compare", "--algorithms", "gd,random-select,laq", "--upload-rate", "auto"],
            ["'laq' must come earlier"],
        ),
        (["sweep", "--grid", "alpha=-1"], ["alpha must be"]),
        (["sweep", "--grid", "workers=0"], ["--workers must be >= 1"]),
        (  # failed in simulate at the M = 1 point, after the M = 4 runs
            [
                "sweep",
                "--grid",
                "workers=4,1",
                "--downlink",
                "delta:laq:4",
                "--downlink-chunks",
                "2",
            ],
            ["--downlink-chunks 2 models", "N <= --workers (1)"],
        ),
        (["sweep", "--grid", "nope=1"], ["unknown parameter 'nope'"]),
        (["sweep", "--tune-step", "--step-grid", "a,b"], ["--step-grid expects"]),
        (["sweep", "--algorithms", "laq,nope"], ["unknown algorithm 'nope'"]),
        (["problem", "--workers", "0"], ["--workers must be >= 1"]),
        (["launch", "-a", "nope"], ["unknown algorithm 'nope'"]),
        (
            ["launch", "--nproc", "4", "--workers", "3"],
            ["4 processes need at least as many workers"],
        ),
        (["launch", "--bits", "0"], ["bits must be"]),
        # started processes until the machine stalled (each failed on the data later)
        (["launch", "--nproc", str(10**20), "--workers", str(10**20)], ["--nproc must be in"]),
        # checked in the ranks, after spawning: "cannot convert float NaN to integer", a
        # NaN deadline killed them at once, 1e15 s overflowed a C int
        (["launch", "--timeout", "nan"], ["--timeout must be finite"]),
        (["launch", "--timeout", "1e15"], ["--timeout must be <= 1000000000"]),
        (["launch", "--deadline", "nan"], ["--deadline must be finite"]),
        (["launch", "--deadline", "0"], ["--deadline must be > 0"]),
        (["launch", "--replica-check-every", "-1"], ["--replica-check-every must be >= 0"]),
        (["launch", "--checkpoint-every", "-1"], ["--checkpoint-every must be >= 0"]),
        # silently wrote no checkpoint
        (["launch", "--checkpoint-every", "5"], ["--checkpoint-every 5 needs --checkpoint-dir"]),
        (["launch", "--checkpoint-dir", "."], ["no checkpoint would be written"]),
        # the studies check before their first run too
        (["scaling", "--algorithms", "gd,foo"], ["unknown algorithm 'foo'"]),
        (["scaling", "--algorithms", " , "], ["at least one algorithm"]),
        (["scaling", "--algorithms", "laq,gd,laq"], ["names laq more than once"]),
        (["scaling", "--workers-list", "1,0"], ["--workers-list needs integers >= 1"]),
        (["ratio-study", "--procs", "1,x"], ["--procs takes comma-separated integers"]),
        (["ratio-study", "-K", "0"], ["--max-iterations must be >= 1"]),
        (["ratio-study", "--data-seed", "-1"], ["--data-seed must be in [0, "]),
        (["scaling", "--data-seed", "-1"], ["--data-seed must be in [0, "]),  # numpy's
        (["scaling", "--per-worker", "-1"], ["--per-worker must be >= 1"]),  # numpy's
        (["scaling", "--features", "0"], ["--features must be >= 1"]),  # ran the study
        # NaN/inf/0 failed in the link model after every run; --ratios 0 a ZeroDivisionError
        (["regime-map", "--latencies-ms", "nan"], ["--latencies-ms needs finite numbers >= 0"]),
        (
            ["regime-map", "--bandwidths-mbps", "1,0"],
            ["--bandwidths-mbps needs finite numbers > 0"],
        ),
        (["regime-map", "--bandwidths-mbps", "inf"], ["--bandwidths-mbps needs finite"]),
        (["regime-map", "--ratios", "0"], ["--ratios needs finite numbers > 0"]),
        # a flag none of the command's algorithms reads would change nothing
        (["run", "--model", "mlp", "--eps", "1e-3"], ["the mlp model is nonconvex, so there"]),
        (["variance", "--sources", "softmax,mlp", "--n", "1000"], ["--n sets the synthetic"]),
        (["variance", "--sources", "mlp", "--seed", "3"], ["--seed sets the synthetic sources"]),
        (["variance", "--sources", " , "], ["--sources must name at least one"]),  # ran nothing
        (["variance", "--seed", "-1"], ["--seed must be in [0, "]),  # was numpy's message
        # drew vectors for minutes, then a MemoryError
        (["variance", "--n", "16777216", "--steps", "17"], ["--n x --steps = 285212672 float32"]),
        (["bench", "--seed", "-1", "--contended", "--load", "0"], ["seed must be in [0, "]),
        # ignored without a word: --contended reads neither, and --load only with it
        (["bench", "--contended", "--min-time", "0.1"], ["--min-time: --contended does not"]),
        (["bench", "--contended", "--quick", "--markdown"], ["--quick, --markdown: --cont"]),
        (["bench", "--load", "3"], ["--load sets the competing processes of --contended only"]),
        (
            ["compare", "--algorithms", "gd,topk", "--entropy-coding"],
            ["uploads of gd, topk-ef carry no"],
        ),
        (["run", "--partition", "iid", "--dirichlet-alpha", "0.1"], ["applies to --partition"]),
        (["compare", "--hidden", "64"], ["--hidden 64 applies to --model mlp only"]),
        (  # mnist keeps its own test set: the fraction was ignored without a word
            ["run", "--dataset", "mnist", "--data-dir", ".", "--test-fraction", "0.5"],
            ["--test-fraction 0.5: mnist has its own test set"],
        ),
        (["launch", "--data-dir", "."], ["--data-dir is read by mnist and libsvm:PATH only"]),
        (["run", "-a", "qsgd", "--momentum", "0.9"], ["--momentum: qsgd does not use it", "acc"]),
        (["compare", "--algorithms", "laq,gd", "--levels", "4"], ["laq, gd do not use it", "qsgd"]),
        (
            ["sweep", "--algorithms", "laq", "--grid", "levels=2,4"],
            ["--grid levels: laq does not use it"],
        ),
        (["launch", "-a", "laq", "--no-lag-forced"], ["--no-lag-forced: laq does not", "lag-wk"]),
        (["regime-map", "--algorithms", "gd", "--bits", "3"], ["--bits: gd does not use it"]),
        (["run", "-a", "lag-wk", "--err-coef", "1"], ["--err-coef: lag-wk does not", "laq"]),
        (["run", "-a", "qsgd", "--levels", "200"], ["levels must be in [1, 127]"]),
        # silently overridden by the grid / the map's own links
        (["sweep", "--grid", "bits=2,4", "--bits", "3"], ["--bits and --grid bits both set"]),
        (["sweep", "--tune-step", "--alpha", "0.05"], ["--alpha and --tune-step both set"]),
        (["sweep", "--grid", "workers=2,4", "-M", "7"], ["--workers and --grid workers both"]),
        (["regime-map", "--uplink-mbps", "1"], ["--uplink-mbps: regime-map sets each cell's"]),
        (["regime-map", "--latency-ms", "0"], ["--latency-ms: regime-map sets each cell's"]),
        (["regime-map", "--network", "datacenter"], ["--network: regime-map sets each cell's"]),
        (["run", "--uplink-mbps", "0"], ["--uplink-mbps must be a finite number > 0"]),
        (["run", "-a", "laq", "--err-coef", "-1"], ["err_coef must be a finite number >= 0"]),
    ],
)
def test_bad_option_is_one_line_before_any_work(capsys, no_work, argv, parts):
    _fails_with(capsys, argv, *parts)


@pytest.mark.parametrize("command", ["run", "compare", "sweep", "launch"])
def test_out_that_is_a_file_is_refused_first(capsys, no_work, tmp_path, command):
    afile = tmp_path / "results"
    afile.write_text("not a directory")
    _fails_with(capsys, [command, "--out", str(afile)], "--out", "is a file")
    _fails_with(capsys, [command, "--out", str(afile / "sub")], "lies under the file")
    _fails_with(capsys, [command, "--cache-dir", str(afile)], "--cache-dir", "is a file")


def test_out_where_nothing_can_be_created_is_refused_first(capsys, no_work, monkeypatch):
    # os.access grants root writing under /proc, where creating anything fails: the check
    # creates a probe, so root gets an error before any work too (other users are refused
    # by os.access already: "not writable").
    monkeypatch.setattr(
        "laqcore.experiments.variance.vector_source",
        lambda *a: (_ for _ in ()).throw(AssertionError("work started")),
    )
    for command in ("run", "variance"):
        _fails_with(capsys, [command, "--out", "/proc/laqcore-x"], "--out '/proc/laqcore-x'")
    for path in ("/proc/laqcore-x", "/proc/laqcore-x/sub"):
        with pytest.raises(ValueError, match="cannot create a directory|is not writable"):
            check_output_dir(path)
    with pytest.raises(ValueError, match="cannot create a file|is not writable"):
        check_output_file("/proc/laqcore-x.json", "--json")


def test_launch_checkpoint_dir_checked(capsys, no_work, tmp_path):
    afile = tmp_path / "ckpt"
    afile.write_text("x")
    _fails_with(
        capsys,
        ["launch", "--checkpoint-dir", str(afile), "--checkpoint-every", "5"],
        "--checkpoint-dir",
        "is a file",
    )


def test_launch_without_torch_says_what_to_install(capsys, no_work, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    _fails_with(capsys, ["launch", "--nproc", "2"], "needs PyTorch", "pip install 'laqcore[torch]'")


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_bench_output_checked_before_timing(capsys, tmp_path, flag):
    _fails_with(
        capsys,
        ["bench", "--kernels", "pack", "--no-torch", flag, str(tmp_path / "no" / "f.json")],
        flag,
        "does not exist",
    )
    _fails_with(capsys, ["bench", "--no-torch", flag, str(tmp_path)], "is a directory")


def _help(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # unwrap argparse's line breaks


@pytest.mark.parametrize("command", ["run", "launch"])
def test_help_lists_algorithm_names_and_defaults(capsys, command):
    from laqcore.algorithms import available_algorithms

    text = _help(capsys, [command])
    for name in available_algorithms():
        assert name in text
    assert "(default: laq)" in text
    assert "(default: 5000)" in text  # -K
    assert "--max-iterations MAX_ITERATIONS, -K MAX_ITERATIONS iteration budget K" in text
    assert "(default: None)" not in text


def test_algorithm_flag_help_states_each_algorithms_default(capsys):
    """The defaults in the algorithm flags' help come from the registry: --alpha once said
    "stochastic: 0.008" while the AsyLPG family (stochastic) defaults to 0.02, --bits left
    out AsyLPG's 8 and --ck LAG-PS's 10."""
    from laqcore.algorithms import ALGORITHMS
    from laqcore.experiments.options import PARAM_FLAGS, param_defaults

    text = "".join(_help(capsys, ["run"]).split())  # argparse also breaks lines at hyphens
    assert "stepsize(0.02;0.008:sgd,qsgd," in text
    assert "bitspercoordinate(4;8:asylpg,sparse-asylpg,acc-asylpg;3:slaq)" in text
    assert "xi_d=ck/D(0.8;10.0:lag-ps)" in text
    for field in PARAM_FLAGS:
        readers = [cls for cls in ALGORITHMS.values() if field in cls.USES]
        stated = param_defaults(field)
        for cls in readers:
            value = str(getattr(cls.default_params(), field))
            assert stated.startswith(value) or f"{value}: " in stated, (field, cls.name)
        if field not in ("block_size", "adaptive_bits", "width_block", "xi", "lag_forced"):
            assert "(" + "".join(stated.split()) in text, field


def test_help_states_each_default_once_and_launch_nproc_under_torchrun(capsys):
    """An option whose text already gives its default in parentheses gets no second
    '(default: ...)' ('--timeout ... failing (60) (default: 60.0)' said it twice), and
    launch --nproc no longer claims to be ignored under torchrun, where another value is an
    error (test_launch_nproc_that_disagrees_with_torchrun_is_refused)."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    checked = 0
    for name, command in sub.choices.items():
        for action in command._actions:
            text, default = action.help or "", action.default
            if not action.option_strings or default in (None, False, argparse.SUPPRESS):
                continue
            if "default" in text:  # the formatter adds nothing
                continue
            checked += 1
            values = {str(default)} | ({f"{default:g}"} if isinstance(default, float) else set())
            for value in values:
                assert not re.search(r"\(" + re.escape(value) + r"[;)]", text), (name, text)
    assert checked > 20
    text = _help(capsys, ["launch"])
    assert "ignored under torchrun" not in text
    assert "under torchrun: torchrun's WORLD_SIZE" in text


def test_every_option_with_a_default_shows_it():
    """argparse prints no help line, so no default, for an option without help text:
    regime-map's --eps and -K, scaling's --mode, --model, --partition, launch's --backend
    had defaults no --help showed."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    hidden = [
        (name, action.option_strings[0])
        for name, command in sub.choices.items()
        for action in command._actions
        if action.option_strings
        and not (action.help or "").strip()
        and not (action.default is None or action.default is False)
    ]
    assert hidden == []


def test_bench_help_has_no_restructured_text(capsys):
    text = _help(capsys, ["bench"])
    assert "``" not in text and ":func:" not in text and ".. " not in text
    assert "(default: 0)" in text  # --seed


def test_help_formatter_keeps_stated_defaults():
    from laqcore._help import HelpFormatter

    p = argparse.ArgumentParser(formatter_class=HelpFormatter)
    p.add_argument("--a", default=3, help="an a")
    p.add_argument("--b", default=None, help="a b")
    p.add_argument("--c", default=1, help="a c (default 1)")
    p.add_argument("--d", action="store_true", help="a d")
    text = " ".join(p.format_help().split())
    assert "an a (default: 3)" in text
    assert "a b (default" not in text
    assert "a c (default 1)" in text and "(default: 1)" not in text
    assert "a d (default" not in text


def test_run_says_it_wrote_histories(capsys, tmp_path, private_cache):
    argv = ["run", "-a", "gd", "-K", "3", "--workers", "2", "--max-samples", "200"]
    assert cli.main([*argv, "--quiet", "--no-plots", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "o" / "results.json") in out
    assert str(tmp_path / "o" / "histories.json") in out
    assert (tmp_path / "o" / "histories.json").exists()


def test_launch_nproc_that_disagrees_with_torchrun_is_refused(capsys, no_work, monkeypatch):
    # Under torchrun the world size is torchrun's; an explicit other --nproc would be ignored.
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    _fails_with(capsys, ["launch", "--nproc", "4"], "--nproc 4: under torchrun", "WORLD_SIZE=3")


def test_out_of_memory_is_one_line(capsys, monkeypatch):
    """A size the machine cannot hold (variance --n 10**14, bench --sizes 2^40) was a
    numpy _ArrayMemoryError traceback."""

    def too_big(*args):
        raise MemoryError("Unable to allocate 728. TiB for an array with shape (10**14,)")

    monkeypatch.setattr("laqcore.experiments.variance.vector_source", too_big)
    _fails_with(capsys, ["variance", "--sources", "gaussian"], "out of memory: Unable to")


def test_closed_pipe_is_a_quiet_exit(capsys, monkeypatch, tmp_path):
    """`laqcore bench | head -1` printed "laqcore bench: error: [Errno 32] Broken pipe"."""

    def closed(*args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("laqcore.experiments.variance.vector_source", closed)
    with open(tmp_path / "stdout", "w") as fh:
        monkeypatch.setattr("sys.stdout", fh)
        assert cli.main(["variance", "--sources", "gaussian"]) == 141
    assert capsys.readouterr().err == ""


def test_launch_resume_without_checkpoints_is_refused_first(capsys, no_work, tmp_path):
    """Each spawned rank failed with its own CheckpointError after loading the data."""
    (tmp_path / "rank0.ckpt").write_bytes(b"x")  # what is read is checked by the ranks
    _fails_with(
        capsys,
        ["launch", "--nproc", "3", "--resume", "--checkpoint-dir", str(tmp_path)],
        "holds no rank1.ckpt, rank2.ckpt for 3 processes",
    )


@pytest.mark.parametrize("command", ["regime-map", "scaling", "ratio-study"])
def test_study_cache_that_is_a_file_is_refused_first(
    capsys, no_work, monkeypatch, tmp_path, command
):
    """regime-map did not check --cache, and no study checked $LAQCORE_CACHE_DIR: the first
    run went through, then "[Errno 20] Not a directory: '.../runs'"."""
    afile = tmp_path / "cache"
    afile.write_text("x")
    _fails_with(capsys, [command, "--cache", str(afile)], "--cache", "is a file")
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(afile))
    _fails_with(capsys, [command], "$LAQCORE_CACHE_DIR", "is a file")
