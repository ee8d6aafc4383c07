"""LazyUploader / LazyAggregate (python/laqcore/lazy_state.py) against the rule's formula,
the fused advance_iterate kernel against numpy, and their checkpoints' validation."""

from __future__ import annotations

import numpy as np
import pytest

import laqcore
import reference as ref
from laqcore import _core
from laqcore.lazy import UploadRule
from laqcore.lazy_state import LazyAggregate, LazyUploader


# --- advance_iterate ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 9, 2**16 + 5])
def test_advance_iterate_matches_reference(rng, dtype, n):
    old = rng.standard_normal(n).astype(dtype)
    new = (old + rng.standard_normal(n) * 1e-3).astype(dtype)
    expected = ref.lane_blocked_sum((new.astype(np.float64) - old.astype(np.float64)) ** 2)
    values = []
    for threads in (1, 2, 5):
        stored = old.copy()
        kernel = (
            _core.lazy.advance_iterate if dtype == np.float32 else _core.lazy.advance_iterate_f64
        )
        with laqcore.num_threads(threads):
            values.append(kernel(stored, new))
        np.testing.assert_array_equal(stored, new)  # the new iterate is stored
    assert values[0] == values[1] == values[2] == expected
    assert values[0] == laqcore.squared_distance(new, old)  # one rounding everywhere


def test_advance_iterate_bad_input():
    stored = np.zeros(4, np.float32)
    bad = np.array([0, 1, np.nan, 2], np.float32)
    with pytest.raises(ValueError, match="theta_new contains NaN or Inf"):
        _core.lazy.advance_iterate(stored, bad)
    with pytest.raises(ValueError, match="theta_old has length 4 but theta_new has length 3"):
        _core.lazy.advance_iterate(np.zeros(4, np.float32), np.zeros(3, np.float32))
    with pytest.raises(TypeError):
        _core.lazy.advance_iterate(np.zeros(4, np.float64), np.zeros(4, np.float32))
    same = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="different arrays"):
        _core.lazy.advance_iterate(same, same)


# --- LazyUploader --------------------------------------------------------------------------
def test_uploader_follows_the_rule_formula(rng):
    """Every decision equals laq_should_upload on the same numbers (first one forced)."""
    rule = UploadRule(t_bar=5)
    u = LazyUploader(50, 3, rule)
    q_prev, ehat, clock = np.zeros(50, np.float32), 0.0, 0
    g = rng.standard_normal(50).astype(np.float32)
    decisions = []
    for k in range(60):
        g = (g + 0.05 * rng.standard_normal(50)).astype(np.float32)
        rhs = float(rng.uniform(0, 2))
        expect_q = ref.laq_quantize(g, q_prev, 3)
        up = k == 0 or laqcore.laq_should_upload(
            expect_q["innov_sq"], rhs, expect_q["err_sq"], ehat, clock, t_bar=5
        )
        got = u.step(g, rhs)
        assert (got is not None) == up
        decisions.append(up)
        if up:
            q_prev, ehat, clock = expect_q["q_new"], expect_q["err_sq"], 0
        else:
            clock += 1
        np.testing.assert_array_equal(u.q_prev, q_prev)
        assert (u.err_hat_sq, u.clock) == (pytest.approx(ehat, rel=1e-12), clock)
    assert 0 < sum(decisions) < len(decisions)  # the rule both uploads and skips here


def test_uploader_without_rule_always_uploads(rng):
    u = LazyUploader(8, 2, None)
    for _ in range(3):
        assert u.step(np.zeros(8, np.float32), 0.0) is not None
    assert u.uploads == 3


def test_uploader_commit_takes_the_decoded_copy_only_if_identical(rng):
    u = LazyUploader(16, 4)
    p = u.propose(rng.standard_normal(16).astype(np.float32))
    decoded = laqcore.LAQPayload.from_bytes(p.to_bytes())
    u.commit(decoded)  # same wire content: accepted, err_hat from the proposal
    assert u.err_hat_sq == p.err_sq
    p2 = u.propose(rng.standard_normal(16).astype(np.float32))
    forged = laqcore.LAQPayload(p2.packed, p2.radius * 2, p2.bits, p2.n)
    with pytest.raises(ValueError, match="differs from the proposed one"):
        u.commit(forged)
    with pytest.raises(ValueError, match="rhs must be >= 0"):
        u.decide(p2, -1.0)


def test_uploader_state_dict_round_trip_and_validation(rng):
    u = LazyUploader(12, 4, UploadRule(t_bar=3))
    for _ in range(5):
        u.step(rng.standard_normal(12).astype(np.float32), 0.5)
    sd = u.state_dict()
    v = LazyUploader(12, 4, UploadRule(t_bar=3))
    v.load_state_dict(sd)
    g = rng.standard_normal(12).astype(np.float32)
    a, b = u.step(g, 0.5), v.step(g, 0.5)
    assert (a is None) == (b is None)
    np.testing.assert_array_equal(u.q_prev, v.q_prev)
    assert (u.clock, u.uploads, u.err_hat_sq) == (v.clock, v.uploads, v.err_hat_sq)

    def corrupt(**change):
        bad = dict(u.state_dict(), **change)
        fresh = LazyUploader(12, 4, UploadRule(t_bar=3))
        before = fresh.state_dict()
        with pytest.raises((ValueError, TypeError)) as info:
            fresh.load_state_dict(bad)
        after = fresh.state_dict()  # nothing changed on error
        np.testing.assert_array_equal(before["q_prev"], after["q_prev"])
        return str(info.value)

    q = u.state_dict()["q_prev"]
    nan_q = q.copy()
    nan_q[3] = np.nan
    assert "NaN" in corrupt(q_prev=nan_q)
    assert "12 values" in corrupt(q_prev=q[:-1])
    assert "float32" in corrupt(q_prev=q.astype(np.float64))
    assert "err_hat_sq" in corrupt(err_hat_sq=float("nan"))
    assert "clock" in corrupt(clock=-1)
    assert "bits" in corrupt(bits=5)
    assert "format" in corrupt(format="something else")
    missing = u.state_dict()
    del missing["uploads"]
    with pytest.raises(ValueError, match="lacks the keys"):
        LazyUploader(12, 4).load_state_dict(missing)


# --- LazyAggregate -------------------------------------------------------------------------
def test_aggregate_sums_payloads_and_tracks_iterates(rng):
    agg = LazyAggregate(30, UploadRule())
    expected = np.zeros(30, np.float32)
    for _ in range(4):
        p = laqcore.laq_quantize(rng.standard_normal(30).astype(np.float32), None, 4)
        agg.add(p)
        expected = expected + laqcore.laq_dequantize(p)
    np.testing.assert_array_equal(agg.aggregate, expected)
    thetas = [rng.standard_normal(30) for _ in range(4)]
    assert agg.observe(thetas[0]) is None
    diffs = [agg.observe(t) for t in thetas[1:]]
    assert diffs == [laqcore.squared_distance(b, a) for a, b in zip(thetas, thetas[1:])]
    assert agg.weighted_sum() == pytest.approx(ref.official_laq_me(diffs), rel=1e-15)
    assert agg.rhs(0.02, 10) == agg.history.rhs(0.02, 10)
    with pytest.raises(ValueError, match="delta has length 3"):
        LazyAggregate(4, UploadRule(), dtype=np.float64).add_dense(np.ones(3))


def test_aggregate_state_dict_round_trip_and_validation(rng):
    agg = LazyAggregate(6, UploadRule(), dtype=np.float64)
    for _ in range(4):
        agg.add_dense(rng.standard_normal(6))
        agg.observe(rng.standard_normal(6))
    other = LazyAggregate(6, UploadRule(), dtype=np.float64)
    other.load_state_dict(agg.state_dict())
    theta = rng.standard_normal(6)
    assert other.observe(theta) == agg.observe(theta)
    assert other.weighted_sum() == agg.weighted_sum()
    np.testing.assert_array_equal(other.aggregate, agg.aggregate)

    sd = agg.state_dict()
    sd["aggregate"] = sd["aggregate"][:-1]
    with pytest.raises(ValueError, match="6 values"):
        other.load_state_dict(sd)
    sd = agg.state_dict()
    sd["history"] = dict(sd["history"], D=5)
    with pytest.raises(ValueError, match="history D"):
        other.load_state_dict(sd)
    sd = agg.state_dict()
    sd["history"] = dict(sd["history"], recent=[-1.0] * len(sd["history"]["recent"]))
    with pytest.raises(ValueError, match="stored difference"):
        other.load_state_dict(sd)


def test_first_upload_is_forced_even_where_the_test_fails():
    g = np.array([1.0, 0.01, 0.01, 0.01], np.float32)  # 1 bit: dQ = (1, 1, 1, 1), large error
    u = LazyUploader(4, 1)
    p = u.propose(g)
    assert p.err_sq is not None
    assert not UploadRule().should_upload(p.innov_sq, 0.0, p.err_sq, 0.0, 0)
    assert u.decide(p, 0.0)
    u.commit(p)
    assert not u.decide(u.propose(g), 0.0)  # afterwards the rule decides
