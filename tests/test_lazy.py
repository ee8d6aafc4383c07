from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import laqcore
import reference as ref
from laqcore.lazy_state import LazyUploader


# --- squared_distance ------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 7, 1000, 2**20 + 3])
def test_squared_distance_matches_reference(rng, n):
    a = rng.standard_normal(n).astype(np.float32)
    b = (rng.standard_normal(n) * 2).astype(np.float32)
    if n == 0:  # empty vectors are refused like everywhere else
        with pytest.raises(ValueError, match="a must not be empty"):
            laqcore.squared_distance(a, b)
        return
    assert laqcore.squared_distance(a, b) == pytest.approx(ref.squared_distance(a, b), rel=1e-12)
    assert laqcore.squared_distance(a, a) == 0.0


def test_squared_distance_thread_identity(rng):
    a = rng.standard_normal(2**20 + 3).astype(np.float32)
    b = rng.standard_normal(2**20 + 3).astype(np.float32)
    values = []
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            values.append(laqcore.squared_distance(a, b))
    assert values[0] == values[1] == values[2]


def test_squared_distance_bad_input():
    ok = np.ones(4, dtype=np.float32)
    for name in ("a", "b"):
        for bad in (np.nan, np.inf, -np.inf):
            x, y = ok.copy(), ok.copy()
            (x if name == "a" else y)[2] = bad
            with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
                laqcore.squared_distance(x, y)
    with pytest.raises(ValueError, match="a has length 4 but b has length 3"):
        laqcore.squared_distance(ok, ok[:3])
    with pytest.raises(TypeError, match="b must be a floating-point array"):
        laqcore.squared_distance(ok, np.ones(4, dtype=np.int64))
    with pytest.raises(TypeError, match="a must be a floating-point array"):
        laqcore.squared_distance(np.array(["x"] * 4), ok)
    with pytest.raises(ValueError, match="a must be a 1-D array"):
        laqcore.squared_distance(np.ones((2, 2), dtype=np.float32), ok)
    with pytest.raises(ValueError, match="b must be contiguous"):
        laqcore.squared_distance(ok, np.ones(8, dtype=np.float32)[::2])


# --- segment_squares (the DDP hook's stale cap per tensor) ------------------------------------
def test_segment_squares_matches_reference_and_squared_distance(rng):
    from laqcore import _core

    n = 2**20 + 37  # segments over several reduction blocks, empty and one-element ones
    a = rng.standard_normal(n).astype(np.float32)
    b = (rng.standard_normal(n) * 0.5).astype(np.float32)
    cuts = np.sort(rng.integers(0, n, 9))
    offsets = np.array([0, 0, 1, 1, *cuts, 2**15, n], dtype=np.int64)
    offsets[4:-1] = np.sort(offsets[4:-1])
    offsets = np.maximum.accumulate(offsets)
    dist, norm = _core.lazy.segment_squares(a, b, offsets)
    want_dist, want_norm = ref.segment_squares(a, b, offsets)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-12)
    np.testing.assert_allclose(norm, want_norm, rtol=1e-12)
    for j, (s, e) in enumerate(zip(offsets[:-1], offsets[1:])):
        if e > s:  # each segment's distance is squared_distance's, bit for bit
            assert dist[j] == laqcore.squared_distance(a[s:e], b[s:e])
        else:
            assert dist[j] == norm[j] == 0.0
    for threads in (2, 7):  # the same bits for any thread count
        with laqcore.num_threads(threads):
            again = _core.lazy.segment_squares(a, b, offsets)
        np.testing.assert_array_equal(again[0], dist)
        np.testing.assert_array_equal(again[1], norm)


# --- add_scaled (the DDP hook's error feedback, g + w r) --------------------------------------
@pytest.mark.parametrize("weight", [0.5, 1.0, 0.7, 0.3])
def test_add_scaled_matches_reference_and_numpy(rng, weight):
    from laqcore import _core

    n = 3001  # the element-by-element reference is slow; the block split is tested below
    g = rng.standard_normal(n).astype(np.float32)
    r = (rng.standard_normal(n) * 1e3).astype(np.float32)
    r[:4] = [1e-40, -1e-42, 3e38, 0.0]  # subnormals, a large value, zero
    out = g.copy()
    assert _core.lazy.add_scaled(out, r, weight) is None
    np.testing.assert_array_equal(out.view(np.uint32), ref.add_scaled(g, r, weight).view(np.uint32))
    want = g.copy()
    want += np.multiply(r, weight, dtype=np.float32)  # the numpy code the kernel replaced
    np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


def test_add_scaled_is_blocked_and_thread_independent(rng):
    from laqcore import _core

    n = 2**20 + 5  # several reduction blocks, a ragged last one
    g = rng.standard_normal(n).astype(np.float32)
    r = rng.standard_normal(n).astype(np.float32)
    want = g + np.multiply(r, 0.7, dtype=np.float32)
    for threads in (1, 2, 7):
        out = g.copy()
        with laqcore.num_threads(threads):
            _core.lazy.add_scaled(out, r, 0.7)
        np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))


def test_add_scaled_bad_input():
    from laqcore import _core

    ok = np.ones(6, dtype=np.float32)
    with pytest.raises(ValueError, match="inout has length 6 but x has length 5"):
        _core.lazy.add_scaled(ok.copy(), ok[:5], 0.5)
    for bad in (float("nan"), float("inf"), 1e300):  # 1e300 is inf in float32
        with pytest.raises(ValueError, match="weight must be finite"):
            _core.lazy.add_scaled(ok.copy(), ok, bad)
    with pytest.raises(TypeError):  # float32 exactly, no silent conversion
        _core.lazy.add_scaled(ok.astype(np.float64), ok, 0.5)
    with pytest.raises(TypeError):
        _core.lazy.add_scaled(ok.copy(), ok.astype(np.float64), 0.5)
    frozen = ok.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="inout"):
        _core.lazy.add_scaled(frozen, ok, 0.5)
    _core.lazy.add_scaled(ok[:0].copy(), ok[:0], 0.5)  # an empty gradient: nothing to add
    assert (ok == 1.0).all()


# --- add_scaled_difference (the hook's gather with error feedback, g + w (g'_prev - q_prev)) --
@pytest.mark.parametrize("weight", [0.5, 1.0, 0.7, 0.3])
def test_add_scaled_difference_matches_reference_and_numpy(rng, weight):
    from laqcore import _core

    n = 3001
    g = rng.standard_normal(n).astype(np.float32)
    a = (rng.standard_normal(n) * 1e3).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    a[:5] = [1e-40, -1e-42, 3e38, 0.0, -3e38]  # subnormals, values whose difference overflows
    b[:5] = [-1e-40, 0.0, -3e38, -0.0, 3e38]
    out = np.full(n, np.nan, dtype=np.float32)
    assert _core.lazy.add_scaled_difference(out, g, a, b, weight) is None
    want = ref.add_scaled_difference(g, a, b, weight)
    np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))
    with np.errstate(over="ignore"):
        r = a - b  # the numpy code the kernel replaced: r = g' - q_prev, then g + w r
        numpy_way = g + np.multiply(r, weight, dtype=np.float32)
    np.testing.assert_array_equal(out.view(np.uint32), numpy_way.view(np.uint32))
    # The same as the two kernels it fuses: r by numpy, then add_scaled.
    two_pass = g.copy()
    with np.errstate(over="ignore"):
        _core.lazy.add_scaled(two_pass, a - b, weight)
    np.testing.assert_array_equal(out.view(np.uint32), two_pass.view(np.uint32))


def test_add_scaled_difference_in_place_blocked_and_thread_independent(rng):
    from laqcore import _core

    n = 2**20 + 5  # several blocks, a ragged last one
    g, a, b = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    want = g + np.multiply(a - b, 0.7, dtype=np.float32)
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            out = np.empty_like(g)
            _core.lazy.add_scaled_difference(out, g, a, b, 0.7)
            np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32))
            inout = g.copy()  # out may be x itself (the gathered gradient, loss-scaled runs)
            _core.lazy.add_scaled_difference(inout, inout, a, b, 0.7)
            np.testing.assert_array_equal(inout.view(np.uint32), want.view(np.uint32))
    same = a.copy()  # or a itself: each element is read before it is written
    _core.lazy.add_scaled_difference(same, g, same, b, 0.7)
    np.testing.assert_array_equal(same.view(np.uint32), want.view(np.uint32))


def test_add_scaled_difference_bad_input():
    from laqcore import _core

    ok = np.ones(6, dtype=np.float32)
    f = _core.lazy.add_scaled_difference
    for name, args in (
        ("x", (ok[:5], ok, ok)),
        ("a", (ok, ok[:5], ok)),
        ("b", (ok, ok, ok[:5])),
    ):
        with pytest.raises(ValueError, match=f"out has length 6 but {name} has length 5"):
            f(ok.copy(), *args, 0.5)
    for bad in (float("nan"), float("inf"), -1e300):
        with pytest.raises(ValueError, match="weight must be finite"):
            f(ok.copy(), ok, ok, ok, bad)
    for i in range(4):  # float32 exactly, no silent conversion
        args = [ok.copy(), ok, ok, ok]
        args[i] = args[i].astype(np.float64)
        with pytest.raises(TypeError):
            f(*args, 0.5)
    frozen = ok.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        f(frozen, ok, ok, ok, 0.5)
    buf = np.zeros(12, dtype=np.float32)  # a shifted overlap would read overwritten elements
    with pytest.raises(ValueError, match="out must be a itself or not overlap it"):
        f(buf[1:7], ok, buf[0:6], ok, 0.5)
    with pytest.raises(ValueError, match="out must be x itself or not overlap it"):
        f(buf[0:6], buf[3:9], ok, ok, 0.5)
    assert not buf.any()  # refused before writing
    f(ok[:0].copy(), ok[:0], ok[:0], ok[:0], 0.5)  # empty: nothing to do


def test_segment_squares_bad_input():
    from laqcore import _core

    ok = np.ones(6, dtype=np.float32)
    good = np.array([0, 2, 6], dtype=np.int64)
    cases = [
        (np.array([], dtype=np.int64), "at least one value"),
        (np.array([1, 6], dtype=np.int64), "must start at 0"),
        (np.array([0, 4, 2, 6], dtype=np.int64), r"nondecreasing, but offsets\[2\] = 2"),
        (np.array([0, 2, 5], dtype=np.int64), "must end at the vectors' length 6, got 5"),
        (np.array([0, 2, 7], dtype=np.int64), "must end at the vectors' length 6, got 7"),
    ]
    for offsets, match in cases:
        with pytest.raises(ValueError, match=match):
            _core.lazy.segment_squares(ok, ok, offsets)
    with pytest.raises(ValueError, match="a has length 6 but b has length 5"):
        _core.lazy.segment_squares(ok, ok[:5], good)
    with pytest.raises(TypeError):  # float32 and int64 exactly, no silent conversion
        _core.lazy.segment_squares(ok.astype(np.float64), ok, good)
    with pytest.raises(TypeError):
        _core.lazy.segment_squares(ok, ok, good.astype(np.int32))
    for name in ("a", "b"):  # the index is the vectors', not the segment's
        x, y = ok.copy(), ok.copy()
        (x if name == "a" else y)[4] = np.nan
        with pytest.raises(ValueError, match=f"{name} contains NaN or Inf \\(first at index 4\\)"):
            _core.lazy.segment_squares(x, y, good)


def test_squared_distance_large_values_do_not_overflow():
    a = np.array([3e38, -3e38], dtype=np.float32)
    assert laqcore.squared_distance(a, -a) == pytest.approx(2 * (6e38) ** 2, rel=1e-6)


@pytest.mark.parametrize("n", [1, 7, 1000, 2**20 + 3])
def test_squared_distance_float64(rng, n):
    a = rng.standard_normal(n)
    b = a + rng.standard_normal(n) * 1e-9  # steps far below float32 resolution of a
    expected = ref.squared_distance(a, b)
    assert expected > 0
    assert laqcore.squared_distance(a, b) == pytest.approx(expected, rel=1e-12)
    # mixed precision: the float32 vector is widened, never the float64 one narrowed
    a32 = a.astype(np.float32)
    assert laqcore.squared_distance(a32, b) == pytest.approx(
        ref.squared_distance(a32, b), rel=1e-12
    )
    values = []
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            values.append(laqcore.squared_distance(a, b))
    assert values[0] == values[1] == values[2]


def test_squared_distance_float64_errors():
    ok = np.ones(3)
    with pytest.raises(ValueError, match="b contains NaN or Inf"):
        laqcore.squared_distance(ok, np.array([1.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"\|\|a - b\|\|\^2 overflows float64"):
        laqcore.squared_distance(np.array([1e200]), np.array([-1e200]))
    with pytest.raises(OverflowError, match="overflows float64"):  # a range error, not input
        laqcore.squared_distance(np.array([1e200]), np.array([-1e200]))
    with pytest.raises(ValueError, match="a has length 3 but b has length 2"):
        laqcore.squared_distance(ok, ok[:2])
    h = laqcore.IterateHistory()
    with pytest.raises(ValueError, match=r"\|\|theta_new - theta_old\|\|\^2 overflows"):
        h.push_iterates(np.array([1e200]), np.array([-1e200]))
    assert h.count == 0


# --- IterateHistory: official LAQ schedule --------------------------------------------------
def test_hand_computed_small_history():
    # D = 3, ck = 0.8: xi = 0.8 / min(k, 3) over the min(k, 3) most recent differences.
    h = laqcore.IterateHistory(D=3)
    assert h.weighted_sum() == 0.0
    h.push(1.0)
    assert h.weighted_sum() == 0.8 * 1.0
    h.push(2.0)
    assert h.weighted_sum() == pytest.approx(0.4 * (2.0 + 1.0))
    h.push(3.0)
    assert h.weighted_sum() == pytest.approx(0.8 / 3 * (3.0 + 2.0 + 1.0))
    h.push(4.0)  # the first difference drops out
    assert h.weighted_sum() == pytest.approx(0.8 / 3 * (4.0 + 3.0 + 2.0))
    np.testing.assert_array_equal(h.recent(), [4.0, 3.0, 2.0])
    np.testing.assert_allclose(h.weights(), [0.8 / 3] * 3)
    # rhs = (1 / (alpha^2 M^2)) * me
    assert h.rhs(alpha=0.5, num_workers=2) == pytest.approx(0.8 / 3 * 9.0 / (0.25 * 4))
    assert h.count == 4
    assert h.D == 3
    assert h.num_terms == 3


def test_matches_official_laq_loop_exactly(rng):
    # Bit-for-bit against a literal transcription of LAQ.py's `me` loop, warm-up included.
    diffs = list(rng.exponential(size=40) * 10.0 ** rng.integers(-6, 3, size=40))
    h = laqcore.IterateHistory()  # D = 10, ck = 0.8
    assert h.weighted_sum() == ref.official_laq_me([])
    for k in range(1, len(diffs) + 1):
        h.push(diffs[k - 1])
        assert h.weighted_sum() == ref.official_laq_me(diffs[:k]), f"k = {k}"
        alpha, m = 0.02, 10
        assert h.rhs(alpha, m) == (1 / (alpha**2 * m**2)) * ref.official_laq_me(diffs[:k])


def test_rhs_with_a_tiny_alpha_is_the_quotient_not_nan():
    """alpha^2 M^2 underflowed below alpha ~ 1e-154: rhs was inf * 0 = NaN on an empty or
    all-zero history (and inf where the quotient is finite), and every lazy algorithm's
    run with such an alpha raised "rhs must be finite, got nan" mid-run."""
    h = laqcore.IterateHistory(D=3)
    assert h.rhs(1e-300, 3) == 0.0  # nothing pushed
    h.push(0.0)
    assert h.rhs(1e-300, 3) == 0.0
    h.push(1e-310)  # me = 0.4 * 1e-310; alpha^2 M^2 = 9e-320 (subnormal)
    exact = Fraction(h.weighted_sum()) / (Fraction(1e-160) ** 2 * 9)
    assert h.rhs(1e-160, 3) == pytest.approx(float(exact), rel=1e-15)
    h.push(1.0)  # a true quotient beyond the double range is inf, not NaN
    assert h.rhs(1e-300, 3) == float("inf")
    assert h.rhs(0.02, 3) == (1 / (0.02**2 * 3**2)) * h.weighted_sum()  # official path


def test_warmup_weights():
    h = laqcore.IterateHistory(D=10)
    for k in range(1, 15):
        h.push(1.0)
        w = h.weights()
        used = min(k, 10)
        np.testing.assert_array_equal(w[:used], 0.8 * (1.0 / used))
        assert not w[used:].any()


def test_slaq_steady_state_matches_official(rng):
    diffs = list(rng.exponential(size=30))
    h = laqcore.UploadRule.slaq().make_history()
    for k in range(1, len(diffs) + 1):
        h.push(diffs[k - 1])
        if k >= 10:
            assert h.weighted_sum() == ref.official_slaq_me_steady(diffs[:k]), f"k = {k}"
        else:  # documented: LAQ warm-up over the min(k, D - 1) most recent differences
            terms = min(k, 9)
            expected = 0.0
            for d in range(terms):
                expected = expected + 0.8 * (1.0 / k) * diffs[k - 1 - d]
            assert h.weighted_sum() == expected


def test_explicit_weights_lag_style():
    # LAG: fixed xi_d = 1/D, missing history counts as zero.
    h = laqcore.IterateHistory(D=4, xi=0.25)
    h.push(8.0)
    assert h.weighted_sum() == 2.0
    h.push(4.0)
    assert h.weighted_sum() == 0.25 * 4.0 + 0.25 * 8.0
    h2 = laqcore.IterateHistory(D=3, xi=[0.5, 0.25, 0.125])
    for v in (1.0, 2.0, 4.0, 8.0):
        h2.push(v)
    assert h2.weighted_sum() == 0.5 * 8.0 + 0.25 * 4.0 + 0.125 * 2.0
    np.testing.assert_array_equal(h2.weights(), [0.5, 0.25, 0.125])
    h3 = laqcore.IterateHistory(D=3, xi=[0.5, 0.25, 0.125], num_terms=2)
    for v in (1.0, 2.0, 4.0, 8.0):
        h3.push(v)
    assert h3.weighted_sum() == 0.5 * 8.0 + 0.25 * 4.0


def test_push_iterates_and_clear(rng):
    h = laqcore.IterateHistory(D=2)
    theta64 = np.linspace(0, 1, 10)
    assert h.push_iterates(theta64 + 1e-10, theta64) == pytest.approx(10 * 1e-20, rel=1e-5)
    h.clear()
    a = rng.standard_normal(100).astype(np.float32)
    b = rng.standard_normal(100).astype(np.float32)
    d = h.push_iterates(a, b)
    assert d == laqcore.squared_distance(a, b)
    np.testing.assert_array_equal(h.recent(), [d])
    with pytest.raises(ValueError, match="theta_new contains NaN or Inf"):
        h.push_iterates(np.full(100, np.nan, np.float32), b)
    with pytest.raises(ValueError, match="theta_old contains NaN or Inf"):
        h.push_iterates(a, np.full(100, np.inf, np.float32))
    with pytest.raises(ValueError, match="theta_new has length 100 but theta_old has length 3"):
        h.push_iterates(a, b[:3])
    assert h.count == 1
    h.clear()
    assert h.count == 0
    assert h.weighted_sum() == 0.0
    assert h.recent().size == 0
    assert "IterateHistory(D=2" in repr(h)


def test_history_bad_input():
    with pytest.raises(ValueError, match="D must be >= 1"):
        laqcore.IterateHistory(D=0)
    with pytest.raises(TypeError, match="D must be an integer"):
        laqcore.IterateHistory(D=2.5)
    with pytest.raises(ValueError, match="xi must hold D = 3 weights"):
        laqcore.IterateHistory(D=3, xi=[0.1, 0.1])
    with pytest.raises(ValueError, match="xi weight must be >= 0"):
        laqcore.IterateHistory(D=2, xi=[0.1, -0.1])
    with pytest.raises(ValueError, match="xi weight must be finite"):
        laqcore.IterateHistory(D=2, xi=[0.1, float("nan")])
    with pytest.raises(TypeError, match="xi must be a float or a 1-D sequence"):
        laqcore.IterateHistory(D=2, xi=["a", "b"])
    with pytest.raises(ValueError, match="ck must be finite"):
        laqcore.IterateHistory(ck=float("inf"))
    with pytest.raises(ValueError, match="num_terms must be in"):
        laqcore.IterateHistory(D=3, num_terms=4)
    h = laqcore.IterateHistory(D=3)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="diff_sq must be"):
            h.push(bad)
    with pytest.raises(TypeError, match="diff_sq must be a real number"):
        h.push("1.0")
    for alpha in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="alpha must be"):
            h.rhs(alpha, 10)
    with pytest.raises(ValueError, match="num_workers must be >= 1"):
        h.rhs(0.1, 0)
    assert h.count == 0  # nothing was recorded by the failed calls


# --- the upload test --------------------------------------------------------------------------
def test_upload_rule_official_form():
    # upload iff innov >= rhs + 3 (e + ehat)   or   clock >= t_bar
    assert laqcore.laq_should_upload(1.6, 1.0, 0.1, 0.1, 0)  # 1.6 >= 1.6: equality uploads
    assert not laqcore.laq_should_upload(1.59, 1.0, 0.1, 0.1, 0)
    assert laqcore.laq_should_upload(0.0, 1.0, 0.1, 0.1, 100)  # forced by the clock
    assert not laqcore.laq_should_upload(0.0, 1.0, 0.1, 0.1, 99)
    assert not laqcore.laq_should_upload(0.0, 1.0, 0.1, 0.1, 10**6, t_bar=None)


def test_upload_rule_slaq_parameters():
    rule = laqcore.UploadRule.slaq()
    assert (rule.err_scale, rule.err_coef, rule.additive, rule.t_bar) == (0.5, 3.0, 0.2, 100)
    # official: me/(alpha^2 M^2) + 0.5*3*(e + ehat) + 0.2
    rhs, e, ehat = 0.7, 0.25, 0.15
    threshold = rhs + 0.5 * 3 * (e + ehat) + 0.2
    assert rule.should_upload(threshold, rhs, e, ehat, 0)
    assert not rule.should_upload(np.nextafter(threshold, 0), rhs, e, ehat, 0)
    laq = laqcore.UploadRule.laq()
    assert laq.make_history().num_terms == 10
    assert laq.err_scale == 1.0
    assert laq.additive == 0.0
    assert laq.should_upload(rhs + 3 * (e + ehat), rhs, e, ehat, 0)


def test_rule_drives_history_like_the_official_loop(rng):
    # One worker, synthetic norms: the decisions equal the official inequality evaluated on
    # the transcribed `me`.
    rule = laqcore.UploadRule.laq()
    h = rule.make_history()
    alpha, m = 0.02, 10
    clock, ehat = 0, 0.0
    diffs: list[float] = []
    for _ in range(60):
        innov, e = float(rng.exponential()), float(rng.exponential() * 0.01)
        me = ref.official_laq_me(diffs)
        official = innov >= (1 / (alpha**2 * m**2)) * me + 3 * (e + ehat) or clock == 100
        assert rule.should_upload(innov, h.rhs(alpha, m), e, ehat, clock) == official
        if official:
            clock, ehat = 0, e
        else:
            clock += 1
        d = float(rng.exponential() * 1e-4)
        diffs.append(d)
        h.push(d)


def test_t_bar_zero_uploads_every_iteration():
    # As --t-bar 0 and Params(t_bar=0): the clock forces every upload, even a zero innovation
    # right after the last one (clock 0); it used to be refused here while the CLI took it.
    assert laqcore.laq_should_upload(0.0, 1.0, 0.0, 0.0, 0, t_bar=0)
    uploader = LazyUploader(4, 4, laqcore.UploadRule(t_bar=0))
    grad = np.ones(4, dtype=np.float32)
    # the same gradient each time: a zero innovation against a huge threshold still uploads
    assert all(uploader.step(grad, rhs=1e30) is not None for _ in range(3))
    assert uploader.uploads == 3


def test_upload_rule_bad_input():
    with pytest.raises(ValueError, match="innov_sq must be finite"):
        laqcore.laq_should_upload(float("nan"), 1.0, 0.0, 0.0, 0)
    with pytest.raises(ValueError, match="err_sq must be >= 0"):
        laqcore.laq_should_upload(1.0, 1.0, -1.0, 0.0, 0)
    with pytest.raises(ValueError, match="clock must be >= 0"):
        laqcore.laq_should_upload(1.0, 1.0, 0.0, 0.0, -1)
    with pytest.raises(TypeError, match="clock must be an integer"):
        laqcore.laq_should_upload(1.0, 1.0, 0.0, 0.0, 1.5)
    with pytest.raises(TypeError, match="rhs must be a real number"):
        laqcore.laq_should_upload(1.0, "1", 0.0, 0.0, 0)
    with pytest.raises(ValueError, match="t_bar must be >= 0"):
        laqcore.laq_should_upload(1.0, 1.0, 0.0, 0.0, 0, t_bar=-1)
    with pytest.raises(ValueError, match="t_bar must be >= 0"):
        laqcore.UploadRule(t_bar=-1)
    with pytest.raises(ValueError, match="D must be >= 1"):
        laqcore.UploadRule(D=0)
    with pytest.raises(ValueError, match="err_scale must be >= 0"):
        laqcore.UploadRule(err_scale=-0.5)
    with pytest.raises(ValueError, match="D must be >= 2"):
        laqcore.UploadRule.slaq(D=1)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"D": 3}, {"D": 4, "xi": [0.5, 0.25, 0.125, 0.0625]}, {"D": 5, "num_terms": 4, "ck": 0.5}],
    ids=["laq", "D3", "explicit", "slaq-like"],
)
def test_history_state_round_trip(rng, kwargs):
    import copy
    import pickle

    h = laqcore.IterateHistory(**kwargs)
    for pushes in (0, 2, 13):
        while h.count < pushes:
            h.push(float(rng.exponential()))
        for clone in (
            laqcore.IterateHistory.from_state(h.state()),
            pickle.loads(pickle.dumps(h)),
            copy.deepcopy(h),
        ):
            assert clone.state() == h.state()
            assert clone.weighted_sum() == h.weighted_sum()
            # and it keeps evolving identically (warm-up weights depend on the true count)
            clone.push(1.5)
            h2 = copy.deepcopy(h)
            h2.push(1.5)
            assert clone.weighted_sum() == h2.weighted_sum()
            np.testing.assert_array_equal(clone.weights(), h2.weights())


def test_history_state_rejects_inconsistent_snapshots():
    state = laqcore.IterateHistory(D=3).state()
    with pytest.raises(ValueError, match="holds 2 differences, got 0"):
        laqcore.IterateHistory.from_state({**state, "count": 2})
    with pytest.raises(ValueError, match="stored difference must be >= 0"):
        laqcore.IterateHistory.from_state({**state, "recent": [-1.0], "count": 1})
    with pytest.raises(ValueError, match="lacks the key 'count'"):
        laqcore.IterateHistory.from_state({k: v for k, v in state.items() if k != "count"})
    with pytest.raises(ValueError, match="count must be >= 0"):
        laqcore.IterateHistory.from_state({**state, "count": -1})
