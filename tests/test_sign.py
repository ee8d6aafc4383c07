from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import reference as ref
from compressor_cases import (
    BAD_VECTORS,
    HEADER,
    check_bad_vectors,
    check_generic_corruption,
    nan_in_large_input,
    patch_frame,
    thread_outputs,
)
from laqcore import _core
from laqcore.compressors import SignCompressor


def test_matches_reference(rng, length):
    x = rng.standard_normal(length).astype(np.float32)
    x[rng.random(length) < 0.1] = 0.0
    comp = SignCompressor()
    p = comp.compress(x)
    assert p.scale == ref.sign_scale(x)
    np.testing.assert_array_equal(p.packed, ref.pack_bits(ref.sign_bits(x), 1))
    expected = np.where(x < 0, -np.float32(p.scale), np.float32(p.scale))
    np.testing.assert_array_equal(comp.decompress(p), expected)
    assert p.nbytes == 12 + 4 + (length + 7) // 8 + 4 == len(p.to_bytes())


def test_zeros_are_sent_as_plus_scale():
    comp = SignCompressor()
    p = comp.compress(np.array([0.0, -0.0, 4.0, -2.0], dtype=np.float32))
    assert p.scale == 1.5
    assert comp.decompress(p).tolist() == [1.5, 1.5, 1.5, -1.5]
    z = comp.compress(np.zeros(5, dtype=np.float32))
    assert z.scale == 0.0
    np.testing.assert_array_equal(comp.decompress(z), 0.0)


def test_same_output_for_any_thread_count(rng):
    x = rng.standard_normal(2**20 + 3).astype(np.float32)
    comp = SignCompressor()
    outs = thread_outputs(lambda: comp.compress(x).to_bytes())
    assert outs[0] == outs[1] == outs[2]
    decoded = thread_outputs(lambda: comp.decompress(comp.compress(x)))
    np.testing.assert_array_equal(decoded[0], decoded[1])
    np.testing.assert_array_equal(decoded[0], decoded[2])


@given(
    hnp.arrays(np.float32, st.integers(1, 500), elements=st.floats(-(2.0**100), 2.0**100, width=32))
)
def test_round_trip_property(x):
    comp = SignCompressor()
    p = comp.from_bytes(comp.compress(x).to_bytes())
    out = comp.decompress(p)
    assert np.all(np.abs(out) == np.float32(p.scale))
    # Sign bits, not `out < 0`: the scale mean|x| of subnormal inputs can round to 0 (x =
    # [-1e-45, 0] decodes to [-0.0, 0.0]), and -0.0 < 0 is false.
    assert np.all(np.signbit(out) == (x < 0))
    # ||C(x)||_1 = ||x||_1 up to rounding of the float32 scale (absolutely, half the smallest
    # subnormal per coordinate, where the scale is subnormal)
    assert np.abs(out.astype(np.float64)).sum() == pytest.approx(
        np.abs(x.astype(np.float64)).sum(), rel=1e-6, abs=x.size * 7.1e-46
    )


@pytest.mark.parametrize(("x", "exc", "match"), BAD_VECTORS)
def test_bad_vectors(x, exc, match):
    check_bad_vectors(SignCompressor().compress, x, exc, match)


def test_nan_in_parallel_path():
    nan_in_large_input(SignCompressor().compress)


def test_corrupt_frames(rng):
    comp = SignCompressor()
    x = rng.standard_normal(11).astype(np.float32)
    p = comp.compress(x)
    check_generic_corruption(comp, p)
    frame = p.to_bytes()
    for bad in (np.nan, np.inf, -1.0):
        with pytest.raises(ValueError, match="scale"):
            comp.from_bytes(patch_frame(frame, HEADER, struct.pack("<f", bad)))
    bad = comp.from_bytes(patch_frame(frame, len(frame) - 5, bytes([0xF8])))
    with pytest.raises(ValueError, match="padding"):
        comp.decompress(bad)
    with pytest.raises(ValueError, match="packed has"):
        _core.sign.decompress(np.zeros(1, dtype=np.uint8), 11, 1.0)
