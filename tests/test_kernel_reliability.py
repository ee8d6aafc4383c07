"""Regression tests of issue 14.11 (no inf from finite inputs) and 14.12 (payload fields
checked before they are serialised)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import laqcore
from laqcore import _core

FMAX = float(np.finfo(np.float32).max)


# --- 14.11: LAQ's reconstruction q_prev + dQ near the float32 maximum -----------------------
@pytest.mark.parametrize("block_size", [None, 8])
def test_laq_reconstruction_overflow_is_refused_at_the_sender(block_size):
    # v = [0.5, -0.9] * FMAX: R = 0.9 FMAX, the 1-bit code of 0.5 FMAX is +R, and
    # q_prev + dQ = 0.5 FMAX + 0.9 FMAX overflows float32.
    grad = np.array([FMAX, -0.9 * FMAX], dtype=np.float32)
    prev = np.array([0.5 * FMAX, 0.0], dtype=np.float32)
    with pytest.raises(ValueError, match="q_prev \\+ dQ overflows float32"):
        laqcore.laq_quantize(grad, prev, 1, block_size=block_size)
    iq = laqcore.InnovationQuantizer(2, 1, block_size=block_size)
    iq.commit(iq.propose(prev))  # q_prev = the 1-bit quantization of prev: finite
    assert np.all(np.isfinite(iq.q_prev))


@pytest.mark.parametrize("bits", [1, 2, 8])
def test_laq_near_the_float32_maximum_stays_finite(bits):
    grad = np.array([FMAX, -FMAX, 0.5 * FMAX, 0.0], dtype=np.float32)
    p = laqcore.laq_quantize(grad, None, bits)
    assert np.isfinite(p.err_sq) and np.isfinite(p.innov_sq)
    assert np.all(np.isfinite(laqcore.laq_dequantize(laqcore.LAQPayload.from_bytes(p.to_bytes()))))


# --- 14.11: QSGD / sparse_quant scales near the float32 maximum ------------------------------
@pytest.mark.parametrize("levels", [25, 31, 100, 127])  # float(s) * (FMAX / s) rounds to inf
def test_qsgd_frame_with_the_largest_scale_decodes_finite(levels):
    x = np.array([FMAX, -FMAX, 0.0, FMAX], dtype=np.float32)
    p = laqcore.qsgd_quantize(x, levels, bucket_size=4, norm="max")
    assert p.scales.tolist() == [FMAX]
    frame = p.to_bytes()
    decoded = laqcore.compressors.qsgd.QSGDPayload.from_bytes(frame)
    out = laqcore.qsgd_dequantize(decoded)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, [FMAX, -FMAX, 0.0, FMAX])  # clamped to the scale


def test_sparse_quant_frame_with_the_largest_scale_decodes_finite():
    comp = laqcore.get_compressor("sparse_quant", k=2, bits=6)  # s = 31 levels
    x = np.array([0.0, FMAX, 1.0, -FMAX], dtype=np.float32)
    p = comp.from_bytes(comp.compress(x).to_bytes())
    out = comp.decompress(p)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out, [0.0, FMAX, 0.0, -FMAX])


def test_randk_rescale_overflow_is_refused_at_the_sender():
    comp = laqcore.get_compressor("randk", k=1, rescale=True)
    x = np.full(8, 0.5 * FMAX, dtype=np.float32)
    with pytest.raises(ValueError, match="rand-k rescaling by n/k = 8 overflows float32"):
        comp.compress(x)
    small = comp.compress(np.ones(8, dtype=np.float32))  # the ordinary case still works
    assert small.values.tolist() == [8.0]


# --- 14.12: fields changed after construction ------------------------------------------------
def _qsgd() -> object:
    return laqcore.qsgd_quantize(np.linspace(-1, 1, 100, dtype=np.float32), 7, bucket_size=32)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("scales", np.array([np.nan, 1, 1, 1], np.float32), "finite"),
        ("scales", np.array([-1.0, 1, 1, 1], np.float32), "finite"),
        ("levels", 0, "levels"),
        ("levels", 200, "levels"),
        ("n", -5, "cannot be serialised"),
        ("n", 10**6, "expected exactly"),
        ("packed", np.zeros(3, np.uint8), "expected exactly"),
        ("packed", "not an array", "."),
    ],
)
def test_qsgd_payload_checked_at_serialisation(field, value, match):
    p = _qsgd()
    setattr(p, field, value)
    with pytest.raises((ValueError, TypeError), match=match):
        p.to_bytes()


def test_wrong_dtype_of_the_same_size_is_refused():
    p = _qsgd()
    p.packed = p.packed.view(np.int8)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="dtype int8"):
        p.to_bytes()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["terngrad", "sign", "topk", "none"])
def test_other_payloads_checked_at_serialisation(name):
    comp = laqcore.get_compressor(name) if name != "topk" else laqcore.get_compressor(name, k=3)
    p = comp.compress(np.linspace(-1, 1, 20, dtype=np.float32))
    assert comp.decompress(comp.from_bytes(p.to_bytes())) is not None  # unchanged: fine
    p.n = 1  # type: ignore[attr-defined]  # (a larger n is valid for a sparse payload)
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the decoder's, per kind
        p.to_bytes()


def test_laq_payload_fields_are_read_only():
    p = laqcore.laq_quantize(np.ones(16, dtype=np.float32), None, 4)
    for field, value in [("radius", np.nan), ("bits", 9), ("bits", 0), ("n", 3)]:
        with pytest.raises(AttributeError):
            setattr(p, field, value)
    with pytest.raises(ValueError, match="read-only"):
        p.packed[0] = 255
    assert laqcore.LAQPayload.from_bytes(p.to_bytes()) == p
    # Built from a writeable array, the payload keeps its own copy.
    packed = p.packed.copy()
    q = laqcore.LAQPayload(packed, p.radius, 4, 16)
    packed[:] = 255
    assert q == p


@pytest.mark.parametrize("copy_of", [copy.deepcopy, lambda p: pickle.loads(pickle.dumps(p))])
def test_copied_payloads_stay_read_only(copy_of):
    # The copies' arrays came back writeable: a copied LAQ payload could be given a NaN
    # radius, and its to_bytes (which trusts LAQ payloads not to change) wrote the frame.
    x = np.linspace(-1, 1, 40, dtype=np.float32)
    payloads = [laqcore.laq_quantize(x, None, 4), laqcore.laq_quantize(x, None, 3, block_size=8)]
    for name in ("qsgd", "sign", "terngrad", "rotation", "none"):
        payloads.append(laqcore.get_compressor(name).compress(x, step=0))
    payloads.append(laqcore.get_compressor("sparse_quant", k=5).compress(x, step=0))
    payloads.append(laqcore.get_compressor("qsgd", entropy=True).compress(x, step=0))
    for p in payloads:
        q = copy_of(p)
        assert q == p
        arrays = [v for v in vars(q).values() if isinstance(v, np.ndarray)]
        assert arrays, type(p).__name__
        for a in arrays:
            with pytest.raises(ValueError, match="read-only"):
                a[0] = a[0]
    q = copy_of(payloads[1])
    with pytest.raises(ValueError, match="read-only"):
        q.radii[0] = np.nan


def test_core_accumulate_rejects_wrong_output_length():
    p = laqcore.laq_quantize(np.ones(16, dtype=np.float32), None, 4)
    with pytest.raises(ValueError, match="aggregate has length 15, expected n = 16"):
        _core.laq.accumulate(np.zeros(15, np.float32), p.packed, 16, 4, p.radius, 1.0)
