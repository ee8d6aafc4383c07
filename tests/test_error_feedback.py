from __future__ import annotations

import numpy as np
import pytest

import laqcore
from laqcore import ErrorFeedback


def test_compensate_compress_update_formula(rng):
    comp = laqcore.get_compressor("topk", k=3)
    ef = ErrorFeedback(comp)
    assert ef.name == "ef_topk"
    assert ef.memory is None
    e = np.zeros(10, dtype=np.float32)
    for step in range(5):
        x = rng.standard_normal(10).astype(np.float32)
        p = x + e
        np.testing.assert_array_equal(ef.compensate(x), p)
        payload = ef.compress(x, step=step)
        assert payload.to_bytes() == comp.compress(p).to_bytes()
        e = p - comp.decompress(payload)
        np.testing.assert_array_equal(ef.memory, e)


@pytest.mark.parametrize(
    ("name", "kwargs", "contractive"),
    [
        ("sign", {}, True),
        ("topk", {"k": 5}, True),
        ("randk", {"k": 5, "seed": 1}, True),
        ("qsgd", {"levels": 1, "bucket_size": 8, "seed": 1}, False),
        ("terngrad", {"seed": 1}, False),
        ("sparse_quant", {"k": 5, "bits": 2, "seed": 1}, False),
    ],
)
def test_sent_plus_memory_telescopes(name, kwargs, contractive, rng):
    # sum_t D(C(p_t)) + e_T == sum_t x_t: nothing is lost, only delayed (EF-SGD, §7)
    ef = ErrorFeedback(laqcore.get_compressor(name, **kwargs))
    total_in = np.zeros(50)
    total_sent = np.zeros(50)
    for step in range(40):
        x = rng.standard_normal(50).astype(np.float32)
        total_in += x
        total_sent += ef.decompress(ef.from_bytes(ef.compress(x, step=step).to_bytes()))
    np.testing.assert_allclose(total_sent + ef.memory, total_in, rtol=1e-5, atol=1e-3)
    # a delta-compressor (||C(x) - x||^2 <= (1 - delta) ||x||^2) keeps ||e|| = O(||x||);
    # unbiased quantizers with variance above ||x||^2 (QSGD s = 1, TernGrad) need not
    if contractive:
        assert np.linalg.norm(ef.memory) < 10 * np.sqrt(50)


def test_ef_sign_converges_on_a_constant_signal():
    # sending the same x repeatedly: the running mean of what arrives tends to x
    x = np.linspace(-1.0, 2.0, 30).astype(np.float32)
    ef = ErrorFeedback(laqcore.get_compressor("sign"))
    sent = sum((ef.decompress(ef.compress(x)) for _ in range(400)), np.zeros(30))
    assert np.abs(sent / 400 - x).max() < 0.1
    plain = laqcore.get_compressor("sign")
    assert np.abs(plain.decompress(plain.compress(x)) - x).max() > 0.5


def test_reset_and_length_mismatch():
    ef = ErrorFeedback(laqcore.get_compressor("topk", k=1))
    ef.compress(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="one ErrorFeedback per vector"):
        ef.compress(np.ones(4))
    ef.reset()
    assert ef.memory is None
    ef.compress(np.ones(4))
    assert ef.memory.shape == (4,)


def test_bad_input():
    with pytest.raises(TypeError, match="Compressor protocol"):
        ErrorFeedback(object())  # type: ignore[arg-type]
    ef = ErrorFeedback(laqcore.get_compressor("sign"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        ef.compress(np.array([1.0, np.inf]))
    assert ef.memory is None  # a failed call leaves the memory alone
    with pytest.raises(TypeError, match="floating-point"):
        ef.compress(np.arange(3))
    with pytest.raises(ValueError, match="empty"):
        ef.compress(np.zeros(0))
    payload = ef.compress(np.ones(3))
    with pytest.raises(ValueError, match="length"):
        ef.update(np.ones(5, dtype=np.float32), payload)
