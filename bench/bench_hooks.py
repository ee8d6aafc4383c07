"""DDP communication hooks inside ordinary trainers: PyTorch's hooks vs laqcore's, same run.

The trainers (bench/hook_trainer.py) are written the way a user writes one: their own
``nn.Module``, a ``DataLoader`` over a ``DistributedSampler``, SGD with momentum 0.9, DDP and
``register_comm_hook``; each rank is a separate process started with the torchrun
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) on gloo. Hooks compared:

``allreduce`` (no hook), ``fp16`` (PyTorch fp16_compress_hook), ``powersgd1``/``powersgd4``
(PyTorch PowerSGD rank 1/4, start after ``--warm`` steps), laqcore ``laq2``/``laq4``/``laq8``
(``LAQState(bits=B)``), ``laq`` (``LAQState()``, every default), ``qsgd`` (``QSGDState()``,
the max norm), ``qsgd_l2`` (``QSGDState(norm="l2")``, the paper's quantizer), ``terngrad``
(``TernGradState()``), ``rotation`` (``RotationState()``).

Suites:

* ``table``: MLP 64-256-256-10 (85k) and a small CNN (29k) on the digits data shipped in
  laqcore, minibatch 32 per rank, ``--steps`` steps, and an MLP 512-2048-2048-10 (5.3M) on
  synthetic data (``--big-steps``), at each of ``--nprocs``, on loopback. Per hook: step time,
  time inside the hook, bytes sent/received per rank per step, final loss, test accuracy,
  LAQ's skipped uploads.
* ``tc``: time to reach the training loss all-reduce reaches after ``--target-steps`` steps,
  every rank in its own network namespace behind a veth shaped by ``tc`` (``--rates``; the
  netns/tc setup of bench/bench_distributed.py; needs root, cleans up on any exit; a token
  bucket of ``--tc-burst-ms`` ms of traffic, whose effect on a message and on an all-reduce
  ``bench_distributed.DEFAULT_BURST_MS`` states; ``--tc-burst-ms 8`` reproduces the
  recordings before session 23), for each of ``--tc-model`` (``mlp``, ``cnn``, ``big``).
  The 5.3M-parameter ``big`` model, whose
  step is communication-bound on these links, uses ``--big-target-steps`` instead, checks
  the loss every 5 steps on the first 2,000 training rows, and its untimed warm-up run is 3
  steps; the others check it every 10 steps. ``--tc-eval-every N`` checks it every N steps
  instead (1: the step that reaches the target to the step; the clock pauses meanwhile).
* ``optim`` (issue 12, outsider check): the CNN at 2 ranks with SGD momentum + weight decay +
  StepLR, Adam + StepLR, fp16/bf16 autocast with torch.amp.GradScaler (and a forced overflow),
  no hook vs laqcore's hooks (``--optim-hooks``; by default every laqcore hook with its
  defaults, and LAQ at 2 bits, whose error feedback is a separate path): test accuracy per
  configuration (``--optim-configs``), one launch per configuration.

Every launch records the machine's load average before and after (the machine may be shared).

Usage::

    python bench/bench_hooks.py --suite table,tc,optim --out bench/measured/hooks.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from hook_report import (  # noqa: E402
    error_line,
    goals,
    markdown,
    pool_rounds,
    summarize,
    summary_md,
)
from hook_trainer import HOOKS, MODELS, models_help  # noqa: E402
from provenance import bench_command, source_info  # noqa: E402

TABLE_HOOKS = (
    "allreduce,fp16,powersgd1,powersgd4,laq2,laq4,laq8,laq,laq_ef0,qsgd,qsgd_l2,terngrad,rotation"
)
TC_HOOKS = "allreduce,fp16,powersgd4,laq,qsgd,terngrad"
OPTIM_HOOKS = "allreduce,laq,laq2,qsgd,terngrad,rotation"
# issue 12's configurations: (optimizer, learning rate, autocast dtype, GradScaler init_scale)
OPTIM_CONFIGS: dict[str, dict[str, Any]] = {
    "sgd": {"optim": "sgd", "lr": 0.05},
    "momentum": {"optim": "momentum", "lr": 0.05},
    "momentum_wd_steplr": {"optim": "momentum_wd_steplr", "lr": 0.05},
    "adam_steplr": {"optim": "adam_steplr", "lr": 1e-3},
    "nesterov_onecycle": {"optim": "nesterov_onecycle", "lr": 0.05},
    "fp16_scaler": {"optim": "momentum", "lr": 0.05, "amp": "fp16"},
    "bf16_scaler": {"optim": "momentum", "lr": 0.05, "amp": "bf16"},
    "fp16_overflow": {"optim": "momentum", "lr": 0.05, "amp": "fp16", "init_scale": 2.0**40},
}
_PORTS = [0]


def launch(
    n: int, cfg: dict[str, Any], timeout: float, net: Any = None, script: str = "hook_trainer.py"
) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """Run ``n`` ranks of ``script`` (a bench/ file that takes the config's path and prints
    one JSON line per ``cfg["runs"]`` entry); returns (per run: the ranks' results, launch
    info).

    A rank that fails or a launch that times out leaves the runs it did not finish as
    ``{"error": ...}`` entries; the processes are always killed.
    """
    _PORTS[0] += 1
    port = 20000 + (os.getpid() * 7 + 31 * _PORTS[0]) % 30000
    tmp = tempfile.mkdtemp(prefix="lqhooks")
    procs = []
    info: dict[str, Any] = {"load_before": os.getloadavg(), "nprocs": n}
    t0 = time.time()
    for r in range(n):
        rank_cfg = {**cfg, "iface": net.iface(r) if net else None}
        path = os.path.join(tmp, f"cfg{r}.json")
        with open(path, "w") as fh:
            json.dump(rank_cfg, fh)
        env = dict(
            os.environ,
            RANK=str(r),
            LOCAL_RANK=str(r),
            WORLD_SIZE=str(n),
            MASTER_ADDR="10.78.0.1" if net else "127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            OPENBLAS_NUM_THREADS="1",
            GLOO_SOCKET_IFNAME=net.iface(r) if net else "lo",
        )
        cmd = [sys.executable, os.path.join(HERE, script), path]
        if cfg.get("pin"):  # rank r and all its threads on CPU r mod the CPUs (--pin)
            cmd = ["taskset", "-c", str(r % (os.cpu_count() or 1)), *cmd]
        if net:
            cmd = ["ip", "netns", "exec", net.ns(r), *cmd]
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outs: list[tuple[str, str]] = []
    try:
        deadline = time.time() + timeout
        for p in procs:
            try:
                outs.append(p.communicate(timeout=max(deadline - time.time(), 1)))
            except subprocess.TimeoutExpired:
                info["timed_out"] = True
                break
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs[len(outs) :]:
            outs.append(p.communicate())
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    info["wall_s"] = time.time() - t0
    info["load_after"] = os.getloadavg()
    per_run: list[list[dict[str, Any]]] = [[] for _ in cfg["runs"]]
    for r, (so, se) in enumerate(outs):
        lines = [json.loads(s) for s in so.splitlines() if s.startswith("{")]
        for i in range(len(cfg["runs"])):
            if i < len(lines):
                per_run[i].append(lines[i])
            else:
                why = "timed out" if info.get("timed_out") else "rank exited"
                per_run[i].append({"rank": r, "error": f"{why}: {se.strip()[-300:]}"})
    return per_run, info


def _base_cfg(args: argparse.Namespace, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "seed": args.seed,
        "batch": args.batch,
        "lr": args.lr,
        "optim": "momentum",
        "warm": args.warm,
        "scale": args.scale,
        "timeout": args.pg_timeout,
        "steps": args.big_steps if model == "big" else args.steps,
        "warmup_run": not args.no_warmup_run,
        "step_log": args.step_log,
        "pin": args.pin,
        "idle_gloo_loop": args.idle_gloo_loop,
    }


def suite_table(args: argparse.Namespace, report: dict[str, Any]) -> None:
    hooks = args.hooks.split(",")
    # --rounds R: the hook list R times in one launch, every other round in reverse order
    # (a run's neighbours and its place in the process's life change between rounds).
    order = [h for r in range(args.rounds) for h in (hooks if r % 2 == 0 else hooks[::-1])]
    for model in args.models.split(","):
        for n in [int(v) for v in args.nprocs.split(",")]:
            cfg = {**_base_cfg(args, model), "runs": [{"hook": h} for h in order]}
            per_run, info = launch(n, cfg, args.timeout)
            key = f"{model}/{n}"
            runs: dict[str, list[dict[str, Any]]] = {h: [] for h in hooks}
            for h, rs in zip(order, per_run):
                runs[h].append(summarize(rs))
            report["table"][key] = {
                "launch": info,
                "hooks": {h: pool_rounds(runs[h]) for h in hooks},
            }
            _progress(key, report["table"][key])


def suite_tc(args: argparse.Namespace, report: dict[str, Any]) -> None:
    from bench_distributed import Netns, netns_available

    ok, why = netns_available()
    report["tc_link"] = {"available": ok, "why": why, "burst_ms": args.tc_burst_ms}
    if not ok:
        print(f"# tc suite skipped: {why}")
        return
    # The all-reduce run that sets the target goes first; "allreduce" in --tc-hooks runs it
    # once more, last, as a contestant (shows whether the order of the runs matters).
    hooks = [h for h in args.tc_hooks.split(",") if h != "allreduce"]
    runs = [
        {"hook": "allreduce", "reference": True, "steps": args.target_steps, "key": "allreduce"}
    ]
    runs += [{"hook": h, "steps": args.target_steps * args.max_factor, "key": h} for h in hooks]
    if "allreduce" in args.tc_hooks.split(","):
        runs.append(
            {"hook": "allreduce", "steps": args.target_steps * args.max_factor, "key": "again"}
        )
    for model in args.tc_model.split(","):
        target = args.big_target_steps if model == "big" else args.target_steps
        model_runs = [{**r, "steps": target * (r["steps"] // args.target_steps)} for r in runs]
        extra: dict[str, Any] = {"eval_every": 10}  # the trainer's default
        if model == "big":
            extra = {"eval_every": 5, "eval_samples": 2000, "warmup_steps": 3}
        if args.tc_eval_every is not None:  # finer: the crossing step to within fewer steps
            extra["eval_every"] = args.tc_eval_every
        for rate in args.rates.split(","):
            for n in [int(v) for v in args.tc_nprocs.split(",")]:
                cfg = {
                    **_base_cfg(args, model),
                    **extra,
                    "runs": model_runs,
                    "time_to_target": True,
                }
                # removed on any exit, error or not
                with Netns(n, rate, 0.0, args.tc_burst_ms) as net:
                    per_run, info = launch(n, cfg, args.timeout, net)
                # (the MLP keeps the "rate/n" keys of earlier reports)
                key = f"{rate}/{n}" if model == "mlp" else f"{model}/{rate}/{n}"
                report["tc"][key] = {
                    "launch": info,
                    "eval_every": extra["eval_every"],
                    "link": net.describe(),  # rate and token bucket
                    "hooks": {r["key"]: summarize(rs) for r, rs in zip(model_runs, per_run)},
                }
                _progress(key, report["tc"][key])


def suite_optim(args: argparse.Namespace, report: dict[str, Any]) -> None:
    hooks = args.optim_hooks.split(",")
    report["optim"] = {"launches": {}, "runs": {}}
    # One launch per configuration: a launch that times out loses one row, not the rest.
    for c in args.optim_configs.split(","):
        runs = [{"hook": h, "config": c, **OPTIM_CONFIGS[c]} for h in hooks]
        cfg = {**_base_cfg(args, "cnn"), "steps": args.optim_steps, "runs": runs}
        per_run, info = launch(2, cfg, args.timeout)
        report["optim"]["launches"][c] = info
        for r, rs in zip(runs, per_run):
            s = report["optim"]["runs"][f"{c}/{r['hook']}"] = summarize(rs)
            acc = error_line(s["error"], 120) if s.get("error") else f"acc {s['test_acc']:.3f}"
            print(f"optim {c:20s} {r['hook']:10s} {acc}", flush=True)
    infos = list(report["optim"]["launches"].values())
    report["optim"]["launch"] = {
        "load_before": infos[0]["load_before"],
        "load_after": infos[-1]["load_after"],
        "wall_s": sum(i["wall_s"] for i in infos),
    }
    print(markdown(report, only="optim"), flush=True)


def _progress(key: str, block: dict[str, Any]) -> None:
    for h, s in block["hooks"].items():
        if s.get("error"):
            print(f"{key:12s} {h:10s} ERROR {error_line(s['error'], 160)}", flush=True)
        else:
            print(
                f"{key:12s} {h:10s} step {s['step_ms']:8.2f} ms  recv {s['recv_kb']:9.1f} KB  "
                f"loss {s['final_loss']}  acc {s['test_acc']:.3f}  ttt {s['time_to_target_s']}",
                flush=True,
            )
    print(f"# load {block['launch']['load_before']} -> {block['launch']['load_after']}")


def machine_info() -> dict[str, Any]:
    """Where and from what a report was made: CPU, versions, commit, edited files."""
    import platform

    import torch

    import laqcore
    from laqcore.bench.timing import machine_info as kernel_machine

    kernels = kernel_machine(None)
    return {
        # The CPU model and SIMD level: torch's CPU kernels round differently on another
        # CPU, so trained accuracies and step counts move between machines (not the
        # simulator's, which are laqcore's bit-identical kernels).
        "cpu": kernels["cpu"],
        "simd": kernels["simd"],
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "laqcore": laqcore.__version__,
        **source_info(),  # commit, modified
        "torch_threads_per_rank": 1,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def merge_reports(paths: list[str], out: str | None) -> int:
    """One report from several (e.g. suites run at the same time); machine info per part."""
    report: dict[str, Any] = {"parts": [], "table": {}, "tc": {}}
    for path in paths:
        with open(path) as fh:
            part = json.load(fh)
        report["parts"].append({k: part[k] for k in ("machine", "args", "command")})
        report["table"].update(part.get("table", {}))
        report["tc"].update(part.get("tc", {}))
        if part.get("optim"):
            report["optim"] = part["optim"]
    report["goals"] = goals(report)
    _write(report, out)
    return 0


def _write(report: dict[str, Any], out: str | None) -> None:
    md = summary_md(report) + "\n" + markdown(report)
    print(md)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as fh:
            json.dump(report, fh, indent=1)
        with open(os.path.splitext(out)[0] + ".md", "w") as fh:
            fh.write(md + "\n")
        print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default="table,tc,optim", help="table, tc, optim (comma list)")
    ap.add_argument("--models", default="mlp,cnn,big", help=f"comma list; {models_help()}")
    ap.add_argument("--nprocs", default="2,4")
    ap.add_argument("--hooks", default=TABLE_HOOKS, help=f"any of {','.join(HOOKS)}")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--big-steps", type=int, default=30)
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="table suite: run the hook list this many times in one launch (alternating "
        "order); step and hook times are the medians over the rounds",
    )
    ap.add_argument("--batch", type=int, default=32, help="minibatch per rank")
    ap.add_argument(
        "--lr",
        type=float,
        default=0.05,
        help="SGD (momentum 0.9) learning rate of the table and tc suites (the optim suite's "
        "configurations carry their own, OPTIM_CONFIGS)",
    )
    ap.add_argument("--warm", type=int, default=10, help="steps left out of the averages")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1, help="divide hidden widths (smoke tests)")
    ap.add_argument("--rates", default="100mbit,1gbit")
    ap.add_argument("--tc-nprocs", default="2,4")
    ap.add_argument("--tc-model", default="mlp,big", help="comma list, as --models")
    ap.add_argument("--tc-hooks", default=TC_HOOKS)
    from bench_distributed import add_burst_argument

    add_burst_argument(ap, "--tc-burst-ms")
    ap.add_argument(
        "--tc-eval-every",
        type=int,
        default=None,
        help="steps between the tc suite's evaluations of the training loss, which decide "
        "the step that reached the target (default: 5 for the big model, 10 for the others; "
        "the clock pauses during them)",
    )
    ap.add_argument("--target-steps", type=int, default=200)
    ap.add_argument(
        "--big-target-steps", type=int, default=30, help="--target-steps of the big model"
    )
    ap.add_argument("--max-factor", type=int, default=3, help="hooks stop at factor x target")
    ap.add_argument("--optim-steps", type=int, default=200)
    ap.add_argument("--optim-hooks", default=OPTIM_HOOKS)
    ap.add_argument(
        "--optim-configs", default=",".join(OPTIM_CONFIGS), help="optim suite: comma list"
    )
    ap.add_argument(
        "--no-warmup-run", action="store_true", help="skip the untimed 20-step first run"
    )
    ap.add_argument(
        "--step-log",
        action="store_true",
        help="record every rank's step times and, for laqcore's hooks, whether it uploaded at "
        "each step (per run: 'step_log' in the JSON)",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="pin rank r (all its threads) to CPU r mod the machine's CPUs (taskset), one "
        "rank per core as in a deployment; every hook of the launch alike",
    )
    ap.add_argument(
        "--idle-gloo-loop",
        action="store_true",
        help="every rank puts gloo's TCP loop thread under SCHED_IDLE after joining the "
        "group (laqcore.distributed.idle_gloo_loop); every hook of the launch alike",
    )
    ap.add_argument("--timeout", type=float, default=1500, help="seconds per launch")
    ap.add_argument(
        "--pg-timeout", type=float, default=120, help="process group timeout (a hung collective)"
    )
    ap.add_argument("--out", default=None, help="JSON report (a .md table is written beside)")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        help="combine these JSON reports (runs measured concurrently) into --out; runs nothing",
    )
    args = ap.parse_args(argv)
    if args.merge:
        return merge_reports(args.merge, args.out)
    for h in (args.hooks + "," + args.tc_hooks + "," + args.optim_hooks).split(","):
        if h not in HOOKS:
            ap.error(f"unknown hook {h!r}; one of {','.join(HOOKS)}")
    for m in (args.models + "," + args.tc_model).split(","):
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; one of {','.join(MODELS)}")
    if "local" in args.tc_hooks.split(","):
        # Its ranks train different models, so no loss is common to them to reach; a launch
        # with it broke the process group for every run after it.
        ap.error(
            "--tc-hooks: 'local' has no time to target (each rank trains its own model); "
            "the no-communication step is timed by bench/hook_floors.py"
        )
    if args.tc_eval_every is not None and args.tc_eval_every < 1:
        ap.error(f"--tc-eval-every must be >= 1, got {args.tc_eval_every}")
    for c in args.optim_configs.split(","):
        if c not in OPTIM_CONFIGS:
            ap.error(f"unknown optim configuration {c!r}; one of {','.join(OPTIM_CONFIGS)}")
    report: dict[str, Any] = {
        "machine": machine_info(),
        "args": vars(args),
        "command": bench_command(__file__, sys.argv[1:] if argv is None else argv),
        "table": {},
        "tc": {},
    }
    suites = args.suite.split(",")
    if "table" in suites:
        suite_table(args, report)
    if "tc" in suites:
        suite_tc(args, report)
    if "optim" in suites:
        suite_optim(args, report)
    report["goals"] = goals(report)
    _write(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
