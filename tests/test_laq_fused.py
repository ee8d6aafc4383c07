"""The fused apply + average (laq.hpp ``laq_accumulate_divide``, :func:`laqcore.laq.laq_apply_average`)
against the numpy reference: bit-identical for both radius kinds, ragged sizes, every SIMD
level and any thread count; bad input fails before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

import laqcore
import reference as ref
from laqcore import runtime
from laqcore.laq import laq_apply_average

REDUCE = 2**14  # kReduceBlock: larger blocks are cut into pieces
# (block_size or None for the global radius, n): ragged last blocks, n below one block,
# blocks of exactly and just above kReduceBlock, a global radius over several pieces.
CASES = [
    (8, 1),
    (8, 61),
    (64, 64 * 5 + 3),
    (256, 4099),
    (1000, 2500),
    (REDUCE + 8, 2 * REDUCE + 100),
    (None, 13),
    (None, 3 * REDUCE + 17),
]


def _inputs(rng: np.random.Generator, n: int, bits: int, bs: int | None) -> tuple:
    scale = np.exp(rng.uniform(-6, 3, size=n // 50 + 1)).repeat(50)[:n]
    grad = (rng.standard_normal(n) * scale).astype(np.float32)
    held = (rng.standard_normal(n) * 0.3 * scale).astype(np.float32)
    return laqcore.laq_quantize(grad, held, bits, block_size=bs), held


def _reference(p: laqcore.LAQPayload, held: np.ndarray, divisor: float) -> tuple:
    codes = ref.unpack_bits(p.packed, p.bits, p.n)
    if isinstance(p, laqcore.LAQBlockPayload):
        return ref.laq_apply_average(held, codes, p.radii, p.bits, p.block_size, divisor)
    return ref.laq_apply_average(held, codes, [p.radius], p.bits, p.n, divisor)


@pytest.mark.parametrize(("bs", "n"), CASES)
@pytest.mark.parametrize("bits", [1, 4, 8])
@pytest.mark.parametrize("divisor", [1, 2, 3, 7, 0.3])
def test_matches_reference_and_the_two_passes(rng, bs, n, bits, divisor):
    p, held = _inputs(rng, n, bits, bs)
    want_held, want_avg = _reference(p, held, divisor)
    got = held.copy()
    avg = np.full(n, np.nan, np.float32)
    laq_apply_average(got, p, divisor, avg)
    np.testing.assert_array_equal(got, want_held)
    np.testing.assert_array_equal(avg, want_avg)
    # What the exchange did before: laq_apply, then a separate float32 divide.
    two = held.copy()
    laqcore.laq_apply(two, p)
    assert two.tobytes() == got.tobytes()
    assert np.divide(two, np.float32(divisor)).tobytes() == avg.tobytes()


@pytest.mark.parametrize("divisor", [2, 4, -8, 0.25, 3, 2.0**-126, 2.0**127, 2.0**-149])
def test_power_of_two_shortcut_rounds_like_the_division(rng, divisor):
    # Powers of two with a normal reciprocal take a product (laq.cpp divide_range); results
    # in the subnormal range, and divisors whose reciprocal is not normal, must still equal
    # numpy's float32 divide bit for bit.
    n = 4099
    tiny = np.float32(np.finfo(np.float32).tiny)
    held = (rng.standard_normal(n) * tiny * rng.choice([1e-6, 1.0, 1e6, 1e30], n)).astype(
        np.float32
    )
    grad = held + (rng.standard_normal(n) * tiny).astype(np.float32)
    p = laqcore.laq_quantize(grad, held, 4, block_size=64)
    want_held, want_avg = _reference(p, held, divisor)
    got, avg = held.copy(), np.empty(n, np.float32)
    laq_apply_average(got, p, divisor, avg)
    assert got.tobytes() == want_held.tobytes()
    assert avg.tobytes() == want_avg.tobytes()
    if 2 <= abs(divisor) <= 8:  # some results are subnormal
        assert np.count_nonzero((avg != 0) & (np.abs(avg) < tiny)) > 0


def _fused(p: laqcore.LAQPayload, held: np.ndarray) -> tuple[bytes, bytes]:
    got, avg = held.copy(), np.empty_like(held)
    laq_apply_average(got, p, 3, avg)
    return got.tobytes(), avg.tobytes()


@pytest.mark.parametrize("bs", [256, REDUCE + 8, None])
def test_same_output_for_any_thread_count(rng, bs):
    p, held = _inputs(rng, 2**19 + 3, 4, bs)
    results = []
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            results.append(_fused(p, held))
    assert results[1] == results[0]
    assert results[2] == results[0]


@pytest.mark.parametrize("level", [lv for lv in runtime.simd_levels() if lv != "scalar"])
@pytest.mark.parametrize("bs", [8, 256, None])
def test_simd_levels_identical_to_scalar(rng, level, bs):
    p, held = _inputs(rng, 3 * 4104 + 13, 3, bs)
    with runtime.simd("scalar"):
        scalar = _fused(p, held)
    with runtime.simd(level):
        assert _fused(p, held) == scalar


def _bad_calls(rng: np.random.Generator) -> list:
    p, held = _inputs(rng, 100, 4, 16)
    out = np.zeros(100, np.float32)
    return [
        (TypeError, "payload must be a LAQPayload", (held, p.packed, 2, out)),
        (TypeError, "prev must have dtype float32", (held.astype(np.float64), p, 2, out)),
        (TypeError, "out must have dtype float32", (held, p, 2, out.astype(np.float64))),
        (TypeError, "out must be a numpy", (held, p, 2, list(out))),
        (ValueError, "prev has length 99", (held[:99], p, 2, out)),
        (ValueError, "out has length 101", (held, p, 2, np.zeros(101, np.float32))),
        (ValueError, "out must be a 1-D contiguous", (held, p, 2, np.zeros(200, np.float32)[::2])),
        (ValueError, "must not share memory", (held, p, 2, held)),
        (ValueError, "divisor must be nonzero", (held, p, 0, out)),
        (ValueError, "divisor must be nonzero", (held, p, 1e39, out)),
        (ValueError, "divisor", (held, p, float("nan"), out)),
        (ValueError, "divisor", (held, p, float("inf"), out)),
        (TypeError, "divisor", (held, p, "2", out)),
        (TypeError, "divisor", (held, p, True, out)),
    ]


def test_bad_input_is_refused_before_any_write(rng):
    for exc, match, (prev, payload, divisor, out) in _bad_calls(rng):
        before_prev = np.array(prev, copy=True) if isinstance(prev, np.ndarray) else None
        before_out = np.array(out, copy=True) if isinstance(out, np.ndarray) else None
        with pytest.raises(exc, match=match):
            laq_apply_average(prev, payload, divisor, out)
        if before_prev is not None:
            np.testing.assert_array_equal(prev, before_prev)
        if before_out is not None:
            np.testing.assert_array_equal(out, before_out)


def test_native_bindings_check_their_arguments(rng):
    core = laqcore._core.laq
    p, held = _inputs(rng, 100, 4, 16)
    out = np.zeros(100, np.float32)
    with pytest.raises(ValueError, match="out has length 99"):
        core.accumulate_divide_blocks(held, out[:99], p.packed, 100, 4, 16, p.radii, 2.0)
    with pytest.raises(ValueError, match="must not overlap"):
        core.accumulate_divide_blocks(held, held, p.packed, 100, 4, 16, p.radii, 2.0)
    with pytest.raises(ValueError, match="radii has 6 entries"):
        core.accumulate_divide_blocks(held, out, p.packed, 100, 4, 16, p.radii[:6], 2.0)
    with pytest.raises(ValueError, match="divisor must be finite and nonzero"):
        core.accumulate_divide_blocks(held, out, p.packed, 100, 4, 16, p.radii, 0.0)
    g = laqcore.laq_quantize(held, None, 4)
    with pytest.raises(ValueError, match="inout has length 99"):
        core.accumulate_divide(held[:99], out[:99], g.packed, 100, 4, g.radius, 2.0)
    before = held.copy()
    bad = p.radii.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="radius must be finite"):
        core.accumulate_divide_blocks(held, out, p.packed, 100, 4, 16, bad, 2.0)
    np.testing.assert_array_equal(held, before)


# -- laq_accumulate_all: several payloads added in one pass ------------------------------
def _payload_list(rng: np.random.Generator, n: int, bits: int, bs: int | None, k: int) -> list:
    return [_inputs(rng, n, bits, bs)[0] for _ in range(k)]


def _accumulate_reference(target: np.ndarray, ps: list) -> np.ndarray:
    parts = []
    for p in ps:
        codes = ref.unpack_bits(p.packed, p.bits, p.n)
        parts.append((codes, p.radii) if p.block_size else (codes, [p.radius]))
    first = ps[0]
    return ref.laq_accumulate_all(target, parts, first.bits, first.block_size or first.n)


@pytest.mark.parametrize(("bs", "n"), CASES)
@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_accumulate_all_matches_reference_and_one_call_each(rng, bs, n, bits, k):
    ps = _payload_list(rng, n, bits, bs, k)
    target = (rng.standard_normal(n) * 0.5).astype(np.float32)
    got = target.copy()
    laqcore.laq.laq_accumulate_all(got, ps)
    np.testing.assert_array_equal(got, _accumulate_reference(target, ps))
    one_by_one = target.copy()
    for p in ps:
        laqcore.laq_accumulate(one_by_one, p)
    assert one_by_one.tobytes() == got.tobytes()


@pytest.mark.parametrize("bs", [256, REDUCE + 8, None])
def test_accumulate_all_same_for_any_thread_count_and_simd_level(rng, bs):
    ps = _payload_list(rng, 2**18 + 5, 4, bs, 3)
    target = rng.standard_normal(2**18 + 5).astype(np.float32)

    def run() -> bytes:
        got = target.copy()
        laqcore.laq.laq_accumulate_all(got, ps)
        return got.tobytes()

    with laqcore.num_threads(1):
        want = run()
    for threads in (2, 7):
        with laqcore.num_threads(threads):
            assert run() == want
    for level in runtime.simd_levels():
        with runtime.simd(level):
            assert run() == want


def test_accumulate_all_refuses_bad_input_before_any_write(rng):
    ps = _payload_list(rng, 100, 4, 16, 2)
    other_bits = _inputs(rng, 100, 3, 16)[0]
    other_block = _inputs(rng, 100, 4, 32)[0]
    global_radius = _inputs(rng, 100, 4, None)[0]
    shorter = _inputs(rng, 96, 4, 16)[0]
    agg = np.zeros(100, np.float32)
    cases = [
        (TypeError, "payloads must be a list", (agg, ps[0])),
        (TypeError, "payload must be a LAQPayload", (agg, [ps[0], ps[1].packed])),
        (TypeError, "aggregate must have dtype float32", (agg.astype(np.float64), ps)),
        (ValueError, "aggregate has length 99", (agg[:99], ps)),
        (ValueError, r"payloads\[1\] has n=100, bits=3", (agg, [ps[0], other_bits])),
        (ValueError, r"payloads\[2\] has n=100, bits=4, block_size=32", (agg, [*ps, other_block])),
        (
            ValueError,
            r"payloads\[1\] has n=100, bits=4, block_size=None",
            (agg, [ps[0], global_radius]),
        ),
        (ValueError, r"payloads\[1\] has n=96", (agg, [ps[0], shorter])),
        (TypeError, "aggregate must be a numpy", ([0.0] * 100, [])),
    ]
    for exc, match, (target, payloads) in cases:
        with pytest.raises(exc, match=match):
            laqcore.laq.laq_accumulate_all(target, payloads)
        np.testing.assert_array_equal(agg, 0.0)
    laqcore.laq.laq_accumulate_all(agg, [])  # nothing to add
    np.testing.assert_array_equal(agg, 0.0)


def test_accumulate_all_native_checks_every_payload_first(rng):
    core = laqcore._core.laq
    ps = _payload_list(rng, 100, 4, 16, 3)
    agg = np.zeros(100, np.float32)
    bad = ps[2].radii.copy()
    bad[1] = np.inf
    with pytest.raises(ValueError, match="radius must be finite"):
        core.accumulate_all_blocks(
            agg, [p.packed for p in ps], 100, 4, 16, [*(p.radii for p in ps[:2]), bad]
        )
    np.testing.assert_array_equal(agg, 0.0)  # the first two were not added either
    with pytest.raises(ValueError, match="radii has 2 arrays for 3 payloads"):
        core.accumulate_all_blocks(
            agg, [p.packed for p in ps], 100, 4, 16, [p.radii for p in ps[:2]]
        )
    with pytest.raises(ValueError, match="packed buffer has"):
        core.accumulate_all_blocks(agg, [ps[0].packed[:-1]], 100, 4, 16, [ps[0].radii])
    g = _payload_list(rng, 100, 4, None, 2)
    with pytest.raises(ValueError, match="radius has 1 entries for 2 payloads"):
        core.accumulate_all(agg, [p.packed for p in g], 100, 4, np.ones(1, np.float32))
