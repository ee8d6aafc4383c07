"""LAQ with a width per block (laqcore.laq_widths, cpp/include/laqcore/laq_widths.hpp):
the kernel against the numpy reference, the allocation against its target, decoding, the
frame kind, bad input, the uploader and the simulator option."""

from __future__ import annotations

import itertools
import struct
import zlib

import numpy as np
import pytest

import laqcore
from laqcore import wire
from laqcore.laq import laq_accumulate_all, laq_apply_average
from laqcore.laq_payload import LAQPayload
from laqcore.laq_widths import (
    DEFAULT_WIDTHS,
    ERROR_CAP,
    LAQWidthsPayload,
    laq_quantize_widths,
)
from laqcore.lazy_state import LazyUploader
from reference import laq_widths_quantize

TABLES = [DEFAULT_WIDTHS, (0, 1, 2, 8), (0, 3, 5, 6)]


def _case(seed: int) -> tuple[np.ndarray, np.ndarray | None, int, tuple, float, float]:
    """A random (grad, prev, block, widths, budget, cap): heavy tails over many scales, runs of
    zeros, ragged lengths, prev or None, budgets from 0 to inf."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    block = int(rng.choice([8, 16, 24, 64]))
    g = (rng.standard_t(3, n) * 10 ** rng.uniform(-4, 4)).astype(np.float32)
    if seed % 4 == 0:
        g[rng.random(n) < 0.6] = 0.0
    prev = None
    if seed % 3:
        prev = (g + rng.standard_normal(n).astype(np.float32) * np.float32(rng.random())).astype(
            np.float32
        )
    v = g - (0 if prev is None else prev)
    v_sq = float(np.dot(v.astype(np.float64), v))
    budget = float(rng.choice([0.0, v_sq * rng.random(), 10 * v_sq, np.inf]))
    cap = float(rng.choice([0.0, 0.1, ERROR_CAP, 1.0]))
    return g, prev, block, TABLES[seed % 3], budget, cap


@pytest.mark.parametrize("seed", range(60))
def test_kernel_matches_reference_bit_for_bit(seed):
    g, prev, block, widths, budget, cap = _case(seed)
    ref = laq_widths_quantize(g, prev, block, widths, budget, cap)
    p = laq_quantize_widths(g, prev, block, budget, cap=cap, widths=widths)
    np.testing.assert_array_equal(p.packed, ref["body"])
    assert p.radius == ref["r_max"]
    assert p.err_sq == ref["err_sq"] and p.innov_sq == ref["innov_sq"]
    np.testing.assert_array_equal(p.block_widths, ref["block_widths"])
    np.testing.assert_array_equal(p.radii, ref["radii"])
    np.testing.assert_array_equal(laqcore.laq_dequantize(p), ref["dq"])
    assert p._native_innov_sq() == p.innov_sq  # the decoder's sum equals the encoder's


@pytest.mark.parametrize("seed", range(40))
def test_allocation_meets_its_target_and_radii_cover_blocks(seed):
    g, prev, block, widths, budget, cap = _case(seed)
    p = laq_quantize_widths(g, prev, block, budget, cap=cap, widths=widths)
    v = (g - (0 if prev is None else prev)).astype(np.float64)
    dq = laqcore.laq_dequantize(p).astype(np.float64)
    err = float(np.sum((dq - v) ** 2))
    target = min(budget, cap * float(np.dot(v, v)))
    w = p.block_widths
    bmax = np.array([np.abs(v[j * block : (j + 1) * block]).max() for j in range(len(w))])
    if np.all(w[bmax > 0] == widths[-1]):
        pass  # the widest everywhere: the fallback when nothing meets the target
    else:
        assert err <= target * (1 + 1e-9) + 1e-300
    sent = w > 0
    assert np.all(p.radii[sent] >= bmax[sent].astype(np.float32))  # codes on the grid
    assert np.all(w[bmax == 0] == 0)  # an all-zero block is never sent


def test_looser_budget_never_costs_more_bits():
    rng = np.random.default_rng(5)
    g = rng.standard_t(3, 4096).astype(np.float32)
    v_sq = float(np.dot(g.astype(np.float64), g))
    sizes = [
        laq_quantize_widths(g, None, 16, f * v_sq, cap=1.0).nbytes
        for f in (0.001, 0.01, 0.05, 0.2, 0.5)
    ]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]
    # the cap binds whatever the budget: inf budget and a budget at the cap agree
    a = laq_quantize_widths(g, None, 16, np.inf)
    b = laq_quantize_widths(g, None, 16, ERROR_CAP * v_sq)
    assert a == b


def test_budget_zero_sends_every_nonzero_block_at_the_widest_width():
    g = np.array([1.0, -2.0] * 8 + [0.0] * 16 + [3.0] * 3, dtype=np.float32)
    p = laq_quantize_widths(g, None, 16, 0.0)
    assert p.block_widths.tolist() == [4, 0, 4]
    assert p.radii.tolist()[1] == 0.0


def test_all_zero_innovation_is_a_frame_of_zero_fields():
    p = laq_quantize_widths(np.zeros(20, np.float32), None, 8, 1.0)
    assert p.block_widths.tolist() == [0, 0, 0] and p.radius == 0.0
    assert p.err_sq == 0.0 and p.innov_sq == 0.0
    assert p.body_nbytes == 1  # three 2-bit fields
    np.testing.assert_array_equal(laqcore.laq_dequantize(p), np.zeros(20, np.float32))


def test_decoders_apply_accumulate_average_all():
    rng = np.random.default_rng(3)
    g = rng.standard_normal(100).astype(np.float32)
    prev = (g * 0.5).astype(np.float32)
    p = laq_quantize_widths(g, prev, 16, 1.0)
    dq = laqcore.laq_dequantize(p)
    q = prev.copy()
    laqcore.laq_apply(q, p)
    sent = np.repeat(p.block_widths > 0, 16)[:100]
    np.testing.assert_array_equal(q, np.where(sent, prev + dq, prev))
    e = (q.astype(np.float64) - g) ** 2
    assert p.err_sq == pytest.approx(float(e.sum()), rel=1e-12)
    agg = np.ones(100, np.float32)
    laqcore.laq_accumulate(agg, p, weight=0.25)
    np.testing.assert_array_equal(agg, np.where(sent, np.float32(1) + np.float32(0.25) * dq, 1))
    a, avg = prev.copy(), np.empty(100, np.float32)
    laq_apply_average(a, p, 3, avg)
    np.testing.assert_array_equal(a, q)
    np.testing.assert_array_equal(avg, q / np.float32(3))
    both = prev.copy()
    laq_accumulate_all(both, [p, p])
    once = prev.copy()
    laqcore.laq_apply(once, p)
    laqcore.laq_apply(once, p)
    np.testing.assert_array_equal(both, once)
    other = laqcore.laq_quantize(g, prev, 4)
    with pytest.raises(ValueError, match="another kind"):
        laq_accumulate_all(prev.copy(), [p, other])
    with pytest.raises(ValueError, match="width per block"):
        _ = p.tau


def test_threads_do_not_change_the_frame():
    g, prev, block, widths, budget, cap = _case(7)
    outs = []
    for threads in (1, 2):
        with laqcore.num_threads(threads):
            outs.append(laq_quantize_widths(g, prev, block, budget, cap=cap, widths=widths))
    assert outs[0] == outs[1] and outs[0].err_sq == outs[1].err_sq


# -- the frame -------------------------------------------------------------------------------
def _frame(seed: int = 1) -> tuple[LAQWidthsPayload, bytes]:
    g, prev, block, widths, budget, cap = _case(seed)
    p = laq_quantize_widths(g, prev, block, budget, cap=cap, widths=widths)
    return p, p.to_bytes()


@pytest.mark.parametrize("seed", range(12))
def test_frame_round_trip(seed):
    p, frame = _frame(seed)
    assert len(frame) == p.nbytes
    for decode in (wire.payload_from_bytes, LAQPayload.from_bytes, LAQWidthsPayload.from_bytes):
        q = decode(frame)
        assert isinstance(q, LAQWidthsPayload) and q == p and q.err_sq is None
        assert q.innov_sq == p.innov_sq
        np.testing.assert_array_equal(laqcore.laq_dequantize(q), laqcore.laq_dequantize(p))
    with pytest.raises(ValueError, match="expected"):
        laqcore.LAQBlockPayload.from_bytes(frame)
    # the constructor validates what _trusted_widths skips
    same = LAQWidthsPayload(p.packed, p.radius, p.n, p.block_size, p.widths)
    assert same == p


def _refit(frame: bytes, meta: bytes | None = None, body: bytes | None = None) -> bytes:
    """The frame with its metadata and/or body replaced and the CRC recomputed."""
    head = frame[:12]
    m = frame[12:20] if meta is None else meta
    b = frame[20:-4] if body is None else body
    out = head + m + b
    return out + struct.pack("<I", zlib.crc32(out))


def test_corrupt_frames_are_refused():
    p, frame = _frame(1)
    table, block, r_max = struct.unpack("<HHf", frame[12:20])
    body = frame[20:-4]
    bad = {
        "truncated": (frame[:-5], "truncated|CRC"),
        "short body": (_refit(frame, body=body[:-1]), "body has"),
        "long body": (_refit(frame, body=body + b"\0"), "body has"),
        "table not increasing": (
            _refit(frame, meta=struct.pack("<HHf", 0x2340, block, r_max)),
            "widths",
        ),
        "table width > 8": (
            _refit(frame, meta=struct.pack("<HHf", 0x9320, block, r_max)),
            "widths",
        ),
        "table without 0": (
            _refit(frame, meta=struct.pack("<HHf", table | 1, block, r_max)),
            "widths",
        ),
        "block 0": (_refit(frame, meta=struct.pack("<HHf", table, 0, r_max)), "block_size"),
        "block 12": (_refit(frame, meta=struct.pack("<HHf", table, 12, r_max)), "block_size"),
        "NaN R_max": (_refit(frame, meta=struct.pack("<HHf", table, block, float("nan"))), "R_max"),
        "negative R_max": (_refit(frame, meta=struct.pack("<HHf", table, block, -1.0)), "R_max"),
        "zero R_max, sent": (
            _refit(frame, meta=struct.pack("<HHf", table, block, 0.0)),
            "r_max is 0",
        ),
    }
    for what, (f, match) in bad.items():
        with pytest.raises(ValueError, match=match):
            LAQPayload.from_bytes(f)
        assert what
    # nonzero padding: find a frame whose bit count leaves padding
    for seed in range(1, 40):
        q, fr = _frame(seed)
        w = q.block_widths.astype(int)
        sizes = np.minimum(q.block_size, q.n - q.block_size * np.arange(len(w)))
        total = 2 * len(w) + 3 * int(np.sum(w > 0)) + int(np.dot(w, sizes))
        assert q.body_nbytes == -(-total // 8)
        if total % 8:
            last = bytes([int(q.packed[-1]) | 0x80])
            with pytest.raises(ValueError, match="padding"):
                LAQPayload.from_bytes(_refit(fr, body=fr[20:-5] + last))
            break
    else:  # pragma: no cover - the cases above have padding
        pytest.fail("no frame with padding bits among the cases")
    with pytest.raises(ValueError, match="expected"):
        LAQPayload.from_bytes(frame, expected_n=p.n + 1)


def test_mutated_frames_decode_cleanly_or_are_refused():
    """A deterministic miniature of fuzz/fuzz_frames.py for this kind: every single-byte edit
    of the metadata and body (CRC fixed up) is refused with ValueError or decodes to a payload
    that re-encodes to the same bytes and to a finite vector."""
    p, frame = _frame(2)
    rng = np.random.default_rng(0)
    for pos, val in itertools.product(range(12, len(frame) - 4), (0, 0xFF, None)):
        b = bytearray(frame[:-4])
        b[pos] = int(rng.integers(256)) if val is None else val
        f = bytes(b) + struct.pack("<I", zlib.crc32(bytes(b)))
        try:
            q = wire.payload_from_bytes(f)
        except ValueError:
            continue
        assert q.to_bytes() == f
        out = laqcore.laq_dequantize(q)
        assert out.dtype == np.float32 and np.isfinite(out).all()


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"block_size": 12}, ValueError, "block_size"),
        ({"block_size": 32776}, ValueError, "block_size"),
        ({"block_size": True}, TypeError, "block_size"),
        ({"block_size": 8.0}, TypeError, "block_size"),
        ({"budget": float("nan")}, ValueError, "budget"),
        ({"budget": -1.0}, ValueError, "budget"),
        ({"budget": "1"}, TypeError, "budget"),
        ({"cap": float("inf")}, ValueError, "cap"),
        ({"cap": -0.1}, ValueError, "cap"),
        ({"widths": (1, 2, 3, 4)}, ValueError, "widths"),
        ({"widths": (0, 2, 2, 4)}, ValueError, "widths"),
        ({"widths": (0, 2, 3, 9)}, ValueError, "widths"),
        ({"widths": (0, 2, 3)}, TypeError, "widths"),
        ({"widths": 4}, TypeError, "widths"),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, error, match):
    args = {"block_size": 8, "budget": 1.0, **kwargs}
    g = np.ones(16, np.float32)
    with pytest.raises(error, match=match):
        laq_quantize_widths(g, None, args.pop("block_size"), args.pop("budget"), **args)


def test_bad_arrays_raise():
    g = np.ones(16, np.float32)
    with pytest.raises(ValueError, match="NaN or Inf"):
        laq_quantize_widths(np.array([1.0, np.nan], np.float32), None, 8, 1.0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        laq_quantize_widths(g, np.full(16, np.inf, np.float32), 8, 1.0)
    with pytest.raises(ValueError, match="length"):
        laq_quantize_widths(g, np.ones(15, np.float32), 8, 1.0)
    with pytest.raises(ValueError, match="empty"):
        laq_quantize_widths(np.ones(0, np.float32), None, 8, 1.0)
    big = np.float32(3e38)
    with pytest.raises(OverflowError):
        laq_quantize_widths(np.array([big], np.float32), np.array([-big], np.float32), 8, 1.0)
    with pytest.raises(ValueError, match="body has 3 bytes"):
        LAQWidthsPayload(np.zeros(3, np.uint8), 1.0, 16, 8)  # two unsent blocks: 1 byte
    with pytest.raises(ValueError, match="float32"):
        LAQWidthsPayload(np.zeros(1, np.uint8), 0.1, 16, 8)


# -- the uploader and the simulator ----------------------------------------------------------
def test_uploader_sends_the_first_upload_with_bits_then_widths():
    rng = np.random.default_rng(0)
    u = LazyUploader(64, bits=4, adaptive_bits=1.0, width_block=16)
    g = rng.standard_normal(64).astype(np.float32)
    first = u.step(g, rhs=0.0)
    assert type(first) is laqcore.LAQPayload and first.bits == 4
    g2 = (g + 0.1 * rng.standard_normal(64)).astype(np.float32)
    v = (g2 - u.q_prev).astype(np.float64)
    for rhs in (0.03, 0.3, np.inf):
        p = u.propose_adaptive(g2, rhs)
        assert isinstance(p, LAQWidthsPayload)
        # the rule's error term meets F rhs, or the cap ||eps||^2 <= ERROR_CAP ||v||^2 binds
        target = min(1.0 * rhs / 3.0, ERROR_CAP * float(np.dot(v, v)))
        assert p.err_sq <= target * (1 + 1e-6)
    u.commit(p)
    assert u.uploads == 2 and u.err_hat_sq == p.err_sq


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width_block": 16}, "adaptive_bits"),
        ({"width_block": 16, "adaptive_bits": 1.0, "block_size": 16}, "block_size"),
        ({"width_block": 20, "adaptive_bits": 1.0}, "width_block"),
    ],
)
def test_width_block_option_is_checked_up_front(kwargs, match):
    with pytest.raises(ValueError, match=match):
        laqcore.get_algorithm("laq", **kwargs)
    with pytest.raises(ValueError, match=match):
        LazyUploader(64, 4, **kwargs)


def test_simulator_runs_width_blocks_and_counts_their_frames():
    problem = laqcore.make_problem("digits", model="softmax", workers=4)
    algo = laqcore.get_algorithm("laq", adaptive_bits=1.0, width_block=16, t_bar=10)
    sizes: list[int] = []
    step = LazyUploader.step

    def recording(self, grad, rhs):
        out = step(self, grad, rhs)
        if out is not None:
            sizes.append(out.nbytes)
        return out

    LazyUploader.step = recording  # type: ignore[method-assign]
    try:
        r = laqcore.simulate(problem, algo, max_iterations=60)
    finally:
        LazyUploader.step = step  # type: ignore[method-assign]
    assert r.uploads == len(sizes) > 4
    assert r.bits == 8 * sum(sizes)
    fixed = laqcore.get_algorithm("laq", bits=4, t_bar=10)
    fixed_r = laqcore.simulate(problem, fixed, max_iterations=60)
    assert not r.diverged and r.final_loss < fixed_r.final_loss * 1.05
    assert any(s < sizes[0] for s in sizes[1:])  # the width frames are smaller than 4-bit
    assert r.bits / r.uploads < fixed_r.bits / fixed_r.uploads


def test_entropy_coding_is_refused_with_width_blocks(capsys):
    problem = laqcore.make_problem("digits", model="softmax", workers=2)
    algo = laqcore.get_algorithm("laq", adaptive_bits=1.0, width_block=16)
    with pytest.raises(ValueError, match="not entropy coded"):
        laqcore.simulate(problem, algo, max_iterations=2, entropy_coding=True)
    from laqcore.cli import main

    argv = ["run", "--adaptive-bits", "1", "--width-block", "16", "--entropy-coding", "-K", "2"]
    assert main(argv) != 0
    assert "not entropy coded" in capsys.readouterr().err


def test_engine_runs_width_blocks_over_the_all_gather_only():
    from laqcore.distributed.engine_exchange import check_exchange
    from laqcore.distributed.slicing import slice_unit

    algo = laqcore.get_algorithm("laq", adaptive_bits=1.0, width_block=16)
    assert check_exchange("auto", algo) is False  # auto falls back to the all-gather
    with pytest.raises(ValueError, match="width-block"):
        check_exchange("two-phase", algo)
    p, _ = _frame(3)
    with pytest.raises(TypeError, match="cannot be split"):
        slice_unit(p)


@pytest.mark.parametrize("seed", [0, 4, 9])
def test_bench_reads_the_frames_fields_back(seed):
    """bench/bench_width_frames.py's parse of a body (for its entropy estimate) agrees with
    the decoder's fields and uses every bit of the body."""
    from bench_scripts import bench_module

    wf = bench_module("bench_width_frames")
    g, prev, block, widths, budget, cap = _case(seed)
    p = laq_quantize_widths(g, prev, block, budget, cap=cap, widths=widths)
    parts = wf.frame_parts(p)
    w = p.block_widths
    assert [widths[i] for i in parts["index"]] == w.tolist()
    assert len(parts["exponent"]) == int(np.sum(w > 0))
    sizes = np.minimum(block, p.n - block * np.arange(len(w)))
    used = 2 * len(w) + 3 * len(parts["exponent"])
    for b in set(w.tolist()) - {0}:
        codes = parts[f"codes w={b}"]
        assert len(codes) == int(sizes[w == b].sum()) and max(codes) < 1 << b
        used += b * len(codes)
    assert -(-used // 8) == p.body_nbytes
    radii = p.radii[w > 0]
    r_max = np.float32(p.radius)
    scales = [laqcore._core.laq_widths.radius_scale(e) for e in parts["exponent"]]
    np.testing.assert_array_equal(radii, r_max * np.array(scales, dtype=np.float32))


def test_variance_study_measures_width_blocks():
    from laqcore.experiments.variance import measure, settings, vector_source

    assert ("laq-widths", "laq_widths", {"rel": 0.1}) in settings()
    vectors = vector_source("student_t3", 4096, 4, seed=0)
    rows = [measure(vectors, "laq-widths", "laq_widths", {"rel": r}, False) for r in (0.01, 0.3)]
    assert (
        rows[0]["nmse"] < rows[1]["nmse"] and rows[0]["bits_per_coord"] > rows[1]["bits_per_coord"]
    )
    # the first vector's error is at most rel ||x_0||^2 (q_{-1} = 0), later ones relative to
    # the innovation: the mean stays below rel
    assert rows[1]["nmse"] <= 0.3
    with pytest.raises(ValueError, match="not entropy coded"):
        measure(vectors, "laq-widths", "laq_widths", {"rel": 0.1}, True)


def test_the_width_block_limit_is_the_kernels():
    from laqcore._validate import MAX_WIDTH_BLOCK

    assert MAX_WIDTH_BLOCK == laqcore._core.laq_widths.MAX_BLOCK
