"""Adaptive bit width of LAQ (LazyUploader(adaptive_bits=f), Params.adaptive_bits)."""

from __future__ import annotations

import numpy as np
import pytest

import laqcore
from laqcore.lazy_state import LazyUploader


def test_picks_smallest_width_meeting_the_budget(rng: np.random.Generator) -> None:
    n, f = 500, 0.5
    u = LazyUploader(n, bits=4, adaptive_bits=f)
    g = rng.standard_normal(n).astype(np.float32)
    u.commit(u.propose(g))  # first upload at the fixed width
    widths = set()
    for rhs in (1e-6, 1e-2, 1.0, 10.0, 1e3):
        g2 = (g + 0.1 * rng.standard_normal(n)).astype(np.float32)
        p = u.propose_adaptive(g2, rhs)
        widths.add(p.bits)
        # The formula: 3 ||eps_b||^2 <= f * rhs for the chosen b (or b = 8), not for b - 1.
        ref = laqcore.laq_quantize(g2, u.q_prev, p.bits)
        assert ref == p
        if p.bits < 8:
            assert 3 * p.err_sq <= f * rhs
        if p.bits > 1:
            coarser = laqcore.laq_quantize(g2, u.q_prev, p.bits - 1)
            assert 3 * coarser.err_sq > f * rhs
    assert len(widths) >= 3  # the width really adapts to rhs
    u.skip()


def test_first_upload_uses_bits(rng: np.random.Generator) -> None:
    # Forced, and no iterate difference yet: the configured width whatever rhs says.
    g = rng.standard_normal(64).astype(np.float32)
    for bits in (2, 5):
        u = LazyUploader(64, bits=bits, adaptive_bits=0.5)
        for rhs in (0.0, 1e6):
            assert u.propose_adaptive(g, rhs) == laqcore.laq_quantize(g, None, bits)
        first = u.step(g, 0.0)
        assert first is not None and first.bits == bits
        assert u.propose_adaptive(g + 1, 0.0).bits == 8  # afterwards: the criterion


def test_run_converges_and_frames_carry_their_width(prob: object) -> None:
    algo = laqcore.get_algorithm("laq", adaptive_bits=0.5)
    seen: set[int] = set()
    from laqcore.algorithms import lazy_common

    orig = lazy_common.InnovationWorker.step

    def spy(self: lazy_common.InnovationWorker, msg: object) -> object:
        p = orig(self, msg)  # type: ignore[arg-type]
        if p is not None:
            seen.add(p.bits)  # type: ignore[attr-defined]
            again = laqcore.LAQPayload.from_bytes(p.to_bytes())
            assert again.bits == p.bits  # type: ignore[attr-defined]
        return p

    lazy_common.InnovationWorker.step = spy  # type: ignore[method-assign]
    try:
        res = laqcore.simulate(prob, algo, max_iterations=150)  # type: ignore[arg-type]
    finally:
        lazy_common.InnovationWorker.step = orig  # type: ignore[method-assign]
    assert len(seen) >= 2
    assert res.final_loss < res.history["loss"][0]


def test_bad_values() -> None:
    with pytest.raises(ValueError, match="adaptive_bits"):
        LazyUploader(4, bits=4, adaptive_bits=-1.0)
    with pytest.raises(ValueError, match="adaptive_bits"):
        laqcore.get_algorithm("laq", adaptive_bits=float("nan")).params.validate()


def test_blockwise_radius_picks_by_the_formula(rng: np.random.Generator) -> None:
    # With block_size, every candidate width is quantized blockwise; the chosen b is the
    # smallest with 3 ||eps_b||^2 <= f rhs (b = 8 if none), and the frame carries b and the
    # block size through a wire round trip.
    n, f, bs = 300, 2.0, 64
    u = LazyUploader(n, bits=3, block_size=bs, adaptive_bits=f)
    scale = np.repeat(10.0 ** rng.uniform(-3, 0, n // 30 + 1), 30)[:n]  # uneven blocks
    g = (scale * rng.standard_normal(n)).astype(np.float32)
    first = u.step(g, 0.0)
    assert first is not None and (first.bits, first.block_size) == (3, bs)
    widths = set()
    for rhs in (1e-9, 1e-5, 1e-3, 1e-1, 10.0):
        g2 = (g + 0.05 * scale * rng.standard_normal(n)).astype(np.float32)
        p = u.propose_adaptive(g2, rhs)
        widths.add(p.bits)
        errs = {b: laqcore.laq_quantize(g2, u.q_prev, b, bs).err_sq for b in range(1, 9)}
        ok = [b for b in range(1, 9) if 3.0 * errs[b] <= f * rhs]
        assert p.bits == (ok[0] if ok else 8)
        assert p == laqcore.laq_quantize(g2, u.q_prev, p.bits, bs)
        wire = laqcore.LAQPayload.from_bytes(p.to_bytes())
        assert (wire.bits, wire.block_size, wire.num_blocks) == (p.bits, bs, -(-n // bs))
    assert len(widths) >= 3
    u.skip()


def test_blockwise_adaptive_run(prob: object) -> None:
    algo = laqcore.get_algorithm("laq", adaptive_bits=2.0, block_size=16)
    res = laqcore.simulate(prob, algo, max_iterations=100)  # type: ignore[arg-type]
    fixed = laqcore.simulate(  # type: ignore[arg-type]
        prob, laqcore.get_algorithm("laq", block_size=16), max_iterations=100
    )
    assert res.final_loss < res.history["loss"][0]
    assert res.bits != fixed.bits  # the widths really differ from the fixed 4 bits
