"""The lazy downlink of the two-phase LAQ exchange (laqcore.distributed.lazy_downlink).

At 2 and 4 gloo ranks, against a numpy recomputation of the owners' bookkeeping (exact
aggregate, replica, residual norms, the history of the averages and the decision of
docs/ddp.md, "Lazy downlink"): every rank returns the bit-identical average, a deferred round
moves no downlink and changes nothing, and the next publication carries what was deferred.
Through the DDP hook: replicas identical on every rank, a checkpoint resumes exactly, the
option off keeps today's exchange, bad values raise.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _dist_workers import ddp_runs  # noqa: E402
from _lazy_downlink_workers import (  # noqa: E402
    BITS,
    BLOCK,
    CK,
    DEPTH,
    DOWN_BITS,
    FACTOR,
    N_COORDS,
    ROUNDS,
    gradient,
    lazy_rounds,
    uploads_in,
)
from laqcore import laq_accumulate, laq_apply, laq_dequantize, laq_quantize  # noqa: E402
from laqcore.distributed import run_processes  # noqa: E402
from laqcore.distributed.exchange_codecs import LAQChunkCodec  # noqa: E402
from laqcore.distributed.lazy_downlink import LazyDownlink  # noqa: E402
from laqcore.distributed.two_phase import chunk_bounds  # noqa: E402
from laqcore.torch import LAQState  # noqa: E402

pytestmark = pytest.mark.distributed


@functools.cache
def _ranks(world: int) -> list[dict[str, Any]]:
    outs = run_processes(lazy_rounds, world, pg_timeout_s=30, deadline_s=240)
    return [o.result for o in outs]


def _reference(world: int) -> dict[str, Any]:
    """The owners' bookkeeping in one process, whole vectors (chunks end on blocks)."""
    bounds = chunk_bounds(N_COORDS, world, BLOCK)
    q_prev = [np.zeros(N_COORDS, np.float32) for _ in range(world)]
    exact = np.zeros(N_COORDS, np.float32)  # S = sum_m Q_m
    replica = np.zeros(N_COORDS, np.float32)  # S_hat
    history: list[float] = []
    outputs, published, gaps, pre = [], [], [], []
    for rnd in range(ROUNDS):
        gap = (exact - replica).astype(np.float64)
        resid = [np.linalg.norm(gap[s:e]) for s, e in bounds]
        if rnd > 0:  # ||g^{k-1}||^2, the average the previous round returned
            history.append(float(np.sum(replica.astype(np.float64) ** 2)) / world**2)
        recent = history[-DEPTH:]
        threshold = FACTOR * CK / max(len(recent), 1) * sum(recent)
        bound = list(resid)
        ups = [r for r in range(world) if uploads_in(rnd, r)]
        for r in ups:
            p = laq_quantize(gradient(r, rnd), q_prev[r], BITS, block_size=BLOCK)
            laq_apply(q_prev[r], p)
            dq = laq_dequantize(p).astype(np.float64)
            bound = [b + np.linalg.norm(dq[s:e]) for b, (s, e) in zip(bound, bounds)]
            laq_accumulate(exact, p)
        error_sq = sum(b * b for b in bound) / world**2
        publish = error_sq > 0 and error_sq > threshold
        pre.append(float(np.linalg.norm(exact - replica)))
        if publish:
            laq_apply(replica, laq_quantize(exact, replica, DOWN_BITS, block_size=BLOCK))
        published.append(publish)
        gaps.append(float(np.linalg.norm(exact - replica)))
        outputs.append((replica / np.float32(world)).tobytes())
    return {
        "outputs": outputs,
        "published": published,
        "exact": exact,
        "gaps": gaps,
        "pre": pre,
    }


@pytest.mark.parametrize("world", [2, 4])
def test_lazy_downlink_matches_the_owner_bookkeeping(world: int) -> None:
    ranks, ref = _ranks(world), _reference(world)
    # The pattern defers some rounds with uploads, and publishes again afterwards.
    defer = [k for k, p in enumerate(ref["published"]) if not p and k != 3]
    assert defer and ref["published"][0] and ref["published"][5]
    assert any(not ref["published"][k - 1] and ref["published"][k] for k in range(1, ROUNDS))
    for r, got in enumerate(ranks):
        assert got["outputs"] == ranks[0]["outputs"]  # bit-identical on every rank
        assert got["outputs"] == ref["outputs"]  # and the reference's, round by round
        s, e = got["bounds"][r]
        np.testing.assert_array_equal(got["owned"], ref["exact"][s:e])  # S_j kept exactly
        assert got["aborted"]
        assert got["lazy"]["deferred"] == len(defer)
    before = {"downlink_rounds": 0, "downlink_received": 0}
    for k, st in enumerate(ranks[0]["stats"]):
        moved = st["downlink_rounds"] - before["downlink_rounds"]
        assert moved == int(ref["published"][k])
        if not ref["published"][k]:  # nothing moved down, the replica did not change
            assert st["downlink_received"] == before["downlink_received"]
            assert k == 0 or ranks[0]["outputs"][k] == ranks[0]["outputs"][k - 1]
        before = st
    # What was deferred is not lost: a publication leaves the replica within the 6-bit
    # quantization error of the whole gap (deferred rounds included); a deferral keeps it.
    for k in range(ROUNDS):
        if ref["published"][k]:
            assert ref["gaps"][k] <= 0.05 * ref["pre"][k]
        else:
            assert ref["gaps"][k] == ref["pre"][k]


def test_bad_lazy_downlink_values_are_clear_errors() -> None:
    for bad, err in [(-1.0, ValueError), (float("nan"), ValueError), ("1", TypeError)]:
        with pytest.raises(err, match="lazy_downlink"):
            LAQState(lazy_downlink=bad)
    with pytest.raises(TypeError, match="lazy_downlink"):
        LAQState(lazy_downlink=True)
    with pytest.raises(ValueError, match="two-phase"):
        LAQState(lazy_downlink=1.0, exchange="all-gather")
    with pytest.raises(ValueError, match="lazy_downlink"):
        LazyDownlink(LAQChunkCodec(BITS, BLOCK, DOWN_BITS), 0.0, DEPTH, CK)
    assert LAQState(lazy_downlink=0).lazy_downlink == 0.0  # off: today's exchange


def _hook(world: int, runs: list[dict[str, Any]]) -> list[list[Any]]:
    outs = run_processes(ddp_runs, world, runs, pg_timeout_s=30, deadline_s=200)
    return [o.result for o in outs]


_LAZY = {"method": "laq", "kwargs": {"bits": 4, "lazy_downlink": 1.0}, "lr": 0.05}


@pytest.mark.parametrize("world", [2, 4])
def test_hook_replicas_identical_and_downlinks_deferred(world: int) -> None:
    res = _hook(world, [{**_LAZY, "steps": 20}])
    stats = [res[r][0]["stats"] for r in range(world)]
    for r in range(world):
        np.testing.assert_array_equal(res[r][0]["grads"], res[0][0]["grads"])
        np.testing.assert_array_equal(res[r][0]["params"], res[0][0]["params"])
        assert stats[r]["downlink_rounds"] == stats[0]["downlink_rounds"]
    assert 0 < stats[0]["downlink_rounds"] < stats[0]["rounds_with_uploads"]
    losses = res[0][0]["losses"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_hook_resume_with_lazy_downlink_is_exact() -> None:
    full = _hook(2, [{**_LAZY, "steps": 16, "checkpoint_at": 7}])
    ck = {**full[0][0]["checkpoint"], "hook": [full[r][0]["checkpoint"]["hook"] for r in range(2)]}
    assert "lazy_downlink" in ck["hook"][0]["exchange"]
    resumed = _hook(2, [{**_LAZY, "steps": 16, "resume_from": ck}])
    for r in range(2):
        np.testing.assert_array_equal(resumed[r][0]["grads"], full[r][0]["grads"][7:])
        np.testing.assert_array_equal(resumed[r][0]["params"], full[r][0]["params"])
        assert resumed[r][0]["stats"]["uploads"] == full[r][0]["stats"]["uploads"]
        # (the exchange's byte counters start again at a resume; the hook's do not)
        got, want = resumed[r][0]["stats"], full[r][0]["stats"]
        assert got["rounds_with_uploads"] - got["downlink_rounds"] > 0  # deferred after it
        assert want["rounds_with_uploads"] - want["downlink_rounds"] > 0
