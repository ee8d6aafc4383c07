"""Hook state without peers: checkpoint validation (issue 14.14, 14.17), bucket checks,
the rule's ``rule_scale`` (issue 15.4).

A one-rank gloo group in this process runs the real hook on a tiny model, so a valid
``state_dict`` exists to corrupt; the corruptions must raise in ``load_state_dict`` itself.
"""

from __future__ import annotations

import copy
import math
import pickle
import typing
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

from laqcore.torch import LAQState, QSGDState, laq_hook, qsgd_hook  # noqa: E402
from laqcore.torch._layout import BucketLayout, Parked  # noqa: E402
from needs_torch import skip_without  # noqa: E402

# The hooks warn once per state in a group of one rank (this module's group):
# test_a_group_of_one_rank_warns_once checks it; elsewhere here it is expected.
pytestmark = pytest.mark.filterwarnings("ignore:.* runs in a group of one rank:UserWarning")


@pytest.fixture(scope="module")
def group() -> Iterator[None]:
    if dist.is_initialized():  # pragma: no cover - another module left one
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def trained(group: None) -> dict[str, Any]:
    return _trained_state()


def _trained_state(steps: int = 6, bits: int = 4) -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    ddp = DDP(model)
    state = LAQState(warmup_steps=2, bits=bits, block_size=8)
    ddp.register_comm_hook(state, laq_hook)
    x = torch.randn(8, 5)
    for _ in range(steps):
        ddp.zero_grad()
        ddp(x).square().sum().backward()
    sd = state.state_dict()
    assert sd["uploader"] is not None  # the compressed path ran
    return sd


def _corrupt(sd: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    bad = copy.deepcopy(sd)
    node = bad
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return bad


def test_a_valid_checkpoint_loads(trained: dict[str, Any]) -> None:
    sd = copy.deepcopy(trained)
    fresh = LAQState(warmup_steps=2, bits=4, block_size=8)
    fresh.load_state_dict(sd)
    assert fresh.iteration == sd["iteration"]
    np.testing.assert_array_equal(fresh.q_prev, sd["uploader"]["q_prev"])
    np.testing.assert_array_equal(fresh.aggregate, sd["server"]["aggregate"])


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("uploader", "q_prev"), "nan", "NaN"),
        (("uploader", "q_prev"), "short", "q_prev"),
        (("server", "aggregate"), "nan", "NaN"),
        (("iteration",), -1, "iteration"),
        (("clock_missing",), None, None),
        (("uploader",), KeyError, "uploader"),
        (("rule", "noise"), float("nan"), "noise"),
        (("world_size",), 2, "rank 0 of 2"),
        (("rank",), 1, "rank 1"),
        (("counters", "uploads"), -3, "uploads"),
    ],
)
def test_a_corrupt_checkpoint_raises_where_it_is_loaded(
    trained: dict[str, Any], path: tuple[Any, ...], value: Any, match: str | None
) -> None:
    sd = copy.deepcopy(trained)
    if path == ("clock_missing",):  # a missing key inside the uploader's own state
        path, value, match = ("uploader", "clock"), KeyError, "clock"
    if value in ("nan", "short"):
        vec = sd[path[0]][path[1]].clone()
        if value == "nan":
            vec[1] = np.nan
        else:
            vec = vec[:-1]
        value = vec
    state = LAQState(warmup_steps=2, bits=4, block_size=8)
    with pytest.raises((ValueError, TypeError), match=match):
        state.load_state_dict(_corrupt(sd, path, value))
    assert state.uploader is None and state.iteration == 0  # nothing changed


def test_all_ranks_checkpoint_round_trip_and_bad_rank_counts(trained: dict[str, Any]) -> None:
    """``state_dict(all_ranks=True)`` (one entry per rank of the group) loads this rank's
    entry; an entry count other than the group's size is refused before anything changes."""
    gathered = LAQState(warmup_steps=2, bits=4, block_size=8).state_dict(all_ranks=True)
    assert list(gathered) == ["all_ranks"] and gathered["all_ranks"][0]["rank"] == 0
    fresh = LAQState(warmup_steps=2, bits=4, block_size=8)
    fresh.load_state_dict({"all_ranks": [copy.deepcopy(trained)]})
    assert fresh.iteration == trained["iteration"]
    state = LAQState(warmup_steps=2, bits=4, block_size=8)
    with pytest.raises(ValueError, match="states of 2 ranks; this group has 1"):
        state.load_state_dict({"all_ranks": [trained, trained]})
    with pytest.raises(TypeError, match="all_ranks must be True or False"):
        state.state_dict(all_ranks=1)  # type: ignore[arg-type]
    assert state.iteration == 0


def test_checkpoint_survives_torch_load_with_weights_only(trained: dict[str, Any]) -> None:
    """``torch.save`` + ``torch.load`` (whose default is ``weights_only=True``, which refuses
    numpy arrays) round-trips the checkpoint, and the loaded state is the saved one."""
    import io

    def arrays(x: Any) -> list[Any]:  # every non-plain value, depth first
        if isinstance(x, dict):
            return [a for v in x.values() for a in arrays(v)]
        if isinstance(x, (list, tuple)):
            return [a for v in x for a in arrays(v)]
        return [] if isinstance(x, (int, float, str, bool, type(None))) else [x]

    found = arrays(trained)
    assert found and all(isinstance(a, torch.Tensor) for a in found), found
    buf = io.BytesIO()
    torch.save({"hook": trained}, buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)["hook"]
    fresh = LAQState(warmup_steps=2, bits=4, block_size=8)
    fresh.load_state_dict(sd)
    np.testing.assert_array_equal(fresh.q_prev, trained["uploader"]["q_prev"].numpy())
    assert fresh.state_dict().keys() == trained.keys()


def test_checkpoint_of_numpy_arrays_still_loads(trained: dict[str, Any]) -> None:
    """Checkpoints written before ``state_dict`` returned tensors hold numpy arrays."""

    def as_numpy(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.numpy().copy()
        if isinstance(x, dict):
            return {k: as_numpy(v) for k, v in x.items()}
        return x

    fresh = LAQState(warmup_steps=2, bits=4, block_size=8)
    fresh.load_state_dict(as_numpy(trained))
    np.testing.assert_array_equal(fresh.aggregate, trained["server"]["aggregate"].numpy())


def test_state_dict_is_a_copy(group: None) -> None:
    """Steps after ``state_dict()`` do not change it, and loading does not alias it."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2)
    ddp = DDP(model)
    state = LAQState(warmup_steps=0, bits=4, block_size=8, ck=0, err_coef=0)  # never skips
    ddp.register_comm_hook(state, laq_hook)
    for i in range(4):
        ddp.zero_grad()
        ddp(torch.randn(3, 5) * (i + 1)).square().sum().backward()
        if i == 1:
            sd = state.state_dict()
            saved = sd["uploader"]["q_prev"].clone()
    assert state.q_prev is not None and not np.array_equal(state.q_prev, saved.numpy())
    assert torch.equal(sd["uploader"]["q_prev"], saved)
    fresh = LAQState(warmup_steps=0, bits=4, block_size=8, ck=0, err_coef=0)
    fresh.load_state_dict(sd)
    sd["uploader"]["q_prev"].zero_()
    np.testing.assert_array_equal(fresh.q_prev, saved.numpy())


def test_checkpoint_of_another_hook_or_configuration_is_refused(
    trained: dict[str, Any],
) -> None:
    sd = trained
    with pytest.raises(ValueError, match="lacks"):
        QSGDState().load_state_dict({"iteration": 1})
    with pytest.raises(ValueError, match="block_size"):
        LAQState(warmup_steps=2, bits=4, block_size=16).load_state_dict(sd)


@pytest.mark.parametrize(
    "setting",
    [
        {"downlink_bits": None},
        {"downlink_bits": 2},
        {"downlink_block_size": 64},
        {"entropy": False},
        {"lazy_downlink": 0.5},
        {"error_feedback": 1.0},
        {"stale_cap": None},
        {"stale_cap_scope": "tensor"},
        {"rule_scale": "average"},
        {"t_bar": 3},
        {"warmup_steps": 0},
        {"nonfinite": "skip"},
    ],
    ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()),
)
def test_resume_takes_new_settings_the_saved_state_does_not_depend_on(
    trained: dict[str, Any], setting: dict[str, Any]
) -> None:
    # docs/ddp.md, "Checkpoints": these act from the resumed run's first step on; the saved
    # quantizer memory, aggregate and history are kept as they are.
    kwargs = {"warmup_steps": 2, "bits": 4, "block_size": 8} | setting
    fresh = LAQState(**kwargs)
    fresh.load_state_dict(copy.deepcopy(trained))
    assert fresh.iteration == trained["iteration"]
    np.testing.assert_array_equal(fresh.q_prev, trained["uploader"]["q_prev"])
    np.testing.assert_array_equal(fresh.aggregate, trained["server"]["aggregate"])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    ddp = DDP(model)
    ddp.register_comm_hook(fresh, laq_hook)
    ddp(torch.randn(8, 5)).square().sum().backward()
    assert fresh.iteration == trained["iteration"] + 1
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def _linear_run(state: Any, hook: Any, sd: dict[str, Any] | None = None, steps: int = 3) -> Any:
    """``steps`` iterations of a DDP Linear(6, 3) under ``hook`` (``state`` loaded from ``sd``
    first, if given); every gradient finite. Returns the state's ``state_dict()``."""
    torch.manual_seed(0)
    ddp = DDP(torch.nn.Linear(6, 3))
    if sd is not None:
        state.load_state_dict(sd)
    ddp.register_comm_hook(state, hook)
    for _ in range(steps):
        ddp.zero_grad()
        ddp(torch.randn(4, 6)).square().sum().backward()
        assert all(torch.isfinite(p.grad).all() for p in ddp.parameters())
    return state.state_dict()


def test_compressor_resume_takes_new_levels_and_seed(group: None) -> None:
    from laqcore.torch import qsgd_hook

    sd = _linear_run(QSGDState(levels=4, warmup_steps=1), qsgd_hook)
    for kwargs in ({"levels": 16}, {"levels": 4, "seed": 5}):
        fresh = QSGDState(warmup_steps=1, **kwargs)
        _linear_run(fresh, qsgd_hook, copy.deepcopy(sd))
        assert fresh.iteration == sd["iteration"] + 3


def test_resume_refuses_another_hooks_checkpoint(trained: dict[str, Any]) -> None:
    """A LAQ checkpoint's keys cover a QSGDState's, a QSGD one's a TernGradState's: both
    loaded without an error, and stats() went on from the other hook's counters (a QSGD
    run reporting LAQ's skipped uploads). Checkpoints from before the key load as before."""
    from laqcore.torch import TernGradState, terngrad_hook

    assert trained["hook"] == "LAQState"
    state = QSGDState(warmup_steps=1)
    with pytest.raises(ValueError, match="a LAQState's; this state is a QSGDState"):
        state.load_state_dict(copy.deepcopy(trained))
    assert state.iteration == 0 and state.stats()["uploads"] == 0  # nothing changed
    sd = _linear_run(QSGDState(warmup_steps=1), qsgd_hook)
    with pytest.raises(ValueError, match="load it into a QSGDState"):
        TernGradState(warmup_steps=1).load_state_dict(copy.deepcopy(sd))
    _linear_run(TernGradState(warmup_steps=1), terngrad_hook)  # its own kind loads
    old = copy.deepcopy(trained)
    del old["hook"]
    LAQState(warmup_steps=2, block_size=8).load_state_dict(old)


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"bits": 2}, "bits = 4"),
        ({"block_size": 16}, "block_size"),
        ({"D": 5}, "D = 10"),
        ({"ck": 2.0}, "ck = 1.2"),
    ],
)
def test_resume_refuses_settings_the_saved_state_depends_on(
    trained: dict[str, Any], setting: dict[str, Any], match: str
) -> None:
    state = LAQState(**({"warmup_steps": 2, "bits": 4, "block_size": 8} | setting))
    with pytest.raises(ValueError, match=match):
        state.load_state_dict(copy.deepcopy(trained))
    assert state.uploader is None and state.iteration == 0  # nothing changed


def test_resolve_exchange() -> None:
    from laqcore.torch._two_phase import AUTO_ALL_GATHER_MAX_EXTRA as EXTRA
    from laqcore.torch._two_phase import AUTO_ALL_GATHER_MAX_N as BIG
    from laqcore.torch._two_phase import resolve_exchange

    assert [resolve_exchange("auto", w, 1000) for w in (1, 2, 3, 8)] == ["all-gather"] * 4
    # From 3 ranks on: the all-gather while n (N-1)(N-2)/N <= EXTRA, at the boundary too
    for w in (3, 4, 5, 8, 16, 64):
        edge = EXTRA * w // ((w - 1) * (w - 2))  # the largest n within the bound
        assert resolve_exchange("auto", w, edge) == "all-gather", w
        assert resolve_exchange("auto", w, edge + 1) == "two-phase", w
    # the bench models: the 85k MLP up to 5 ranks, the 29k CNN up to 11, the 5.3M never
    assert [resolve_exchange("auto", w, 85_002) for w in (4, 5, 6)] == [
        "all-gather",
        "all-gather",
        "two-phase",
    ]
    assert [resolve_exchange("auto", w, 28_868) for w in (11, 12)] == ["all-gather", "two-phase"]
    assert resolve_exchange("auto", 3, 5_267_466) == "two-phase"
    assert resolve_exchange("auto", 4, 1000, downlink=True) == "two-phase"
    assert resolve_exchange("auto", 2, BIG) == "all-gather"
    assert resolve_exchange("auto", 2, BIG + 1) == "two-phase"  # a large model: two phases
    assert resolve_exchange("auto", 2, 1000, downlink=True) == "two-phase"
    assert resolve_exchange("auto", 2, BIG + 1, pinned="all-gather") == "all-gather"
    assert resolve_exchange("auto", 4, 1000, pinned="all-gather") == "all-gather"
    for explicit in ("two-phase", "all-gather"):
        assert resolve_exchange(explicit, 2, BIG + 1, downlink=True, pinned="x") == explicit
    state = LAQState()
    assert state.exchange == "auto"
    assert [state._exchange_on(w, n) for w, n in ((2, 1000), (3, 1000), (3, 10**6))] == [
        "all-gather",
        "all-gather",
        "two-phase",
    ]
    assert state._exchange_on(2, BIG + 1) == "two-phase"
    for kwargs in ({"downlink_bits": None}, {"downlink_block_size": 64}, {"lazy_downlink": 0.5}):
        assert LAQState(**kwargs)._exchange_on(2, 1000) == "two-phase"
    assert LAQState(lazy_downlink=0)._exchange_on(2, 1000) == "all-gather"
    assert QSGDState()._exchange_on(2, 1000) == "all-gather"
    assert QSGDState()._exchange_on(2, BIG + 1) == "two-phase"
    with pytest.raises(ValueError, match='need exchange="two-phase" or "auto"'):
        LAQState(exchange="all-gather", downlink_bits=2)
    with pytest.raises(ValueError, match="exchange must be one of"):
        LAQState(exchange="ring")


def test_auto_exchange_resumes_with_the_checkpoints_exchange(group: None) -> None:
    """A checkpoint of the two-phase exchange (on 2 ranks: saved before exchange="auto")
    loads into LAQState() and the run goes on with the two-phase exchange; an explicit other
    exchange is refused as before."""

    def run(state: LAQState, sd: dict[str, Any] | None = None) -> dict[str, Any]:
        return typing.cast(dict[str, Any], _linear_run(state, laq_hook, sd, steps=4))

    for saved_with in ("two-phase", "all-gather"):
        sd = run(LAQState(warmup_steps=1, exchange=saved_with))
        auto = LAQState(warmup_steps=1)
        after = run(auto, copy.deepcopy(sd))
        assert auto.active_exchange == saved_with
        assert ("rounds" in after["exchange"]) == (saved_with == "two-phase")
        pickled = pickle.loads(pickle.dumps(auto))
        assert pickled._exchange_on(2, 18) == saved_with  # the pin survives pickling
    other = LAQState(warmup_steps=1, exchange="all-gather")
    with pytest.raises(ValueError, match="saved with exchange='two-phase'"):
        other.load_state_dict(run(LAQState(warmup_steps=1, exchange="two-phase")))


def test_states_pickled_before_auto_exchange_unpickle(group: None) -> None:
    state = LAQState(downlink_bits=2, exchange="two-phase")
    d = state.__getstate__()
    assert "_downlink_given" not in d  # derived from the settings, never pickled
    d.pop("_pinned_exchange")
    old = LAQState.__new__(LAQState)
    old.__setstate__(d)
    assert old._downlink_given and old._pinned_exchange is None
    assert old._exchange_on(2, 1000) == "two-phase"


def test_error_feedback_residual_is_checkpointed_and_checked(group: None) -> None:
    sd = _trained_state(bits=2)  # error feedback on by default at 2 bits
    r = sd["residual"]
    assert r is not None and r.dtype == torch.float32 and r.any()
    fresh = LAQState(warmup_steps=2, bits=2, block_size=8)
    fresh.load_state_dict(copy.deepcopy(sd))
    np.testing.assert_array_equal(fresh._residual, r.numpy())
    for bad, match in (
        (torch.full_like(r, np.nan), "NaN"),
        (r[:-1], "residual"),
        (r.double(), "residual"),
        (r.bfloat16(), r"\['residual'\] is a torch.bfloat16 tensor"),
    ):
        state = LAQState(warmup_steps=2, bits=2, block_size=8)
        with pytest.raises((ValueError, TypeError), match=match):
            state.load_state_dict(_corrupt(sd, ("residual",), bad))
        assert state.uploader is None and state._residual_now() is None  # nothing changed
    # A checkpoint from before error feedback (no residual) resumes with r = 0.
    old = LAQState(warmup_steps=2, bits=2, block_size=8)
    old.load_state_dict(_corrupt(sd, ("residual",), KeyError))
    assert old._residual is None and old.uploader is not None
    assert LAQState(bits=4).state_dict()["residual"] is None  # none before a first step


def _feedback_run(
    steps: int, resume_at: int | None = None, pickled: bool = False
) -> tuple[list[np.ndarray], LAQState]:
    """Averaged gradients of a model in several buckets (a piece per parameter, gathered in
    an order that differs from the buckets') under ``error_feedback=0.5`` with skips; from
    step ``resume_at`` on a new state loaded from the first one's checkpoint (or pickle)."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 40), torch.nn.Tanh(), torch.nn.Linear(40, 30), torch.nn.Linear(30, 3)
    )
    ddp = DDP(model, bucket_cap_mb=0.004)  # 4 KB: a bucket per weight matrix at most
    kw = {"bits": 4, "block_size": 16, "error_feedback": 0.5, "warmup_steps": 0, "ck": 3.0}
    state = LAQState(**kw)
    ddp.register_comm_hook(state, laq_hook)
    rng = np.random.default_rng(5)
    means = []
    for k in range(steps):
        if k == resume_at:
            blob = pickle.dumps(state) if pickled else copy.deepcopy(state.state_dict())
            ddp = DDP(model, bucket_cap_mb=0.004)
            if pickled:
                state = pickle.loads(blob)
            else:
                state = LAQState(**kw)
                state.load_state_dict(blob)
            ddp.register_comm_hook(state, laq_hook)
        x = torch.from_numpy(rng.standard_normal((8, 6)).astype(np.float32) * (1 + k % 3))
        ddp.zero_grad()
        ddp(x).square().mean().backward()
        means.append(np.concatenate([p.grad.numpy().ravel() for p in model.parameters()]))
    return means, state


def test_error_feedback_gather_is_the_unfused_formula(group: None, monkeypatch: Any) -> None:
    """The gather that adds ``w r`` piece by piece from the buckets (r kept implicit as the
    last g' and q_prev) gives bit for bit what gathering first and adding ``w r`` to the flat
    vector gives (the path for loss-scaled or non-float32 buckets), and the same after a
    checkpoint or a pickle (which carry r itself)."""
    steps = 12
    fused, state = _feedback_run(steps)
    stats = state.stats()
    assert 0 < stats["uploads"] < steps and len(state._flats) == 2  # skips, feedback on
    assert len(state.layout._plan[0]) > 1  # several pieces: the per-piece path ran
    r = state._residual_now()
    assert r is not None and r.any()
    np.testing.assert_array_equal(r, state._fed - state.q_prev)
    resumed, _ = _feedback_run(steps, resume_at=5)
    unpickled, _ = _feedback_run(steps, resume_at=7, pickled=True)
    calls: list[int] = []
    real = BucketLayout.host_pieces

    def no_pieces(self: BucketLayout, parked: list[Parked]) -> None:
        calls.append(len(real(self, parked) or []))
        return None

    monkeypatch.setattr(BucketLayout, "host_pieces", no_pieces)
    whole, _ = _feedback_run(steps)
    assert len(calls) >= steps - 2 and max(calls) > 1
    for k in range(steps):
        for other in (whole, resumed, unpickled):
            np.testing.assert_array_equal(other[k].view(np.uint32), fused[k].view(np.uint32))


def _parked(params: list[Any], numels: list[int] | None = None) -> Parked:
    n = sum(int(p.numel()) for p in params)
    return Parked(torch.zeros(n), params, torch.futures.Future())


def test_layout_gathers_in_the_first_order_and_refuses_new_parameters() -> None:
    a, b, c = (torch.nn.Parameter(torch.zeros(k)) for k in (3, 2, 4))
    lay = BucketLayout()
    first = [_parked([a, b]), _parked([c])]
    lay.learn(first)
    # DDP's rebuild: other buckets, other order. The flat vector keeps the first order.
    rebuilt = [_parked([c, a]), _parked([b])]
    rebuilt[0].buffer.copy_(torch.tensor([4.0, 4, 4, 4, 1, 1, 1]))
    rebuilt[1].buffer.copy_(torch.tensor([2.0, 2]))
    lay.learn(rebuilt)
    flat = lay.gather(rebuilt)
    np.testing.assert_array_equal(flat.numpy(), [1, 1, 1, 2, 2, 4, 4, 4, 4])
    lay.scatter(rebuilt, torch.arange(9.0))
    np.testing.assert_array_equal(rebuilt[0].buffer.numpy(), [5, 6, 7, 8, 0, 1, 2])
    np.testing.assert_array_equal(rebuilt[1].buffer.numpy(), [3, 4])
    # float32 CPU buckets scatter by numpy.copyto per piece; other dtypes by torch (converted).
    half = [Parked(torch.zeros(7, dtype=torch.float16), [c, a], torch.futures.Future())]
    half.append(Parked(torch.zeros(2, dtype=torch.float16), [b], torch.futures.Future()))
    lay.learn(half)
    lay.scatter(half, torch.arange(9.0))
    np.testing.assert_array_equal(half[0].buffer.numpy(), [5, 6, 7, 8, 0, 1, 2])
    np.testing.assert_array_equal(half[1].buffer.numpy(), [3, 4])
    # A resumed state takes its checkpoint's order: [c, a, b] (positions 2, 0, 1).
    lay.reorder([2, 0, 1])
    lay.learn(rebuilt)
    np.testing.assert_array_equal(lay.gather(rebuilt).numpy(), [5, 6, 7, 8, 0, 1, 2, 3, 4])
    # Another parameter set: a layer unfrozen (or frozen) and DDP rebuilt. Both refusals say
    # what to do.
    d = torch.nn.Parameter(torch.zeros(2))
    advice = "needs a new hook state registered on the new DDP"
    with pytest.raises(ValueError, match=f"not among the parameters of the first.*{advice}"):
        lay.learn([_parked([a, b]), _parked([d])])
    with pytest.raises(ValueError, match=f"lack parameter #0.*{advice}"):
        lay.learn([_parked([a, b])])


def test_layout_refuses_complex_and_integer_gradients() -> None:
    z = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(TypeError, match=r"parameter #0 \(shape \[3\].*complex"):
        BucketLayout().learn([Parked(torch.zeros(6), [z], torch.futures.Future())])


class _Dot(torch.nn.Module):
    """Loss ``<theta, g>``: its gradient is ``g``."""

    def __init__(self, dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(dim, dtype=dtype))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        return (self.theta * g).sum()


@pytest.mark.parametrize(("dtype", "value", "dim"), [("float32", 1e20, 64), ("float16", 1e3, 8192)])
def test_huge_finite_gradients_do_not_overflow_the_rule(
    group: None, dtype: str, value: float, dim: int
) -> None:
    """Finite gradients whose squared norm overflows the gradient's own dtype (float32 above
    ~1.8e19, float16 above 256) are ordinary steps, as with all-reduce: the rule's norms are
    taken in float64. Summed in the gradient's dtype they were ``inf``, and the rule's history
    refused them (``ValueError: diff_sq must be finite, got inf``), crashing the trainer."""
    module = _Dot(dim, getattr(torch, dtype))
    ddp = DDP(module)
    state = LAQState(warmup_steps=1, bits=4)
    ddp.register_comm_hook(state, laq_hook)
    g = torch.full((dim,), value, dtype=module.theta.dtype)
    for _ in range(3):  # one warm-up step, two compressed ones
        ddp.zero_grad()
        ddp(g).backward()
        grad = module.theta.grad
        assert grad is not None and torch.isfinite(grad).all()
    s = state.stats()
    assert s["warmup_steps_done"] == 1 and s["steps"] == 2 and s["nonfinite_steps"] == 0
    assert all(np.isfinite(v) for v in s.values())


def test_tiny_gradients_make_the_decisions_of_the_same_run_at_full_scale(group: None) -> None:
    """Gradients times 2^-80 (entries ~1e-26, squares below float32's normal range) are the
    same run scaled exactly: every sum of the quantizer is scaled by a power of two and the
    rule's norms fall back to float64, so uploads, skips and the returned averages (times
    2^80) are identical. The float32 norms were 0 there, and the rule uploaded more."""
    runs = []
    for scale in (1.0, 2.0**-80):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        ddp = DDP(model)
        state = LAQState(warmup_steps=0, bits=4, block_size=8)
        ddp.register_comm_hook(state, laq_hook)
        x, grads = torch.randn(16, 6), []
        for k in range(12):
            ddp.zero_grad()
            (ddp(x + 0.1 * k).square().sum() * scale).backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]) / scale)
        runs.append((torch.stack(grads), state.stats()))
    (full, s_full), (tiny, s_tiny) = runs
    assert s_full["uploads_skipped"] > 0  # the rule skipped some: the comparison means something
    keys = ("uploads", "uploads_skipped", "stale_uploads", "capped_uploads")
    assert [s_tiny[k] for k in keys] == [s_full[k] for k in keys]
    torch.testing.assert_close(tiny, full, rtol=0, atol=0)


def test_old_names_of_t_bar_and_err_coef_are_deprecated_aliases() -> None:
    """The hook shares the library's vocabulary (issue 11.5): ``t_bar`` and ``err_coef``, as
    in ``Params``/``UploadRule``; ``max_stale``/``error_weight`` still work, with a warning."""
    st = LAQState(t_bar=7, err_coef=2.5)
    assert (st.rule.t_bar, st.rule.err_coef) == (7, 2.5)
    # the uploader's test: the same error weight; the clock is the hook's (rule.t_bar)
    assert (st._upload_rule.t_bar, st._upload_rule.err_coef) == (None, 2.5)
    with pytest.warns(DeprecationWarning, match=r"max_stale=\.\.\.\) is deprecated: use t_bar="):
        old = LAQState(max_stale=7)
    assert old.rule.t_bar == 7
    with pytest.warns(DeprecationWarning, match="use err_coef="):
        old = LAQState(error_weight=2.5)
    assert old.rule.err_coef == 2.5 and old._upload_rule.err_coef == 2.5
    with pytest.raises(ValueError, match="t_bar"):  # checked under its new name
        with pytest.warns(DeprecationWarning, match="use t_bar="):
            LAQState(max_stale=0)
    with pytest.raises(TypeError, match="both t_bar= and its deprecated alias max_stale="):
        LAQState(t_bar=10, max_stale=10)
    with pytest.raises(TypeError, match="both err_coef= and its deprecated alias error_weight="):
        LAQState(err_coef=1.0, error_weight=1.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        LAQState(maxstale=3)  # type: ignore[call-arg]


def _names(tree: Any) -> set[str]:
    if isinstance(tree, dict):
        return {str(k) for k in tree} | {n for v in tree.values() for n in _names(v)}
    return set()


def test_checkpoints_carry_the_new_names_and_old_pickles_load(group: None) -> None:
    """``state_dict`` carries the rule's state, not its constants: no key has the old names.
    A state pickled before the rename (its rule's attributes ``max_stale``/``error_weight``)
    unpickles under ``t_bar``/``err_coef`` and trains on exactly like a new pickle."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    state = LAQState(warmup_steps=1, bits=4, block_size=8, t_bar=3, err_coef=2.0)
    ddp = DDP(model)
    ddp.register_comm_hook(state, laq_hook)
    x = torch.randn(8, 5)
    for _ in range(4):
        ddp.zero_grad()
        ddp(x).square().sum().backward()
    names = _names(state.state_dict())
    assert "rule" in names and not names & {"max_stale", "error_weight"}
    new_pickle = pickle.dumps(state)
    rule = state.rule.__dict__
    rule["max_stale"], rule["error_weight"] = rule.pop("t_bar"), rule.pop("err_coef")
    old_pickle = pickle.dumps(state)  # what the hook pickled before the rename
    assert b"max_stale" in old_pickle and b"max_stale" not in new_pickle
    runs = []
    for blob in (new_pickle, old_pickle):
        st = pickle.loads(blob)
        assert (st.rule.t_bar, st.rule.err_coef) == (3, 2.0)
        assert not hasattr(st.rule, "max_stale") and not hasattr(st.rule, "error_weight")
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        d = DDP(m)
        d.register_comm_hook(st, laq_hook)
        grads = []
        for _ in range(4):
            d.zero_grad()
            d(x).square().sum().backward()
            grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]).numpy().copy())
        runs.append((grads, st.stats()))
    np.testing.assert_array_equal(np.stack(runs[0][0]), np.stack(runs[1][0]))
    assert runs[0][1] == runs[1][1] and runs[0][1]["steps"] == 7


def test_the_hooks_by_name() -> None:
    """``laqcore.torch.HOOKS`` / ``make_hook``: the one table the example, the tests'
    trainers and the benchmarks pick hooks from."""
    import doctest

    import laqcore.torch as lt
    from laqcore.torch import registry

    assert {"HOOKS", "make_hook"} <= set(lt.__all__)
    assert {k: tuple(v) for k, v in lt.HOOKS.items()} == {
        "laq": (LAQState, laq_hook),
        "qsgd": (QSGDState, lt.qsgd_hook),
        "terngrad": (lt.TernGradState, lt.terngrad_hook),
        "rotation": (lt.RotationState, lt.rotation_hook),
    }
    state, hook = lt.make_hook("laq", bits=2, t_bar=4, warmup_steps=3)
    assert type(state) is LAQState and hook is laq_hook
    assert (state.bits, state.block_size, state.rule.t_bar, state.warmup_steps) == (2, 32, 4, 3)
    state, hook = lt.make_hook(" QSGD ", levels=4, seed=2)  # the registries' spelling rule
    assert type(state) is QSGDState and hook is lt.qsgd_hook
    assert (state.compressor_kwargs, state.seed) == ({"norm": "max", "levels": 4}, 2)
    with pytest.raises(
        ValueError, match="unknown DDP hook 'fp16'; available: laq, qsgd, terngrad, rotation"
    ):
        lt.make_hook("fp16")
    with pytest.raises(TypeError, match="must be a string"):
        lt.make_hook(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bits"):
        lt.make_hook("laq", bits=9)  # the state's own checks
    with pytest.raises(TypeError):
        lt.HOOKS["mine"] = lt.HOOKS["laq"]  # type: ignore[index]  # read-only
    result = doctest.testmod(registry, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_compressor_states_name_themselves_for_a_keyword_they_do_not_take() -> None:
    """A wrong keyword was reported by the exchange's compressor (``compressor 'qsgd'`` for
    the rotation hook) with ``seed, stream`` among its accepted keywords, and ``stream=``
    failed in Python's call (``got multiple values``): the state names itself and lists
    the quantizer's keywords and its own."""
    import laqcore.torch as lt

    with pytest.raises(TypeError) as err:
        lt.make_hook("rotation", bits=4)
    msg = str(err.value)
    assert msg.startswith("RotationState got unexpected keyword argument(s) 'bits'")
    assert "quantizer's keywords are levels, bucket_size, norm;" in msg and "'qsgd'" not in msg
    assert "the state's are process_group, seed, warmup_steps, nonfinite, exchange" in msg
    with pytest.raises(TypeError, match="QSGDState got unexpected keyword argument.*'stream'"):
        lt.QSGDState(stream=1)
    with pytest.raises(TypeError, match=r"'levels'; its quantizer's keywords are clip_factor;"):
        lt.TernGradState(levels=3)
    assert lt.RotationState(levels=3, norm="l2").compressor_kwargs == {"norm": "l2", "levels": 3}


# -- rule_scale (issue 15.4): what the lazy rule's history holds -------------------------
# "average" (default, the paper's rule in observed quantities) pushes ||g^k||^2 of the
# average the hook returned; "worker" pushes this rank's own gradient ||g_m^k||^2
# (docs/ddp.md, "Per-worker scale"). The tests capture the bucket before and after the hook
# and check the rule's right-hand side sum_d xi_d h_{k-d} (xi_d = ck / min(k, D)).


def _run(scale: str, steps: int, D: int, ck: float) -> tuple[LAQState, list[Any]]:
    """Train a tiny model; per step the bucket's squared norm before and after the hook and
    the rule's right-hand side after the step."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    ddp = DDP(model)
    # error_feedback=0: the history then holds the raw gradients' norms (with the feedback,
    # those of g + w r, the gradient the rank quantizes).
    state = LAQState(warmup_steps=0, block_size=8, D=D, ck=ck, rule_scale=scale, error_feedback=0)
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
    assert LAQState().rule.scale == "worker"  # the default (docs/ddp.md, "Per-worker scale")
    assert LAQState(rule_scale="average").rule.scale == "average"  # the paper's rule
    # The messages name the keyword the caller wrote (they said "scale", "bits").
    with pytest.raises(ValueError, match="rule_scale must be one of"):
        LAQState(rule_scale="local")
    with pytest.raises(TypeError, match="rule_scale"):
        LAQState(rule_scale=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="downlink_bits must be an integer in"):
        LAQState(downlink_bits=0)


def test_stale_cap_default_and_bad_values() -> None:
    assert LAQState().rule.stale_cap == 4.0  # docs/ddp.md, "Stale cap"
    assert LAQState(stale_cap=None).rule.stale_cap is None  # the paper's rule
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="stale_cap"):
            LAQState(stale_cap=bad)
    with pytest.raises(TypeError, match="stale_cap"):
        LAQState(stale_cap="4")  # type: ignore[arg-type]
    # The cap per tensor (docs/ddp.md, "Stale cap per tensor"): off by default, needs a cap.
    assert LAQState().rule.stale_cap_scope == "gradient"
    assert LAQState(stale_cap_scope="tensor").rule.stale_cap_scope == "tensor"
    with pytest.raises(
        ValueError, match=r"stale_cap_scope must be one of \('gradient', 'tensor'\)"
    ):
        LAQState(stale_cap_scope="layer")
    with pytest.raises(ValueError, match='stale_cap_scope="tensor" needs a stale_cap'):
        LAQState(stale_cap=None, stale_cap_scope="tensor")


def test_stale_cap_formula() -> None:
    """``capped``: upload iff ``||dQ||^2 > stale_cap ||g_m||^2`` (never without a cap)."""
    from laqcore.torch._rule import LazyRule

    args = dict(D=10, ck=1.2, err_coef=1.0, noise_weight=0.0, noise_decay=0.9, t_bar=10)
    args.update(safeguard_patience=5, safeguard_growth=4.0)
    rule = LazyRule(**args, stale_cap=4.0)  # type: ignore[arg-type]
    assert not rule.capped(4.0, 1.0)  # at the cap: may skip
    assert rule.capped(4.0 + 1e-9, 1.0)
    assert rule.capped(1.0, 0.0)  # a zero gradient keeps no nonzero stale contribution
    assert not LazyRule(**args).capped(1e30, 1.0)  # type: ignore[arg-type]


def test_streak_penalty_default_and_bad_values() -> None:
    assert LAQState().rule.streak_penalty == 0.0  # the paper's rule
    assert LAQState(streak_penalty=0.75).rule.streak_penalty == 0.75
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="streak_penalty"):
            LAQState(streak_penalty=bad)
    with pytest.raises(TypeError, match="streak_penalty"):
        LAQState(streak_penalty="1")  # type: ignore[arg-type]
    assert "streak_penalty=0.75" in repr(LAQState(streak_penalty=0.75))


def test_streak_penalty_formula() -> None:
    """``rhs(c)``: the first term divided by ``(c + 1)^p`` after ``c`` skips; ``p = 0`` and
    ``c = 0`` leave it as it is; an old pickle's rule has no penalty."""
    from laqcore.torch._rule import LazyRule

    args = dict(D=10, ck=1.2, err_coef=1.0, noise_weight=0.0, noise_decay=0.9, t_bar=10)
    args.update(safeguard_patience=5, safeguard_growth=4.0)
    rule = LazyRule(**args, streak_penalty=0.75)  # type: ignore[arg-type]
    plain = LazyRule(**args)  # type: ignore[arg-type]
    for r in (rule, plain):
        for v in (3.0, 5.0, 4.0):
            r.history.push(v)
    base = plain.rhs()
    assert base > 0.0 and rule.rhs() == base and rule.rhs(0) == base
    for c in (1, 2, 7):
        assert rule.rhs(c) == pytest.approx(base / (c + 1) ** 0.75, rel=1e-15)
        assert plain.rhs(c) == base
    d = rule.__dict__.copy()
    del d["streak_penalty"]
    old = LazyRule.__new__(LazyRule)
    old.__setstate__(d)
    assert old.rhs(3) == base


def test_streak_penalty_shortens_streaks_of_skips(group: None) -> None:
    """A slowly drifting gradient that the rule skips for whole streaks (up to ``t_bar``)
    under ``p = 0``; with a steep penalty a rank uploads after at most one skip."""

    def uploads(p: float) -> tuple[int, int]:
        module = _Dot(64, torch.float32)
        ddp = DDP(module)
        state = LAQState(warmup_steps=0, bits=8, streak_penalty=p, stale_cap=None)
        ddp.register_comm_hook(state, laq_hook)
        rng = np.random.default_rng(5)
        base = rng.standard_normal(64)
        for k in range(30):
            g = base * (1.0 + 0.001 * k) + 1e-4 * rng.standard_normal(64)
            ddp.zero_grad()
            ddp(torch.tensor(g, dtype=torch.float32)).backward()
        st = state.stats()
        return int(st["uploads"]), int(st["uploads_skipped"])

    up0, skip0 = uploads(0.0)
    up50, skip50 = uploads(50.0)
    assert up0 + skip0 == up50 + skip50 == 30
    assert up0 <= 4  # the first upload and the clock's (t_bar = 10)
    assert 14 <= up50 <= 16 and skip50 <= 15  # uploads and single skips alternate


# -- grad_scaler: the state lives in unscaled units --------------------------------------
# Under a GradScaler the buckets carry s x the gradient and s halves after every overflow.
# Without the scaler the state (q_prev, aggregate, history, residuals) keeps the units of the
# scale it was recorded at, so after a back-off every stale contribution returns at twice its
# value; with it, the run must be exactly the unscaled run, multiplied by s on the way out.


class _Scaler:
    """A stand-in GradScaler: ``get_scale()`` is whatever the test sets."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def get_scale(self) -> float:
        return self.scale


# Powers of two, as GradScaler's (growth 2, back-off 0.5): a back-off, a growth, two more.
_SCALES = [2.0**16] * 4 + [2.0**15] * 3 + [2.0**16] * 2 + [2.0**14] * 5


def _scaled_run(
    make: Any, scales: list[float] | None, attach: bool
) -> tuple[list[np.ndarray], dict[str, float]]:
    """The hook's output for one gradient sequence g_k, fed as ``scales[k] g_k`` (or as g_k
    if ``scales`` is None) and divided by the scale again."""
    dim = 96
    module = _Dot(dim, torch.float32)
    ddp = DDP(module)
    state, hook = make()
    scaler = _Scaler(1.0)
    if attach:
        state.grad_scaler = scaler
    ddp.register_comm_hook(state, hook)
    rng = np.random.default_rng(3)
    base = rng.standard_normal(dim)
    outs = []
    for k, s in enumerate(scales or [1.0] * len(_SCALES)):
        # A slowly drifting gradient with small noise: LAQ skips some uploads.
        g = base * (1.0 + 0.05 * k) + 0.02 * rng.standard_normal(dim)
        scaler.scale = s
        ddp.zero_grad()
        ddp(torch.tensor(g * s, dtype=torch.float32)).backward()
        outs.append(module.theta.grad.numpy().astype(np.float64) / s)
    return outs, state.stats()


def _laq() -> tuple[LAQState, Any]:
    return LAQState(warmup_steps=1, bits=4, block_size=8), laq_hook


def _qsgd() -> tuple[QSGDState, Any]:
    from laqcore.torch import qsgd_hook

    return QSGDState(warmup_steps=1), qsgd_hook


@pytest.mark.parametrize("make", [_laq, _qsgd], ids=["laq", "qsgd"])
def test_grad_scaler_makes_the_run_scale_free(group: None, make: Any) -> None:
    plain, plain_stats = _scaled_run(make, None, attach=False)
    scaled, scaled_stats = _scaled_run(make, _SCALES, attach=True)
    for k, (a, b) in enumerate(zip(plain, scaled)):
        np.testing.assert_array_equal(b, a, err_msg=f"step {k}")  # exact: powers of two
    for key in ("uploads", "uploads_skipped", "bytes_sent", "bytes_received"):
        assert scaled_stats[key] == plain_stats[key], key
    if make is _laq:
        assert plain_stats["uploads_skipped"] > 0  # stale contributions were in play
        # The same scales without the scaler attached: after the first back-off the stale
        # part of the aggregate is in the old units, and the outputs differ.
        unaware, _ = _scaled_run(make, _SCALES, attach=False)
        assert any(not np.array_equal(u, a) for u, a in zip(unaware, plain))


def test_grad_scaler_at_a_constant_scale_changes_nothing(group: None) -> None:
    const = [2.0**16] * len(_SCALES)
    unaware, s1 = _scaled_run(_laq, const, attach=False)
    aware, s2 = _scaled_run(_laq, const, attach=True)
    for a, b in zip(unaware, aware):
        np.testing.assert_array_equal(a, b)
    assert s1["uploads"] == s2["uploads"] and s1["bytes_sent"] == s2["bytes_sent"]


def _dot_ddp(state: LAQState, module: Any = None) -> tuple[Any, Any]:
    module = _Dot(16, torch.float32) if module is None else module
    ddp = DDP(module)
    ddp.register_comm_hook(state, laq_hook)
    return module, ddp


def test_grad_scaler_bad_values_and_nonfinite_warning(group: None) -> None:
    with pytest.raises(TypeError, match="grad_scaler must be a torch.amp.GradScaler"):
        LAQState(grad_scaler="fp16")
    _, ddp = _dot_ddp(LAQState(warmup_steps=0, block_size=8, grad_scaler=_Scaler(0.0)))
    with pytest.raises(ValueError, match=r"get_scale\(\) returned 0.0"):
        ddp(torch.ones(16)).backward()
    # A non-finite step without a scaler attached: dropped (as all-reduce) and warned once.
    state = LAQState(warmup_steps=0, block_size=8)
    module, ddp = _dot_ddp(state)
    bad = torch.ones(16)
    bad[3] = float("inf")
    with pytest.warns(RuntimeWarning, match="attach the scaler"):
        ddp(bad).backward()
    assert torch.isnan(module.theta.grad).all() and state.stats()["nonfinite_steps"] == 1
    ddp.zero_grad()
    ddp(bad).backward()  # no second warning (filterwarnings = error would raise)
    assert state.stats()["nonfinite_steps"] == 2


def test_grad_scaler_units_are_checked_on_resume(group: None) -> None:
    """A checkpoint records whether its vectors are unscaled; resuming it in the other units
    would be off by the loss scale, so the first step refuses (a pickled state drops the
    scaler, which belongs to the trainer, and must get it back)."""
    x = torch.linspace(-1.0, 1.0, 16)
    for saved_with in (True, False):
        state = LAQState(warmup_steps=1, block_size=8)
        if saved_with:
            state.grad_scaler = _Scaler(2.0**8)
        _, ddp = _dot_ddp(state)
        for _ in range(3):
            ddp.zero_grad()
            ddp(x).backward()
        sd = state.state_dict()
        assert sd["unscaled"] is saved_with
        restored = LAQState(warmup_steps=1, block_size=8)
        restored.load_state_dict(sd)
        unpickled = pickle.loads(pickle.dumps(state))
        assert unpickled.grad_scaler is None
        for resumed in (restored, unpickled):
            if not saved_with:
                resumed.grad_scaler = _Scaler(2.0**8)
            module, ddp = _dot_ddp(resumed)
            match = "recorded with a grad_scaler" if saved_with else "without a grad_scaler"
            with pytest.raises(ValueError, match=match):
                ddp(x).backward()
            resumed.grad_scaler = _Scaler(2.0**8) if saved_with else None  # the right units
            _, ddp = _dot_ddp(resumed, module)  # a failed backward leaves DDP's reducer broken
            ddp(x).backward()
            assert resumed.stats()["steps"] == 3


def test_lazy_downlink_auto_follows_the_world_size(group: None, monkeypatch: Any) -> None:
    """``"auto"`` is the default: no lazy downlink on 1-2 ranks, 0.25 from 3 on."""
    from laqcore.torch.laq_state import auto_lazy_downlink

    assert [auto_lazy_downlink(n) for n in (1, 2, 3, 4, 64)] == [0.0, 0.0, 0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="world_size"):
        auto_lazy_downlink(0)
    state = LAQState(lazy_downlink="auto", block_size=8)
    assert state.lazy_downlink == "auto" and state.effective_lazy_downlink == 0.0  # 1 rank
    assert LAQState(lazy_downlink=0.5).effective_lazy_downlink == 0.5
    _, ddp = _dot_ddp(state)
    ddp(torch.linspace(-1.0, 1.0, 16)).backward()  # resolved when the exchange is made
    assert state.stats()["steps"] == 1
    monkeypatch.setattr(LAQState, "world_size", property(lambda self: 4))
    # 4 ranks: with the two-phase exchange 0.25; "auto" takes the all-gather for a small
    # gradient (the size before the first step) and the two-phase exchange for a large one
    assert LAQState(exchange="two-phase").effective_lazy_downlink == 0.25
    assert LAQState().lazy_downlink == "auto" and LAQState().active_exchange == "all-gather"
    assert LAQState().effective_lazy_downlink == 0.0
    monkeypatch.setattr(LAQState, "numel", property(lambda self: 10**6))
    assert LAQState().active_exchange == "two-phase"
    assert LAQState().effective_lazy_downlink == 0.25
    assert LAQState(lazy_downlink=0).effective_lazy_downlink == 0.0  # the earlier default
    assert LAQState(lazy_downlink="auto", exchange="all-gather").effective_lazy_downlink == 0.0
    with pytest.raises(TypeError, match="lazy_downlink"):
        LAQState(lazy_downlink="fast")


def test_grad_scaler_attached_mid_run_is_refused(group: None) -> None:
    """Attaching the scaler after steps without it would mix units: the next step refuses
    before touching the state, and detaching it again lets the run go on."""
    state = LAQState(warmup_steps=0, block_size=8)
    module, ddp = _dot_ddp(state)
    x = torch.linspace(-1.0, 1.0, 16)
    ddp(x).backward()
    state.grad_scaler = _Scaler(2.0**8)
    ddp.zero_grad()
    with pytest.raises(ValueError, match="recorded without a grad_scaler"):
        ddp(x).backward()
    state.grad_scaler = None
    _, ddp = _dot_ddp(state, module)
    ddp(x).backward()
    assert state.stats()["steps"] == 2


def test_states_pickled_before_grad_scaler_are_in_scaled_units(group: None) -> None:
    """A state pickled before grad_scaler existed has no ``_unscaled``: with vectors it was
    recorded in the scaled units (attaching a scaler is refused, as for a checkpoint without
    "unscaled"); an empty one accepts either."""
    x = torch.linspace(-1.0, 1.0, 16)
    state = LAQState(warmup_steps=0, block_size=8)
    _, ddp = _dot_ddp(state)
    ddp(x).backward()
    for d, attachable in ((state.__getstate__(), False), (LAQState().__getstate__(), True)):
        for key in ("_grad_scaler", "_unscaled", "_scale", "_warned_nonfinite"):
            d.pop(key)
        old = LAQState.__new__(LAQState)
        old.__setstate__(d)
        old.grad_scaler = _Scaler(2.0**8)
        _, ddp = _dot_ddp(old)
        if attachable:
            ddp(x).backward()
            assert old.stats()["steps"] == 1
        else:
            with pytest.raises(ValueError, match="recorded without a grad_scaler"):
                ddp(x).backward()


@pytest.mark.parametrize(
    ("make", "setting", "value"),
    [
        (LAQState, "bits", 2),
        (LAQState, "block_size", 32),
        (LAQState, "exchange", "all-gather"),
        (LAQState, "downlink_bits", 2),
        (LAQState, "entropy", False),
        (LAQState, "lazy_downlink", 0.5),
        (QSGDState, "seed", 3),
        (QSGDState, "compressor_kwargs", {"levels": 4}),
        (lambda: __import__("laqcore.torch").torch.RotationState(), "exchange", "all-gather"),
    ],
)
def test_settings_are_fixed_once_the_state_is_built(make: Any, setting: str, value: Any) -> None:
    """Assigning ``state.bits = 2`` after construction used to be accepted and ignored (the
    uploader and exchange are built from the constructor's values, ``block_size="auto"``
    stayed at 4 bits' 256): now it raises, naming the fix, and changes nothing."""
    state = make()
    before = getattr(state, setting)
    with pytest.raises(AttributeError, match=rf"\.{setting} is fixed once the state is built"):
        setattr(state, setting, value)
    assert getattr(state, setting) == before
    # Unpickled states are sealed too.
    with pytest.raises(AttributeError, match="is fixed"):
        setattr(pickle.loads(pickle.dumps(state)), setting, value)


def test_the_process_group_can_be_given_until_the_first_step(group: None) -> None:
    """A pickled state comes back without its group; it may be given again before the hook
    runs, not after (its exchange is built in it)."""
    state = pickle.loads(pickle.dumps(LAQState(warmup_steps=0)))
    assert state.process_group is None
    state.process_group = dist.group.WORLD
    torch.manual_seed(0)
    ddp = DDP(torch.nn.Linear(3, 2))
    ddp.register_comm_hook(state, laq_hook)
    ddp(torch.randn(4, 3)).sum().backward()
    with pytest.raises(AttributeError, match="process_group is fixed once the hook has run"):
        state.process_group = None
    assert state.process_group is dist.group.WORLD
    # A state pickled when the group was a plain attribute unpickles without it.
    d = LAQState().__getstate__()
    d["process_group"] = d.pop("_process_group")
    old = LAQState.__new__(LAQState)
    old.__setstate__(d)
    assert old.process_group is None


def test_what_may_change_during_training_still_can() -> None:
    """The scaler is attached after construction by design; the warm-up length, the
    non-finite policy and the error-feedback weight are read at every step."""
    skip_without("cpu_grad_scaler")
    state = LAQState()
    state.grad_scaler = torch.amp.GradScaler("cpu")
    state.warmup_steps = 3
    state.error_feedback = 0.5
    state.rule.stale_cap = 1.0
    assert (state.warmup_steps, state.error_feedback, state.rule.stale_cap) == (3, 0.5, 1.0)


def test_rule_constants_built_into_the_state_refuse_assignment() -> None:
    """``state.rule.ck = 0`` (``D``, ``err_coef``) read back the new value while the hook kept
    using the old one (the history and the uploader's test are built from them); the other
    constants are read at every step and checked like the constructor's."""
    state = LAQState()
    for name in ("D", "ck", "err_coef"):
        with pytest.raises(AttributeError, match=rf"rule.{name} is fixed .* LAQState\({name}="):
            setattr(state.rule, name, 1)
    assert (state.rule.D, state.rule.ck, state.rule.err_coef) == (10, 1.2, 1.0)
    for name, bad in (("stale_cap", -1.0), ("t_bar", 0), ("noise_decay", 1.0), ("scale", "x")):
        with pytest.raises(ValueError, match=name):
            setattr(state.rule, name, bad)
    state.rule.t_bar, state.rule.streak_penalty = 20, 0.5
    assert (state.rule.t_bar, state.rule.streak_penalty) == (20, 0.5)
    copy_ = pickle.loads(pickle.dumps(state))
    with pytest.raises(AttributeError, match="rule.ck is fixed"):
        copy_.rule.ck = 0.0


@pytest.mark.parametrize(
    ("make", "name", "where"),
    [
        (LAQState, "stale_cap", r"state.rule.stale_cap = "),
        (LAQState, "streak_penalty", r"state.rule.streak_penalty = "),
        (LAQState, "rule_scale", r"state.rule.scale = "),
        (LAQState, "max_stale", r"state.rule.t_bar = "),
        (LAQState, "ck", r"fixed once the state is built: build a new LAQState\(ck="),
        (LAQState, "err_coef", r"build a new LAQState\(err_coef="),
        (LAQState, "lr", r"is ignored"),
        (QSGDState, "levels", r"build a new QSGDState\(levels="),
        (QSGDState, "bucket_size", r"build a new QSGDState\(bucket_size="),
    ],
)
def test_constructor_keywords_assigned_on_the_state_raise(make: Any, name: str, where: str) -> None:
    """``state.stale_cap = 1`` (or ``qsgd_state.levels = 3``) added an attribute nothing read:
    the run was the default's, without a word."""
    state = make()
    with pytest.raises(
        AttributeError, match=rf"{type(state).__name__}.{name} is not read .*{where}"
    ):
        setattr(state, name, 1)
    assert name not in state.__dict__


def test_a_raised_t_bar_is_the_one_in_force(group: None) -> None:
    """The clock is the hook's own: the uploader's test has none, so ``state.rule.t_bar``
    assigned between steps rules (raised from 2 to 100 here: no stale uploads follow)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    ddp = DDP(model)
    state = LAQState(warmup_steps=0, bits=4, block_size=8, ck=1e6, t_bar=2, stale_cap=None)
    ddp.register_comm_hook(state, laq_hook)
    x = torch.randn(8, 6)

    def steps(k: int) -> None:
        for _ in range(k):
            ddp.zero_grad()
            ddp(x).square().sum().backward()

    with pytest.warns(UserWarning, match="group of one rank"):
        steps(7)
    forced = state.stats()["stale_uploads"]
    assert forced >= 2  # every third step, with ck this large nothing else uploads
    state.rule.t_bar = 100
    steps(12)
    assert state.stats()["stale_uploads"] == forced


def test_a_group_of_one_rank_warns_once(group: None) -> None:
    """Nothing is sent in a group of one, yet the gradient is compressed: a user testing with
    one process would train differently from no hook without being told."""
    ddp = DDP(torch.nn.Linear(4, 2))
    ddp.register_comm_hook(QSGDState(warmup_steps=0), qsgd_hook)
    x = torch.randn(5, 4)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        for _ in range(3):
            ddp.zero_grad()
            ddp(x).sum().backward()
    one_rank = [w for w in got if "QSGDState runs in a group of one rank" in str(w.message)]
    assert len(one_rank) == 1 and one_rank[0].category is UserWarning


def test_a_state_pickled_with_a_scaler_before_its_first_step_refuses_to_run_without_it(
    group: None,
) -> None:
    """Pickled (or deep-copied) before any step, a state built with a GradScaler came back
    without it and trained in the scaled units, with no error until a back-off."""
    skip_without("cpu_grad_scaler")
    scaler = torch.amp.GradScaler("cpu")
    state = LAQState(warmup_steps=0, bits=4, block_size=8, grad_scaler=scaler)
    for copier in (lambda st: pickle.loads(pickle.dumps(st)), copy.deepcopy):
        for attach in (False, True):  # a DDP model whose hook raised cannot step again
            clone = copier(state)
            assert clone.grad_scaler is None
            if attach:
                clone.grad_scaler = scaler
            ddp = DDP(torch.nn.Linear(4, 2))
            ddp.register_comm_hook(clone, laq_hook)
            if not attach:
                with pytest.raises(ValueError, match="when it was pickled"):
                    ddp(torch.randn(3, 4)).sum().backward()
                continue
            ddp(torch.randn(3, 4)).sum().backward()  # attached again: it runs
            assert clone.iteration == 1
    fresh = pickle.loads(pickle.dumps(LAQState()))  # no scaler: nothing to refuse
    assert fresh._unscaled is None


def test_settings_read_at_every_step_are_checked_when_assigned() -> None:
    state = QSGDState()
    with pytest.raises(ValueError, match="warmup_steps"):
        state.warmup_steps = -1
    with pytest.raises(ValueError, match="nonfinite"):
        state.nonfinite = "ignore"
    assert (state.warmup_steps, state.nonfinite) == (1, "propagate")
    # A state pickled when both were plain attributes unpickles with them.
    d = state.__getstate__()
    d["warmup_steps"], d["nonfinite"] = d.pop("_warmup_steps"), d.pop("_nonfinite")
    old = QSGDState.__new__(QSGDState)
    old.__setstate__(d)
    assert (old.warmup_steps, old.nonfinite) == (1, "propagate")


def test_register_hook_warns_on_attention_with_the_default_stale_cap(group: None) -> None:
    import warnings

    from laqcore.torch import register_hook

    def tf() -> Any:
        torch.manual_seed(0)
        return DDP(torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True))

    with pytest.warns(
        UserWarning,
        match=r"attention layers \(MultiheadAttention\).*error_feedback=0\.5.*10\.2 on one seed"
        r".*pass bits=2.*stale_cap=1.*streak_penalty",
    ):
        state = register_hook(tf(), "laq")
    assert (state.rule.stale_cap, state.error_feedback) == (4.0, 0.5)  # not another default
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_hook(tf(), "laq", bits=2)  # the recommended setting: error feedback, no skips
        register_hook(tf(), "laq", error_feedback=0.5)  # the default's weight, chosen knowingly
        register_hook(tf(), "laq", error_feedback=1)  # any error feedback
        register_hook(tf(), "laq", stale_cap=1)  # the 4-bit alternative
        register_hook(tf(), "laq", stale_cap=4)  # the default, chosen knowingly
        register_hook(tf(), "laq", streak_penalty=0.75)  # the other remedy
        register_hook(tf(), "qsgd")  # no lazy rule
        register_hook(DDP(torch.nn.Linear(3, 2)), "laq")  # no attention
    with pytest.warns(UserWarning, match="attention layers"):
        register_hook(tf(), "laq", bits=2, error_feedback=0)  # 2 bits that skip again
    with pytest.warns(UserWarning, match=r"error_feedback=0\.0.*1\.5 to 37 points"):
        register_hook(tf(), "laq", error_feedback=0)  # the paper's LAQ, before session 40
    with pytest.warns(UserWarning, match="attention layers"):
        register_hook(tf(), "laq", bits=8)  # the default's weight at another width


def test_register_hook_accepts_a_compiled_ddp_model(group: None) -> None:
    import warnings

    from laqcore.torch import register_hook

    torch.manual_seed(0)
    ddp = DDP(torch.nn.Linear(3, 2))
    with warnings.catch_warnings():  # torch's own import-time deprecations
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled = torch.compile(ddp)  # not run: compiling happens at the first call
    state = register_hook(compiled, "qsgd")
    assert state.process_group is ddp.process_group
    ddp(torch.randn(4, 3)).sum().backward()  # the DDP inside runs the hook: registered there
    assert state.iteration == 1


def test_compression_ratio_before_during_and_after_warm_up(group: None) -> None:
    """No ratio before a compressed step (nan, not inf: nothing was compressed), the byte
    ratio once frames were sent, inf while every compressed step skipped."""
    state = LAQState(warmup_steps=1, block_size=8)
    assert math.isnan(state.stats()["compression_ratio"])
    _, ddp = _dot_ddp(state)
    x = torch.linspace(-1.0, 1.0, 16)
    ddp(x).backward()  # the warm-up all-reduce
    s = state.stats()
    assert s["warmup_steps_done"] == 1 and math.isnan(s["compression_ratio"])
    ddp.zero_grad()
    ddp(x).backward()  # first compressed step: always uploads
    s = state.stats()
    assert s["bytes_sent"] > 0 and s["compression_ratio"] == s["bytes_dense"] / s["bytes_sent"]
    state._counters["bytes_sent"] = 0  # as if the compressed steps had all skipped
    assert state.stats()["compression_ratio"] == math.inf


class _Clock:
    """A perf_counter that advances by the next of the given steps at each call."""

    def __init__(self, steps: list[float]) -> None:
        self.now, self.steps = 0.0, list(steps)

    def __call__(self) -> float:
        self.now += self.steps.pop(0) if self.steps else 1.0
        return self.now


@pytest.mark.parametrize(
    ("compress_s", "allreduce_s", "chosen", "allreduce_iterations"),
    [
        (1.0, 3.0, "compress", 1),  # all-reduce >= 1.5**2 x slower: one iteration decides
        (3.0, 1.0, "allreduce", 1),  # that much faster
        (1.0, 2.0, "compress", 2),  # 1.5-2.25x: two iterations
        (1.0, 1.2, "compress", 3),  # close: the median of `steps` iterations decides
        (1.2, 1.0, "allreduce", 3),
    ],
)
def test_link_probe_keeps_the_faster_mode(
    group: None, compress_s: float, allreduce_s: float, chosen: str, allreduce_iterations: int
) -> None:
    """Compressed medians first, then DDP's all-reduce one iteration at a time; a probe still
    running restarts after a resume, a decided one keeps its decision."""
    from laqcore.torch import _fallback

    probe = _fallback.LinkProbe(steps=3)
    assert probe.probing and not probe.all_reduce
    for t in (compress_s, 9.0, compress_s):  # the median ignores one outlier
        probe.compressed(t, None)
    assert probe.mode == "probe-allreduce" and probe.all_reduce
    assert probe.times == {"compress": compress_s}
    assert probe.state_dict()["mode"] == "probe-compress"  # not decided: starts again
    probe.next_iteration(None)  # the first all-reduce iteration: nothing timed yet
    done = 0
    while probe.probing:
        probe.all_reduced(allreduce_s)
        probe.next_iteration(None)
        done += 1
    assert (probe.mode, done) == (chosen, allreduce_iterations)
    assert probe.times == {"compress": compress_s, "allreduce": allreduce_s}
    again = _fallback.LinkProbe(steps=3)
    again.load_state_dict(probe.state_dict())
    assert again.mode == chosen and again.times == probe.times
    # stats()'s probe_allreduce_steps after a resume: was 0 (the timed list is not saved)
    assert again.allreduce_samples == probe.allreduce_samples == allreduce_iterations
    with pytest.raises(ValueError, match="probe mode"):
        again.load_state_dict({"mode": "fast"})
    with pytest.raises(ValueError, match="probe_steps must be >= 1"):
        _fallback.LinkProbe(steps=0)


def test_fallback_probe_does_not_time_dropped_steps(group: None) -> None:
    """A step dropped on a non-finite gradient moves no payload: the probe does not count it
    among its timed compressed iterations (an outside run under forced fp16 overflows had
    timed nothing else and decided on it)."""
    state = LAQState(warmup_steps=0, block_size=8, fallback=True, grad_scaler=_Scaler(1.0))
    _, ddp = _dot_ddp(state)
    bad = torch.ones(16)
    bad[3] = float("inf")
    for x in (bad, torch.ones(16), bad, torch.ones(16) * 2):
        ddp.zero_grad()
        ddp(x).backward()
    assert state.stats()["nonfinite_steps"] == 2
    assert state.fallback_decision == "probe-compress"
    assert len(state._probe._compressed) == 2  # the two finite steps only


def test_fallback_runs_ddps_all_reduce_once_it_is_faster(group: None, monkeypatch: Any) -> None:
    """LAQState(fallback=True): 8 timed compressed iterations, then DDP's all-reduce, which
    (the clock says) is clearly faster, so it stays: it returns the exact average; the
    decision survives a checkpoint and refuses a state without the option."""
    from laqcore.torch import _fallback, _state

    # every compressed iteration 3 s, the all-reduce 1 s (two clock reads each)
    monkeypatch.setattr(_state.time, "perf_counter", _Clock([0.0, 3.0] * 8 + [0.0, 1.0] * 4))
    state = LAQState(warmup_steps=0, block_size=8, fallback=True)
    assert "fallback=True" in repr(state) and state.fallback_decision == "probe-compress"
    module, ddp = _dot_ddp(state)
    for k in range(12):
        g = torch.linspace(-1.0, 1.0, 16) * (k + 1)
        ddp.zero_grad()
        ddp(g).backward()
        if k >= 8:  # DDP's all-reduce: the exact gradient (one rank)
            torch.testing.assert_close(module.theta.grad, g, rtol=0, atol=0)
    assert state.fallback_decision == "allreduce" == _fallback.ALLREDUCE
    assert state.probe_times == {"compress": 3.0, "allreduce": 1.0}
    s = state.stats()
    assert s["allreduce_steps"] == 4 and s["steps"] == 8 and s["probe_allreduce_steps"] == 1
    sd = state.state_dict()
    resumed = LAQState(warmup_steps=0, block_size=8, fallback=True)
    resumed.load_state_dict(sd)
    assert resumed.fallback_decision == "allreduce"
    with pytest.raises(ValueError, match="fell back to DDP's all-reduce"):
        LAQState(warmup_steps=0, block_size=8).load_state_dict(sd)
    with pytest.raises(AttributeError, match="fixed once the state is built"):
        state.fallback = False
    with pytest.raises(TypeError, match="fallback must be True or False"):
        LAQState(fallback="auto")  # type: ignore[arg-type]
    # every hook state takes it
    assert QSGDState(fallback=True).fallback_decision == "probe-compress"
    assert QSGDState().fallback_decision is None and "allreduce_steps" not in QSGDState().stats()


def test_ddps_python_reducer_is_refused_with_a_clear_error(group: None) -> None:
    """Under ``optimize_ddp = "python_reducer"`` (what compiled autograd needs) DDP calls a
    comm hook once per parameter with ``(grad, param)`` and ignores the future: the hooks
    failed with ``AttributeError: 'tuple' object has no attribute 'buffer'`` inside the
    layout. Now register_hook refuses such a DDP and the hook itself names the cause."""
    import torch._dynamo
    from torch._dynamo import compiled_autograd

    from laqcore.torch import qsgd_hook, register_hook

    with torch._dynamo.config.patch(optimize_ddp="python_reducer"):
        torch.manual_seed(0)
        ddp = DDP(torch.nn.Linear(3, 2))
        if not hasattr(ddp, "_use_python_reducer"):  # torch 2.1.2: the setting does nothing
            pytest.skip(f"the DDP of torch {torch.__version__} has no Python reducer")
        with pytest.raises(TypeError, match="python_reducer"):
            register_hook(ddp, "laq")
        ddp.register_comm_hook(QSGDState(), qsgd_hook)  # by hand: the hook says it
        loss = ddp(torch.randn(4, 3)).sum()
        with (
            compiled_autograd._enable(torch.compile(backend="eager")),
            pytest.raises(
                TypeError, match=r"qsgd_hook got a tuple, not a GradBucket.*python_reducer"
            ),
        ):
            loss.backward()


def _steps_with_a_checkpoint(
    make_model: Any,
    steps: int,
    *,
    register_at: int = 0,
    save_at: int | None = None,
    resume: dict[str, Any] | None = None,
    hook: str = "laq",
    **ddp_kwargs: Any,
) -> tuple[Any, dict[str, Any] | None]:
    """``steps`` SGD steps of ``DDP(make_model(), **ddp_kwargs)`` under ``hook``, registered
    before step ``register_at`` (later than 0: after plain DDP steps), from ``resume`` (a
    checkpoint of this function: model, optimizer and hook, registered before the first
    resumed step). Returns the model and the checkpoint taken after step ``save_at``."""
    from laqcore.torch import HOOKS

    torch.manual_seed(0)
    model = make_model()
    ddp = DDP(model, **ddp_kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = HOOKS[hook].state(warmup_steps=0)
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["opt"])
        state.load_state_dict(resume["hook"])
        start = resume["step"]
    inputs = torch.randn(steps, 4, 8, generator=torch.Generator().manual_seed(1))
    checkpoint = None
    for step in range(start, steps):
        if step == max(register_at, start):
            ddp.register_comm_hook(state, HOOKS[hook].hook)
        opt.zero_grad()
        ddp(inputs[step]).square().sum().backward()
        opt.step()
        if step + 1 == save_at:
            checkpoint = {
                "model": copy.deepcopy(model.state_dict()),
                "opt": copy.deepcopy(opt.state_dict()),
                "hook": state.state_dict(),
                "step": step + 1,
            }
    return model, checkpoint


def _first_step_order(make_model: Any, **ddp_kwargs: Any) -> list[int]:
    """Indices (in ``model.parameters()``) of the parameters in the order DDP's buckets hand
    them to a hook at the first step."""
    model = make_model()
    index = {p.data_ptr(): i for i, p in enumerate(model.parameters())}
    order: list[int] = []

    def record(bucket: Any) -> Any:
        order.extend(index[p.data_ptr()] for p in bucket.parameters())
        done: Any = torch.futures.Future()
        done.set_result(bucket.buffer())
        return done

    ddp = DDP(model, **ddp_kwargs)
    ddp.register_comm_hook(None, lambda _, bucket: record(bucket))  # DDP checks the name
    ddp(torch.randn(4, 8)).square().sum().backward()
    return order


def _skip_unless_reordered(make_model: Any, **ddp_kwargs: Any) -> None:
    """Skip where ``ddp_kwargs`` leave DDP's first-step parameter order as it is (torch 2.1.2
    with find_unused_parameters and a tiny bucket_cap_mb; torch 2.13 reverses it)."""
    if _first_step_order(make_model, **ddp_kwargs) == _first_step_order(make_model):
        pytest.skip(
            f"the DDP of torch {torch.__version__} keeps its bucket order under {ddp_kwargs}"
        )


def _three_layers() -> Any:
    return torch.nn.Sequential(*[torch.nn.Linear(8, 8, bias=False) for _ in range(3)])


def _mlp() -> Any:
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _same_parameters(a: Any, b: Any) -> bool:
    pa, pb = list(a.parameters()), list(b.parameters())
    return len(pa) == len(pb) and all(torch.equal(p, q) for p, q in zip(pa, pb))


@pytest.mark.parametrize("hook", ["laq", "qsgd"])
def test_a_hook_registered_after_plain_ddp_steps_resumes_exactly(group: None, hook: str) -> None:
    """A hook registered after some steps of plain DDP learns DDP's rebuilt bucket order
    (an MLP's parameters: biases first, last layer first); resumed, it is registered before
    the first backward pass and sees the constructor's order. The first backward after the
    load raised "another order than the run that saved this hook state" (advising
    bucket_cap_mb, find_unused_parameters and static_graph, none of which had changed), so
    such a run could not be resumed at all; now the state takes the saved order and the
    resumed run equals the uninterrupted one bit for bit (2 gloo ranks: the same)."""
    straight, checkpoint = _steps_with_a_checkpoint(_mlp, 8, register_at=2, save_at=5, hook=hook)
    assert checkpoint is not None
    resumed, _ = _steps_with_a_checkpoint(_mlp, 8, resume=checkpoint, hook=hook)
    assert _same_parameters(straight, resumed)


@pytest.mark.filterwarnings("ignore::UserWarning")  # FSDP's own (NO_SHARD at one rank, ...)
def test_fsdp_is_refused_with_a_clear_error(group: None) -> None:
    """FullyShardedDataParallel has a register_comm_hook too, for hooks of another kind
    (called with the flat gradient tensor, plus the output shard when it shards). A laqcore
    hook registered there was accepted, and the first backward failed inside FSDP with
    "laq_hook() takes 2 positional arguments but 3 were given" (FULL_SHARD, 2 gloo ranks)
    or with the text about DDP's Python reducer (NO_SHARD), and register_hook said only that
    the model was not DDP, as for a one-process trainer. Now all three name FSDP."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from laqcore.torch import HOOKS, make_hook, register_hook

    torch.manual_seed(0)
    fsdp = FSDP(torch.nn.Linear(3, 2), device_id=torch.device("cpu"))  # one rank: NO_SHARD
    with pytest.raises(TypeError, match="got a FullyShardedDataParallel model: laqcore's hooks"):
        register_hook(fsdp, "laq")
    try:
        fsdp.register_comm_hook(LAQState(), laq_hook)  # by hand: the hook says it
    except TypeError as err:  # torch 2.1.2's FSDP builds CUDA streams here
        if "Stream" not in str(err):
            raise
        pytest.skip(f"the FSDP of torch {torch.__version__} cannot register a hook on CPU")
    with pytest.raises(TypeError, match=r"laq_hook was called with \(Tensor\), not a GradBucket"):
        fsdp(torch.randn(4, 3)).sum().backward()
    for name in HOOKS:  # what FSDP's sharded strategies pass: (state, grad, output)
        state, hook = make_hook(name)
        with pytest.raises(TypeError, match=r"called with \(Tensor, Tensor\).*under FSDP"):
            hook(state, torch.zeros(4), torch.zeros(2))


def test_a_checkpoint_resumes_exactly_under_ddp_buckets_that_reorder_its_parameters(
    group: None,
) -> None:
    """The hook's parameter order is DDP's bucket layout at its first step, which
    find_unused_parameters and bucket_cap_mb change. Equal-sized layers then passed the size
    check and a resumed state silently gave each layer another one's quantizer memory and
    aggregate (2 gloo ranks: the losses after the resume left the uninterrupted run's); then
    such a resume was refused. Now the state recognises the saved parameters by their
    digests and takes the saved order: the resume is exact under either layout. Parameters
    it cannot tell apart (equal values) in another order are still refused."""
    reordered = {"find_unused_parameters": True, "bucket_cap_mb": 1e-4}
    straight, checkpoint = _steps_with_a_checkpoint(_three_layers, 6, save_at=3)
    assert checkpoint is not None
    for kwargs in (reordered, {}):
        resumed, _ = _steps_with_a_checkpoint(_three_layers, 6, resume=checkpoint, **kwargs)
        assert _same_parameters(straight, resumed), kwargs
    # The last two layers equal: which saved layer is which cannot be told from the values.
    _skip_unless_reordered(_three_layers, **reordered)
    model = _three_layers()
    with torch.no_grad():
        model[2].weight.copy_(model[1].weight)
    state = LAQState()
    ddp = DDP(model)
    ddp.register_comm_hook(state, laq_hook)
    ddp(torch.randn(4, 8)).square().sum().backward()
    ck = {"model": copy.deepcopy(model.state_dict()), "hook": state.state_dict()}
    ddp, state = DDP(_three_layers(), **reordered), LAQState()
    ddp.module.load_state_dict(ck["model"])
    state.load_state_dict(ck["hook"])
    ddp.register_comm_hook(state, laq_hook)
    with pytest.raises(ValueError, match="another order than the run that saved"):
        ddp(torch.randn(4, 8)).square().sum().backward()
    # A hook state saved at another step than the model proves nothing: no refusal.
    ddp, state = DDP(_three_layers(), **reordered), LAQState()
    state.load_state_dict(checkpoint["hook"])  # the model keeps its initial values
    ddp.register_comm_hook(state, laq_hook)
    ddp(torch.randn(4, 8)).square().sum().backward()
    assert state.iteration == 4


class _ThreeDtypes(torch.nn.Module):
    """An fp16 embedding, a bf16 linear layer, an fp32 LayerNorm and head: DDP makes one
    bucket per dtype, so each step's hook sees three buckets of three element sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8).half()
        self.fc = torch.nn.Linear(8, 12).bfloat16()
        self.norm = torch.nn.LayerNorm(12)
        self.head = torch.nn.Linear(12, 3)

    def forward(self, idx: Any) -> Any:
        h = self.fc(self.emb(idx).float().mean(1).bfloat16()).float()
        return self.head(torch.relu(self.norm(h)))


@pytest.mark.parametrize("name", ["laq", "qsgd", "terngrad", "rotation"])
def test_buckets_of_three_dtypes_in_one_step(group: None, name: str) -> None:
    """Mixed-dtype models (2 gloo ranks by hand: identical replicas, bit-identical resumes,
    docs/ddp.md): bytes_dense counts each bucket at its own element size, every gradient
    comes back in its parameter's dtype, and a resume from step 3 is the same run."""
    skip_without("gloo_bfloat16")
    from laqcore.torch import make_hook

    def run(steps: int, ck: dict[str, Any] | None = None) -> tuple[Any, Any, dict[str, Any]]:
        torch.manual_seed(0)
        model = _ThreeDtypes()
        ddp = DDP(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        state, hook = make_hook(name)
        ddp.register_comm_hook(state, hook)
        gen = torch.Generator().manual_seed(1)
        batches = [
            (torch.randint(0, 20, (6, 4), generator=gen), torch.randint(0, 3, (6,), generator=gen))
            for _ in range(6)
        ]
        saved: dict[str, Any] = {}
        if ck is not None:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            state.load_state_dict(ck["hook"])
        for k in range(6 - steps, 6):
            x, y = batches[k]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ddp(x), y).backward()
            assert all(p.grad.dtype == p.dtype for p in model.parameters())
            opt.step()
            if k == 2:
                saved = copy.deepcopy(
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "hook": state.state_dict(),
                    }
                )
        return model, state, saved

    model, state, saved = run(6)
    per_step = sum(p.numel() * p.element_size() for p in model.parameters())
    assert per_step == 20 * 8 * 2 + (8 * 12 + 12) * 2 + (2 * 12 + 12 * 3 + 3) * 4
    assert state.stats()["bytes_dense"] == per_step * (6 - state.warmup_steps)
    resumed, _, _ = run(3, saved)
    assert _same_parameters(model, resumed)


@pytest.mark.parametrize("name", ["laq", "qsgd"])
def test_a_checkpoint_of_the_other_exchange_is_refused(group: None, name: str) -> None:
    """LAQ keeps its aggregate in the two-phase exchange's replica: a two-phase checkpoint
    loaded into LAQState(exchange="all-gather") resumed from a zero aggregate while the last
    upload was kept, and its averages were silently wrong; the reverse failed at the first
    step with KeyError: 'rounds'. Now load_state_dict names both settings, for every hook."""
    from laqcore.torch import make_hook

    saved = {}
    for exchange in ("two-phase", "all-gather"):
        torch.manual_seed(0)
        ddp = DDP(torch.nn.Linear(5, 3))
        state, hook = make_hook(name, exchange=exchange, warmup_steps=0)
        ddp.register_comm_hook(state, hook)
        for _ in range(3):
            ddp(torch.randn(4, 5)).square().sum().backward()
        saved[exchange] = state.state_dict()
    for kind, other in [("two-phase", "all-gather"), ("all-gather", "two-phase")]:
        make_hook(name, exchange=kind)[0].load_state_dict(saved[kind])  # the same: loads
        fresh, _ = make_hook(name, exchange=other)
        with pytest.raises(
            ValueError, match=f"saved with exchange='{kind}' and this state has exchange='{other}'"
        ):
            fresh.load_state_dict(saved[kind])
        assert fresh.iteration == 0  # nothing changed


def test_a_checkpoint_of_other_parameter_sizes_names_the_cause(group: None) -> None:
    """A checkpoint resumed under DDP settings that reverse its bucket order (a resume with
    another bucket_cap_mb), the model not loaded yet, said only "saved for parameters of
    sizes [128, 16, 48, 3]... but this model's buckets hold [3, 16, 48, 128]...": now it
    names DDP's bucket settings; parameters of other sizes are another model."""

    def ddp_with_state(out: int = 3, seed: int = 1, **ddp_kwargs: Any) -> tuple[Any, LAQState]:
        torch.manual_seed(seed)  # the resumed models: not the saved values (not loaded yet)
        ddp = DDP(
            torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, out)), **ddp_kwargs
        )
        state = LAQState(warmup_steps=0)
        ddp.register_comm_hook(state, laq_hook)
        return ddp, state

    reordered = {"find_unused_parameters": True, "bucket_cap_mb": 1e-4}
    _skip_unless_reordered(lambda: ddp_with_state()[0].module, **reordered)
    ddp, saved = ddp_with_state(seed=0)
    ddp(torch.randn(4, 8)).square().sum().backward()
    for kwargs, match in [
        (
            reordered,
            r"sizes of the run that saved this hook state in another order \(saved: "
            r"\[128, 16, 48, 3\]; this model's buckets: \[3, 16, 48, 128\]\).*bucket_cap_mb",
        ),
        (
            {"out": 4},
            r"saved for other parameters \(saved: \[128, 16, 48, 3\]; this "
            r"model's buckets: \[128, 16, 64, 4\]\): load it into the model it was saved with",
        ),
    ]:
        ddp, state = ddp_with_state(**kwargs)
        state.load_state_dict(saved.state_dict())
        with pytest.raises(ValueError, match=match):
            ddp(torch.randn(4, 8)).square().sum().backward()


@pytest.mark.parametrize("exchange", ["two-phase", "all-gather"])
def test_stats_after_a_load_report_the_checkpoints_exchange_counters(
    group: None, exchange: str
) -> None:
    """Until a compressed step rebuilt the exchange after load_state_dict, stats() lacked
    the exchange's keys (received_*, rounds, wire_bytes), for the rest of the run when the
    resumed run's fallback had chosen DDP's all-reduce (2 gloo ranks)."""
    torch.manual_seed(0)
    ddp = DDP(torch.nn.Linear(5, 3))
    state = LAQState(exchange=exchange)
    ddp.register_comm_hook(state, laq_hook)
    for _ in range(3):
        ddp(torch.randn(4, 5)).square().sum().backward()
    fresh = LAQState(exchange=exchange)
    fresh.load_state_dict(state.state_dict())
    want = state.stats()
    assert ("received_uplink" in want) == (exchange == "two-phase")
    assert ("wire_bytes" in want) == (exchange == "all-gather")
    assert fresh.stats() == want


def test_one_bit_warns_and_other_widths_do_not() -> None:
    """bits=1 is accepted but warns: its grid {-R, +R} makes the quantization error larger
    than the innovation; it trains well behind 2 bits, and with error feedback (off by
    default at 1 bit since it diverged) not at all (docs/ddp.md, "Low bits")."""
    with pytest.warns(UserWarning, match=r"bits=1.*diverges"):
        state = LAQState(bits=1)
    assert state.bits == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for b in range(2, 9):
            assert LAQState(bits=b).bits == b


def test_skip_is_refused_with_a_grad_scaler() -> None:
    """nonfinite="skip" hides an overflow from the scaler, which never backs off: every
    later step overflows and is skipped, silently. Refused whichever is set second, on
    every hook state; each alone is accepted."""
    from laqcore.torch import QSGDState

    for make in (LAQState, QSGDState):
        with pytest.raises(ValueError, match="cannot be combined with a grad_scaler"):
            make(nonfinite="skip", grad_scaler=_Scaler(2.0**8))
        state = make(nonfinite="skip")
        with pytest.raises(ValueError, match="cannot be combined with a grad_scaler"):
            state.grad_scaler = _Scaler(2.0**8)
        assert state.grad_scaler is None and state.nonfinite == "skip"
        state = make(grad_scaler=_Scaler(2.0**8))
        with pytest.raises(ValueError, match="cannot be combined with a grad_scaler"):
            state.nonfinite = "skip"
        assert state.nonfinite == "propagate"
        state.nonfinite = "raise"  # the other policies stay available
        state.grad_scaler = None
        state.nonfinite = "skip"
