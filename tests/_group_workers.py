"""Worker of tests/test_torch_hook_groups.py (module level, so that spawn can pickle it)."""

from __future__ import annotations

from typing import Any


def _model(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _train(ddp: Any, rank: int, steps: int) -> None:
    import torch

    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(100 + rank)
    for _ in range(steps):
        opt.zero_grad()
        ddp(torch.randn(8, 6, generator=g)).pow(2).mean().backward()
        opt.step()


def _params(model: Any) -> Any:
    import torch

    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def run_case(rank: int, world: int, case: str, hook: str) -> dict[str, Any]:
    """One case of 4 ranks; DDP over the pairs {0, 1} and {2, 3} (two different models)
    unless the case says otherwise. Returns the error (type, text) or the parameters."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from laqcore.torch import make_hook, register_hook

    pairs = [dist.new_group([0, 1]), dist.new_group([2, 3])]  # every rank creates both
    pair = pairs[rank // 2]
    if case == "loaded_on_one_rank":  # a resume where only rank 0 loads its hook state
        ddp = DDP(_model(0))
        state = register_hook(ddp, hook, warmup_steps=0)
        _train(ddp, rank, 3)
        saved = (ddp.module.state_dict(), state.state_dict())
    if case in ("diverged", "register_none_world", "loaded_on_one_rank", "settings_differ"):
        model = _model(0)
        ddp = DDP(model)
        if case == "loaded_on_one_rank":  # the run's model: the same on every rank
            model.load_state_dict(saved[0])
        if case == "diverged" and rank == 3:  # rank 3 then changes its replica
            with __import__("torch").no_grad():
                model[0].weight[0, 0] += 1.0
    else:
        model = _model(rank // 2)
        ddp = DDP(model, process_group=pair)
    if case.startswith("pickled"):  # a trained state pickled, unpickled in a new DDP
        import pickle

        ddp = DDP(_model(0), process_group=pair if case == "pickled_in_pair" else None)
        state = register_hook(ddp, hook, warmup_steps=0)
        _train(ddp, rank, 3)
        blobs: list[Any] = [None] * world
        dist.all_gather_object(blobs, pickle.dumps(state))
        blob = blobs[0] if case == "pickled_rank0" else blobs[rank]
        model = _model(0)
        ddp = DDP(model)  # over all 4 ranks
    before = _params(model)
    try:
        if case.startswith("pickled"):
            ddp.register_comm_hook(pickle.loads(blob), make_hook(hook)[1])
        elif case in ("state_on_world", "diverged"):
            state, fn = make_hook(hook, warmup_steps=0)
            ddp.register_comm_hook(state, fn)
        elif case == "register":
            state = register_hook(ddp, hook, warmup_steps=0)
            assert state.process_group is pair
        elif case == "register_wrong_group":
            register_hook(ddp, hook, process_group=dist.group.WORLD)
        elif case == "register_none":  # None is the default group: not the pair's
            register_hook(ddp, hook, process_group=None)
        elif case == "loaded_on_one_rank":
            state = register_hook(ddp, hook, warmup_steps=0)
            if rank == 0:
                state.load_state_dict(saved[1])
        elif case == "settings_differ":  # rank 3 builds the hook with other settings
            register_hook(
                ddp, hook, warmup_steps=0, nonfinite="raise" if rank == 3 else "propagate"
            )
        elif case == "register_none_world":  # DDP and None both mean the default group
            state = register_hook(ddp, hook, process_group=None, warmup_steps=0)
            assert state.process_group is ddp.process_group
        else:
            raise ValueError(case)
        _train(ddp, rank, 5)
    except Exception as err:  # noqa: BLE001 - the test inspects it
        return {
            "error": (type(err).__name__, str(err)),
            "unchanged": (_params(model) == before).all(),
        }
    return {"error": None, "params": _params(model)}


def run_cases(rank: int, world: int, cases: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """:func:`run_case` for each ``(case, hook)``, in one process group (one spawn)."""
    return [run_case(rank, world, case, hook) for case, hook in cases]
