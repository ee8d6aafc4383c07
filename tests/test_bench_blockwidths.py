"""The per-block width prototype of bench/bench_adaptive_blockwidths.py (issue 13.3): its
block quantizer against the library's, its allocation against the target and a brute force,
its frame size, and its injection into the simulator undone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import laqcore
import laqcore.laq as laq_module
from bench_scripts import bench_module


@pytest.fixture(scope="module")
def bw():
    return bench_module("bench_adaptive_blockwidths")


def test_each_block_is_laq_quantized_on_its_own_radius(bw):
    rng = np.random.default_rng(5)
    v = rng.standard_t(3, 70)  # blocks of 16: four full ones and a ragged one of 6
    err, radius, dq = bw._block_errors(v, 16)
    assert err.shape == (9, 5) and dq.shape == (9, 5, 16)
    for j in range(5):
        vj = v[16 * j : 16 * (j + 1)]
        assert radius[j] == np.abs(vj).max()
        np.testing.assert_array_equal(dq[0, j], 0.0)  # width 0: nothing sent
        assert err[0, j] == pytest.approx(float(np.sum(vj**2)))
        for b in range(1, 9):
            ref = laqcore.laq_dequantize(laqcore.laq_quantize(vj.astype(np.float32), None, b))
            got = dq[b, j, : vj.size]
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * radius[j])
            assert err[b, j] == pytest.approx(float(np.sum((got - vj) ** 2)), rel=1e-12)
            np.testing.assert_array_equal(dq[b, j, vj.size :], 0.0)  # the padding
    assert err[8].sum() < err[3].sum() < err[1].sum()


def test_allocation_meets_its_target_and_spends_bits_where_the_energy_is(bw):
    rng = np.random.default_rng(2)
    # three blocks of 8 whose scales differ by 10x each
    v = np.concatenate([s * rng.normal(size=8) for s in (10.0, 1.0, 0.1)])
    total = float(np.sum(v**2))
    for frac in (0.3, 0.05, 1e-3):
        widths, dq, bits = bw.allocate(v, 8, frac * total)
        assert float(np.sum((dq - v) ** 2)) <= frac * total
        assert widths[0] >= widths[1] >= widths[2]
        field = bw.WIDTH_FIELD_BITS
        assert bits == sum(field + (bw.RADIUS_BITS["f32"] + 8 * w if w else 0) for w in widths)
        # no allocation of the 9^3 meets the target with fewer bits by more than one
        # block's width step (the Lagrangian picks points of the lower convex hull)
        err, _, _ = bw._block_errors(v, 8)
        cost = [field + (bw.RADIUS_BITS["f32"] + 8 * b if b else 0) for b in range(9)]
        feasible = [
            sum(cost[b] for b in ws)
            for ws in itertools.product(range(9), repeat=3)
            if sum(err[b, j] for j, b in enumerate(ws)) <= frac * total
        ]
        assert min(feasible) <= bits <= min(feasible) + bw.RADIUS_BITS["f32"] + 8 * 8
    # a target the zero innovation meets sends no block; one no width meets sends 8 bits
    assert bw.allocate(v, 8, 2 * total)[0].tolist() == [0, 0, 0]
    assert bw.allocate(v, 8, 0.0)[0].tolist() == [8, 8, 8]


def test_injected_payload_moves_q_prev_and_counts_its_frame_exactly(bw):
    rng = np.random.default_rng(3)
    n = 100
    up = laqcore.lazy_state.LazyUploader(n, bits=4, rule=None)
    seen: list[np.ndarray] = []
    choose = bw._choose("rel", 0.05, 32, seen)
    g = rng.normal(size=n).astype(np.float32)
    with bw.block_widths():
        p = choose(up, g, 1.0)
        up.commit(p)
        agg = np.zeros(n, dtype=np.float32)
        laqcore.laq_accumulate(agg, p)
    np.testing.assert_array_equal(up.q_prev, p.dq)
    np.testing.assert_array_equal(agg, p.dq)
    assert p.err_sq <= 0.05 * float(np.sum(g.astype(np.float64) ** 2)) * (1 + 1e-6)
    widths = seen[0]
    bits = sum(
        bw.WIDTH_FIELD_BITS + (bw.RADIUS_BITS["f32"] + b * m if b else 0)
        for b, m in zip(widths, [32, 32, 32, 4])
    )
    ref = laqcore.laq_quantize(g, None, 1)
    assert p.nbytes == ref.nbytes - ref.body_nbytes + -(-bits // 8)
    assert laq_module._accumulate is bench_module("laq_prototypes").PAPER_ACCUMULATE


def test_log8_radii_round_up_by_less_than_an_eighth_of_an_octave(bw):
    rng = np.random.default_rng(9)
    vb = rng.standard_t(2, (40, 16)) * np.exp(rng.normal(size=(40, 1)) * 3)
    vb[3] = 0.0  # a block of zeros keeps radius 0
    exact = np.abs(vb).max(axis=1)
    r = bw.block_radii(vb, "log8")
    assert r[3] == 0.0 and r.max() == exact.max()
    live = exact > 0
    assert np.all(r[live] >= exact[live])
    assert exact[live].min() > exact.max() * 2.0**-31  # within e's 0..255
    assert np.all(r[live] < exact[live] * 2 ** (1 / 8))
    np.testing.assert_array_equal(bw.block_radii(vb, "f32"), exact)
    # the block quantizer stays on its grid with the larger radius (no code past the top)
    err, radius, dq = bw._block_errors(vb.reshape(-1), 16, "log8")
    np.testing.assert_array_equal(radius, r)
    assert np.all(np.abs(dq) <= radius[None, :, None] * (1 + 1e-12))


def test_three_bit_width_field_never_sends_width_seven_and_log2_radii_round_up(bw):
    rng = np.random.default_rng(4)
    v = rng.normal(size=640) * np.repeat(np.exp(rng.normal(size=20) * 2), 32)
    total = float(np.sum(v**2))
    used = set()
    for frac in np.geomspace(1e-4, 0.5, 25):  # all widths 8 meet 1e-4
        widths, dq, bits = bw.allocate(v, 32, frac * total, "log2", width_bits=3)
        assert float(np.sum((dq - v) ** 2)) <= frac * total
        used |= set(widths.tolist())
        nonzero = widths > 0
        assert bits == 3 * 20 + np.sum(bw.RADIUS_BITS["log2"] + 32 * widths[nonzero])
    assert 7 not in used and {0, 8} <= used  # the loosest target sends nothing somewhere
    exact = np.abs(v.reshape(20, 32)).max(axis=1)
    r = bw.block_radii(v.reshape(20, 32), "log2")
    floor = exact.max() * 2**-7.5  # e = 15, the field's largest
    inside = exact > floor
    assert np.all(r >= exact)
    assert np.all(r[inside] < exact[inside] * 2**0.5)
    np.testing.assert_allclose(r[~inside], floor)


def test_ternary_width_one_is_the_nearest_of_minus_r_zero_r_five_trits_a_byte(bw):
    rng = np.random.default_rng(6)
    v = rng.normal(size=45)  # blocks of 16: 16, 16, 13
    err, radius, dq = bw._block_errors(v, 16, "f32", ternary=True)
    for j, m in enumerate((16, 16, 13)):
        vj = v[16 * j : 16 * j + m]
        levels = radius[j] * np.array([-1.0, 0.0, 1.0])
        nearest = levels[np.abs(vj[:, None] - levels[None, :]).argmin(axis=1)]
        np.testing.assert_allclose(dq[1, j, :m], nearest, rtol=1e-12)
        assert err[1, j] == pytest.approx(float(np.sum((nearest - vj) ** 2)))
    plain = bw._block_errors(v, 16, "f32")[2]
    np.testing.assert_array_equal(dq[2:], plain[2:])  # the other widths are unchanged
    total = float(np.sum(v**2))
    for frac in (0.9, 0.6, 0.3):
        widths, got, bits = bw.allocate(v, 16, frac * total, "f32", 4, ternary=True)
        assert float(np.sum((got - v) ** 2)) <= frac * total
        sizes = (16, 16, 13)
        per = [
            4 + (32 + (8 * -(-m // 5) if b == 1 else b * m) if b else 0)
            for b, m in zip(widths, sizes)
        ]
        assert bits == sum(per)
