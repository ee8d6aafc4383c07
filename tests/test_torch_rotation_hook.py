"""The rotation quantizer's DDP hook (laqcore.torch.RotationState, issue 13.2) on gloo.

The hook rotates every rank's flat gradient with the same random signs, exchanges QSGD codes
of the rotated vectors and inverse-rotates the average; the formula is in
python/laqcore/torch/compressor_hooks.py and docs/ddp.md.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from needs_torch import require_torch

torch = require_torch("the rotation DDP hook tests of tests/test_torch_rotation_hook.py")

from _dist_workers import ddp_runs  # noqa: E402
from laqcore.compressors import QSGDCompressor, RotationCompressor  # noqa: E402
from laqcore.distributed import run_processes  # noqa: E402
from laqcore.torch import RotationState  # noqa: E402

_N = 12 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3  # parameters of tests/_dist_workers.py's MLP
_PADDED = 512  # the rotated length


def _run(world: int, runs: list[dict]) -> list[list]:
    outs = run_processes(ddp_runs, world, runs, pg_timeout_s=30, deadline_s=150)
    return [o.result for o in outs]  # [rank][run]


def _frame_bytes(levels: int) -> int:
    """Bytes of one upload: QSGD codes of the 512 rotated coordinates (max norm)."""
    comp = QSGDCompressor(levels=levels, bucket_size=512, norm="max")
    return int(comp.compress(np.zeros(_PADDED, np.float32), step=0).nbytes)


@pytest.mark.distributed
@pytest.mark.parametrize("world", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_rotation_hook_trains_with_identical_replicas(world: int) -> None:
    steps = 25
    res = _run(
        world,
        [
            {"method": "none", "steps": steps, "kwargs": {}},
            {"method": "rotation", "steps": steps, "kwargs": {"seed": 3}},
            {"method": "rotation", "steps": steps, "kwargs": {"exchange": "all-gather"}},
        ],
    )
    ref = res[0][0]
    for k in (1, 2):
        run = res[0][k]
        # Warm-up (1 step) is the plain all-reduce; afterwards it trains like the reference.
        torch.testing.assert_close(run["grads"][:1], ref["grads"][:1], rtol=1e-5, atol=1e-7)
        assert np.mean(run["losses"][-5:]) < np.mean(run["losses"][:5])
        assert abs(run["losses"][-1] - ref["losses"][-1]) < 0.05 * ref["losses"][0]
        for r in range(world):
            np.testing.assert_array_equal(res[r][k]["params"], run["params"])  # DDP's contract
            s = res[r][k]["stats"]
            assert s["uploads"] == steps - 1 and s["uploads_skipped"] == 0
            assert s["bytes_sent"] == (steps - 1) * _frame_bytes(7)
            assert s["bytes_dense"] == (steps - 1) * 4 * _N
            assert s["bytes_received"] > 0
    # Different exchanges draw different noise but both stay near the reference.
    assert not np.array_equal(res[0][1]["params"], res[0][2]["params"])


@pytest.mark.distributed
@pytest.mark.distributed
def test_a_gradient_the_rotation_cannot_represent_is_dropped_on_every_rank() -> None:
    """Rank 0's gradient is finite but beyond the rotation's float32 range at step 3: its
    ``OverflowError`` must reach every rank through the exchange (as a non-finite gradient
    does), not stop rank 0 alone while rank 1 waits in the collectives."""
    base = {"method": "rotation", "steps": 4, "huge_at": (0, 3)}
    res = _run(
        2,
        [
            {**base, "kwargs": {}},
            {**base, "kwargs": {"nonfinite": "raise"}, "expect_error": True},
        ],
    )
    for r in range(2):
        run = res[r][0]
        assert np.isfinite(run["grads"][:3]).all() and np.isnan(run["grads"][3]).all()
        assert run["stats"]["nonfinite_steps"] == 1
        kind, text = res[r][1]
        assert kind == "NonFiniteGradientError", (kind, text)


def test_rotation_hook_is_unbiased_on_a_fixed_gradient() -> None:
    # lr = 0: each rank's gradient is the same every step, and the warm-up step (a plain
    # all-reduce) gives their exact mean g. The compressed steps are independent draws
    # (signs and rounding keyed on the iteration) with mean g if the hook is unbiased:
    # E||mean_k out_k - g||^2 = sum(var) / K, so a bias above ~sqrt(2 sum(var) / K) fails.
    k_steps, levels = 120, 2
    spec = {"method": "rotation", "steps": k_steps + 1, "lr": 0.0}
    res = _run(
        2,
        [
            {**spec, "kwargs": {"levels": levels, "seed": 1}},
            {**spec, "kwargs": {"levels": levels, "seed": 2, "exchange": "all-gather"}},
        ],
    )
    for run in res[0]:
        g = run["grads"][0].astype(np.float64)
        out = run["grads"][1:].astype(np.float64)
        np.testing.assert_array_equal(res[1][0]["params"], res[0][0]["params"])
        var = out.var(axis=0, ddof=1).sum()
        assert var > 1e-3 * np.sum(g**2)  # the rounding really is random
        err = np.sum((out.mean(axis=0) - g) ** 2)
        assert err <= 2.0 * var / k_steps, (err, var / k_steps)


def test_rotation_hook_upload_is_the_rotation_quantizers_codes() -> None:
    # Every rank's codes are those of get_compressor("rotation") with the signs of stream 0
    # and its own rounding stream; rank 0's are exactly stream 0's compressor output.
    g = np.random.default_rng(0).standard_t(3, 1000).astype(np.float32)
    st = RotationState(levels=5, seed=9)
    up = st._make(0).compress(st._encode(g, 4), step=4)
    want = RotationCompressor(levels=5, seed=9).compress(g, step=4)
    np.testing.assert_array_equal(up.packed, want.packed)
    np.testing.assert_array_equal(up.scales, want.scales)
    assert want.key == st._signs.sign_key(4) != st._signs.sign_key(5)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"levels": 0}, ValueError, "levels"),
        ({"levels": 128}, ValueError, "levels"),
        ({"levels": "4"}, TypeError, "levels"),
        ({"bucket_size": 0}, ValueError, "bucket_size"),
        ({"norm": "l1"}, ValueError, "norm"),
        ({"seed": -1}, ValueError, "seed"),
        ({"exchange": "ring"}, ValueError, "exchange"),
        ({"nonfinite": "ignore"}, ValueError, "nonfinite"),
        ({"warmup_steps": -1}, ValueError, "warmup_steps"),
        ({"clip_factor": 2.5}, TypeError, "clip_factor"),
        ({"entropy": True}, TypeError, "entropy"),
    ],
)
def test_rotation_state_rejects_bad_arguments_before_any_work(
    kwargs: dict, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        RotationState(**kwargs)


def test_rotation_state_pickles_without_its_group() -> None:
    st = pickle.loads(pickle.dumps(RotationState(process_group=object(), levels=3)))
    assert st.process_group is None
    assert st.compressor_kwargs == {"levels": 3, "norm": "max"}
