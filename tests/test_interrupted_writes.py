"""Result and cache files are written whole or not at all: Ctrl-C while ``json.dump`` was
writing ``histories.json`` (megabytes for a long run) left a truncated file, and a cut
run-cache entry made every later study fail on it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import laqcore.serialization
from laqcore import get_algorithm
from laqcore.experiments.results import write_results
from laqcore.experiments.runcache import run_cached
from laqcore.problems import make_problem
from laqcore.serialization import write_json
from laqcore.simulator import simulate


def _interrupt_after_some_bytes(monkeypatch) -> None:
    def dump(obj, fh, **kw):
        fh.write(json.dumps(obj, **kw)[:10])  # part of the file, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(laqcore.serialization.json, "dump", dump)


def test_write_json_keeps_the_previous_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json(path, {"old": 1})
    _interrupt_after_some_bytes(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"new": list(range(100))})
    assert json.loads(path.read_text()) == {"old": 1}
    assert os.listdir(tmp_path) == ["r.json"]  # no temporary left behind


def test_interrupted_write_results_leaves_the_previous_pair(tmp_path, monkeypatch):
    prob = make_problem("digits", workers=2, max_samples=40)
    res = simulate(prob, get_algorithm("gd"), max_iterations=3, eps=0.0)
    write_results(str(tmp_path), {"run": "old"}, [res])
    before = {f: (tmp_path / f).read_text() for f in os.listdir(tmp_path)}
    _interrupt_after_some_bytes(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        write_results(str(tmp_path), {"run": "new"}, [res])
    assert {f: (tmp_path / f).read_text() for f in os.listdir(tmp_path)} == before


def test_cut_run_cache_entry_is_run_again(tmp_path, capsys):
    kw = {"dataset": "digits", "workers": 2, "max_samples": 40}
    args = {"max_iterations": 3, "eps": 0.0, "cache": str(tmp_path), "log": False}
    first = run_cached(kw, "gd", {}, **args)
    (entry,) = (tmp_path / "runs").glob("*.json")
    entry.write_text(entry.read_text()[:15])  # as a pre-atomic interrupted write left it
    again = run_cached(kw, "gd", {}, **args)  # was json.JSONDecodeError, on every later run
    timeless = ("wall_time", "time_s", "time_to_tolerance")
    assert {k: v for k, v in again.summary.items() if k not in timeless} == {
        k: v for k, v in first.summary.items() if k not in timeless
    }
    assert json.loads(entry.read_text()) == again.summary


def test_interrupted_bench_json_keeps_the_previous_report(tmp_path, monkeypatch):
    from laqcore import cli

    report = {"machine": {"cpu": "x", "cpu_count": 1, "simd": "-", "torch": None}, "results": []}
    monkeypatch.setattr("laqcore.bench.cli.run", lambda **kw: report)
    path = tmp_path / "bench.json"
    path.write_text('{"old": true}')
    args = cli.build_parser().parse_args(["bench", "--json", str(path)])
    _interrupt_after_some_bytes(monkeypatch)
    with pytest.raises(KeyboardInterrupt):  # the command itself, without main's handler
        args.func(args)
    assert json.loads(path.read_text()) == {"old": True}


def test_interrupted_variance_json_leaves_the_previous_file(tmp_path, monkeypatch, capsys):
    """variance.json was written with a plain write_text: the atomic write_json now (and the
    printed table names its columns)."""
    from laqcore import cli

    (tmp_path / "variance.json").write_text('{"old": 1}')
    _interrupt_after_some_bytes(monkeypatch)
    argv = ["variance", "--sources", "gaussian", "--n", "64", "--steps", "1", "--no-plots"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 130  # Ctrl-C during the write
    assert json.loads((tmp_path / "variance.json").read_text()) == {"old": 1}
    assert "us: median compress + decompress time per vector" in capsys.readouterr().out


def test_sweep_results_json_is_one_write(tmp_path, monkeypatch):
    """sweep wrote results.json, read it back and wrote it again with its table: Ctrl-C
    between the two left a results.json of plain summaries, without the table, the tuned
    steps and the runs' grid points. Now histories.json and results.json are one write
    each (a third write is interrupted here, as the second results.json write was)."""
    from laqcore import cli

    real_dump, calls = json.dump, []

    def dump(obj, fh, **kw):
        if str(tmp_path / "o") in fh.name:  # not the F* cache's
            calls.append(fh.name)
            if len(calls) == 3:
                raise KeyboardInterrupt
        real_dump(obj, fh, **kw)

    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(laqcore.serialization.json, "dump", dump)
    argv = ["sweep", "--algorithms", "gd", "--grid", "alpha=0.01,0.02", "-K", "3", "--no-plots"]
    argv += ["--dataset", "digits", "-M", "2", "--max-samples", "60", "-q"]
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 0
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(data["table"]) == 2 and data["runs"][0]["grid_alpha"] == 0.01


def test_corrupt_run_cache_trace_is_run_again(tmp_path):
    """A damaged trace archive of a run-cache entry raised zlib.error, NotImplementedError or
    RuntimeError (a bit flipped in a deflate stream, a compression method or flag byte),
    which run_cached did not expect: the study stopped on it. TrafficTrace.load now raises
    ValueError naming the file for any damage, and the entry is run again."""
    from laqcore.network import TrafficTrace

    kw = {"dataset": "digits", "workers": 2, "max_samples": 40}
    args = {"max_iterations": 3, "eps": 0.0, "cache": str(tmp_path), "log": False}
    first = run_cached(kw, "gd", {}, **args)
    (entry,) = (tmp_path / "runs").glob("*.npz")
    raw = entry.read_bytes()
    refusals = []
    for pos in range(len(raw)):
        entry.write_bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1 :])
        try:
            TrafficTrace.load(entry)
        except ValueError as err:  # anything else fails the test
            refusals.append(str(err))
    assert len(refusals) > len(raw) // 2
    assert all(entry.name in message for message in refusals)
    entry.write_bytes(raw[:100] + bytes(len(raw) - 100))  # a deflate stream of zeros
    again = run_cached(kw, "gd", {}, **args)
    assert again.summary["iterations"] == first.summary["iterations"]
    assert TrafficTrace.load(entry).masks == first.trace.masks


def test_forged_trace_member_is_refused_before_allocating(tmp_path):
    """A run-cache trace whose member's .npy header declares 2**40 float64 (8 TiB) in a few
    bytes: np.load allocated the declared shape first; the checked reader compares the
    header with the data it holds and raises ValueError naming the file."""
    import io
    import zipfile

    from laqcore.network import TrafficTrace

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)}
    )
    path = tmp_path / "forged.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.npy", header.getvalue() + bytes(64))
    with pytest.raises(ValueError, match="forged.npz.*1099511627776"):
        TrafficTrace.load(path)


def test_run_cache_key_holds_the_code(tmp_path, monkeypatch):
    """Runs cached by other code are not served: the key holds a hash of the package's modules
    and extension (it held a manual counter, which a behaviour fix could forget to bump)."""
    from laqcore.experiments import runcache

    kw = {"dataset": "digits", "workers": 2, "max_samples": 40}
    args = {"max_iterations": 2, "eps": 0.0, "cache": str(tmp_path), "log": False}
    run_cached(kw, "gd", {}, **args)
    run_cached(kw, "gd", {}, **args)  # the same code: served from the cache
    assert len(list((tmp_path / "runs").glob("*.json"))) == 1
    monkeypatch.setattr(runcache, "_code_fingerprint", lambda: "other code")
    run_cached(kw, "gd", {}, **args)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
