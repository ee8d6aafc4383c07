from __future__ import annotations

import itertools
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import laqcore
import reference as ref
from compressor_cases import (
    BAD_VECTORS,
    FINITE_F32_VECTORS,
    HEADER,
    check_bad_vectors,
    check_generic_corruption,
    mean_of_draws,
    nan_in_large_input,
    patch_frame,
    thread_outputs,
)
from conftest import LENGTHS
from laqcore import _core
from laqcore.compressors import QSGDCompressor, QSGDPayload, qsgd_code_bits, qsgd_elias_bits

LEVELS = [1, 2, 3, 7, 10, 127]
SMALL_LENGTHS = [n for n in LENGTHS if n <= 1000]
BUCKETS = [1, 3, 8, 512, 10**12]


def expected(x, levels, bucket_size, norm, seed=0, step=0, stream=0):
    """(scales, codes, values) from the numpy reference."""
    key = ref.make_key(seed, step, stream)
    scales = ref.qsgd_scales(x, bucket_size, norm)
    codes = ref.qsgd_codes(x, levels, bucket_size, scales, ref.uniform01(key, x.size))
    return scales, codes, ref.qsgd_values(codes, scales, levels, bucket_size)


def check_against_reference(x, levels, bucket_size, norm, seed=0, step=0):
    p = laqcore.qsgd_quantize(x, levels, bucket_size=bucket_size, norm=norm, seed=seed, step=step)
    scales, codes, values = expected(x, levels, bucket_size, norm, seed, step)
    np.testing.assert_array_equal(p.scales, scales)
    np.testing.assert_array_equal(p.packed, ref.pack_bits(codes, ref.qsgd_code_bits(levels)))
    out = laqcore.qsgd_dequantize(p)
    np.testing.assert_allclose(out, values, rtol=1e-6, atol=0)
    return p, out


@pytest.mark.parametrize("norm", ["l2", "max"])
@pytest.mark.parametrize(("levels", "bucket_size"), list(itertools.product(LEVELS, BUCKETS)))
@pytest.mark.parametrize("n", SMALL_LENGTHS)
def test_matches_reference(rng, n, levels, bucket_size, norm):
    x = rng.standard_normal(n).astype(np.float32)
    x[rng.random(n) < 0.1] = 0.0  # exact zeros: level 0, canonical positive sign
    check_against_reference(x, levels, bucket_size, norm, seed=n, step=levels)


@pytest.mark.parametrize(
    ("levels", "bucket_size", "norm"),
    [(7, 512, "l2"), (127, 2**19 + 1, "max"), (3, 2**20 + 3, "l2")],
)
def test_large_matches_reference(rng, levels, bucket_size, norm):
    x = rng.standard_normal(2**20 + 3).astype(np.float32)
    check_against_reference(x, levels, bucket_size, norm, seed=9)


def test_code_bits():
    assert [qsgd_code_bits(s) for s in (1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 127)] == [
        2,
        3,
        3,
        4,
        4,
        5,
        5,
        6,
        7,
        8,
        8,
    ]
    for s in LEVELS:
        assert qsgd_code_bits(s) == ref.qsgd_code_bits(s)


def test_documented_example():
    # x = [3, -4] in one L2 bucket: scale 5, r = [0.6 s, 0.8 s]; with s = 5, r = [3, 4] are
    # integers, so rounding is deterministic: codes 2*3 + 0 and 2*4 + 1.
    p = laqcore.qsgd_quantize(np.array([3.0, -4.0]), levels=5, bucket_size=2)
    assert p.scales.tolist() == [5.0]
    np.testing.assert_array_equal(laqcore.unpack_bits(np.array(p.packed), 4, 2), [6, 9])
    np.testing.assert_array_equal(laqcore.qsgd_dequantize(p), [3.0, -4.0])


def test_same_output_for_any_thread_count(rng):
    x = rng.standard_normal(2**20 + 3).astype(np.float32)
    for bucket_size, norm in [(512, "l2"), (2**17, "max"), (2**20 + 3, "l2")]:
        comp = QSGDCompressor(levels=7, bucket_size=bucket_size, norm=norm, seed=4)
        outs = thread_outputs(lambda c=comp: c.compress(x, step=3).to_bytes())
        assert outs[0] == outs[1] == outs[2]
        decoded = thread_outputs(lambda c=comp: c.decompress(c.compress(x, step=3)))
        np.testing.assert_array_equal(decoded[0], decoded[1])
        np.testing.assert_array_equal(decoded[0], decoded[2])


@pytest.mark.parametrize("norm", ["l2", "max"])
def test_unbiased_over_many_steps(norm):
    x = np.random.default_rng(7).standard_normal(40).astype(np.float32)
    x[5] = 0.0
    comp = QSGDCompressor(levels=2, bucket_size=16, norm=norm, seed=11)
    trials = 3000
    mean = mean_of_draws(comp, x, trials)
    # per-coordinate std of one draw: (scale/s) * sqrt(p (1 - p)) <= scale / (2 s)
    scale = ref.qsgd_scales(x, 16, norm)[np.arange(x.size) // 16]
    r = np.abs(x) / scale * 2
    p = r - np.floor(r)
    sd = scale / 2 * np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(mean - x) <= 5 * sd + 1e-6)


@given(
    FINITE_F32_VECTORS,
    st.integers(1, 127),
    st.integers(1, 64),
    st.sampled_from(["l2", "max"]),
    st.integers(0, 2**64 - 1),
)
def test_round_trip_property(x, levels, bucket_size, norm, seed):
    comp = QSGDCompressor(levels=levels, bucket_size=bucket_size, norm=norm, seed=seed)
    p = comp.from_bytes(comp.compress(x, step=1).to_bytes())
    out = comp.decompress(p)
    scale = p.scales[np.arange(x.size) // bucket_size].astype(np.float64)
    # each coordinate lands on one of the two levels around it, with its own sign
    assert np.all(np.abs(out - x.astype(np.float64)) <= scale / levels * (1 + 1e-5) + 1e-30)
    assert np.all(out.astype(np.float64) * x >= 0)
    # L2 scales bound every coordinate of their bucket, max scales are attained
    if norm == "max":
        for j in range(p.scales.size):
            assert p.scales[j] == np.abs(x[j * bucket_size : (j + 1) * bucket_size]).max()


def test_all_zero_bucket_gives_zero():
    x = np.array([0.0, 0.0, 0.0, 1.0, -2.0], dtype=np.float32)
    p = laqcore.qsgd_quantize(x, 3, bucket_size=3, norm="max")
    assert p.scales[0] == 0.0
    np.testing.assert_array_equal(laqcore.qsgd_dequantize(p)[:3], 0.0)


def test_step_counter_and_float64(rng):
    x = rng.standard_normal(100)
    comp = QSGDCompressor(levels=3, bucket_size=10, seed=5)
    a, b = comp.compress(x), comp.compress(x)  # steps 0 and 1 from the counter
    fresh = QSGDCompressor(levels=3, bucket_size=10, seed=5)
    assert a.to_bytes() == fresh.compress(x.astype(np.float32), step=0).to_bytes()
    assert b.to_bytes() == fresh.compress(x, step=1).to_bytes()
    assert a.to_bytes() != b.to_bytes()
    # explicit steps leave the counter alone; another stream is another draw
    assert comp.compress(x).to_bytes() == fresh.compress(x, step=2).to_bytes()
    other = QSGDCompressor(levels=3, bucket_size=10, seed=5, stream=1)
    assert other.compress(x, step=0).to_bytes() != a.to_bytes()


def test_payload_size_and_round_trip(rng):
    x = rng.standard_normal(1001).astype(np.float32)
    comp = QSGDCompressor(levels=10, bucket_size=100, norm="max", seed=2)
    p = comp.compress(x, step=0)
    # header 12 + meta 10 + 11 scales + 1001 codes of 5 bits + CRC 4
    assert p.nbytes == 12 + 10 + 4 * 11 + (1001 * 5 + 7) // 8 + 4 == len(p.to_bytes())
    q = comp.from_bytes(p.to_bytes())
    assert isinstance(q, QSGDPayload)
    assert (q.n, q.levels, q.norm, q.bucket_size) == (1001, 10, "max", 100)
    np.testing.assert_array_equal(comp.decompress(q), comp.decompress(p))
    assert laqcore.wire.payload_from_bytes(p.to_bytes()).to_bytes() == p.to_bytes()
    with pytest.raises(ValueError, match="read-only"):
        p.scales[0] = 1.0


def test_elias_bits_match_reference(rng):
    x = rng.standard_normal(300).astype(np.float32)
    p = laqcore.qsgd_quantize(x, 4, bucket_size=64, seed=1)
    codes = ref.unpack_bits(p.packed, p.code_bits, x.size).astype(int)
    expected_bits = 32 * p.scales.size
    for b in range(p.scales.size):
        last = -1
        for i in range(b * 64, min((b + 1) * 64, x.size)):
            level = codes[i] >> 1
            if level:
                # 1-based distance to the previous non-zero, or to the bucket start
                gap = i - last if last >= 0 else i - b * 64 + 1
                expected_bits += ref.elias_omega_length(gap) + 1 + ref.elias_omega_length(level)
                last = i
    assert qsgd_elias_bits(p) == expected_bits
    assert [ref.elias_omega_length(m) for m in (1, 2, 3, 4, 16)] == [1, 3, 3, 6, 11]


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(("x", "exc", "match"), BAD_VECTORS)
def test_bad_vectors(x, exc, match):
    check_bad_vectors(QSGDCompressor(levels=3, bucket_size=2).compress, x, exc, match)


def test_nan_in_parallel_path():
    nan_in_large_input(QSGDCompressor(levels=3, bucket_size=512, norm="max").compress)
    nan_in_large_input(QSGDCompressor(levels=3, bucket_size=2**20 + 3).compress)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"levels": 0}, ValueError, "levels must be in"),
        ({"levels": 128}, ValueError, "fit in 8 bits"),
        ({"levels": -3}, ValueError, "levels"),
        ({"levels": 2.5}, TypeError, "levels"),
        ({"levels": True}, TypeError, "levels"),
        ({"bucket_size": 0}, ValueError, "bucket_size"),
        ({"bucket_size": -4}, ValueError, "bucket_size"),
        ({"bucket_size": 1.5}, TypeError, "bucket_size"),
        ({"norm": "l1"}, ValueError, "norm"),
        ({"norm": None}, TypeError, "norm"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 2**64}, ValueError, "seed"),
        ({"stream": 2**62}, ValueError, "stream"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        QSGDCompressor(**kwargs)


def test_l2_norm_overflow_is_reported():
    x = np.full(4, 3e38, dtype=np.float32)
    with pytest.raises(OverflowError, match="overflows float32") as info:
        QSGDCompressor(levels=3, bucket_size=4).compress(x)
    assert isinstance(info.value, ValueError)
    p = QSGDCompressor(levels=3, bucket_size=4, norm="max").compress(x)
    np.testing.assert_array_equal(laqcore.qsgd_dequantize(p), x)


def test_bad_step():
    comp = QSGDCompressor()
    with pytest.raises(ValueError, match="step"):
        comp.compress(np.ones(3), step=-1)
    with pytest.raises(TypeError, match="step"):
        comp.compress(np.ones(3), step=1.0)


def test_native_checks_without_python_layer():
    x = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="levels"):
        _core.qsgd.quantize(x, 200, 2, "l2", 0)
    with pytest.raises(ValueError, match="bucket_size"):
        _core.qsgd.quantize(x, 3, 0, "l2", 0)
    with pytest.raises(ValueError, match="norm"):
        _core.qsgd.quantize(x, 3, 2, "l1", 0)
    s, p = _core.qsgd.quantize(x, 3, 2, "l2", 0)
    with pytest.raises(ValueError, match="scales has"):
        _core.qsgd.dequantize(p, s[:1], 4, 3, 2)
    with pytest.raises(ValueError, match="packed has"):
        _core.qsgd.dequantize(p[:1], s, 4, 3, 2)
    with pytest.raises(TypeError):
        _core.qsgd.quantize(x.astype(np.float64), 3, 2, "l2", 0)


def test_corrupt_frames(rng):
    comp = QSGDCompressor(levels=4, bucket_size=8, seed=1)
    x = rng.standard_normal(21).astype(np.float32)
    p = comp.compress(x, step=0)
    check_generic_corruption(comp, p)
    frame = p.to_bytes()
    meta = HEADER
    with pytest.raises(ValueError, match="levels"):
        comp.from_bytes(patch_frame(frame, meta, bytes([0])))
    with pytest.raises(ValueError, match="levels"):
        comp.from_bytes(patch_frame(frame, meta, bytes([128])))
    with pytest.raises(ValueError, match="norm id"):
        comp.from_bytes(patch_frame(frame, meta + 1, bytes([2])))
    with pytest.raises(ValueError, match="bucket_size"):
        comp.from_bytes(patch_frame(frame, meta + 2, struct.pack("<Q", 0)))
    body = meta + QSGDPayload.META.size
    for bad_scale in (np.nan, np.inf, -1.0):
        with pytest.raises(ValueError, match="scales"):
            comp.from_bytes(patch_frame(frame, body, struct.pack("<f", bad_scale)))
    # a code whose level (7) exceeds levels (4): valid frame, rejected when decoding
    codes_at = body + 4 * 3
    bad = comp.from_bytes(patch_frame(frame, codes_at, bytes([0x0E])))
    with pytest.raises(ValueError, match="level 7"):
        comp.decompress(bad)
    # non-zero padding bits of the last byte (21 codes * 4 bits leave 4 padding bits)
    bad = comp.from_bytes(patch_frame(frame, len(frame) - 5, bytes([0xF0])))
    with pytest.raises(ValueError, match="padding"):
        comp.decompress(bad)
