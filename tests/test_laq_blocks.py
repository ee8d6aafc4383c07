"""The blockwise-radius LAQ quantizer (laq.hpp "blockwise radius", laqcore.laq_payload)
against the numpy reference, across SIMD levels and thread counts, and its frame."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import laqcore
import reference as ref
from conftest import ALL_BITS
from laqcore import runtime
from laqcore.wire import PayloadKind

REDUCE = 2**14  # kReduceBlock: blocks above it take the two-pass path
# (block_size, n): ragged last blocks, n below one block, blocks of exactly kReduceBlock and
# just above it (two pieces per block), n an exact multiple.
CASES = [
    (8, 1),
    (8, 8),
    (8, 61),
    (16, 1000),
    (64, 64 * 5 + 3),
    (256, 4099),
    (1000, 2500),
    (REDUCE, 3 * REDUCE + 17),
    (REDUCE + 8, 2 * REDUCE + 100),
    (2**15, 2**16 + 9),
    (4096, 100),
]


def make_pair(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Magnitudes that vary by block, so the per-block radii differ.
    scale = np.exp(rng.uniform(-6, 3, size=n // 50 + 1)).repeat(50)[:n]
    grad = (rng.standard_normal(n) * scale).astype(np.float32)
    prev = (rng.standard_normal(n) * 0.1 * scale).astype(np.float32)
    return grad, prev


def assert_matches(p: laqcore.LAQBlockPayload, want: dict) -> None:
    np.testing.assert_array_equal(p.radii, want["radii"])
    np.testing.assert_array_equal(p.packed, want["packed"])
    np.testing.assert_array_equal(laqcore.laq_dequantize(p), want["dq"])
    assert (p.err_sq, p.innov_sq) == (want["err_sq"], want["innov_sq"])  # bit for bit


@pytest.mark.parametrize(("block_size", "n"), CASES)
def test_matches_reference(rng, bits, block_size, n):
    grad, prev = make_pair(rng, n)
    p = laqcore.laq_quantize(grad, prev, bits, block_size=block_size)
    assert isinstance(p, laqcore.LAQBlockPayload)
    assert (p.n, p.bits, p.block_size, p.num_blocks) == (n, bits, block_size, -(-n // block_size))
    assert p.radius == float(p.radii.max())
    assert_matches(p, ref.laq_quantize_blocks(grad, prev, bits, block_size))
    # apply / accumulate: one float32 addition of the block's table entry per element.
    agg = rng.standard_normal(n).astype(np.float32)
    want = agg + np.float32(0.5) * ref.laq_quantize_blocks(grad, prev, bits, block_size)["dq"]
    laqcore.laq_accumulate(agg, p, weight=0.5)
    np.testing.assert_array_equal(agg, want)
    q = prev.copy()
    laqcore.laq_apply(q, p)
    np.testing.assert_array_equal(q, ref.laq_quantize_blocks(grad, prev, bits, block_size)["q_new"])


def test_err_sq_is_the_error_of_the_reconstruction(rng):
    # The lazy rule's error term, recomputed from what the receiver reconstructs.
    grad, prev = make_pair(rng, 5000)
    p = laqcore.laq_quantize(grad, prev, 3, block_size=128)
    q = prev.copy()
    laqcore.laq_apply(q, p)
    e = q.astype(np.float64) - grad.astype(np.float64)
    # float32 lanes of 8 terms per block of 128: within 10 roundings of 2^-24
    assert p.err_sq == pytest.approx(float(e @ e), rel=10 * 2.0**-24)
    # Each element is within tau * R_j of its target (the per-block error bound).
    bound = np.repeat(p.radii.astype(np.float64), 128)[:5000] * p.tau
    assert np.all(np.abs(e) <= bound * (1 + 1e-6) + 1e-30)


@pytest.mark.parametrize("n", [1, 100, 2**16 + 5])
def test_block_covering_the_vector_is_the_global_quantizer(rng, n):
    grad, prev = make_pair(rng, n)
    g = laqcore.laq_quantize(grad, prev, 4)
    b = laqcore.laq_quantize(grad, prev, 4, block_size=(n + 7) // 8 * 8)
    assert b.radii.tolist() == [g.radius]
    np.testing.assert_array_equal(b.packed, g.packed)
    assert (b.err_sq, b.innov_sq) == (g.err_sq, g.innov_sq)  # same sum order, bit for bit


def test_decoded_innov_sq_is_bit_identical(rng, bits):
    grad, prev = make_pair(rng, 3 * REDUCE + 5)
    for bs in (8, 256, REDUCE + 8):
        p = laqcore.laq_quantize(grad, prev, bits, block_size=bs)
        decoded = laqcore.LAQPayload.from_bytes(p.to_bytes())
        assert decoded == p
        assert decoded.err_sq is None
        assert decoded.innov_sq == p.innov_sq


def _everything(grad: np.ndarray, prev: np.ndarray, bits: int, bs: int) -> tuple:
    p = laqcore.laq_quantize(grad, prev, bits, block_size=bs)
    agg = np.linspace(-1, 1, grad.size, dtype=np.float32)
    laqcore.laq_accumulate(agg, p, weight=0.75)
    return (
        p.packed.tobytes(),
        p.radii.tobytes(),
        p.err_sq,
        p.innov_sq,
        laqcore.laq_dequantize(p).tobytes(),
        agg.tobytes(),
        laqcore.LAQPayload.from_bytes(p.to_bytes()).innov_sq,
    )


@pytest.mark.parametrize("level", runtime.simd_levels())
@pytest.mark.parametrize("bs", [64, 1024, REDUCE + 8])
def test_same_output_for_any_thread_count(rng, level, bs):
    # at every level: the fused blockwise kernels run over each thread's groups of blocks
    grad, prev = make_pair(rng, 2**20 + 3)
    results = []
    with runtime.simd(level):
        for threads in (1, 2, 7):
            with laqcore.num_threads(threads):
                results.append(_everything(grad, prev, 3, bs))
    assert results[1] == results[0]
    assert results[2] == results[0]


@pytest.mark.parametrize("level", [lv for lv in runtime.simd_levels() if lv != "scalar"])
@pytest.mark.parametrize("bs", [8, 256, 4104])
def test_simd_levels_identical_to_scalar(rng, bits, level, bs):
    grad, prev = make_pair(rng, 3 * 4104 + 13)
    with runtime.simd("scalar"):
        scalar = _everything(grad, prev, bits, bs)
    with runtime.simd(level):
        assert _everything(grad, prev, bits, bs) == scalar


def hard_pair(rng: np.random.Generator, n: int, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs that take every branch of the blockwise kernels: blocks where grad == prev
    (radius 0), elements exactly on a code boundary (the exact recomputation), radii near
    1e36 (no float32 fast path), denormal magnitudes, and ordinary blocks."""
    grad, prev = make_pair(rng, n)
    starts = range(0, n, block_size)
    for j, s in enumerate(starts):
        e = min(s + block_size, n)
        kind = j % 5
        if kind == 0:
            grad[s:e] = prev[s:e]
        elif kind == 1:  # v = +-1 sets R = 1; v = (2c/L - 1) for 3 bits lands on boundaries
            prev[s:e] = 0.0
            grad[s:e] = rng.integers(-7, 8, e - s).astype(np.float32) / np.float32(7)
            grad[s] = 1.0
        elif kind == 2:
            grad[s:e] *= np.float32(1e36)
            prev[s:e] = 0.0
        elif kind == 3:
            grad[s:e] = rng.standard_normal(e - s).astype(np.float32) * np.float32(1e-41)
    return grad, prev


# block sizes: one 8-group, two (half a 32-element AVX2 step), groups of 8 not filling a
# 16-, 32- or 64-lane step, the hook's 2-bit default (one AVX2 step), one step and a group,
# one AVX-512 step, the default, one that exceeds both encoders' steps unevenly, and a large
# one.
@pytest.mark.parametrize("bs", [8, 16, 24, 32, 40, 64, 256, 1000, 4096])
@pytest.mark.parametrize("with_prev", [True, False])
def test_every_simd_level_matches_reference_on_hard_inputs(rng, bits, bs, with_prev):
    # quantize + pack and the weighted accumulate (the fused blockwise kernels where a level
    # has them) against the numpy reference
    n = 7 * bs + bs // 2 + 3  # ragged last block
    grad, prev = hard_pair(rng, n, bs)
    p_arg = prev if with_prev else None
    want = ref.laq_quantize_blocks(grad, p_arg, bits, bs)
    agg = rng.standard_normal(n).astype(np.float32)
    want_agg = agg + np.float32(0.75) * want["dq"]  # the weighted table, float32
    outputs = []
    for level in runtime.simd_levels():
        with runtime.simd(level):
            p = laqcore.laq_quantize(grad, p_arg, bits, block_size=bs)
            assert_matches(p, want)
            outputs.append((p.packed.tobytes(), p.radii.tobytes(), p.err_sq, p.innov_sq))
            got = agg.copy()
            laqcore.laq_accumulate(got, p, weight=0.75)
            np.testing.assert_array_equal(got, want_agg)
    assert all(out == outputs[0] for out in outputs)  # sums bit for bit, not only close


@pytest.mark.parametrize("num_blocks", range(1, 10))
@pytest.mark.parametrize("with_prev", [True, False])
def test_sums_of_every_block_count_match_reference(rng, num_blocks, with_prev):
    # The AVX-512 quantizer combines the lane totals of up to four blocks at once: every
    # count of blocks leaves a different partial batch (0..3 blocks) for the end, full or
    # ragged. Each block's magnitude differs by a factor 4, so a block's sums lost or stored
    # in another block's place change the totals.
    for bs in (8, 16, 32, 40, 64):
        for ragged in (0, 3):
            n = num_blocks * bs - ragged
            grad, prev = make_pair(rng, n)
            grad *= np.repeat(4.0 ** np.arange(num_blocks), bs)[:n].astype(np.float32)
            p_arg = prev if with_prev else None
            for bits in ALL_BITS:
                want = ref.laq_quantize_blocks(grad, p_arg, bits, bs)
                for level in runtime.simd_levels():
                    with runtime.simd(level):
                        assert_matches(laqcore.laq_quantize(grad, p_arg, bits, block_size=bs), want)


@pytest.mark.parametrize("bs", [8, 256, 4096])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_nonfinite_input_in_any_block_is_rejected(rng, bs, where):
    n = 5 * bs + 3
    at = {"first": 1, "middle": 2 * bs + 5, "last": n - 1}[where]
    for level in runtime.simd_levels():
        with runtime.simd(level):
            for name, value in [("grad", np.nan), ("prev", np.inf), ("grad", -np.inf)]:
                grad, prev = make_pair(rng, n)
                (grad if name == "grad" else prev)[at] = value
                with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
                    laqcore.laq_quantize(grad, prev, 4, block_size=bs)
            grad, prev = make_pair(rng, n)
            grad[at], prev[at] = 3e38, -3e38  # finite inputs, difference overflows
            with pytest.raises(ValueError, match="overflows float32"):
                laqcore.laq_quantize(grad, prev, 4, block_size=bs)


# --- arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("bs", [0, -8, 4, 12, 2**31 + 8, 2**40])
def test_bad_block_size_value(bs):
    x = np.ones(16, dtype=np.float32)
    with pytest.raises(ValueError, match="block_size"):
        laqcore.laq_quantize(x, None, 4, block_size=bs)
    with pytest.raises(ValueError, match="block_size"):
        laqcore.InnovationQuantizer(16, 4, block_size=bs)


@pytest.mark.parametrize("bs", [8.0, "8", True, np.float32(8)])
def test_bad_block_size_type(bs):
    with pytest.raises(TypeError, match="block_size"):
        laqcore.laq_quantize(np.ones(16, dtype=np.float32), None, 4, block_size=bs)


def test_largest_block_size_is_accepted(rng):
    grad, _ = make_pair(rng, 100)
    p = laqcore.laq_quantize(grad, None, 2, block_size=2**31)
    assert p.num_blocks == 1 and p.radius == float(np.max(np.abs(grad)))
    assert laqcore.LAQPayload.from_bytes(p.to_bytes()) == p
    assert laqcore.laq_quantize(grad, None, 2, block_size=np.int64(8)).block_size == 8


def test_native_bindings_check_block_arguments(rng):
    core = laqcore._core.laq
    p = laqcore.laq_quantize(make_pair(rng, 100)[0], None, 4, block_size=16)
    out = np.zeros(100, dtype=np.float32)
    with pytest.raises(ValueError, match="block_size"):
        core.quantize_blocks(out, None, 4, 12)
    with pytest.raises(ValueError, match="radii has 6 entries"):
        core.dequantize_blocks(p.packed, 100, 4, 16, p.radii[:6])
    with pytest.raises(ValueError, match="aggregate has length 99"):
        core.accumulate_blocks(out[:99], p.packed, 100, 4, 16, p.radii, 1.0)
    bad = p.radii.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="radius must be finite"):
        core.accumulate_blocks(out, p.packed, 100, 4, 16, bad, 1.0)


def test_core_accumulate_rejects_wrong_output_length(rng):
    # Issue 14.12: the output's length is checked against n (8 and 7 codes of 1 bit have
    # the same packed size, so the packed size alone cannot tell).
    p = laqcore.laq_quantize(np.ones(8, dtype=np.float32), None, 1)
    with pytest.raises(ValueError, match="aggregate has length 7"):
        laqcore._core.laq.accumulate(np.zeros(7, np.float32), p.packed, 8, 1, p.radius, 1.0)


def test_innovation_quantizer_blockwise_tracks_reference(rng):
    n, bs = 3000, 256
    iq = laqcore.InnovationQuantizer(n, bits=2, block_size=bs)
    q = np.zeros(n, dtype=np.float32)
    for _ in range(4):
        grad, _ = make_pair(rng, n)
        p = iq.propose(grad)
        want = ref.laq_quantize_blocks(grad, q, 2, bs)
        assert_matches(p, want)
        iq.commit(p)
        q = want["q_new"]
        np.testing.assert_array_equal(iq.q_prev, q)
        assert iq.err_hat_sq == p.err_sq


def test_blockwise_2bit_error_is_smaller_on_mixed_scales(rng):
    # What the blockwise radius is for: one large entry no longer flattens small blocks.
    grad, _ = make_pair(rng, 2**14)
    glob = laqcore.laq_quantize(grad, None, 2)
    blk = laqcore.laq_quantize(grad, None, 2, block_size=256)
    assert blk.err_sq < 0.5 * glob.err_sq


# --- sub-ranges of blocks ----------------------------------------------------------------
@pytest.mark.parametrize(("start", "stop"), [(0, 1), (1, 3), (2, 9), (0, 9), (8, 9)])
def test_slice_blocks_decodes_its_range(rng, start, stop):
    n, bs = 8 * 64 + 5, 64  # 9 blocks, the last one of 5
    grad, prev = make_pair(rng, n)
    p = laqcore.laq_quantize(grad, prev, 3, block_size=bs)
    lo, hi = p.block_range(start, stop)
    part = p.slice_blocks(start, stop)
    assert part.n == hi - lo and part.err_sq is None
    np.testing.assert_array_equal(laqcore.laq_dequantize(part), laqcore.laq_dequantize(p)[lo:hi])
    part = laqcore.LAQPayload.from_bytes(part.to_bytes())
    agg = np.zeros(n, dtype=np.float32)
    laqcore.laq_accumulate(agg[lo:hi], part)
    full = np.zeros(n, dtype=np.float32)
    laqcore.laq_accumulate(full, p)
    np.testing.assert_array_equal(agg[lo:hi], full[lo:hi])
    assert part.innov_sq == pytest.approx(float(np.sum(full[lo:hi].astype(np.float64) ** 2)))


@pytest.mark.parametrize(("start", "stop"), [(0, 0), (3, 2), (0, 10), (-1, 2)])
def test_slice_blocks_rejects_bad_ranges(rng, start, stop):
    p = laqcore.laq_quantize(make_pair(rng, 8 * 64 + 5)[0], None, 3, block_size=64)
    with pytest.raises(ValueError, match="start"):
        p.slice_blocks(start, stop)


# --- wire format ---------------------------------------------------------------------------
def frame(n: int, meta: bytes, body: bytes, kind: int = int(PayloadKind.LAQ_BLOCK)) -> bytes:
    head = struct.pack("<2sBBQ", b"LQ", 1, kind, n) + meta + body
    return head + struct.pack("<I", zlib.crc32(head))


def block_meta(bits: int = 2, block_size: int = 8, pad8: int = 0, pad16: int = 0) -> bytes:
    return struct.pack("<BBHI", bits, pad8, pad16, block_size)


def test_hand_built_frame_decodes():
    # 12 codes of 2 bits in blocks of 8: radii [1, 0.5], codes 3,0,... packed little-endian.
    radii = np.array([1.0, 0.5], dtype=np.float32)
    codes = np.array([3, 0, 1, 2, 3, 3, 0, 0, 1, 1, 2, 2], dtype=np.uint8)
    body = radii.tobytes() + ref.pack_bits(codes, 2).tobytes()
    p = laqcore.LAQPayload.from_bytes(frame(12, block_meta(), body))
    assert isinstance(p, laqcore.LAQBlockPayload)
    lut0, lut1 = ref.laq_lut(1.0, 2), ref.laq_lut(0.5, 2)
    want = np.concatenate([lut0[codes[:8]], lut1[codes[8:]]])
    np.testing.assert_array_equal(laqcore.laq_dequantize(p), want)
    assert p.to_bytes() == frame(12, block_meta(), body)


@pytest.fixture
def good_frame(rng) -> bytes:
    return laqcore.laq_quantize(make_pair(rng, 61)[0], None, 3, block_size=16).to_bytes()


def test_rejects_truncated_and_extended(good_frame):
    for cut in (1, 5, len(good_frame) - 12, len(good_frame) - 24):
        with pytest.raises(ValueError, match="truncated|CRC|expected exactly"):
            laqcore.LAQPayload.from_bytes(good_frame[:-cut])
    with pytest.raises(ValueError, match="CRC"):
        laqcore.LAQPayload.from_bytes(good_frame + b"\0")


def test_rejects_every_flipped_byte(good_frame):
    for pos in range(len(good_frame)):
        bad = bytearray(good_frame)
        bad[pos] ^= 0x10
        with pytest.raises(ValueError, match="CRC|magic|version|kind"):
            laqcore.LAQPayload.from_bytes(bytes(bad))


@pytest.mark.parametrize("bs", [0, 4, 12, 2**31 + 8])
def test_rejects_bad_block_size_in_frame(bs):
    with pytest.raises(ValueError, match="block_size"):
        laqcore.LAQPayload.from_bytes(frame(8, block_meta(block_size=bs), b"\0" * 6))


@pytest.mark.parametrize("radius", [np.nan, np.inf, -1.0, -0.0 - 1e-30])
def test_rejects_bad_radius_in_frame(radius):
    body = np.array([1.0, radius], dtype=np.float32).tobytes() + b"\0" * 3
    with pytest.raises(ValueError, match="radius"):
        laqcore.LAQPayload.from_bytes(frame(12, block_meta(), body))


def test_rejects_padding_and_sizes():
    ok = np.array([1.0, 1.0], dtype=np.float32).tobytes()
    with pytest.raises(ValueError, match="padding"):
        laqcore.LAQPayload.from_bytes(frame(12, block_meta(pad8=1), ok + b"\0" * 3))
    with pytest.raises(ValueError, match="padding"):  # 12 codes use 24 bits: none free; 11 do
        laqcore.LAQPayload.from_bytes(frame(11, block_meta(), ok + b"\0\0\xff"))
    with pytest.raises(ValueError, match="expected exactly"):  # one radius missing
        laqcore.LAQPayload.from_bytes(frame(12, block_meta(), ok[:4] + b"\0" * 3))
    with pytest.raises(ValueError, match="n must be >= 1"):
        laqcore.LAQPayload.from_bytes(frame(0, block_meta(), b""))


def test_kinds_are_told_apart(rng, good_frame):
    glob = laqcore.laq_quantize(make_pair(rng, 61)[0], None, 3).to_bytes()
    assert not isinstance(laqcore.LAQPayload.from_bytes(glob), laqcore.LAQBlockPayload)
    with pytest.raises(ValueError, match="expected LAQ_BLOCK"):
        laqcore.LAQBlockPayload.from_bytes(glob)
    assert isinstance(laqcore.wire.payload_from_bytes(good_frame), laqcore.LAQBlockPayload)
    with pytest.raises(ValueError, match="expected_n = 60"):
        laqcore.LAQPayload.from_bytes(good_frame, expected_n=60)


def test_payload_is_immutable_and_validated(rng):
    p = laqcore.laq_quantize(make_pair(rng, 61)[0], None, 3, block_size=16)
    for name, value in [("radius", np.nan), ("n", 7), ("bits", 9), ("packed", p.packed[:3])]:
        with pytest.raises(AttributeError):
            setattr(p, name, value)
    with pytest.raises(ValueError, match="read-only"):
        p.packed[0] = 1
    with pytest.raises(ValueError, match="read-only"):
        p.radii[0] = -1
    make = laqcore.LAQBlockPayload
    with pytest.raises(ValueError, match="radii has 3 entries"):
        make(p.packed, p.radii[:3], 3, 61, 16)
    with pytest.raises(ValueError, match="finite"):
        make(p.packed, np.full(4, np.nan, np.float32), 3, 61, 16)
    with pytest.raises(TypeError, match="float32"):
        make(p.packed, p.radii.astype(np.float64), 3, 61, 16)
    with pytest.raises(ValueError, match="packed has"):
        make(p.packed[:-1], p.radii, 3, 61, 16)
    # A writeable array given to the constructor is copied: later edits do not reach it.
    radii = p.radii.copy()
    q = make(p.packed, radii, 3, 61, 16)
    radii[0] = -5.0
    assert q == p
