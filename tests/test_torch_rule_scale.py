"""``LAQState(rule_scale=...)``: what the lazy rule's history holds (issue 15.4).

``"average"`` (default, the paper's rule in observed quantities) pushes ``||g^k||^2`` of the
average the hook returned; ``"worker"`` pushes this rank's own gradient ``||g_m^k||^2``
(docs/ddp.md, "Per-worker scale"). A one-rank gloo group runs the real hook; the test
captures the bucket before and after the hook and checks the rule's right-hand side
``sum_d xi_d h_{k-d}`` (``xi_d = ck / min(k, D)``) against those norms.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

from laqcore.torch import LAQState, laq_hook  # noqa: E402


@pytest.fixture(scope="module")
def group() -> Iterator[None]:
    if dist.is_initialized():  # pragma: no cover - another module left one
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _run(scale: str, steps: int, D: int, ck: float) -> tuple[LAQState, list[Any]]:
    """Train a tiny model; per step the bucket's squared norm before and after the hook and
    the rule's right-hand side after the step."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    ddp = DDP(model)
    state = LAQState(warmup_steps=0, block_size=8, D=D, ck=ck, rule_scale=scale)
    seen: list[Any] = []

    def hook(st: LAQState, bucket: Any) -> Any:
        before = bucket.buffer().detach().double().clone()
        fut = laq_hook(st, bucket)
        return fut.then(lambda f: seen.append((before, f.value().detach().double())) or f.value())

    # DDP checks the annotations as objects (this module postpones them to strings).
    hook.__annotations__ = dict(laq_hook.__annotations__)
    ddp.register_comm_hook(state, hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = []
    for k in range(steps):
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(k))
        opt.zero_grad()
        ddp(x).square().mean().backward()
        opt.step()
        before, after = seen[-1]
        out.append((float(before.square().sum()), float(after.square().sum()), state.rule.rhs()))
    return state, out


def _rhs_by_hand(norms: list[float], D: int, ck: float) -> float:
    recent = norms[-D:]
    return ck / len(recent) * sum(recent)


@pytest.mark.parametrize("scale", ["average", "worker"])
def test_the_history_holds_the_chosen_norms(group: None, scale: str) -> None:
    D, ck = 3, 1.1
    state, steps = _run(scale, 7, D, ck)
    assert state.rule.scale == scale and state.stats()["steps"] == 7
    own = [s[0] for s in steps]
    avg = [s[1] for s in steps]
    # The returned average is the quantized replica, not the raw gradient: the scales differ.
    assert not np.allclose(own, avg, rtol=1e-3)
    held = own if scale == "worker" else avg
    for k in range(1, len(steps) + 1):
        expected = _rhs_by_hand(held[:k], D, ck)
        assert steps[k - 1][2] == pytest.approx(expected, rel=1e-5), k


def test_worker_scale_checkpoints_and_old_pickles(group: None) -> None:
    state, _ = _run("worker", 3, 3, 1.2)
    fresh = LAQState(warmup_steps=0, block_size=8, D=3, ck=1.2, rule_scale="worker")
    fresh.load_state_dict(state.state_dict())
    assert fresh.rule.scale == "worker"
    assert fresh.rule.rhs() == state.rule.rhs()
    del state.rule.__dict__["scale"]  # a state pickled before the option existed
    assert pickle.loads(pickle.dumps(state)).rule.scale == "average"


def test_bad_rule_scale_is_a_clear_error() -> None:
    assert LAQState().rule.scale == "average"  # the default: the paper's rule
    with pytest.raises(ValueError, match="scale"):
        LAQState(rule_scale="local")
    with pytest.raises(TypeError, match="scale"):
        LAQState(rule_scale=1)  # type: ignore[arg-type]
