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
from conftest import LENGTHS
from laqcore import _core
from laqcore.compressors import (
    RandKCompressor,
    SparseQuantCompressor,
    SparseQuantPayload,
    TopKCompressor,
    TopKPayload,
)

SELECTION_DRAW = 2**62  # rand-k selection stream offset (compressors/base.py)


def k_values(n):
    return sorted({1, max(1, n // 3), n})


# --- top-k --------------------------------------------------------------------------------
def test_topk_matches_reference(rng, length):
    x = rng.standard_normal(length).astype(np.float32)
    for k in k_values(length):
        p = TopKCompressor(k=k).compress(x)
        expected = ref.topk_indices(x, k)
        np.testing.assert_array_equal(p.indices, expected)
        np.testing.assert_array_equal(p.values, x[expected])
        dense = np.zeros_like(x)
        dense[expected] = x[expected]
        np.testing.assert_array_equal(TopKCompressor(k=k).decompress(p), dense)
        assert p.nbytes == 12 + 8 + 8 * k + 4 == len(p.to_bytes())


def test_topk_ties_go_to_lower_index():
    x = np.array([1.0, -2.0, 2.0, 0.0, -0.0, 2.0, -1.0], dtype=np.float32)
    assert TopKCompressor(k=2).compress(x).indices.tolist() == [1, 2]
    assert TopKCompressor(k=3).compress(x).indices.tolist() == [1, 2, 5]
    assert TopKCompressor(k=4).compress(x).indices.tolist() == [0, 1, 2, 5]
    assert TopKCompressor(k=6).compress(x).indices.tolist() == [0, 1, 2, 3, 5, 6]
    many = np.repeat(np.float32([3.0, -3.0, 1.0]), 1000)
    np.testing.assert_array_equal(
        TopKCompressor(k=1500).compress(many).indices, ref.topk_indices(many, 1500)
    )


@pytest.mark.parametrize("k", [1, 77, 2**16, 2**17 - 1, 2**17])
def test_topk_large_inputs_with_heavy_ties(k):
    # n above the parallel threshold takes the histogram path (sparse.cpp select_large);
    # a few distinct values put almost everything into one histogram bin
    rng = np.random.default_rng(k)
    x = rng.choice(np.float32([0.0, -0.0, 1.0, -1.0, 1.5, 3.0]), size=2**17)
    p = TopKCompressor(k=k).compress(x)
    np.testing.assert_array_equal(p.indices, ref.topk_indices(x, k))
    np.testing.assert_array_equal(p.values, x[p.indices])
    zeros = np.zeros(2**17, dtype=np.float32)
    zeros[[5, 70000]] = [-2.0, 1.0]
    assert TopKCompressor(k=3).compress(zeros).indices.tolist() == [0, 5, 70000]


@given(
    hnp.arrays(
        np.float32,
        st.integers(1, 200),
        elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, -7.0, float(np.float32(1e-30))]),
    ),
    st.data(),
)
def test_topk_property_with_ties(x, data):
    k = data.draw(st.integers(1, x.size))
    p = TopKCompressor(k=k).compress(x)
    np.testing.assert_array_equal(p.indices, ref.topk_indices(x, k))
    kept = np.zeros(x.size, dtype=bool)
    kept[p.indices] = True
    if k < x.size:
        assert np.abs(x[kept]).min() >= np.abs(x[~kept]).max()


def test_topk_ratio():
    x = np.arange(1, 101, dtype=np.float32)
    assert TopKCompressor(ratio=0.1).compress(x).indices.tolist() == list(range(90, 100))
    assert TopKCompressor(ratio=0.001).compress(x).k == 1  # at least one coordinate
    assert TopKCompressor(ratio=1.0).compress(x).k == 100


# --- rand-k -------------------------------------------------------------------------------
def test_randk_matches_reference(rng, length):
    x = rng.standard_normal(length).astype(np.float32)
    for k in k_values(length):
        comp = RandKCompressor(k=k, seed=length, stream=2)
        p = comp.compress(x, step=7)
        expected = ref.randk_indices(ref.make_key(length, 7, 2), length, k)
        np.testing.assert_array_equal(p.indices, expected)
        np.testing.assert_array_equal(p.values, x[expected])
        assert comp.from_bytes(p.to_bytes()).to_bytes() == p.to_bytes()


def test_randk_is_uniform_and_changes_with_step():
    n, k, trials = 50, 5, 4000
    comp = RandKCompressor(k=k, seed=1)
    x = np.ones(n, dtype=np.float32)
    counts = np.zeros(n)
    distinct_draws: set[tuple[int, ...]] = set()
    for step in range(trials):
        idx = comp.compress(x, step=step).indices
        assert np.unique(idx).size == k
        counts[idx] += 1
        distinct_draws.add(tuple(idx))
    assert len(distinct_draws) > trials * 0.9  # C(50, 5) ~ 2e6 subsets: repeats are rare
    p = k / n  # inclusion probability of each index
    sd = np.sqrt(trials * p * (1 - p))
    assert np.all(np.abs(counts - trials * p) <= 5 * sd)


def test_randk_rescale_is_unbiased_in_expectation():
    x = np.random.default_rng(2).standard_normal(20).astype(np.float32)
    comp = RandKCompressor(k=4, rescale=True, seed=3)
    p = comp.compress(x, step=0)
    np.testing.assert_allclose(p.values, x[p.indices] * np.float32(5.0), rtol=1e-6)
    trials = 4000
    mean = (
        sum((comp.decompress(comp.compress(x, step=s)) for s in range(trials)), np.zeros(x.size))
        / trials
    )
    sd = np.abs(x) * np.sqrt((20 / 4 - 1) / trials)  # std of x_i * 5 * Bernoulli(1/5)
    assert np.all(np.abs(mean - x) <= 5 * sd + 1e-6)


# --- sparse + quantized -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "bits"),
    [(n, b) for n in LENGTHS if n <= 1000 for b in (2, 3, 4, 8)] + [(LENGTHS[-1], 3)],
)
@pytest.mark.parametrize("selection", ["topk", "randk"])
def test_sparse_quant_matches_reference(rng, length, bits, selection):
    x = rng.standard_normal(length).astype(np.float32)
    k = max(1, length // 3)
    comp = SparseQuantCompressor(k=k, bits=bits, selection=selection, seed=5, stream=1)
    p = comp.compress(x, step=3)
    if selection == "topk":
        idx = ref.topk_indices(x, k)
    else:
        idx = ref.randk_indices(ref.make_key(5, 3, 1 + SELECTION_DRAW), length, k)
    np.testing.assert_array_equal(p.indices, idx)
    levels = 2 ** (bits - 1) - 1
    values = x[idx]
    scales = ref.qsgd_scales(values, k, "max")
    codes = ref.qsgd_codes(values, levels, k, scales, ref.uniform01(ref.make_key(5, 3, 1), k))
    assert p.scale == scales[0]
    np.testing.assert_array_equal(p.packed, ref.pack_bits(codes, bits))
    dense = np.zeros_like(x)
    dense[idx] = ref.qsgd_values(codes, scales, levels, k)
    np.testing.assert_allclose(comp.decompress(p), dense, rtol=1e-6, atol=0)
    assert p.nbytes == 12 + 14 + 4 * k + (k * bits + 7) // 8 + 4 == len(p.to_bytes())
    q = comp.from_bytes(p.to_bytes())
    assert (q.k, q.bits, q.selection, q.scale) == (k, bits, selection, p.scale)


def test_sparse_quant_unbiased_given_selection():
    x = np.random.default_rng(4).standard_normal(30).astype(np.float32)
    comp = SparseQuantCompressor(k=10, bits=2, seed=9)  # 1 level: values in {0, +-max}
    idx = ref.topk_indices(x, 10)
    trials = 3000
    mean = (
        sum((comp.decompress(comp.compress(x, step=s)) for s in range(trials)), np.zeros(x.size))
        / trials
    )
    m = np.abs(x[idx]).max()
    p = np.abs(x[idx]) / m
    sd = m * np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(mean[idx] - x[idx]) <= 5 * sd + 1e-6)
    assert np.count_nonzero(np.delete(mean, idx)) == 0


# --- threads, bad input, frames -------------------------------------------------------------
@pytest.mark.parametrize(
    "comp",
    [
        TopKCompressor(k=1000),
        RandKCompressor(ratio=0.01, seed=2),
        SparseQuantCompressor(k=5000, bits=3, selection="randk", seed=2),
    ],
    ids=["topk", "randk", "sparse_quant"],
)
def test_same_output_for_any_thread_count(rng, comp):
    x = rng.standard_normal(2**20 + 3).astype(np.float32)
    outs = thread_outputs(lambda: comp.compress(x, step=1).to_bytes())
    assert outs[0] == outs[1] == outs[2]
    nan_in_large_input(lambda v: comp.compress(v, step=1))


COMPRESSORS = [
    TopKCompressor(k=2),
    RandKCompressor(k=2),
    SparseQuantCompressor(k=2),
]


@pytest.mark.parametrize("comp", COMPRESSORS, ids=["topk", "randk", "sparse_quant"])
@pytest.mark.parametrize(("x", "exc", "match"), BAD_VECTORS)
def test_bad_vectors(comp, x, exc, match):
    check_bad_vectors(comp.compress, x, exc, match)


@pytest.mark.parametrize("cls", [TopKCompressor, RandKCompressor, SparseQuantCompressor])
def test_bad_k(cls):
    with pytest.raises(ValueError, match="larger than the vector length"):
        cls(k=5).compress(np.ones(4, dtype=np.float32))
    for kwargs, exc, match in [
        ({"k": 0}, ValueError, "k must be in"),
        ({"k": -1}, ValueError, "k must be in"),
        ({"k": 2.0}, TypeError, "k must be an integer"),
        ({}, TypeError, "exactly one of k"),
        ({"k": 2, "ratio": 0.5}, TypeError, "exactly one of k"),
        ({"ratio": 0.0}, ValueError, "ratio"),
        ({"ratio": 1.5}, ValueError, "ratio"),
        ({"ratio": float("nan")}, ValueError, "ratio"),
        ({"ratio": "0.1"}, TypeError, "ratio"),
    ]:
        with pytest.raises(exc, match=match):
            cls(**kwargs)


def test_native_k_checks():
    x = np.ones(4, dtype=np.float32)
    for k in (0, 5):
        with pytest.raises(ValueError, match="k must be in"):
            _core.sparse.topk(x, k)
        with pytest.raises(ValueError, match="k must be in"):
            _core.sparse.randk(x, k, 0)


def test_bad_sparse_quant_parameters():
    for bits, exc in ((1, ValueError), (9, ValueError), (4.0, TypeError)):
        with pytest.raises(exc, match="bits"):
            SparseQuantCompressor(k=1, bits=bits)
    with pytest.raises(ValueError, match="selection"):
        SparseQuantCompressor(k=1, selection="threshold")
    with pytest.raises(TypeError, match="rescale"):
        RandKCompressor(k=1, rescale=1)


def _index_offset():
    return HEADER + TopKPayload.META.size


@pytest.mark.parametrize("comp", COMPRESSORS, ids=["topk", "randk", "sparse_quant"])
def test_corrupt_frames(rng, comp):
    x = rng.standard_normal(9).astype(np.float32)
    p = comp.compress(x, step=0)
    check_generic_corruption(comp, p)
    frame = p.to_bytes()
    at = HEADER + type(p).META.size
    for idx, match in [
        ((5, 5), "strictly increasing"),
        ((6, 2), "strictly increasing"),
        ((1, 9), "out of range"),
    ]:
        with pytest.raises(ValueError, match=match):
            comp.from_bytes(patch_frame(frame, at, struct.pack("<2I", *idx)))
    for k in (0, 10):
        with pytest.raises(ValueError, match=r"k = \d+ entries"):
            comp.from_bytes(patch_frame(frame, HEADER, struct.pack("<Q", k)))


def test_corrupt_values_and_meta(rng):
    x = rng.standard_normal(9).astype(np.float32)
    topk = TopKCompressor(k=2)
    frame = topk.compress(x).to_bytes()
    with pytest.raises(ValueError, match="NaN or Inf"):
        topk.from_bytes(patch_frame(frame, _index_offset() + 8, struct.pack("<f", np.nan)))
    sq = SparseQuantCompressor(k=2, bits=3)
    frame = sq.compress(x, step=0).to_bytes()
    for offset, value, match in [
        (HEADER + 8, bytes([1]), "bits"),
        (HEADER + 8, bytes([9]), "bits"),
        (HEADER + 9, bytes([2]), "selection"),
        (HEADER + 10, struct.pack("<f", -1.0), "scale"),
        (HEADER + 10, struct.pack("<f", np.inf), "scale"),
    ]:
        with pytest.raises(ValueError, match=match):
            sq.from_bytes(patch_frame(frame, offset, value))
    # with bits = 3 there are 2**2 - 1 = 3 levels, so every 3-bit code is valid; a corrupt
    # last byte shows up as non-zero padding (2 codes * 3 bits leave 2 padding bits)
    body = HEADER + SparseQuantPayload.META.size + 8
    bad = sq.from_bytes(patch_frame(frame, body, bytes([0xC0])))
    with pytest.raises(ValueError, match="padding"):
        sq.decompress(bad)


def test_scatter_checks():
    idx = np.array([0, 3], dtype=np.uint32)
    vals = np.ones(2, dtype=np.float32)
    np.testing.assert_array_equal(_core.sparse.scatter(idx, vals, 4), [1, 0, 0, 1])
    with pytest.raises(ValueError, match="values has"):
        _core.sparse.scatter(idx, vals[:1], 4)
    with pytest.raises(ValueError, match="out of range"):
        _core.sparse.scatter(idx, vals, 3)
    with pytest.raises(ValueError, match="strictly increasing"):
        _core.sparse.scatter(idx[::-1].copy(), vals, 4)
    with pytest.raises(TypeError):
        _core.sparse.scatter(idx.astype(np.int64), vals, 4)


def test_scatter_of_no_entries():
    """The fuzz_decoders.cpp input 9f 02 01 00 (sparse decoder, n = 258, k = 0; a harness
    bug, fuzz/README.md finding 4) through the binding: k = 0 is a vector of zeros."""
    empty_idx, empty_vals = np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.float32)
    out = _core.sparse.scatter(empty_idx, empty_vals, 258)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.zeros(258, dtype=np.float32))
