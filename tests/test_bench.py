"""`laqcore bench` on a tiny configuration: report schema and CLI plumbing (no timing checks;
performance claims live in bench/ and the README, never in tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import laqcore
from bench_scripts import bench_module
from laqcore import bench
from needs_torch import require_torch

TINY = {"sizes": [1000], "bits": [1, 4], "threads": [1, 2], "repeats": 1, "min_time": 0.0}
ROW_KEYS = {
    "kernel",
    "n",
    "bits",
    "threads",
    "seconds",
    "gbps",
    "memcpy_ratio",
    "numpy_speedup",
    "torch_speedup",
    "memcpy_seconds",
    "numpy_seconds",
    "torch_seconds",
    "seconds_min",
    "memcpy_seconds_min",
    "numpy_seconds_min",
    "torch_seconds_min",
}


def test_report_schema():
    kernels = bench.available_kernels()
    assert {"pack", "unpack"} <= set(kernels)
    report = bench.run(kernels=kernels, use_torch=False, **TINY)
    machine = report["machine"]
    for key in ("cpu", "cpu_count", "threads", "simd", "build"):
        assert key in machine
    assert machine["simd"] == laqcore.runtime.simd_level()
    assert machine["build"]["version"] == laqcore.__version__
    rows = report["results"]

    # one row per kernel x size x supported bit width (fixed-width kernels: one) x threads
    def widths(k: str) -> int:
        spec = bench.KERNELS[k]
        return 1 if spec.fixed else len({1, 4} & set(spec.widths))

    expected = sum(2 * widths(k) for k in kernels)
    assert len(rows) == expected
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["kernel"] in kernels
        assert row["n"] == 1000
        assert row["threads"] in (1, 2)
        assert row["seconds"] > 0
        assert row["memcpy_seconds"] > 0
        assert row["memcpy_ratio"] == pytest.approx(row["seconds"] / row["memcpy_seconds"])
        if row["numpy_seconds"] is None:  # the blockwise LAQ kernels have no numpy baseline
            assert row["numpy_speedup"] is None
        else:
            assert row["numpy_speedup"] == pytest.approx(row["numpy_seconds"] / row["seconds"])
        assert row["torch_speedup"] is None  # use_torch=False
    json.dumps(report)  # serialisable as is


def test_torch_baseline_when_available():
    require_torch("the torch baselines of laqcore bench")
    report = bench.run(kernels=["pack"], use_torch=True, **{**TINY, "threads": [1]})
    for row in report["results"]:
        assert row["torch_speedup"] == pytest.approx(row["torch_seconds"] / row["seconds"])


def test_every_kernel_agrees_with_its_torch_and_numpy_baselines():
    """bench.run verifies every kernel against its baselines before timing them: the torch
    LAQ baseline's float64 ||dQ||^2 once failed the check against the kernel's float32
    lanes (a tolerance of 1e-9), so `laqcore bench` with torch stopped at its first row."""
    require_torch("the torch baselines of laqcore bench")
    report = bench.run(use_torch=True, **{**TINY, "sizes": [40000], "bits": [2, 8], "threads": [1]})
    assert {r["kernel"] for r in report["results"]} == set(bench.available_kernels())


def tiny_cli_run(kernels: str, sizes: str, bits: int, out: Path) -> list[str]:
    """Command-line flags of a fast ``bench`` run (one thread and repeat, no torch) that
    writes its JSON report to ``out``."""
    return [
        *("--kernels", kernels, "--sizes", sizes, "--bits", str(bits)),
        *("--threads", "1", "--repeats", "1", "--min-time", "0", "--no-torch"),
        *("--json", str(out)),
    ]


def test_cli_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "bench.json"
    png = tmp_path / "bench.png"
    status = bench.main(
        [*tiny_cli_run("pack,unpack", "10:11", 2, out), "--plot", str(png), "--markdown"]
    )
    assert status == 0
    report = json.loads(out.read_text())
    assert {(r["kernel"], r["n"]) for r in report["results"]} == {
        (k, n) for k in ("pack", "unpack") for n in (1024, 2048)
    }
    assert png.stat().st_size > 0
    text = capsys.readouterr().out
    assert "| kernel | n | bits |" in text
    assert "GB/s" in text


def test_quick_defaults_are_small():
    report = bench.run(kernels=["pack"], bits=[8], threads=[1], quick=True, use_torch=False)
    assert sorted({r["n"] for r in report["results"]}) == [2**10, 2**16, 2**20]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernels": ["nope"]}, "unknown or unavailable kernel"),
        ({"sizes": [0]}, "sizes must be positive"),
        ({"bits": [9]}, "bits must be an integer"),
        ({"threads": [0]}, "threads must be positive"),
        ({"repeats": 0}, "repeats must be >= 1"),
        # NaN passed "< 0" and failed in the timing loop ("cannot convert float NaN to
        # integer"); inf was an OverflowError traceback there
        ({"min_time": float("nan")}, "min_time must be finite"),
        ({"min_time": float("inf")}, "min_time must be finite"),
        ({"min_time": -1.0}, "min_time must be >= 0"),
        ({"seed": -1}, r"seed must be in \[0, "),  # was numpy's unnamed message
    ],
)
def test_bad_arguments(kwargs, match):
    args = {**TINY, "kernels": ["pack"], "use_torch": False, **kwargs}
    with pytest.raises(ValueError, match=match):
        bench.run(**args)


@pytest.mark.parametrize(
    "argv",
    [
        ["--sizes", "x:y"],
        ["--sizes", "2^70"],  # was numpy's "Maximum allowed dimension exceeded"
        ["--sizes", "0"],
        ["--bits", "a,b"],
        ["--kernels", "nope"],
    ],
)
def test_cli_bad_arguments_exit(argv):
    with pytest.raises(SystemExit) as exc:
        bench.main([*argv, "--no-torch"])
    assert exc.value.code == 2


def test_laqcore_command_has_bench(tmp_path, capsys):
    from laqcore import cli

    out = tmp_path / "b.json"
    assert cli.main(["bench", *tiny_cli_run("unpack", "10:10", 1, out)]) == 0
    assert json.loads(out.read_text())["results"][0]["kernel"] == "unpack"
    assert cli.main(["bench", "--kernels", "nope", "--no-torch"]) == 2
    assert "unknown or unavailable kernel" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# bench/bench_hooks.py: DDP hooks inside an outside-style trainer (tiny smoke run, no tc)
# --------------------------------------------------------------------------------------
def _bench_hooks_modules():
    require_torch("the bench/bench_hooks.py smoke runs")
    return bench_module("bench_hooks"), bench_module("hook_meter")


def test_tc_token_bucket_burst():
    """The tc benches' token bucket: ``burst_ms`` of traffic at the rate, at least two full
    Ethernet frames; ``burst_ms=8`` is the bucket of the recordings before session 23
    (max(32 KiB, 2 ticks of HZ=250 at the rate)) wherever that bucket was above 32 KiB."""
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import bench_distributed as bd

    assert bd.burst_bytes("1gbit", 0.25) == 31_250
    assert bd.burst_bytes("100mbit", 0.25) == 3_125
    assert bd.burst_bytes("1mbit", 0.25) == bd.MIN_BURST_BYTES == 3_028
    for rate in ("100mbit", "1gbit", "40mbit"):
        old = max(32 * 1024, int(bd._parse_rate(rate) / 8 / 250) * 2)
        assert bd.burst_bytes(rate, 8.0) == old
    net = bd.Netns(2, "1gbit", 0.0)  # nothing is set up before __enter__
    assert net.describe() == {
        "rate": "1gbit",
        "burst_ms": 1.0,
        "burst_bytes": 125_000,
        "delay_ms": 0.0,
    }
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="burst_ms must be > 0"):
            bd.Netns(2, "1gbit", 0.0, bad)


def test_batch_norm_control_models_differ_from_their_bases_by_the_batch_norm_only():
    """``cnn_bn`` is the digits CNN with one BatchNorm, ``noisycnn`` is ``bncnn`` without its
    one: the same initial weights from the same seed, 2 x 16 affine parameters apart, and
    the bases' parameter names unchanged (recorded runs of ``cnn``/``bncnn`` stay valid)."""
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import torch

    import hook_trainer as ht

    def built(name: str) -> torch.nn.Module:
        torch.manual_seed(0)
        return ht.build_model(name)

    def norms(m: torch.nn.Module) -> int:
        return sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())

    def count(m: torch.nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    def weights(m: torch.nn.Module) -> list[torch.Tensor]:  # convolutions' and linears'
        return [p for p in m.parameters() if p.dim() > 1]

    for base, control, bn_base in (("cnn", "cnn_bn", 0), ("bncnn", "noisycnn", 1)):
        a, b = built(base), built(control)
        assert (norms(a), norms(b)) == (bn_base, 1 - bn_base)
        assert abs(count(a) - count(b)) == 32
        wa, wb = weights(a), weights(b)
        assert len(wa) == len(wb) and all(torch.equal(x, y) for x, y in zip(wa, wb))
    assert [n for n, _ in built("cnn").named_parameters()][:4] == [
        "features.0.weight",
        "features.0.bias",
        "features.2.weight",
        "features.2.bias",
    ]
    with pytest.raises(ValueError, match="cnn_bn, noisycnn"):
        ht.build_model("resnet")
    # an unknown name once fell through to the big model's synthetic task
    with pytest.raises(ValueError, match="unknown model 'cnnn': one of mlp, cnn, big"):
        ht.load_data("cnnn", 0)
    x, _, xt, _ = ht.load_data("cnn_bn", 0)
    assert tuple(x.shape[1:]) == (1, 8, 8) and len(xt) == 297
    assert ht.load_data("noisycnn", 0)[0].shape[1:] == (1, 12, 12)


def test_comm_meter_counts_each_collective():
    _, ht = _bench_hooks_modules()
    import torch

    m = ht.CommMeter(rank=1, world=4)
    t = torch.zeros(100, dtype=torch.float32)  # 400 bytes
    m._count("all_reduce", (t,), {})
    assert m.snapshot() == (pytest.approx(600.0), pytest.approx(600.0))  # 2 S (N-1)/N
    m = ht.CommMeter(rank=1, world=4)
    outs = [torch.zeros(10, dtype=torch.uint8) for _ in range(4)]
    m._count("all_gather", (outs, outs[1]), {})
    assert m.snapshot() == (30.0, 30.0)
    m = ht.CommMeter(rank=1, world=4)
    m._count("broadcast", (t, 1), {})
    m._count("broadcast", (t, 2), {})
    assert m.snapshot() == (1200.0, 400.0)
    m = ht.CommMeter(rank=1, world=4)
    inp, out = torch.zeros(10, dtype=torch.uint8), torch.zeros(20, dtype=torch.uint8)
    m._count("all_to_all_single", (out, inp, [5, 5, 5, 5], [1, 2, 3, 4]), {})
    assert m.snapshot() == (pytest.approx(8.0), pytest.approx(15.0))
    # point to point: a send's bytes, and as many received (exact in the mean over ranks;
    # a receive lands in a buffer that may be larger than the message: not counted)
    m = ht.CommMeter(rank=1, world=4)
    m.install()
    try:
        assert "isend" in m.orig and "irecv" not in m.orig
    finally:
        import torch.distributed as dist

        for name, fn in m.orig.items():
            setattr(dist, name, fn)
    m._count("isend", (inp, 0), {})
    m._count("send", (), {"tensor": t})
    assert m.snapshot() == (410.0, 410.0)


def test_source_info_names_the_files_edited_since_the_commit(tmp_path, monkeypatch):
    """A report made from an edited tree lists the edited tracked files beside the commit
    (the commit alone would name code that did not produce it); untracked files are not
    listed, and a clean tree gives an empty list."""
    import shutil
    import subprocess

    prov = bench_module("provenance")
    if shutil.which("git") is None:
        pytest.skip("needs git")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    git("add", "a.py", "b.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    monkeypatch.setattr(prov, "HERE", str(tmp_path))
    clean = prov.source_info()
    assert clean["modified"] == [] and len(clean["commit"]) >= 7
    (tmp_path / "b.py").write_text("y = 2\n")
    (tmp_path / "c.py").write_text("untracked\n")
    assert prov.source_info()["modified"] == ["b.py"]


def test_bench_command_reruns_the_bench_as_a_shell_reads_it():
    """Reports record ``python bench/NAME ARGS`` with JSON arguments quoted, so the line
    pastes into a shell and gives the bench the same arguments back."""
    import shlex

    prov = bench_module("provenance")
    args = ["--seed", "0", "--variants", '["allreduce", {"t_bar": 1}]']
    line = prov.bench_command("/any/where/bench/bench_hook_variants.py", args)
    assert line.startswith("python bench/bench_hook_variants.py --seed 0 --variants '")
    assert shlex.split(line)[2:] == args


@pytest.mark.distributed
def test_bench_hooks_smoke(tmp_path):
    bh, _ = _bench_hooks_modules()
    out = tmp_path / "hooks.json"
    # 13 steps: laqcore's LAQ hook all-reduces its first 10 (its default warm-up)
    hooks = ["allreduce", "fp16", "powersgd1", "laq", "qsgd"]
    argv = ["--suite", "table", "--models", "mlp", "--nprocs", "2", "--steps", "13"]
    argv += ["--warm", "11", "--scale", "16", "--no-warmup-run", "--timeout", "120"]
    argv += ["--rounds", "2"]  # the list, then the list reversed, in one launch
    assert bh.main([*argv, "--hooks", ",".join(hooks), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    # What produced it: the command, and the checkout (bench/provenance.py) in the machine
    assert report["command"].startswith("python bench/bench_hooks.py --suite table ")
    assert {"commit", "modified", "cpu", "torch"} <= set(report["machine"])
    runs = report["table"]["mlp/2"]["hooks"]
    assert list(runs) == hooks
    for name, s in runs.items():
        assert "error" not in s, (name, s)
        assert s["steps"] == 13
        # Same seed in both rounds: the same bytes and accuracy, only the times differ.
        assert len(s["rounds"]) == 2 and s["rounds"][0]["recv_kb"] == s["rounds"][1]["recv_kb"]
        assert s["rounds"][0]["test_acc"] == s["rounds"][1]["test_acc"]
        assert s["step_ms"] > 0
        assert 0.0 <= s["test_acc"] <= 1.0
    dense = 4 * runs["allreduce"]["params"]
    assert runs["allreduce"]["recv_kb"] == pytest.approx(dense / 1e3)  # 2 S (N-1)/N, N = 2
    # fp16_compress_hook all-reduces the same bucket in half the bytes, counted by the meter
    assert runs["fp16"]["recv_kb"] == pytest.approx(dense / 2e3)
    assert runs["powersgd1"]["recv_kb"] < runs["fp16"]["recv_kb"]
    assert runs["laq"]["hook_ms"] > 0
    assert 0.0 <= runs["laq"]["skipped_frac"] <= 1.0
    assert 0 < runs["qsgd"]["sent_kb"] < runs["fp16"]["sent_kb"]
    table = out.with_suffix(".md").read_text()
    assert "| PyTorch PowerSGD rank 1 |" in table
    assert [g["goal"] for g in report["goals"]] == ["mlp/2: LAQ step <= 1.1x QSGD's"]


def test_bench_hooks_refuses_local_in_the_tc_suite(capsys):
    """``local`` trains a different model on every rank: no common loss reaches a target, and
    a tc launch with it broke the process group for the runs after it. Refused before any
    namespace or process is set up."""
    bh, _ = _bench_hooks_modules()
    with pytest.raises(SystemExit):
        bh.main(["--suite", "tc", "--tc-hooks", "allreduce,local,laq"])
    assert "'local' has no time to target" in capsys.readouterr().err


def test_bench_hooks_tc_eval_every_is_checked_and_reported(capsys):
    """``--tc-eval-every`` below 1 would divide by zero inside every rank: refused first; a
    tc block's header says how often the loss was evaluated where the report records it."""
    bh, _ = _bench_hooks_modules()
    with pytest.raises(SystemExit):
        bh.main(["--suite", "tc", "--tc-eval-every", "0"])
    assert "--tc-eval-every must be >= 1, got 0" in capsys.readouterr().err
    import hook_report

    launch = {"load_before": [0.5], "load_after": [0.7]}
    run = {"target": 2.0, "steps": 30, "time_to_target_s": 6.0, "final_loss": 2.0, "test_acc": 0.3}
    hooks = {"allreduce": run}
    for every, want in ((1, ", evaluated every 1 step)"), (5, ", evaluated every 5 steps)")):
        block = {"launch": launch, "hooks": hooks, "eval_every": every}
        assert want in hook_report._tc_md("big/1gbit/2", block)[0]
    older = hook_report._tc_md("big/1gbit/2", {"launch": launch, "hooks": hooks})[0]
    assert "(all-reduce after 30 steps) - load average 0.5 -> 0.7" in older


def test_pool_rounds_takes_medians_and_keeps_every_round():
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import hook_report

    def run(step: float, hook: float) -> dict:
        return {
            "step_ms": step,
            "step_mean_ms": step,
            "hook_ms": hook,
            "span_ms": hook,
            "recv_kb": 28.0,
            "final_loss": 0.05,
            "test_acc": 0.97,
            "steps": 300,
        }

    laq = hook_report.pool_rounds([run(12.0, 9.0), run(10.0, 7.0), run(11.0, 8.0)])
    assert (laq["step_ms"], laq["hook_ms"]) == (11.0, 8.0)
    assert [r["step_ms"] for r in laq["rounds"]] == [12.0, 10.0, 11.0]
    qsgd = hook_report.pool_rounds([run(10.0, 8.0), run(10.0, 8.0), run(11.0, 9.0), run(12.0, 9.0)])
    assert qsgd["step_ms"] == 10.5  # even count: mean of the middle two
    assert hook_report.pool_rounds([run(5.0, 1.0)]) == run(5.0, 1.0)
    failed = {"error": "boom", "ranks": 2}
    assert hook_report.pool_rounds([run(5.0, 1.0), failed]) is failed
    launch = {"load_before": [1.0], "load_after": [1.0]}
    report = {"table": {"mlp/2": {"launch": launch, "hooks": {"laq": laq, "qsgd": qsgd}}}}
    (goal,) = hook_report.goals(report)
    assert goal["met"] and goal["detail"].startswith("1.05x (medians; round by round 1.20x, 1.00x")


def test_hook_seeds_compares_each_seed_with_its_own_no_hook_run():
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import hook_seeds

    def report(seed: int, base_acc: float, laq_acc: float, skipped: float) -> dict:
        hooks = {
            "allreduce": {"test_acc": base_acc, "recv_kb": 340.0},
            "laq": {"test_acc": laq_acc, "recv_kb": 28.0 + seed, "skipped_frac": skipped},
            "fp16": {"error": "aborted"},  # a failed run is left out of its seed only
        }
        return {"args": {"seed": seed}, "table": {"cnn/2": {"hooks": hooks}}}

    reps = [report(0, 0.99, 0.98, 0.30), report(1, 0.97, 0.97, 0.40)]
    data = hook_seeds.collect(reps)
    laq = data["cnn/2"]["laq"]
    assert laq["acc_delta"] == pytest.approx([-1.0, 0.0])  # points vs the same seed's run
    assert laq["skipped"] == pytest.approx([30.0, 40.0])
    assert "fp16" not in data["cnn/2"]
    text = hook_seeds.markdown(data, [0, 1])
    assert (
        "| laqcore LAQ, `LAQState()` | 97.5 ± 0.7 | -0.5 ± 0.7 | -1.0 | 28.5 ± 0.7 | 35 ± 7 |"
        in text
    )
    with pytest.raises(ValueError, match="no-hook"):
        hook_seeds.collect(
            [{"table": {"cnn/2": {"hooks": {"laq": reps[0]["table"]["cnn/2"]["hooks"]["laq"]}}}}]
        )


def test_hook_seeds_tc_speedups_against_each_launchs_all_reduce():
    """bench/hook_seeds.py on --suite tc reports: speed-ups against the same launch's
    all-reduce, geometric mean and range over seeds, a target missed counted, not averaged."""
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import hook_seeds

    def run(t: float | None, acc: float, steps: int = 200) -> dict:
        return {
            "time_to_target_s": t,
            "steps_to_target": steps if t else None,
            "step_ms": 4.0 if t else 9.0,
            "recv_kb": 5.0,
            "test_acc": acc,
        }

    def report(seed: int, laq_t: float, fp16_t: float | None) -> dict:
        cells = {}
        for rate in ("100mbit", "1gbit"):
            hooks = {
                "allreduce": run(2.0, 0.98),
                "laq": run(laq_t, 0.97, 250 + seed),
                "fp16": run(fp16_t, 0.98),
                "qsgd": {"error": "aborted"},  # a failed run is left out of its seed only
            }
            cells[f"cnn/{rate}/2"] = {"hooks": hooks}
        return {"args": {"seed": seed}, "table": {}, "tc": cells}

    reps = [report(0, 1.0, 4.0), report(1, 0.5, None)]
    data = hook_seeds.collect_tc(reps)
    laq = data["cnn/2"]["laq"]["100mbit"]
    assert [r.speedup for r in laq] == pytest.approx([2.0, 4.0])
    assert [r.acc_delta for r in laq] == pytest.approx([-1.0, -1.0])
    assert "qsgd" not in data["cnn/2"]
    text = hook_seeds.markdown_tc(data, [0, 1])
    assert (
        "| laqcore LAQ, `LAQState()` | 2.83x [2.00, 4.00] | 2.83x [2.00, 4.00] | 250 / 251 "
        "| 4.0 | 4.0 | 5.0 | -1.0 / -1.0 |" in text
    )
    # The seed that missed the target: out of the mean, no step count, its step still shown.
    missed = "0.50x [0.50, 0.50], reached 1 of 2"
    assert (
        f"| PyTorch fp16_compress_hook | {missed} | {missed} | 200 / - | 4.0-9.0 | 4.0-9.0 "
        "| 5.0 | +0.0 / +0.0 |" in text
    )
    with pytest.raises(ValueError, match="all-reduce"):
        hook_seeds.collect_tc([{"tc": {"cnn/1gbit/2": {"hooks": {"laq": run(1.0, 0.9)}}}}])
    # The MLP's cells carry no model name ("100mbit/2"): read as the MLP's, not refused.
    mlp = {"tc": {"100mbit/2": {"hooks": {"allreduce": run(2.0, 0.98), "laq": run(1.0, 0.97)}}}}
    assert [r.speedup for r in hook_seeds.collect_tc([mlp])["mlp/2"]["laq"]["100mbit"]] == [2.0]


def test_ranks_ratio_summarizes_over_seeds():
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import ranks_ratio

    def row(seed: int, ratio: float, acc4: float) -> dict:
        return {
            "model": "cnn",
            "seed": seed,
            "variant": "laqstate:{}",
            "ratio": ratio,
            "recv_kb_per_step": [6.0 + seed, 10.0],
            "skipped_all_ranks": [0.4, 0.3],
            "acc_vs_allreduce_points": [0.0, acc4],
        }

    (e,) = ranks_ratio.over_seeds([row(0, 1.2, -1.0), row(1, 1.0, 1.0), row(2, 1.1, 0.0)])
    assert e["seeds"] == [0, 1, 2]
    assert e["ratio"] == pytest.approx({"mean": 1.1, "sd": 0.1, "min": 1.0, "max": 1.2})
    assert e["recv_kb_2"]["mean"] == pytest.approx(7.0) and e["skipped_4"]["mean"] == pytest.approx(
        30.0
    )
    assert e["acc_4"]["min"] == -1.0 and e["acc_4"]["mean"] == pytest.approx(0.0)
    (line,) = ranks_ratio._seeds_md([e])[4:]
    assert line.startswith(
        "| cnn | `{}` | 3 | **1.100x** ± 0.100 [1.000, 1.200] | 7.0 ± 1.0 / 10.0 ± 0.0"
    )
    assert line.endswith("| +0.0 ± 0.0 [+0.0] | +0.0 ± 1.0 [-1.0] |")


def test_ranks_ratio_pairs_two_settings(tmp_path):
    """``--pair A B``: variant A's 2-rank run against variant B's 4-rank run, per seed."""
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import ranks_ratio

    def run(variant: str, kb: float) -> dict:
        parts = {"control": 0.0, "uplink": 0.0, "downlink_payload": 0.0, "downlink_padding": 0.0}
        return {
            "variant": variant,
            "test_acc": 0.9,
            "skipped": 0.4,
            "recv_kb_per_step": kb,
            "recv_parts_per_step": parts | {"total": kb * 1e3},
            "uploads_all_ranks": 1.0,
            "rounds_with_uploads": 0.8,
        }

    paths = []
    for n, kbs in ((2, (10.0, 8.0)), (4, (18.0, 15.0))):
        rep = {
            "config": {"model": "cnn", "seed": 0, "nprocs": n},
            "results": [
                {"variant": "allreduce", "test_acc": 0.9},
                run("laqstate:{}", kbs[0]),
                run('laqstate:{"lazy_downlink": 0.25}', kbs[1]),
            ],
        }
        paths.append(tmp_path / f"r{n}.json")
        paths[-1].write_text(json.dumps(rep))
    same = {r["variant"]: r["ratio"] for r in ranks_ratio.compare([str(p) for p in paths])}
    assert same["laqstate:{}"] == pytest.approx((18.0 / 0.75) / (10.0 / 0.5))
    (mixed,) = ranks_ratio.compare([str(p) for p in paths], ("{}", '{"lazy_downlink": 0.25}'))
    assert mixed["variant"] == 'laqstate:{} -> laqstate:{"lazy_downlink": 0.25}'
    assert mixed["ratio"] == pytest.approx((15.0 / 0.75) / (10.0 / 0.5))


def test_tc_goals_read_model_keys():
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import hook_report

    def block(t_ar: float, t_laq: float) -> dict:
        hooks = {
            "allreduce": {"time_to_target_s": t_ar, "test_acc": 0.9},
            "laq": {"time_to_target_s": t_laq, "test_acc": 0.9},
            "powersgd4": {"time_to_target_s": 5.0, "test_acc": 0.9},
        }
        return {"hooks": hooks}

    report = {
        "tc": {"100mbit/2": block(10, 5), "big/100mbit/4": block(30, 4), "big/1gbit/2": block(2, 3)}
    }
    assert hook_report.tc_key("100mbit/2") == ("mlp", "100mbit", "2")
    assert hook_report.tc_key("big/1gbit/4") == ("big", "1gbit", "4")
    got = {g["goal"]: g["met"] for g in hook_report.goals(report)}
    assert got == {
        "100mbit/2: LAQ >= 3x faster than all-reduce": False,  # 2x
        "100mbit/2: LAQ ahead of PowerSGD rank 4 at equal accuracy": False,  # 5 s vs 5 s
        "big/100mbit/4: LAQ >= 3x faster than all-reduce": True,  # 7.5x
        "big/100mbit/4: LAQ ahead of PowerSGD rank 4 at equal accuracy": True,
        "big/1gbit/2: LAQ not slower than all-reduce": False,  # 0.67x
    }
    # A merged report whose cells ran different hook lists: a hook missing from a cell is
    # "-", not a failure.
    report["tc"]["100mbit/2"]["hooks"]["again"] = {"time_to_target_s": 10.0, "test_acc": 0.9}
    row = next(r for r in hook_report.summary_md(report).splitlines() if "run again" in r)
    assert row.split(" | ")[1:] == ["10.0 (1.00x), 0.900", "-", "- |"]


def test_contended_mode_reports_slowdowns(capsys):
    from laqcore.bench.contended import run_contended

    report = run_contended(
        kernels=["laq_block_quantize_pack"], sizes=[2**16], threads=[2], load=1, rounds=3
    )
    (row,) = report["results"]
    assert report["load"] == 1
    assert row["threads"] == 2
    assert row["slowdown"] == pytest.approx(row["seconds"] / row["seconds_1thread"])
    with pytest.raises(ValueError, match="unknown or unavailable kernel"):
        run_contended(kernels=["nope"], load=0)


@pytest.mark.distributed
def test_hook_floors_smoke(tmp_path):
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import hook_floors

    out = tmp_path / "floors.json"
    argv = ["--nprocs", "2", "--rates", "none", "--steps", "8", "--warm", "2", "--reps", "3"]
    assert hook_floors.main([*argv, "--scale", "16", "--out", str(out)]) == 0
    block = json.loads(out.read_text())["launches"]["none/2"]
    f, coll = block["floors"], block["collectives"]
    # LAQ's exchange used every collective at a positive size, at least once per step
    assert coll["sizes"]["control_int64s"] >= 1 and coll["sizes"]["uplink_bytes_per_peer"] > 0
    assert coll["calls_per_step"]["control all-gather"] >= 1.0
    assert f["local_step_ms"] < f["exchange_floor_ms"] <= f["laq_floor_ms"]
    assert f["laq_step_needed_ms"]["3x"] == pytest.approx(f["laq_step_needed_ms"]["1x"] / 3)
    assert set(block["laq"]["phases_ms_per_step_mean_over_ranks"]) >= {"hook total"}
    assert "| none/2 |" in out.with_suffix(".md").read_text()


def test_hook_variants_trace_records_the_upload_test():
    """``bench_hook_variants --trace``: one row per compressed step with the test's inputs,
    ``||q_prev||^2`` before the step and the returned average's norm, in TRACE_COLUMNS."""
    _bench_hooks_modules()
    import numpy as np

    import bench_hook_variants as bhv
    from laqcore.torch import LAQState

    state = LAQState(bits=8, block_size=8)
    state.uploader, state.server = state._new_state(8)
    rng = np.random.default_rng(0)

    def fake_step(grad):  # the hook's step without a process group: decide, then commit
        payload = state.uploader.propose(grad)
        upload, _, _, _ = state._decide(state.uploader, grad, payload)
        state.uploader.commit(payload) if upload else state.uploader.skip()
        state._counters["steps"] += 1
        state.rule.record(float(np.dot(grad, grad)), None, False)
        return grad * 0.5

    state._step = fake_step
    bhv._trace(state, steps=3)
    grads = [rng.standard_normal(8).astype(np.float32) for _ in range(5)]
    for g in grads:
        state._step(g.copy())
    rows = state.stats()["trace"]
    assert len(rows) == 3 and len(rows[0]) == len(bhv.TRACE_COLUMNS)
    step, clock, grad_sq, innov_sq, rhs, q_sq, out_sq, upload, why, ups, disp_sq, dot = rows[0]
    assert dot is None  # no step before the first
    # The returned averages' dot product with the previous step's: 0.5 g_0 . 0.5 g_1.
    want = float(np.dot(grads[0].astype(np.float64), grads[1])) / 4
    assert rows[1][11] == pytest.approx(want, rel=1e-6)
    assert ups is None  # no exchange ran (fake_step): the uploaders are unknown
    # ||q_m - g||^2 after the step: q_m = the committed 8-bit gradient, g = grad / 2
    assert disp_sq == pytest.approx(grad_sq / 4, rel=0.05)
    assert (step, clock, q_sq, rhs, upload, why) == (1, 0, 0.0, 0.0, True, "rule")
    assert grad_sq == pytest.approx(float(np.dot(grads[0], grads[0])), rel=1e-6)
    assert out_sq == pytest.approx(grad_sq / 4, rel=1e-6)  # ||0.5 g||^2
    assert innov_sq == pytest.approx(grad_sq, rel=0.05)  # q_prev = 0: the 8-bit gradient
    assert rows[1][5] > 0.0  # q_prev after the first upload


def test_variant_seeds_compares_each_seed_with_its_own_allreduce(tmp_path):
    """bench/variant_seeds.py: accuracy deltas against the same seed's all-reduce run, ranges
    of bytes and skips; reports that differ in more than the seed are refused."""
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import variant_seeds

    def rep(seed: int, base: float, laq: float, kb: float, skipped: float) -> dict:
        return {
            "config": {"model": "tf", "nprocs": 2, "steps": 300, "seed": seed, "lr": 0.05},
            "results": [
                {"variant": "allreduce", "test_acc": base, "recv_kb_per_step": 280.0},
                {
                    "variant": "laqstate:{}",
                    "test_acc": laq,
                    "recv_kb_per_step": kb,
                    "skipped": skipped,
                },
            ],
        }

    reports = [rep(0, 0.90, 0.88, 15.0, 0.5), rep(1, 0.80, 0.83, 17.0, 0.4)]
    rows = {r["variant"]: r for r in variant_seeds.table(reports)}
    assert rows["laqstate:{}"]["deltas"] == pytest.approx([-2.0, 3.0])
    assert rows["allreduce"]["deltas"] == [0.0, 0.0]
    lines = variant_seeds.markdown(list(rows.values()), [0, 1])
    assert lines[-1] == "| `laqstate:{}` | -2.0 / +3.0 | +0.5 | -2.0 | 15.0-17.0 | 40-50 |"
    assert lines[-2].endswith("| 280.0 | - |")
    other = rep(2, 0.9, 0.9, 15.0, 0.5)
    other["config"]["model"] = "cnn"
    with pytest.raises(ValueError, match="differ in"):
        variant_seeds.table([reports[0], other])
    failed = rep(3, 0.9, 0.9, 15.0, 0.5)
    failed["results"][1] |= {"test_acc": None, "error": "rank 1 timed out"}
    with pytest.raises(ValueError, match="'laqstate:{}' failed \\(rank 1 timed out\\)"):
        variant_seeds.table([reports[0], failed])
    del reports[1]["results"][0]
    with pytest.raises(ValueError, match="allreduce"):
        variant_seeds.table(reports)
    paths = []
    for i, r in enumerate([rep(0, 0.9, 0.88, 15.0, 0.5), rep(1, 0.8, 0.83, 17.0, 0.4)]):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(r))
    assert variant_seeds.main([*map(str, paths), "--out", str(tmp_path / "t.md")]) == 0
    assert "momentum (0.9), lr 0.05" in (tmp_path / "t.md").read_text()
    assert json.loads((tmp_path / "t.json").read_text())[1]["variant"] == "laqstate:{}"


def test_variant_seeds_steps_to_the_allreduce_loss_and_the_lag(tmp_path):
    """With --curve reports: per seed, the first step at or below the all-reduce run's loss
    at the target step ("-" if never), and the summed losses up to it over all-reduce's."""
    _bench_hooks_modules()
    import variant_seeds

    def rep(seed: int, curve: list[float], ref: list[float]) -> dict:
        points = lambda losses: [[10 * (i + 1), 0.0, v] for i, v in enumerate(losses)]  # noqa: E731
        return {
            "config": {"model": "cnn", "nprocs": 2, "steps": 40, "seed": seed, "lr": 0.05},
            "results": [
                {"variant": "allreduce", "test_acc": 0.9, "curve": points(ref)},
                {"variant": "laqstate:{}", "test_acc": 0.9, "curve": points(curve)},
            ],
        }

    ref = [2.0, 1.0, 0.5, 0.4]  # loss 1.0 at step 20: the target with --target-step 20
    reports = [rep(0, [2.0, 1.5, 0.9, 0.3], ref), rep(1, [3.0, 2.0, 1.5, 1.2], ref)]
    rows = {r["variant"]: r for r in variant_seeds.table(reports, target_step=20)}
    assert rows["laqstate:{}"]["hits"] == [30, None]
    assert rows["laqstate:{}"]["lag"] == pytest.approx([3.5 / 3.0, 5.0 / 3.0])
    assert rows["allreduce"]["hits"] == [20, 20] and rows["allreduce"]["lag"] == [1.0, 1.0]
    lines = variant_seeds.markdown(list(rows.values()), [0, 1], target_step=20)
    assert "steps to all-reduce's step-20 loss" in lines[0]
    assert lines[-1].endswith("| 30 / - | - | 1.17-1.67 |")
    assert lines[-2].endswith("| 20 / 20 | 20 | 1.00 |")
    with pytest.raises(ValueError, match="no point at step 25"):
        variant_seeds.table(reports, target_step=25)


def test_token_task_and_tiny_transformer():
    """The bench's ``tf`` model: the token task's label is the marker with the most weight
    (token c counts 3, token c + 4 counts 1), and the model maps a batch to 4 logits."""
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import torch

    import hook_trainer

    x, y, xt, yt = hook_trainer.load_data("tf", 0)
    assert x.shape == (4096, hook_trainer.TOKEN_LEN) and xt.shape[0] == 1024
    row = x[0]
    weight = [3 * int((row == c).sum()) + int((row == c + 4).sum()) for c in range(4)]
    assert int(y[0]) == weight.index(max(weight))
    assert torch.equal(hook_trainer.load_data("tf", 0)[0], x)  # seeded
    model = hook_trainer.build_model("tf")
    assert sum(p.numel() for p in model.parameters()) == 70916
    assert model(x[:5]).shape == (5, 4)
    assert hook_trainer.build_model("tf", scale=4)(x[:2]).shape == (2, 4)


def test_noisy_image_task_and_bncnn():
    """The bench's ``bncnn`` model: 12x12 images, each its class template (the same for every
    seed) plus noise of 2.6x the templates' scale; the model (batch norm, dropout) maps a
    batch to 10 logits."""
    _bench_hooks_modules()
    import numpy as np
    import torch

    import hook_trainer

    x, y, xt, yt = hook_trainer.load_data("bncnn", 0)
    assert x.shape == (9600, 1, 12, 12) and xt.shape == (2000, 1, 12, 12)
    assert set(y.tolist()) == set(range(10)) and y.dtype == torch.int64
    x1, y1, _, _ = hook_trainer.load_data("bncnn", 1)
    assert not torch.equal(x1, x)  # another seed draws other images
    assert torch.equal(hook_trainer.load_data("bncnn", 0)[0], x)  # seeded
    # Every image of class c is template c plus noise: the class means recover the
    # templates, and the residual's spread is the noise's 2.6 (up to sampling error).
    templates = torch.stack([x[y == c].mean(0) for c in range(10)])
    residual = x - templates[y]
    assert float(residual.std()) == pytest.approx(2.6, rel=0.02)
    expected = np.random.default_rng(123).standard_normal((10, 1, 12, 12))
    # ~960 images per class: each mean pixel is off by 2.6 / sqrt(960) = 0.084 (rms)
    assert float(np.sqrt(np.mean((templates.numpy() - expected) ** 2))) < 0.11
    model = hook_trainer.build_model("bncnn")
    assert sum(p.numel() for p in model.parameters()) == 23978
    assert model(x[:5]).shape == (5, 10)
    with pytest.raises(ValueError, match="bncnn"):
        hook_trainer.build_model("resnet")


def test_nesterov_onecycle_peaks_at_twice_the_lr():
    """``nesterov_onecycle``: Nesterov SGD whose OneCycle schedule peaks at 2 lr at 30% of
    the steps and ends far below lr (momentum cycled 0.95 -> 0.85 -> 0.95, OneCycle's own)."""
    _bench_hooks_modules()
    import torch

    import bench_hooks
    import hook_trainer

    assert bench_hooks.OPTIM_CONFIGS["nesterov_onecycle"]["optim"] == "nesterov_onecycle"
    w = torch.nn.Parameter(torch.zeros(3))
    opt, sched = hook_trainer.make_optimizer("nesterov_onecycle", iter([w]), 0.05, 100)
    assert opt.param_groups[0]["nesterov"]
    lrs, momenta = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        momenta.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) in (29, 30)
    assert lrs[0] < 0.01 and lrs[-1] < 1e-3
    assert momenta[0] == pytest.approx(0.95) and min(momenta) == pytest.approx(0.85, abs=1e-3)


def test_hook_variants_lr_flag_overrides_the_optimizer_config():
    """``bench_hook_variants --lr`` with ``--optim-config``: every run trains with the flag's
    rate (a config's own ``lr`` used to replace it silently); without the flag, the config's;
    with neither, 0.05. An unknown config is refused."""
    _bench_hooks_modules()
    import argparse

    import bench_hook_variants as bhv

    configs = {"sgd": {"optim": "sgd", "lr": 0.05}, "adam": {"optim": "adam", "lr": 1e-3}}

    def runs(optim, lr, curve=0):
        ns = argparse.Namespace(
            variants='["allreduce", {}]', curve=curve, optim_config=optim, lr=lr
        )
        return bhv._runs(ns, configs)

    got, lr = runs("sgd", 0.2)
    assert lr == 0.2 and [r["lr"] for r in got] == [0.2, 0.2]
    assert got[1] == {"hook": bhv._PREFIX + "{}", "optim": "sgd", "lr": 0.2}
    assert runs("adam", None)[1] == 1e-3 and runs(None, None)[1] == 0.05
    assert runs(None, 0.01)[0][0] == {"hook": "allreduce", "lr": 0.01}
    assert runs(None, None, curve=5)[0][0]["reference"] is True
    with pytest.raises(ValueError, match="unknown --optim-config; one of sgd,adam"):
        runs("nadam", None)


def test_hook_variants_builds_each_variant_state():
    """``bench_hook_variants.variant_state``: LAQState keywords, the launch's ``exchange``
    unless the variant sets one, and ``"_hook"`` for another laqcore hook with the object's
    other keys as its keywords."""
    _bench_hooks_modules()
    import bench_hook_variants as bhv
    from laqcore.torch import LAQState, QSGDState, laq_hook, qsgd_hook

    cfg = {"seed": 0, "exchange": "two-phase"}
    state, hook = bhv.variant_state({"stale_cap": 1}, cfg)
    assert isinstance(state, LAQState) and hook is laq_hook
    assert state.rule.stale_cap == 1 and state.exchange == "two-phase"
    state, _ = bhv.variant_state({"exchange": "all-gather"}, cfg)
    assert state.exchange == "all-gather"
    spec = {"_hook": "qsgd", "norm": "max", "levels": 3}
    state, hook = bhv.variant_state(spec, {"seed": 0})
    assert isinstance(state, QSGDState) and hook is qsgd_hook
    assert state.compressor_kwargs == {"norm": "max", "levels": 3}
    assert spec == {"_hook": "qsgd", "norm": "max", "levels": 3}  # not consumed
    with pytest.raises(ValueError, match="unknown DDP hook .nope."):
        bhv.variant_state({"_hook": "nope"}, {"seed": 0})


def test_hook_variants_threshold_statistic():
    """``"_threshold"``: the test's first term becomes ``ck`` times the median (or the
    minimum) of the stored gradient norms instead of their weighted mean; bad input is a
    clear error."""
    _bench_hooks_modules()
    import bench_hook_variants as bhv

    norms = [4.0, 100.0, 1.0, 2.0, 3.0]
    for name, expect in (("median", 3.0), ("min", 1.0)):
        state, _ = bhv.variant_state({"_threshold": name, "ck": 1.5}, {"seed": 0})
        assert state.rule.rhs() == 0.0  # nothing stored yet: the library's term
        for v in norms:
            state.rule.history.push(v)
        assert state.rule.rhs(clock=3) == pytest.approx(1.5 * expect)
    plain, _ = bhv.variant_state({"ck": 1.5}, {"seed": 0})
    for v in norms:
        plain.rule.history.push(v)
    assert plain.rule.rhs() == pytest.approx(1.5 * sum(norms) / len(norms))  # the mean
    with pytest.raises(ValueError, match='"_threshold" must be "median" or "min"'):
        bhv.variant_state({"_threshold": "mode"}, {"seed": 0})
    with pytest.raises(ValueError, match="not with noise_weight or streak_penalty"):
        bhv.variant_state({"_threshold": "min", "streak_penalty": 0.5}, {"seed": 0})


def _fake_two_rank_allreduce(monkeypatch: Any) -> Any:
    """A process group of 2 ranks for DDP's ``allreduce_hook`` (which divides by 2) whose
    all-reduce returns this rank's tensor: the hook's result is half of what it sent."""
    import torch
    import torch.distributed as dist

    monkeypatch.setenv("RANK", "0")

    class Work:  # what dist.all_reduce(..., async_op=True) returns, for one rank
        def __init__(self, t: torch.Tensor) -> None:
            self.fut: torch.futures.Future[list[torch.Tensor]] = torch.futures.Future()
            self.fut.set_result([t])

        def get_future(self) -> torch.futures.Future[list[torch.Tensor]]:
            return self.fut

    class Group:
        def size(self) -> int:
            return 2

    monkeypatch.setattr(dist, "all_reduce", lambda t, group, async_op: Work(t))
    return Group()


class _Bucket:
    """The parts of DDP's GradBucket the bench's control hooks read (one bucket, last)."""

    def __init__(self, values: list[float], sizes: list[int] | None = None) -> None:
        import torch

        self.t = torch.tensor(values)
        self.sizes = sizes or [len(values)]

    def buffer(self) -> Any:
        return self.t

    def index(self) -> int:
        return 0

    def is_last(self) -> bool:
        return True

    def parameters(self) -> list[Any]:
        import torch

        return [torch.zeros(k) for k in self.sizes]


def test_stale_fp32_control_resends_the_last_gradient(monkeypatch):
    """``{"_hook": "stale_fp32", "p": P}``: exact all-reduce (here a fake 2-rank group) where a rank
    resends the gradient it sent last with probability P, never before its first send; the
    average is divided by the world size."""
    _bench_hooks_modules()
    import bench_hook_variants as bhv

    group = _fake_two_rank_allreduce(monkeypatch)
    state, always = bhv.variant_state({"_hook": "stale_fp32", "p": 1.0}, {"seed": 0})
    assert state is None
    assert always(group, _Bucket([2.0, 4.0])).wait().tolist() == [1.0, 2.0]  # first: its own
    assert always(group, _Bucket([6.0, 8.0])).wait().tolist() == [1.0, 2.0]  # then the last
    _, never = bhv.variant_state({"_hook": "stale_fp32", "p": 0.0}, {"seed": 0})
    never(group, _Bucket([2.0, 4.0])).wait()
    assert never(group, _Bucket([6.0, 8.0])).wait().tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match='takes one key, "p"'):
        bhv.variant_state({"_hook": "stale_fp32", "q": 0.1}, {"seed": 0})


def test_terngrad_layers_control_ternarizes_each_tensor(monkeypatch):
    """``{"_hook": "terngrad_layers"}``: after a plain first iteration every parameter tensor
    is ternarized on its own (values 0 and +-s_j, s_j its own largest magnitude; no clipping
    here), tensors below ``size_to_binarize`` are sent as they are, and DDP's all-reduce
    averages the result."""
    _bench_hooks_modules()
    import numpy as np

    import bench_hook_variants as bhv

    group = _fake_two_rank_allreduce(monkeypatch)
    small, large = [0.5, -0.25, 0.125], [8.0, -4.0, 2.0, 1.0, -8.0]
    spec = {"_hook": "terngrad_layers", "clip_factor": None}
    state, hook = bhv.variant_state(spec, {"seed": 0})
    assert state is None
    first = hook(group, _Bucket(small + large, [3, 5])).wait().numpy()
    assert first.tolist() == [v / 2 for v in small + large]  # iteration 0: plain all-reduce
    for _ in range(4):
        out = 2 * hook(group, _Bucket(small + large, [3, 5])).wait().numpy()
        assert set(np.abs(out[:3]).tolist()) <= {0.0, 0.5}  # the small tensor's own scaler
        assert set(np.abs(out[3:]).tolist()) <= {0.0, 8.0}  # the large tensor's
        assert np.all(np.sign(out) * np.sign(small + large) >= 0)
        assert abs(out[3]) == 8.0 and abs(out[7]) == 8.0  # |g| = s: kept with probability 1
    _, kept = bhv.variant_state({**spec, "size_to_binarize": 4}, {"seed": 0})
    kept(group, _Bucket(small + large, [3, 5])).wait()
    out = 2 * kept(group, _Bucket(small + large, [3, 5])).wait().numpy()
    assert out[:3].tolist() == small  # below size_to_binarize: as it is
    assert set(np.abs(out[3:]).tolist()) <= {0.0, 8.0}
    with pytest.raises(ValueError, match="unknown keys"):
        bhv.variant_state({"_hook": "terngrad_layers", "levels": 3}, {"seed": 0})


def test_random_skip_replaces_the_rule_by_a_seeded_coin(monkeypatch):
    """``"_random_skip": p``: after the first upload a rank skips with probability p, the
    same decisions for the same seed and rank, and t_bar skips still force an upload."""
    _bench_hooks_modules()
    import numpy as np

    import bench_hook_variants as bhv
    from laqcore.torch import LAQState

    monkeypatch.setenv("RANK", "1")

    def decisions(seed: int, p: float) -> list[bool]:
        state = LAQState(bits=8, block_size=8, t_bar=3)
        state.uploader, state.server = state._new_state(8)
        bhv._random_skip(state, p, seed)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(400):
            g = rng.standard_normal(8).astype(np.float32)
            payload = state.uploader.propose(g)
            upload = state._decide(state.uploader, g, payload)[0]
            state.uploader.commit(payload) if upload else state.uploader.skip()
            out.append(upload)
        return out

    d = decisions(0, 0.3)
    assert d[0] and d == decisions(0, 0.3) and d != decisions(1, 0.3)
    assert 0.2 < 1.0 - np.mean(d) < 0.35
    assert all(decisions(0, 1.0)[i] == (i % 4 == 0) for i in range(40))  # t_bar = 3


def test_trace_agreement_statistics():
    """bench/trace_agreement.py: the ranks' agreement S / (S + N) from the full-upload steps
    (from step 10 on), the median stale ratio of the skipped steps and the median cosine of
    consecutive averages."""
    _bench_hooks_modules()
    import numpy as np

    import trace_agreement

    def row(step, grad_sq, innov_sq, out_sq, upload, uploaders, dot=None):
        # TRACE_COLUMNS: step clock grad_sq innov_sq rhs q_prev_sq out_sq upload why ups disp
        # out_prev_dot
        return [step, 0, grad_sq, innov_sq, 1.0, 1.0, out_sq, upload, "rule", uploaders, 0.0, dot]

    # S = 1, N = 3 per rank at M = 2: ||g_m||^2 = 4, ||avg||^2 = 1 + 3/2 = 2.5 -> S/(S+N) = 1/4
    trace = [row(5, 100.0, 1.0, 1.0, True, 2)]  # before step 10: ignored
    trace += [row(10 + i, 4.0, 2.0, 2.5, True, 2) for i in range(4)]
    trace += [row(20, 4.0, 6.0, 9.0, False, 1), row(21, 2.0, 2.0, 9.0, False, 1)]
    trace += [row(22, 4.0, 5.0, 9.0, False, 0)]
    st = trace_agreement.statistics(trace, nprocs=2)
    assert st["agreement"] == pytest.approx(0.25)
    assert st["skipped_innovation"] == pytest.approx(1.25)  # median of 1.5, 1.0, 1.25
    assert st["skipped"] == pytest.approx(3 / 8)
    assert np.isnan(st["consecutive_cos"])  # no dot products recorded
    # Consecutive averages of norms 1, 2, 2, 3: dots 1, -4, 3 -> cosines 0.5, -1, 0.5.
    norms = [1.0, 2.0, 2.0, 3.0]
    dots = [None, 1.0, -4.0, 3.0]
    trace = [row(10 + i, 1.0, 1.0, n * n, True, 2, d) for i, (n, d) in enumerate(zip(norms, dots))]
    assert trace_agreement.statistics(trace, nprocs=2)["consecutive_cos"] == pytest.approx(0.5)
    # A row whose step does not follow the row before (an untraced step between) is left out:
    # steps 10, 12, 13, 15 keep step 13's cosine -1 only (all three rows: median 0.5).
    for i, step in enumerate((10, 12, 13, 15)):
        trace[i][0] = step
    assert trace_agreement.statistics(trace, nprocs=2)["consecutive_cos"] == pytest.approx(-1.0)


def test_break_even_is_the_bandwidth_where_compression_stops_paying(tmp_path):
    import os
    import sys

    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    if not os.path.isfile(os.path.join(here, "break_even.py")):
        pytest.skip("needs the source checkout (bench/break_even.py)")
    if here not in sys.path:
        sys.path.insert(0, here)
    import break_even

    out = tmp_path / "be.json"
    break_even.main(["--n", "4096", "--repeats", "1", "--out", str(out)])
    rows = {(r["setting"], r["entropy"]): r for r in json.loads(out.read_text())["rows"]}
    laq4 = rows[("laq 4 bit", False)]
    # B* = saved bits / (encode + decode seconds), with the frame's real size (framing included)
    saved = 32 * 4096 - 8 * laq4["frame_bytes"]
    assert laq4["break_even_gbps"] == pytest.approx(
        saved / (laq4["encode_s"] + laq4["decode_s"]) / 1e9
    )
    assert 4.0 < laq4["bits_per_coord"] < 4.2
    assert ("top-k 1%", True) not in rows  # no code stream to entropy-code
    assert (
        rows[("qsgd levels 7", True)]["frame_bytes"] < rows[("qsgd levels 7", False)]["frame_bytes"]
    )
    assert "| laq 2 bit + entropy |" in out.with_suffix(".md").read_text()


@pytest.mark.distributed
def test_profile_laq_hook_thread_clock(tmp_path, monkeypatch):
    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import profile_laq_hook

    out = tmp_path / "profile.json"
    argv = ["--model", "mlp", "--nprocs", "2", "--steps", "4", "--warm", "1", "--clock", "thread"]
    monkeypatch.setattr("sys.argv", ["profile_laq_hook.py", *argv, "--out", str(out)])
    profile_laq_hook.main()
    report = json.loads(out.read_text())
    # the phases were timed in CPU time: every phase the hook ran, the collectives included
    assert report["config"]["clock"] == "thread"
    assert report["ms_per_step"]["hook total"] > 0.0
    assert {"control + uplink messages", "propose (quantize + pack)"} <= set(report["ms_per_step"])


def test_profile_laq_hook_phases_name_the_code_that_exists():
    """The profiler leaves out a phase whose function is gone (so that it still runs against
    older checkouts), which once hid a rename: `_laq_frame` became `laq_frame` and the
    frame-decode row vanished without a word. Only the phases fused away are allowed to be
    missing."""
    import importlib

    _bench_hooks_modules()  # puts bench/ on the path (skips without the checkout)
    import profile_laq_hook

    fused_away = {"laq_accumulate", "laq_apply"}  # by laq_accumulate_all / laq_apply_average
    missing = set()
    for module, path, _ in profile_laq_hook.PHASES:
        owner = importlib.import_module(module)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        if not hasattr(owner, name):
            missing.add(path)
    assert missing == fused_away
