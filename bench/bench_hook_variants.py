"""``LAQState`` keyword variants inside bench/hook_trainer.py's ordinary trainers.

bench/bench_hooks.py compares hooks by name (``laq2`` is ``LAQState(bits=2)``); this script
runs any ``LAQState(**kwargs)`` (and the named hooks as references) in the same trainer, the
same way: one process group, one run after the other, fresh model and state each. It is the
measurement behind docs/ddp.md "Low bits" (block size at low widths, the downlink's share).

Usage (prints one line per run and writes a JSON report)::

    python bench/bench_hook_variants.py --model cnn --nprocs 2 --steps 300 --seed 0 \\
        --variants '["allreduce", {"bits": 2, "block_size": 256}, {"bits": 2}]' \\
        --out bench/measured/hooks_lowbits_cnn_seed0.json

A variant is a hook name of hook_trainer.HOOKS or a JSON object of ``LAQState`` keywords,
plus keys of this bench's own (the library has no such options): ``"_quorum": K``
makes at least K ranks upload in every compressed step (:func:`_quorum`; an experiment on
the transformer, docs/results_hooks.md, "A small transformer"), ``"_random_skip": p``
replaces the rule by a coin that skips with probability ``p`` (:func:`_random_skip`; how
much staleness itself costs, docs/results_hooks.md, "A noisy image task"), ``"_threshold":
"median"`` or ``"min"`` puts that statistic of the rule's last ``D`` gradient norms in place of
their mean (:func:`_threshold`; a threshold a spike cannot inflate, docs/results_hooks.md, "A
small transformer"), and ``"_hook":
NAME`` runs another of ``laqcore.torch.HOOKS`` (``qsgd``, ``terngrad``, ``rotation``) with
the object's other keys as its keywords (``{"_hook": "qsgd", "levels": 127}``);
``{"_hook": "stale_fp32", "p": P}`` is the control of ``"_random_skip"``: exact float32
all-reduce where a rank resends its last gradient with probability ``P``
(:func:`_stale_fp32_hook`). ``{"_hook": "terngrad_layers"}`` (optional keys
``"clip_factor"``, default 2.5, and ``"size_to_binarize"``, default 1) is TernGrad as the
paper's official code runs it, one scaler and one clipping threshold per parameter tensor,
where ``TernGradState`` has one for the whole flat gradient (:func:`_terngrad_layers_hook`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
_PREFIX = "laqstate:"


def variant_state(kwargs: dict[str, Any], cfg: dict[str, Any]) -> tuple[Any, Any]:
    """The hook state and the hook of one JSON variant (the module docstring's keys), as
    rank ``RANK`` of a launch with config ``cfg`` builds it."""
    from laqcore.torch import LAQState, laq_hook, make_hook

    kwargs = dict(kwargs)
    if cfg.get("exchange") is not None:
        kwargs.setdefault("exchange", cfg["exchange"])
    other = kwargs.pop("_hook", "laq")
    if other == "stale_fp32":  # the bench's control, not a laqcore hook
        if set(kwargs) - {"exchange"} != {"p"}:
            raise ValueError(f'{{"_hook": "stale_fp32"}} takes one key, "p"; got {kwargs}')
        return None, _stale_fp32_hook(float(kwargs["p"]), int(cfg["seed"]))
    if other == "terngrad_layers":  # the bench's reference, not a laqcore hook
        extra = set(kwargs) - {"exchange", "clip_factor", "size_to_binarize"}
        if extra:
            raise ValueError(f'{{"_hook": "terngrad_layers"}} got unknown keys {sorted(extra)}')
        clip = kwargs.get("clip_factor", 2.5)
        size = int(kwargs.get("size_to_binarize", 1))
        return None, _terngrad_layers_hook(clip, size, int(cfg["seed"]))
    if other != "laq":  # another laqcore hook with these keywords
        return make_hook(other, **kwargs)
    quorum = kwargs.pop("_quorum", 0)
    skip_p = kwargs.pop("_random_skip", None)
    statistic = kwargs.pop("_threshold", None)
    state = LAQState(**kwargs)
    if statistic is not None:
        _threshold(state, statistic)
    if quorum > 0:
        _quorum(state, quorum)
    if skip_p is not None:
        _random_skip(state, float(skip_p), int(cfg["seed"]))
    if cfg.get("trace", 0) > 0 and int(os.environ["RANK"]) == 0:
        _trace(state, cfg["trace"])
    return state, laq_hook


def _rank(cfg_path: str) -> None:
    """One rank: hook_trainer.worker with ``laqstate:{json}`` hooks understood."""
    sys.path.insert(0, HERE)
    import hook_trainer as ht

    named = ht.attach_hook

    with open(cfg_path) as fh:
        cfg = json.load(fh)

    def attach(ddp: Any, name: str, warm: int, lr: float, timer: Any) -> Any:
        if not name.startswith(_PREFIX):
            return named(ddp, name, warm, lr, timer)
        state, hook = variant_state(json.loads(name[len(_PREFIX) :]), cfg)
        ddp.register_comm_hook(state, timer.wrap(hook))
        return state

    ht.attach_hook = attach
    ht.worker(cfg)


#: Columns of a ``--trace`` row (rank 0, one per compressed step).
TRACE_COLUMNS = (
    "step",
    "clock",
    "grad_sq",
    "innov_sq",
    "rhs",
    "q_prev_sq",
    "out_sq",
    "upload",
    "why",
    "uploaders",
    "disp_sq",
    "out_prev_dot",
)


def _trace(state: Any, steps: int) -> None:
    """Record the upload test's inputs of ``state`` for its first ``steps`` compressed steps
    into ``stats()["trace"]`` (rows of TRACE_COLUMNS): ``||g_m||^2`` (the rank's gradient),
    ``||dQ||^2``, the rule's first term, ``||q_prev||^2`` before the step, the returned
    average's ``||g||^2``, the decision, the number of uploaders and ``||q_m - g||^2`` after
    the step (this rank's contribution against the returned average: in a step where every
    rank uploaded, (M-1)/M times the ranks' dispersion) and the returned average's dot product
    with the previous step's (how much consecutive averaged gradients agree). Wraps the
    instance's methods; the library is unchanged."""
    import numpy as np

    rows: list[list[Any]] = []
    decide, step, stats, exchange = state._decide, state._step, state.stats, state._exchange
    last_out: list[Any] = [None]  # the previous step's returned average (float64)

    def sq(x: Any) -> float:
        return float(np.dot(x.astype(np.float64), x))

    def traced_decide(up: Any, grad: Any, payload: Any) -> Any:
        res = decide(up, grad, payload)
        q_sq = 0.0 if up.q_prev is None else sq(up.q_prev)
        state._row = [up.clock, sq(grad), float(payload.innov_sq), state.rule.rhs(), q_sq]
        state._row += [None, bool(res[0]), res[1]]
        return res

    def traced_exchange(*args: Any, **kwargs: Any) -> Any:
        res = exchange(*args, **kwargs)
        state._uploaders = len(res.uploaders)
        return res

    def traced_step(grad: Any) -> Any:
        state._row, state._uploaders = None, None
        out = step(grad)
        if out is None or len(rows) >= steps:
            return out
        o = out.astype(np.float64)  # one float64 copy per traced step
        if state._row is not None:
            state._row[5] = sq(out)
            q = state.uploader.q_prev
            state._row += [state._uploaders, None if q is None else sq(q - out)]
            state._row.append(None if last_out[0] is None else float(np.dot(o, last_out[0])))
            rows.append([state.stats()["steps"], *state._row])
        last_out[0] = o
        return out

    state._decide, state._step, state._exchange = traced_decide, traced_step, traced_exchange
    state.stats = lambda: stats() | {"trace": rows}


def _quorum(state: Any, k: int) -> None:
    """Make at least ``k`` ranks upload in every compressed step: after the rule's decision
    the ranks all-gather (upload?, ``||dQ_m||^2 / ||g_m||^2``) and, if fewer than ``k``
    would upload, the skipping ranks with the largest ratios (ties: the lowest rank) upload
    too. Costs one extra all-gather per step; wraps the instance's ``_decide``, the library
    is unchanged."""
    import torch
    import torch.distributed as dist

    decide = state._decide

    def quorum_decide(up: Any, grad: Any, payload: Any) -> Any:
        upload, why, grad_sq, norm_sq = decide(up, grad, payload)
        own = norm_sq if norm_sq > 0.0 else float(torch.from_numpy(grad).square().sum())
        ratio = float(payload.innov_sq) / max(own, 1e-30)
        row = torch.tensor([1.0 if upload else 0.0, ratio], dtype=torch.float64)
        group = state.process_group
        rows = [torch.zeros_like(row) for _ in range(dist.get_world_size(group))]
        dist.all_gather(rows, row, group=group)
        missing = k - sum(int(r[0].item()) for r in rows)
        if upload or missing <= 0:
            return upload, why, grad_sq, norm_sq
        skippers = sorted(
            (i for i, r in enumerate(rows) if r[0].item() == 0.0), key=lambda i: -rows[i][1].item()
        )
        return dist.get_rank(group) in skippers[:missing], why, grad_sq, norm_sq

    state._decide = quorum_decide


def _threshold(state: Any, statistic: str) -> None:
    """Put ``ck`` times the median (or minimum) of the rule's stored gradient norms where the
    test's first term has ``ck`` times their mean (``xi_d = ck / D``), so a few spiking steps
    cannot raise it; the other terms and clauses unchanged. Wraps the instance's rule's
    ``rhs``, the library is unchanged."""
    import numpy as np

    pick = {"median": np.median, "min": np.min}.get(statistic)
    if pick is None:
        raise ValueError(f'"_threshold" must be "median" or "min", got {statistic!r}')
    rule = state.rule
    if rule.noise_weight or rule.streak_penalty:
        raise ValueError(
            '"_threshold" replaces the whole first term: not with noise_weight or streak_penalty'
        )
    mean_rhs = rule.rhs

    def robust_rhs(clock: int = 0) -> float:
        recent = rule.history.recent()
        return mean_rhs(clock) if recent.size == 0 else float(rule.ck * pick(recent))

    rule.rhs = robust_rhs


def _random_skip(state: Any, p: float, seed: int) -> None:
    """Replace the upload rule by a coin: after its first upload a rank skips with
    probability ``p`` (a generator seeded by the run's seed and the rank), and ``t_bar``
    consecutive skips still force an upload. The staleness of the rule's skips without
    their choice of moment; wraps the instance's ``_decide``, the library is unchanged."""
    import numpy as np

    rng = np.random.default_rng([seed, int(os.environ["RANK"])])
    decide = state._decide

    def coin_decide(up: Any, grad: Any, payload: Any) -> Any:
        if up.uploads == 0 or up.clock >= state.rule.t_bar:
            return decide(up, grad, payload)
        return bool(rng.random() >= p), "rule", 0.0, 0.0

    state._decide = coin_decide


def _stale_fp32_hook(p: float, seed: int) -> Any:
    """The staleness of a skip alone: DDP's all-reduce of exact float32 gradients in which a
    rank, with probability ``p`` per bucket and step (a generator seeded by the run's seed and
    the rank, as :func:`_random_skip`), contributes the gradient it contributed last instead
    of its new one. No quantization and no rule: what ``"_random_skip"`` costs beyond this is
    LAQ's, the rest is the task's."""
    import numpy as np
    import torch
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    rng = np.random.default_rng([seed, int(os.environ["RANK"])])
    sent: dict[int, torch.Tensor] = {}  # bucket index -> the gradient this rank sent last

    def hook(process_group: Any, bucket: Any) -> Any:
        buf, i = bucket.buffer(), bucket.index()
        if i in sent and rng.random() < p:
            buf.copy_(sent[i])
        else:
            sent[i] = buf.clone()
        return allreduce_hook(process_group, bucket)  # DDP's own average of the buffer

    return hook


def _terngrad_layers_hook(clip_factor: float | None, size_to_binarize: int, seed: int) -> Any:
    """TernGrad as its official code runs it (Wen et al. 2017, ``bingrad_common.py``): each
    parameter tensor is clipped at ``clip_factor`` times its own standard deviation and
    ternarized with its own scaler; tensors of fewer than ``size_to_binarize`` elements are
    sent as they are (the official default, 1, ternarizes every tensor). ``TernGradState``
    clips and scales the whole flat gradient at once. Each rank ternarizes with laqcore's
    TernGrad compressor (one random stream per rank and tensor, keyed on the iteration) and
    DDP's own all-reduce averages the decoded tensors: the mean an exchange of the frames
    would return, so accuracy and loss are the method's; the bytes reported are all-reduce's,
    the frames' are 2 bits per ternarized element plus a float32 scaler per tensor (4 bytes
    per element of the tensors sent as they are). The first iteration is a plain all-reduce,
    as ``TernGradState``'s default ``warmup_steps=1``."""
    import numpy as np
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from laqcore import get_compressor

    rank = int(os.environ["RANK"])
    coders: dict[tuple[int, int], Any] = {}  # (bucket, tensor) -> this rank's compressor
    iteration = [0]

    def hook(process_group: Any, bucket: Any) -> Any:
        flat, step = bucket.buffer().numpy(), iteration[0]
        if bucket.is_last():
            iteration[0] += 1
        if step == 0:
            return allreduce_hook(process_group, bucket)
        start = 0
        for j, p in enumerate(bucket.parameters()):
            part = flat[start : start + p.numel()]
            start += p.numel()
            if part.shape[0] < size_to_binarize:
                continue
            key = (bucket.index(), j)
            if key not in coders:  # streams rank, rank + 2^20, ...: distinct per tensor
                stream = rank + (len(coders) << 20)
                coders[key] = get_compressor(
                    "terngrad", clip_factor=clip_factor, seed=seed, stream=stream
                )
            coder = coders[key]
            np.copyto(part, coder.decompress(coder.compress(part, step=step)))
        return allreduce_hook(process_group, bucket)

    return hook


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    st = r.get("stats", {})
    steps = st.get("steps") or 0
    return (
        {
            "variant": r["run"]["hook"],
            "test_acc": r.get("test_acc"),
            "final_loss": r.get("final_loss"),
            "step_ms": r.get("step_ms"),
            "recv_kb_per_step": None if "recv_per_step" not in r else r["recv_per_step"] / 1e3,
            "skipped": (st["uploads_skipped"] / steps) if steps else None,
            "error": r.get("error"),
        }
        | _parts(st, steps)
        | ({"curve": [[s, v] for s, _, v in r["evals"]]} if r.get("evals") else {})
        | ({"trace": st["trace"]} if st.get("trace") else {})
        | ({"scale_changes": r["scale_changes"]} if "scale_changes" in r else {})
    )


def _parts(st: dict[str, Any], steps: int) -> dict[str, Any]:
    """The two-phase exchange's received bytes per compressed step by phase (rank 0)."""
    if not steps or "received_uplink" not in st:
        return {}
    payload = st["received_downlink"] - st["received_padding"]
    parts = {
        "control": st["received_control"],
        "uplink": st["received_uplink"],
        "downlink_payload": payload,
        "downlink_padding": st["received_padding"],
        "total": st["bytes_received"],
    }
    return {
        "recv_parts_per_step": {k: v / steps for k, v in parts.items()},
        "rounds_with_uploads": st["rounds_with_uploads"] / steps,
        "downlink_rounds": st.get("downlink_rounds", st["rounds_with_uploads"]) / steps,
        "uploads_all_ranks": st["uploads_all_ranks"] / steps,
    }


def _runs(args: argparse.Namespace, optim_configs: dict[str, Any]) -> tuple[list[dict], float]:
    """The launch's runs, one per ``--variants`` entry, and the learning rate they all train
    with: ``--lr``, else the ``--optim-config``'s own, else 0.05 (momentum SGD). Each run
    carries it, so a config's ``lr`` cannot silently replace the flag (it did before: such
    reports recorded the flag's value, not the one trained with)."""
    variants = json.loads(args.variants)
    runs = [{"hook": v if isinstance(v, str) else _PREFIX + json.dumps(v)} for v in variants]
    if args.curve > 0:  # hook_trainer evaluates every eval_every steps in a reference run
        runs = [r | {"reference": True} for r in runs]
    lr = 0.05
    if args.optim_config is not None:
        if args.optim_config not in optim_configs:
            raise ValueError(f"unknown --optim-config; one of {','.join(optim_configs)}")
        runs = [r | optim_configs[args.optim_config] for r in runs]
        lr = optim_configs[args.optim_config]["lr"]
    if args.lr is not None:
        lr = args.lr
    return [r | {"lr": lr} for r in runs], lr


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--rank":
        _rank(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sys.path.insert(0, HERE)
    from hook_trainer import MODELS, models_help

    ap.add_argument("--model", default="cnn", choices=list(MODELS), help=models_help())
    ap.add_argument("--nprocs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (default 0.05 with the momentum SGD of no --optim-config, else "
        "the config's own); given with --optim-config, it replaces the config's",
    )
    ap.add_argument("--warm", type=int, default=10)
    ap.add_argument("--variants", required=True, help="JSON list (see the module docstring)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds for all runs")
    ap.add_argument("--out", default=None, help="JSON report")
    ap.add_argument(
        "--curve",
        type=int,
        default=0,
        help="record the loss on the whole training set every CURVE steps (clock paused)",
    )
    ap.add_argument(
        "--trace",
        type=int,
        default=0,
        help="record rank 0's upload test (TRACE_COLUMNS) for this many compressed steps",
    )
    ap.add_argument(
        "--optim-config",
        default=None,
        help="one of bench_hooks.OPTIM_CONFIGS (optimizer, autocast, GradScaler) for every run",
    )
    ap.add_argument(
        "--exchange",
        default=None,
        help="exchange= of every LAQState variant that does not set its own (default: the "
        "library's, 'auto'; 'two-phase' reproduces the 2-rank runs from before 'auto')",
    )
    ap.add_argument(
        "--detach-scaler",
        action="store_true",
        help="do not give laqcore's hook states the GradScaler (grad_scaler=None)",
    )
    args = ap.parse_args(argv)
    from bench_hooks import OPTIM_CONFIGS, machine_info
    from provenance import bench_command

    try:
        runs, lr = _runs(args, OPTIM_CONFIGS)
    except ValueError as e:
        ap.error(str(e))
    cfg = {
        "model": args.model,
        "steps": args.steps,
        "warm": args.warm,
        "batch": args.batch,
        "lr": lr,
        "lr_effective": True,  # reports before it: "lr" was ignored under --optim-config
        "seed": args.seed,
        "scale": 1,
        "warmup_run": False,
        "runs": runs,
        "eval_every": max(args.curve, 1),
        "trace": args.trace,
        "attach_scaler": not args.detach_scaler,
        "exchange": args.exchange,
        # The runs' optimizer/precision (bench_hooks.OPTIM_CONFIGS, with --lr if given).
        "optim_config": args.optim_config,
    }
    tmp = f"/tmp/bench_hook_variants_{os.getpid()}.json"
    with open(tmp, "w") as fh:
        json.dump(cfg, fh)
    port, procs = _free_port(), []
    for r in range(args.nprocs):
        env = dict(
            os.environ,
            RANK=str(r),
            LOCAL_RANK=str(r),
            WORLD_SIZE=str(args.nprocs),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        cmd = [sys.executable, os.path.abspath(__file__), "--rank", tmp]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
    t0, load0 = time.time(), os.getloadavg()
    out = procs[0].communicate(timeout=args.timeout)[0]
    for p in procs[1:]:
        p.communicate(timeout=args.timeout)
    os.unlink(tmp)
    results = []
    for line in out.splitlines():
        if line.startswith("{"):
            results.append(_summary(json.loads(line)))
    for s in results:
        print(
            f"{s['variant'][:70]:70s} acc {s['test_acc']}  loss {s['final_loss']}  "
            f"recv {s['recv_kb_per_step']} KB/step  skipped {s['skipped']}  "
            f"step {s['step_ms']} ms  {s['error'] or ''}"
        )
    report = {
        "config": {k: v for k, v in cfg.items() if k != "runs"} | {"nprocs": args.nprocs},
        "machine": machine_info(),
        "command": bench_command(__file__, sys.argv[1:] if argv is None else argv),
        "load_average": [load0, os.getloadavg()],
        "wall_s": time.time() - t0,
        "results": results,
    }
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
