from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import laqcore
from reference import pack_bits as ref_pack
from reference import unpack_bits as ref_unpack


def random_codes(rng: np.random.Generator, n: int, bits: int) -> np.ndarray:
    return rng.integers(0, 1 << bits, size=n, dtype=np.uint8)


def test_pack_matches_reference(rng, bits, length):
    codes = random_codes(rng, length, bits)
    packed = laqcore.pack_bits(codes, bits)
    assert packed.dtype == np.uint8
    assert packed.shape == (laqcore.packed_size(length, bits),)
    np.testing.assert_array_equal(packed, ref_pack(codes, bits))
    np.testing.assert_array_equal(laqcore.unpack_bits(packed, bits, length), codes)


def test_empty_round_trip(bits):
    empty = np.zeros(0, dtype=np.uint8)
    assert laqcore.pack_bits(empty, bits).size == 0
    assert laqcore.unpack_bits(empty, bits, 0).size == 0


def test_documented_nibble_order():
    # bits=4: code 2k in the low nibble of byte k (pack.hpp layout comment)
    packed = laqcore.pack_bits(np.array([0x1, 0x2, 0xF], dtype=np.uint8), 4)
    np.testing.assert_array_equal(packed, [0x21, 0x0F])


@given(st.integers(1, 8), st.lists(st.integers(0, 255), max_size=200))
def test_round_trip_property(bits, values):
    codes = np.array([v % (1 << bits) for v in values], dtype=np.uint8)
    packed = laqcore.pack_bits(codes, bits)
    np.testing.assert_array_equal(laqcore.unpack_bits(packed, bits, codes.size), codes)
    np.testing.assert_array_equal(ref_unpack(packed, bits, codes.size), codes)


def test_same_output_for_any_thread_count(rng):
    codes = random_codes(rng, 2**20 + 3, 3)
    outputs = []
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            outputs.append(laqcore.pack_bits(codes, 3))
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])


# --- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [0, 9, -1])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 8\]"):
        laqcore.pack_bits(np.zeros(4, dtype=np.uint8), bits)


@pytest.mark.parametrize("bits", [2.0, "4", None, True])
def test_bits_wrong_type(bits):
    with pytest.raises(TypeError, match="bits"):
        laqcore.pack_bits(np.zeros(4, dtype=np.uint8), bits)


def test_code_too_large_names_index():
    codes = np.array([1, 2, 16, 3], dtype=np.uint8)
    with pytest.raises(ValueError, match="code 16 at index 2 does not fit in 4 bits"):
        laqcore.pack_bits(codes, 4)


@pytest.mark.parametrize(
    "codes",
    [
        np.zeros(4, dtype=np.int64),
        np.zeros(4, dtype=np.float32),
        np.array(["a", "b"]),
        np.array([1, 2], dtype=object),
        [1, 2, 3],
    ],
    ids=["int64", "float32", "str", "object", "list"],
)
def test_codes_wrong_dtype(codes):
    with pytest.raises(TypeError, match="uint8"):
        laqcore.pack_bits(codes, 4)


def test_codes_not_1d_or_strided():
    with pytest.raises(ValueError, match="1-D"):
        laqcore.pack_bits(np.zeros((2, 2), dtype=np.uint8), 4)
    with pytest.raises(ValueError, match="contiguous"):
        laqcore.pack_bits(np.zeros(8, dtype=np.uint8)[::2], 4)


def test_unpack_wrong_length():
    packed = laqcore.pack_bits(np.ones(9, dtype=np.uint8), 3)  # 27 bits -> 4 bytes
    with pytest.raises(ValueError, match="need exactly 4"):
        laqcore.unpack_bits(packed[:3], 3, 9)
    with pytest.raises(ValueError, match="need exactly 4"):
        laqcore.unpack_bits(np.concatenate([packed, packed]), 3, 9)


def test_unpack_rejects_nonzero_padding():
    packed = laqcore.pack_bits(np.ones(9, dtype=np.uint8), 3)
    packed[-1] |= 0x80
    with pytest.raises(ValueError, match="padding bits"):
        laqcore.unpack_bits(packed, 3, 9)


def test_unpack_negative_n():
    with pytest.raises(ValueError, match="n must be >= 0"):
        laqcore.unpack_bits(np.zeros(1, dtype=np.uint8), 4, -1)
