"""The zero-level grid prototype of bench/bench_adaptive_zero_grid.py (issue 13.3): its
quantizer against the explicit level table, and its injection into the simulator undone."""

from __future__ import annotations

import numpy as np
import pytest

import laqcore
import laqcore.laq as laq_module
from bench_scripts import bench_module


@pytest.fixture(scope="module")
def zg():
    return bench_module("bench_adaptive_zero_grid")


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_zero_grid_is_the_nearest_of_the_symmetric_levels(zg, bits):
    rng = np.random.default_rng(13)
    g = rng.standard_t(3, 301).astype(np.float32)
    prev = rng.normal(size=301).astype(np.float32)
    p = zg.zero_grid_quantize(g, prev, bits)
    v = (g - prev).astype(np.float64)
    r = np.abs(v).max()
    k = 2 ** (bits - 1) - 1
    levels = r * np.arange(-k, k + 1) / k  # 2^b - 1 levels, 0 among them
    nearest = levels[np.abs(v[:, None] - levels[None, :]).argmin(axis=1)]
    np.testing.assert_allclose(p.dq, nearest, rtol=1e-6, atol=1e-6 * r)
    codes = laqcore.unpack_bits(p.packed, bits, 301)
    assert codes.max() <= 2 * k  # the code 2^b - 1 is never used
    np.testing.assert_allclose(p.dq, levels[codes], rtol=1e-6, atol=1e-6 * r)  # code j + K
    rec = prev + p.dq
    assert p.err_sq == pytest.approx(float(np.sum((rec - g).astype(np.float64) ** 2)))
    assert p.innov_sq == pytest.approx(float(np.sum(p.dq.astype(np.float64) ** 2)))
    assert p.nbytes == laqcore.laq_quantize(g, prev, bits).nbytes  # LAQ's frame size
    if bits == 2:
        assert set(np.unique(p.dq).tolist()) <= {-float(r), 0.0, float(r)}


def test_zero_grid_rejects_what_it_does_not_model(zg):
    g = np.ones(8, dtype=np.float32)
    with pytest.raises(ValueError, match="2 <= bits"):
        zg.zero_grid_quantize(g, None, 1)
    with pytest.raises(ValueError, match="global radius"):
        zg.zero_grid_quantize(g, None, 3, block_size=8)


def test_injection_moves_q_prev_on_the_zero_grid_and_is_undone(zg):
    g = np.array([1.0, 0.1, -0.4, 0.0], dtype=np.float32)
    with zg.zero_grid():
        iq = laqcore.InnovationQuantizer(4, bits=2)
        p = iq.propose(g)
        iq.commit(p)
        agg = np.zeros(4, dtype=np.float32)
        laqcore.laq_accumulate(agg, p)
    np.testing.assert_array_equal(iq.q_prev, [1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(agg, iq.q_prev)
    assert laq_module.laq_quantize is zg.PAPER_QUANTIZE
    assert laq_module._accumulate is bench_module("laq_prototypes").PAPER_ACCUMULATE
    assert not isinstance(laqcore.InnovationQuantizer(4, bits=2).propose(g), zg.ZeroGridPayload)
