from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from laqcore.compressors import TernGradCompressor, TernGradPayload


def check_against_reference(x, clip, shared=None, seed=0, step=0):
    comp = TernGradCompressor(clip_factor=clip, seed=seed)
    p = comp.compress(x, step=step, shared_scaler=shared)
    local, thr = ref.terngrad_scaler(x, clip or 0.0)
    assert comp.local_scaler(x) == local
    scaler = local if shared is None else float(np.float32(shared))
    assert p.scaler == scaler
    codes = ref.terngrad_codes(x, thr, scaler, ref.uniform01(ref.make_key(seed, step, 0), x.size))
    np.testing.assert_array_equal(p.packed, ref.pack_bits(codes, 2))
    np.testing.assert_array_equal(comp.decompress(p), ref.terngrad_values(codes, scaler))
    return p


@pytest.mark.parametrize("clip", [None, 2.5, 1.0])
def test_matches_reference(rng, length, clip):
    x = (rng.standard_normal(length) * 0.1).astype(np.float32)
    if length > 1:
        x[: length // 3] *= 30  # outliers, so clipping is active
    p = check_against_reference(x, clip, seed=length, step=2)
    assert p.nbytes == 12 + 4 + (2 * length + 7) // 8 + 4 == len(p.to_bytes())


@pytest.mark.parametrize("clip", [None, 2.5])
def test_shared_scaler(rng, clip):
    x = rng.standard_normal(1000).astype(np.float32)
    comp = TernGradCompressor(clip_factor=clip)
    local = comp.local_scaler(x)
    for shared in (local, local * 1.5, np.float32(local) * 4):
        check_against_reference(x, clip, shared=float(shared), step=1)
    with pytest.raises(ValueError, match="smaller than this tensor's max"):
        comp.compress(x, shared_scaler=local * 0.99)
    for bad, exc in (
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("1.0", TypeError),
    ):
        with pytest.raises(exc, match="shared_scaler"):
            comp.compress(x, shared_scaler=bad)


def test_clipping_threshold_is_c_sigma(rng):
    x = rng.standard_normal(5000).astype(np.float32)
    x[0] = 100.0
    s, thr = _core.terngrad.scaler(x, 2.5)
    sigma = np.std(x.astype(np.float64))
    assert thr == pytest.approx(2.5 * sigma, rel=1e-6)
    assert s == thr  # the outlier is clipped, so the scaler is the threshold
    s_off, thr_off = _core.terngrad.scaler(x, 0.0)
    assert s_off == 100.0
    assert thr_off == np.inf


def test_zero_input_gives_zero_payload():
    comp = TernGradCompressor(clip_factor=2.5)
    p = comp.compress(np.zeros(9, dtype=np.float32))
    assert p.scaler == 0.0
    assert not np.any(p.packed)
    np.testing.assert_array_equal(comp.decompress(comp.from_bytes(p.to_bytes())), 0.0)
    # a shared scaler with a zero tensor is fine too
    q = comp.compress(np.zeros(9, dtype=np.float32), shared_scaler=3.0)
    np.testing.assert_array_equal(comp.decompress(q), 0.0)


@pytest.mark.parametrize("x", [[-0.5] * 6, [-2.0], [3.0, 3.0], [0.5] * 100])
def test_constant_tensor_is_not_clipped(x):
    """sigma = 0 leaves a tensor unclipped: c * 0 used to send every constant tensor (any of
    length 1) as zero, so the hooks' TernGrad never moved a one-parameter model."""
    x = np.array(x, dtype=np.float32)
    for clip in (2.5, None):
        comp = TernGradCompressor(clip_factor=clip)
        assert comp.local_scaler(x) == np.abs(x).max()
        assert ref.terngrad_scaler(x, clip or 0.0) == (np.abs(x).max(), np.inf)
        np.testing.assert_array_equal(comp.decompress(comp.compress(x)), x)  # p = 1 everywhere


def test_same_output_for_any_thread_count(rng):
    x = rng.standard_normal(2**20 + 3).astype(np.float32)
    comp = TernGradCompressor(clip_factor=2.5, seed=8)
    outs = thread_outputs(lambda: comp.compress(x, step=5).to_bytes())
    assert outs[0] == outs[1] == outs[2]
    decoded = thread_outputs(lambda: comp.decompress(comp.compress(x, step=5)))
    np.testing.assert_array_equal(decoded[0], decoded[2])
    scalers = thread_outputs(lambda: _core.terngrad.scaler(x, 2.5))
    assert scalers[0] == scalers[1] == scalers[2]


def test_large_matches_reference(rng):
    x = rng.standard_normal(LENGTHS[-1]).astype(np.float32)
    check_against_reference(x, 2.5, seed=3)


@pytest.mark.parametrize("clip", [None, 2.0])
def test_unbiased_over_many_steps(clip):
    x = np.random.default_rng(3).standard_normal(30).astype(np.float32)
    x[0] = 0.0
    comp = TernGradCompressor(clip_factor=clip, seed=21)
    s, thr = _core.terngrad.scaler(x, clip or 0.0)
    target = np.sign(x) * np.minimum(np.abs(x), thr)  # TernGrad is unbiased for clip(g)
    trials = 4000
    mean = mean_of_draws(comp, x, trials)
    p = np.abs(target) / s
    sd = s * np.sqrt(p * (1 - p) / trials)
    assert np.all(np.abs(mean - target) <= 5 * sd + 1e-6)


@given(
    FINITE_F32_VECTORS,
    st.sampled_from([None, 1.0, 2.5]),
    st.integers(0, 2**64 - 1),
)
def test_round_trip_property(x, clip, seed):
    comp = TernGradCompressor(clip_factor=clip, seed=seed)
    p = comp.from_bytes(comp.compress(x, step=0).to_bytes())
    out = comp.decompress(p)
    assert set(np.unique(out)) <= {0.0, p.scaler, -p.scaler}
    assert np.all(out.astype(np.float64) * x >= 0)
    # |x| == scaler (after clipping) is always kept
    if clip is None and p.scaler > 0:
        top = np.abs(x) == p.scaler
        assert np.all(np.abs(out[top]) == p.scaler)


# --- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(("x", "exc", "match"), BAD_VECTORS)
def test_bad_vectors(x, exc, match):
    check_bad_vectors(TernGradCompressor().compress, x, exc, match)
    check_bad_vectors(TernGradCompressor().local_scaler, x, exc, match)


def test_nan_in_parallel_path():
    nan_in_large_input(TernGradCompressor().compress)
    nan_in_large_input(TernGradCompressor(clip_factor=None).local_scaler)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"clip_factor": -1.0}, ValueError, "clip_factor"),
        ({"clip_factor": float("nan")}, ValueError, "clip_factor"),
        ({"clip_factor": "2.5"}, TypeError, "clip_factor"),
        ({"seed": -1}, ValueError, "seed"),
        ({"stream": 1.0}, TypeError, "stream"),
    ],
)
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        TernGradCompressor(**kwargs)


def test_corrupt_frames(rng):
    comp = TernGradCompressor(seed=1)
    x = rng.standard_normal(13).astype(np.float32)
    p = comp.compress(x, step=0)
    check_generic_corruption(comp, p)
    frame = p.to_bytes()
    for bad in (np.nan, np.inf, -2.0):
        with pytest.raises(ValueError, match="scaler"):
            comp.from_bytes(patch_frame(frame, HEADER, struct.pack("<f", bad)))
    body = HEADER + TernGradPayload.META.size
    bad = comp.from_bytes(patch_frame(frame, body, bytes([0b11])))  # code 3
    with pytest.raises(ValueError, match="code 3"):
        comp.decompress(bad)
    bad = comp.from_bytes(patch_frame(frame, len(frame) - 5, bytes([0xFF])))  # padding
    with pytest.raises(ValueError, match="padding"):
        comp.decompress(bad)
    with pytest.raises(ValueError, match="packed has"):
        _core.terngrad.dequantize(np.zeros(2, dtype=np.uint8), 13, 1.0)
