"""Functions run inside the spawned ranks of tests/test_distributed.py and test_torch_hooks.py.

They live in their own module (not in the test files) so that the ``spawn`` start method can
import them in a child process without importing pytest's test modules.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any


def frame_for(rank: int, rnd: int) -> bytes | None:
    """The deterministic test pattern: which rank uploads what in round ``rnd``.

    Round 0: everyone uploads equal sizes (on gloo the first frames, which no inbox fits
    yet, go in phase 2); round 1: nobody; round 2: only odd ranks, sizes differ (on gloo
    they fit the 32-byte capacity round 0 set and travel with the statuses); round 3:
    everyone, very different sizes (rank 0's frame fits, the others' go in phase 2).
    """
    if rnd == 0:
        return bytes([rank + 1]) * 16
    if rnd == 1:
        return None
    if rnd == 2:
        return bytes([rank, 7]) * (rank + 1) if rank % 2 == 1 else None
    if rnd == 3:
        return bytes([rank + 3]) * (1 + 50 * rank)
    raise ValueError(rnd)


def transport_rounds(rank: int, world: int, path: str = "messages") -> dict[str, Any]:
    """Five rounds of one Transport; ``path``: its ``control`` on gloo (``"messages"``,
    ``"collectives"``), or ``"nccl-path"``, the path of devices other than cpu run on gloo
    (the control all-gather, then a padded all-gather or broadcasts)."""
    from laqcore.distributed import Transport

    t = Transport(timeout_s=30, control="messages" if path == "messages" else "collectives")
    if path == "nccl-path":
        t._exact_payload = False
    # Bad frames are rejected before any collective, so the ranks stay in lockstep.
    errors = []
    for bad in (b"", 123):
        try:
            t.exchange(bad)  # type: ignore[arg-type]
        except (TypeError, ValueError) as err:
            errors.append(f"{type(err).__name__}: {err}")
    got = []
    for rnd in range(4):
        res = t.exchange(frame_for(rank, rnd), tag=f"round {rnd}")
        got.append(res.frames)
    # A rank with a non-finite gradient: every rank learns who, and no frame is delivered
    # (on gloo the others' 3 bytes came with their statuses: counted, not delivered).
    res = t.exchange(b"xyz", nonfinite=(rank == world - 1), tag="nonfinite round")
    t.barrier()
    return {
        "frames": got,
        "nonfinite": res.nonfinite_ranks,
        "stats": t.stats.as_dict(),
        "errors": errors,
    }


def transport_message_rounds(rank: int, world: int, max_capacity: int = 0) -> dict[str, Any]:
    """Which rounds need phase 2 on gloo: frames go with the statuses once they fit the
    capacity (twice the largest frame seen, at most ``max_capacity`` if given), else in one
    all-to-all."""
    from laqcore.distributed import Transport

    t = Transport(timeout_s=30)
    if max_capacity:
        t._max_capacity = max_capacity
    calls = []
    frames_fn = t._gather.frames

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[-1] += 1
        return frames_fn(*args, **kwargs)

    t._gather.frames = counted  # type: ignore[method-assign]
    # sizes: the first frames (no capacity yet), the same again, a frame that fits twice
    # the first, one that does not (rank 0 only), and one that fits the grown capacity
    plan = [[10] * world, [10] * world, [20] * world, [50] + [0] * (world - 1), [100] * world]
    got = []
    for rnd, sizes in enumerate(plan):
        calls.append(0)
        n = sizes[rank]
        res = t.exchange(bytes([rank + 1, rnd]) * n if n else None, tag=f"round {rnd}")
        got.append(
            res.frames == [bytes([r + 1, rnd]) * s if s else None for r, s in enumerate(sizes)]
        )
    return {"calls": calls, "delivered": got, "capacity": t._capacity}


def transports_interleaved(rank: int, world: int) -> dict[str, Any]:
    """Two Transports of one group taking turns: each posts its next round's receives as a
    round ends, so each must receive only its own messages (its own tag)."""
    import torch.distributed as dist

    from laqcore.distributed import Transport

    first = Transport(timeout_s=30)
    got = [first.exchange(bytes([rank, 0]) * 8, tag="first, alone").frames]
    # the default group by its object: the same communicator as None, so another tag
    second = Transport(dist.group.WORLD, timeout_s=30)
    for rnd in range(1, 5):
        for i, t in enumerate((first, second)):
            size = 1 + rank + 2 * i  # fits the first's capacity from round 1 on
            upload = None if (rank + rnd + i) % 3 == 0 else bytes([rank, rnd, i]) * size
            got.append(t.exchange(upload, tag=f"round {rnd}, transport {i}").frames)
    posted = [t._mail.posted for t in (first, second)]
    first.barrier()
    return {"frames": got, "tags": [first._mail.tag, second._mail.tag], "posted": posted}


def die_or_hang(rank: int, world: int, mode: str, at_round: int) -> str:
    """Rank 1 dies (os._exit) or hangs at ``at_round``; the others keep exchanging."""
    from laqcore.distributed import Transport

    t = Transport(timeout_s=float(os.environ.get("LAQ_TEST_PG_TIMEOUT", "5")))
    for rnd in range(at_round + 3):
        if rank == 1 and rnd == at_round:
            if mode == "die":
                os._exit(17)
            time.sleep(3600)
        t.exchange(bytes([rank + 1]) * 8, tag=f"round {rnd}")
    return "finished"


def loader_with_workers(rank: int, world: int) -> float:
    """What a trainer's ``DataLoader(num_workers=2)`` yields: its workers are child
    processes of the rank."""
    import torch

    data = torch.utils.data.TensorDataset(torch.arange(8.0) + 100 * rank)
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    return sum(float(batch[0].sum()) for batch in loader)


def rank_and_world(rank: int, world: int) -> tuple[int, int]:
    return rank, world


def rank1_exits_while_rank0_waits_on_the_store(rank: int, world: int) -> None:
    """Rank 1 dies while rank 0 waits for a key it would have set: a wait that, like the
    process group's own rendezvous, does not notice a dead peer before its timeout."""
    import torch.distributed as dist

    if rank == 1:
        os._exit(23)
    dist.distributed_c10d._get_default_store().get("never set")


def blocked_signals(rank: int, world: int) -> tuple[bool, bool]:
    """Whether this rank runs with SIGINT (the launcher alone handles Ctrl-C) and SIGTERM
    blocked."""
    import signal

    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return signal.SIGINT in mask, signal.SIGTERM in mask


def record_pid_and_sleep(rank: int, world: int, pid_dir: str) -> str:
    """Write this rank's pid to ``pid_dir/rank<r>``, then run for an hour: a rank whose
    launcher is killed must exit by itself."""
    path = os.path.join(pid_dir, f"rank{rank}")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(3600)
    return "slept"


# ---------------------------------------------------------------------------------------
# DDP hook workers
# ---------------------------------------------------------------------------------------
def _mlp(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(12, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 3),
    )


def _batch(rank: int, step: int, nan_at: tuple[int, int] | None = None) -> tuple[Any, Any]:
    """Each rank's own (heterogeneous) data; fixed per step so the runs are reproducible."""
    import torch

    g = torch.Generator().manual_seed(1000 * rank + 7)
    x = torch.randn(24, 12, generator=g) + 0.3 * rank
    y = torch.randint(0, 3, (24,), generator=g)
    if nan_at is not None and nan_at == (rank, step):
        x = x.clone()
        x[0, 0] = float("nan")
    return x, y


def ddp_train(
    rank: int,
    world: int,
    method: str,
    steps: int,
    kwargs: dict[str, Any],
    lr: float = 0.1,
    nan_at: tuple[int, int] | None = None,
    checkpoint_at: int | None = None,
    resume_from: dict[str, Any] | None = None,
    huge_at: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Train the small MLP with DDP (hook ``method`` or ``"none"``) for ``steps`` steps.

    Returns per-step averaged gradients, the final parameters, the hook's stats, and (with
    ``checkpoint_at``) a checkpoint of model + optimizer + hook state taken after that step.
    ``resume_from`` starts from such a checkpoint instead of the seed. ``huge_at = (rank,
    step)``: that rank's first-layer gradient is multiplied by 1e36 at that step (finite,
    beyond what the rotation quantizer can represent).
    """
    import numpy as np
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.torch import make_hook

    model = _mlp(0)
    # A tiny bucket cap gives several buckets, so the bucket machinery is exercised.
    ddp = DDP(model, bucket_cap_mb=0.0005)
    opt = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=0.0)
    state = None
    if method != "none":
        state, hook = make_hook(method, **kwargs)
        ddp.register_comm_hook(state, hook)
    start = 0
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        opt.load_state_dict(resume_from["opt"])
        if state is not None:
            state.load_state_dict(resume_from["hook"][rank])
        start = resume_from["step"]
    grads, losses, local_absmax, local_l2, checkpoint = [], [], [], [], None
    for step in range(start, steps):
        x, y = _batch(rank, step, nan_at)
        # This rank's own gradient (no communication), for the tests' error bounds.
        local = torch.autograd.grad(
            torch.nn.functional.cross_entropy(model(x), y), list(model.parameters())
        )
        local_absmax.append(max(float(t.abs().max()) for t in local))
        local_l2.append(float(torch.sqrt(sum((t.double() ** 2).sum() for t in local))))
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        huge = huge_at == (rank, step)
        if huge:
            handle = next(iter(model.parameters())).register_hook(lambda g: g * 1e36)
        loss.backward()
        if huge:
            handle.remove()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().copy())
        losses.append(loss.item())
        opt.step()
        if checkpoint_at is not None and step + 1 == checkpoint_at:
            checkpoint = {
                "model": {k: v.clone() for k, v in model.state_dict().items()},
                "opt": opt.state_dict(),
                "hook": state.state_dict() if state is not None else None,
                "step": step + 1,
            }
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()
    out: dict[str, Any] = {"grads": np.stack(grads), "params": params, "losses": losses}
    out["local_absmax"] = local_absmax
    out["local_l2"] = local_l2
    out["stats"] = state.stats() if state is not None else None
    out["fallback_decision"] = getattr(state, "fallback_decision", None)
    out["checkpoint"] = checkpoint
    if method == "laq" and state is not None and state.q_prev is not None:
        # Invariant: the shared aggregate is the sum of every rank's q_prev.
        import torch.distributed as dist

        q = torch.from_numpy(state.q_prev.copy())
        dist.all_reduce(q)
        out["aggregate_minus_sum_qprev"] = float(
            np.abs(state.aggregate - q.numpy()).max() / max(1e-30, np.abs(q.numpy()).max())
        )
    return out


def near_float32_max(
    rank: int, world: int, method: str, kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Rank 0's gradient is finite but near the float32 maximum in the first two steps
    (+3e38, then -3e38; rank 1's is 1): LAQ's innovation ``grad - q_prev`` overflows at
    the sign change, the L2 norm of QSGD's 4-element bucket (``norm="l2"``) in both.
    Returns each step's averaged gradient and the hook's stats, or the error this rank
    raised. ``kwargs`` go to the hook's state."""
    import numpy as np
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.torch import make_hook

    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ddp = DDP(lin)
    state, hook = make_hook(method, warmup_steps=0, **(kwargs or {}))
    ddp.register_comm_hook(state, hook)
    grads = []
    try:
        for factor in (3e38, -3e38, 1.0):
            ddp.zero_grad()
            (ddp(torch.ones(1, 4)).sum() * (factor if rank == 0 else 1.0)).backward()
            assert lin.weight.grad is not None
            grads.append(lin.weight.grad.reshape(-1).numpy().copy())
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return {"error": f"{type(err).__name__}: {err}"}
    return {"error": None, "grads": np.stack(grads), "stats": state.stats()}


def ddp_runs(rank: int, world: int, runs: list[dict[str, Any]]) -> list[Any]:
    """Several :func:`ddp_train` runs in one process group (saves process start-ups).

    A run whose ``expect_error`` is set must raise; its result is the error's type and text.
    """
    out = []
    for spec in runs:
        spec = dict(spec)
        expect_error = spec.pop("expect_error", False)
        if expect_error:
            try:
                ddp_train(rank, world, **spec)
            except Exception as err:  # noqa: BLE001 - the test inspects it
                out.append((type(err).__name__, str(err)))
                continue
            out.append(("no error", ""))
        else:
            out.append(ddp_train(rank, world, **spec))
    return out


def with_control_env(
    rank: int, world: int, controls: list[str], runner: Any, *args: Any
) -> dict[str, Any]:
    """``runner(rank, world, *args)`` with ``LAQCORE_TRANSPORT_CONTROL`` set to
    ``controls[rank]`` in this rank only (ranks that resolve the control phase differently),
    and the texts of the control-phase warnings it raised."""
    import warnings

    os.environ["LAQCORE_TRANSPORT_CONTROL"] = controls[rank]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner(rank, world, *args)
    texts = [str(w.message) for w in caught if "control phase" in str(w.message)]
    return {"result": result, "warnings": texts}


# ---------------------------------------------------------------------------------------
# engine workers
# ---------------------------------------------------------------------------------------
def engine_runs(rank: int, world: int, cfgs: list[Any], fault: Any = None) -> list[Any]:
    from laqcore.distributed.engine import run_engine

    return [run_engine(rank, world, c, fault) for c in cfgs]


def kill_rank1_at_3(rank: int, k: int, workers: dict[int, Any]) -> None:
    if rank == 1 and k == 3:
        os._exit(19)


def exit_rank1_in_loss_at_3(rank: int, k: int, workers: dict[int, Any]) -> None:
    """Rank 1 dies after its exchange of iteration 3, computing the loss: rank 0 is then in
    the engine's loss all-reduce, not in the exchange."""
    if rank == 1 and k == 3:
        for w in workers.values():
            w.f._inner.loss = lambda theta: os._exit(19)


class _PoisonOnce:
    """An objective whose next gradient is NaN, then normal again."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def grad(self, theta: Any) -> Any:
        g = self.inner.grad(theta)
        if not self.fired:
            self.fired = True
            g = g * float("nan")
        return g


def poison_rank1_at_4(rank: int, k: int, workers: dict[int, Any]) -> None:
    if rank == 1 and k == 4:
        for w in workers.values():
            w.f._inner = _PoisonOnce(w.f._inner)


def relabel_rank1_as_worker0_at_2(rank: int, k: int, workers: dict[int, Any]) -> None:
    """From iteration 2 on, rank 1 steps its worker 1 under the id of rank 0's worker 0."""
    if rank == 1 and k == 2:
        workers[0] = workers.pop(1)


def _owner_sum_overflow(
    rank: int, method: str, kwargs: dict[str, Any], policy: str, overflow: bool
) -> dict[str, Any]:
    import numpy as np
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.torch import make_hook

    dims = 2048
    lin = torch.nn.Linear(dims, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ddp = DDP(lin)
    state, hook = make_hook(method, warmup_steps=0, nonfinite=policy, **kwargs)
    ddp.register_comm_hook(state, hook)
    grads: list[Any] = []
    owner = -1

    def step(x: Any) -> None:
        ddp.zero_grad()
        ddp(x).sum().backward()
        assert lin.weight.grad is not None
        grads.append(lin.weight.grad.reshape(-1).numpy().copy())

    try:
        step(torch.full((1, dims), 0.5 + rank))
        bounds = state.exchanger.exchange.bounds  # type: ignore[attr-defined]
        owner = max(j for j, (s, e) in enumerate(bounds) if e > s)
        if overflow:
            s, e = bounds[owner]
            x = torch.ones(1, dims)
            x[0, s:e] = 2e38
            step(x)
        step(torch.full((1, dims), 0.25 * (rank + 1)))
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return {"error": (type(err).__name__, str(err)), "owner": owner}
    fresh, _ = make_hook(method, warmup_steps=0, nonfinite=policy, **kwargs)
    fresh.load_state_dict(pickle.loads(pickle.dumps(state.state_dict())))
    return {"error": None, "owner": owner, "grads": np.stack(grads), "stats": state.stats()}


def owner_sum_overflow(rank: int, world: int, specs: list[dict[str, Any]]) -> list[Any]:
    """Per spec (``method``, ``kwargs``, ``policy``, ``overflow``), a hook on a linear model of
    2048 weights (no warm-up): steps 0 and 2 ordinary and, if ``overflow``, between them a
    step whose gradient is finite on every rank but 2e38 on the last owner's chunk of the
    two-phase exchange, so that the sum over the ranks leaves the float32 range at that owner
    only. Per spec: the averaged gradients, the stats, the owner and the error this rank
    raised (type and text), if any; a checkpoint of the state must load into a fresh one."""
    return [_owner_sum_overflow(rank, **spec) for spec in specs]


def fp16_average(rank: int, world: int, hooks: list[dict[str, Any]]) -> list[Any]:
    """One backward pass of a float16 linear layer whose gradient entries (about 4e4 per
    rank) fit float16 while their sum over 2 ranks does not, under DDP without a hook and
    under each hook of ``hooks`` (``{"method": ..., "kwargs": ..., "steps": ...}``, whose
    last of ``steps`` passes (default 1) is one of its all-reduce iterations: warm-up or
    ``fallback``'s probe); returns each weight gradient of that pass and the hooks'
    ``allreduce_steps`` (``fallback``'s all-reduce iterations; None without it)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.torch import make_hook

    grads, allreduce_steps = [], []
    for spec in [{"method": "none"}, *hooks]:
        torch.manual_seed(0)
        ddp = DDP(torch.nn.Linear(4, 2).half())
        state = None
        if spec["method"] != "none":
            state, hook = make_hook(spec["method"], **spec.get("kwargs", {}))
            ddp.register_comm_hook(state, hook)
        x = torch.full((1, 4), 40000.0 + 1000.0 * rank, dtype=torch.float16)
        for _ in range(spec.get("steps", 1)):
            ddp.zero_grad()
            ddp(x).float().sum().backward()
        grads.append(ddp.module.weight.grad.float().numpy().copy())
        allreduce_steps.append(None if state is None else state.stats().get("allreduce_steps"))
    return [grads, allreduce_steps]


def idle_loop_then_all_reduce(rank: int, world: int) -> dict[str, Any]:
    """``idle_gloo_loop`` in a gloo group: the loop threads it names and their scheduling
    policies afterwards, a second call's answer, an all-reduce run after it,
    ``gloo_loop_is_idle`` before and after, and what ``control="auto"`` resolves to for a
    pinned rank then."""
    import torch
    import torch.distributed as dist

    from laqcore.distributed import idle_gloo_loop
    from laqcore.distributed.gloo_threads import gloo_loop_is_idle
    from laqcore.distributed.transport import resolve_control

    before = gloo_loop_is_idle()
    threads = idle_gloo_loop()
    policies = [os.sched_getscheduler(tid) for tid in threads]
    again = idle_gloo_loop()
    x = torch.full((1000,), float(rank + 1))
    dist.all_reduce(x)
    os.sched_setaffinity(0, {0})  # this thread pinned: "auto" still takes the messages
    control = resolve_control("auto", "cpu")
    return {
        "threads": threads,
        "policies": policies,
        "again": again,
        "sum": x.tolist(),
        "idle": (before, gloo_loop_is_idle()),
        "control": control,
    }
