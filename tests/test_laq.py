from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import laqcore
import reference as ref
from laqcore.wire import PayloadKind, pack_uploads, unpack_uploads


def make_pair(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A gradient and a previous quantized gradient on different scales."""
    grad = (rng.standard_normal(n) * 3.0).astype(np.float32)
    prev = (rng.standard_normal(n) * 0.5).astype(np.float32)
    return grad, prev


def assert_matches_reference(payload: laqcore.LAQPayload, expected: dict, bits: int) -> None:
    assert payload.radius == expected["radius"]
    np.testing.assert_array_equal(payload.packed, expected["packed"])
    np.testing.assert_array_equal(
        laqcore.unpack_bits(payload.packed, bits, payload.n), expected["codes"]
    )
    # dQ comes from the same table expression as the reference: exact, not approximate.
    np.testing.assert_array_equal(laqcore.laq_dequantize(payload), expected["dq"])
    # The sums' float32 lanes (laq.hpp, "Arithmetic") reproduced bit for bit.
    assert payload.err_sq == expected["err_sq"]
    assert payload.innov_sq == expected["innov_sq"]


# --- the kernel against the numpy reference ---------------------------------------------
def test_quantize_matches_reference(rng, bits, length):
    grad, prev = make_pair(rng, length)
    payload = laqcore.laq_quantize(grad, prev, bits)
    assert (payload.bits, payload.n) == (bits, length)
    assert payload.packed.dtype == np.uint8
    assert payload.packed.shape == (laqcore.packed_size(length, bits),)
    assert_matches_reference(payload, ref.laq_quantize(grad, prev, bits), bits)


@pytest.mark.parametrize("n", [1, 9, 1000])
def test_prev_none_is_zero(rng, bits, n):
    grad, _ = make_pair(rng, n)
    a = laqcore.laq_quantize(grad, None, bits)
    b = laqcore.laq_quantize(grad, np.zeros(n, dtype=np.float32), bits)
    assert a == b
    assert (a.err_sq, a.innov_sq) == (b.err_sq, b.innov_sq)
    assert_matches_reference(a, ref.laq_quantize(grad, None, bits), bits)


def test_codes_equal_official_formula(rng, bits):
    # With q_prev = 0 the innovation is exact in float32, so the codes must agree with the
    # official `quantd` (which adds delta inside the floor) up to exact ties, which random
    # normal data does not hit.
    grad = rng.standard_normal(4096).astype(np.float32)
    payload = laqcore.laq_quantize(grad, None, bits)
    official = ref.laq_official_quantd(grad, np.zeros(4096), bits)
    np.testing.assert_allclose(
        laqcore.laq_dequantize(payload), official, rtol=0, atol=2e-7 * payload.radius
    )


def test_float64_input_is_converted(rng):
    grad, prev = make_pair(rng, 100)
    a = laqcore.laq_quantize(grad.astype(np.float64), prev.astype(np.float64), 5)
    assert a == laqcore.laq_quantize(grad, prev, 5)


def test_list_input_is_accepted():
    p = laqcore.laq_quantize([1.0, -1.0, 0.5], [0.0, 0.0, 0.0], 8)
    assert p.n == 3
    assert p.radius == 1.0


@given(
    bits=st.integers(1, 8),
    data=st.data(),
)
def test_error_bound_property(bits, data):
    n = data.draw(st.integers(1, 300))
    elems = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)
    grad = data.draw(hnp.arrays(np.float32, n, elements=elems))
    prev = data.draw(hnp.arrays(np.float32, n, elements=elems))
    payload = laqcore.laq_quantize(grad, prev, bits)
    q_new = prev.copy()
    laqcore.laq_apply(q_new, payload)
    err = np.abs(q_new.astype(np.float64) - grad.astype(np.float64))
    radius = payload.radius
    # |dQ + q_prev - g| <= tau R, up to float32 rounding of v, of the table entry and of
    # the final addition (each at most half an ulp of a value bounded by R + |g|).
    slack = np.finfo(np.float32).eps * (radius + np.abs(grad.astype(np.float64)))
    assert np.all(err <= payload.tau * radius + slack)
    expected = ref.laq_quantize(grad, prev, bits)
    np.testing.assert_array_equal(payload.packed, expected["packed"])
    np.testing.assert_array_equal(q_new, expected["q_new"])


# --- radius edge cases -------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 9, 2**16 + 5])
def test_zero_radius(bits, n):
    grad = np.linspace(-2, 2, n, dtype=np.float32)
    payload = laqcore.laq_quantize(grad, grad.copy(), bits)
    assert payload.radius == 0.0
    assert not payload.packed.any()  # all codes 0 (documented choice for R == 0)
    dq = laqcore.laq_dequantize(payload)
    assert not dq.any()
    assert not np.signbit(dq).any()
    assert payload.err_sq == 0.0
    assert payload.innov_sq == 0.0
    q = grad.copy()
    laqcore.laq_apply(q, payload)
    np.testing.assert_array_equal(q, grad)
    zero = laqcore.laq_quantize(np.zeros(n, dtype=np.float32), None, bits)
    assert zero.radius == 0.0
    assert not zero.packed.any()


@pytest.mark.parametrize(
    "grad",
    [
        np.array([1e-45, 0.0, -1e-45, 5e-45], dtype=np.float32),  # subnormal radius
        np.array([3.0e38, -3.0e38, 1.0, 0.0], dtype=np.float32),  # near float32 max
        np.array([-7.5], dtype=np.float32),  # one element: the code is the top level
    ],
    ids=["subnormal", "huge", "single"],
)
def test_extreme_magnitudes(grad, bits):
    payload = laqcore.laq_quantize(grad, None, bits)
    assert_matches_reference(payload, ref.laq_quantize(grad, None, bits), bits)
    assert np.all(np.isfinite(laqcore.laq_dequantize(payload)))


def test_innovation_overflow_is_rejected():
    with pytest.raises(OverflowError, match="overflows float32") as info:
        laqcore.laq_quantize(
            np.array([3e38], dtype=np.float32), np.array([-3e38], dtype=np.float32), 4
        )
    # Its own type: an OverflowError (a DDP hook drops the step on every rank) that is still
    # the ValueError it was before it had one.
    assert isinstance(info.value, ValueError)
    assert type(info.value).__name__ == "FloatRangeError"


# --- decoders ----------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000, 2**20 + 3])
def test_apply_accumulate_dequantize_match_reference(rng, bits, n):
    grad, prev = make_pair(rng, n)
    payload = laqcore.laq_quantize(grad, prev, bits)
    expected = ref.laq_quantize(grad, prev, bits)
    codes = expected["codes"]

    q = prev.copy()
    laqcore.laq_apply(q, payload)
    np.testing.assert_array_equal(q, expected["q_new"])
    np.testing.assert_array_equal(q, ref.laq_decode_add(prev, codes, payload.radius, bits))

    aggregate = (rng.standard_normal(n) * 10).astype(np.float32)
    for weight in (1.0, 0.5, -2.0, 1.0 / 3.0):
        out = aggregate.copy()
        laqcore.laq_accumulate(out, payload, weight=weight)
        np.testing.assert_array_equal(
            out, ref.laq_decode_add(aggregate, codes, payload.radius, bits, weight)
        )


def test_apply_reproduces_err_sq_exactly(rng):
    # The sender's err_sq is computed from the same float32 reconstruction as laq_apply.
    grad, prev = make_pair(rng, 5000)
    payload = laqcore.laq_quantize(grad, prev, 3)
    q = prev.copy()
    laqcore.laq_apply(q, payload)
    assert payload.err_sq == sum(ref.laq_square_pieces(q - grad, payload.radius))
    # float32 lanes of 313 terms: within 630 rounding errors of 2^-24 of the exact sum
    diff = q.astype(np.float64) - grad.astype(np.float64)
    assert payload.err_sq == pytest.approx(float(np.sum(diff * diff)), rel=630 * 2.0**-24)


def test_lut_matches_reference(bits):
    for radius in (0.0, 1.0, 0.1234567, 3.0e38):
        r32 = float(np.float32(radius))
        np.testing.assert_array_equal(laqcore._core.laq.lut(r32, bits), ref.laq_lut(r32, bits))


def test_decoded_innov_sq_is_bit_identical(rng, bits):
    grad, prev = make_pair(rng, 70_001)
    payload = laqcore.laq_quantize(grad, prev, bits)
    decoded = laqcore.LAQPayload.from_bytes(payload.to_bytes())
    assert decoded.err_sq is None  # the receiver cannot know the sender's error
    assert decoded.innov_sq == payload.innov_sq


# --- determinism ---------------------------------------------------------------------------
def test_same_output_for_any_thread_count(rng):
    n = 2**20 + 3
    grad, prev = make_pair(rng, n)
    aggregate = rng.standard_normal(n).astype(np.float32)
    results = []
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            p = laqcore.laq_quantize(grad, prev, 3)
            agg = aggregate.copy()
            laqcore.laq_accumulate(agg, p, weight=0.25)
            results.append(
                (
                    p.packed.tobytes(),
                    p.radius,
                    p.err_sq,
                    p.innov_sq,
                    laqcore.laq_dequantize(p).tobytes(),
                    agg.tobytes(),
                    laqcore._core.laq.innov_sq(p.packed, n, 3, p.radius),
                )
            )
    assert results[1] == results[0]
    assert results[2] == results[0]


# --- wire format ---------------------------------------------------------------------------
def frame(
    n: int,
    meta: bytes,
    body: bytes,
    *,
    kind: int = int(PayloadKind.LAQ),
    magic: bytes = b"LQ",
    version: int = 1,
) -> bytes:
    """A frame built by hand (wire.py layout) with a valid CRC."""
    head = struct.pack("<2sBBQ", magic, version, kind, n) + meta + body
    return head + struct.pack("<I", zlib.crc32(head))


def meta(bits: int = 3, radius: float = 1.0, pad8: int = 0, pad16: int = 0) -> bytes:
    return struct.pack("<BBHf", bits, pad8, pad16, radius)


def test_wire_round_trip(rng, bits, length):
    grad, prev = make_pair(rng, min(length, 5000))
    payload = laqcore.laq_quantize(grad, prev, bits)
    buf = payload.to_bytes()
    assert len(buf) == payload.nbytes == 24 + laqcore.packed_size(payload.n, bits)
    back = laqcore.LAQPayload.from_bytes(buf)
    assert back == payload
    np.testing.assert_array_equal(laqcore.laq_dequantize(back), laqcore.laq_dequantize(payload))
    assert laqcore.LAQCompressor(bits).from_bytes(bytearray(buf)) == payload
    assert laqcore.wire.payload_from_bytes(np.frombuffer(buf, dtype=np.uint8)) == payload


def test_hand_built_frame_decodes():
    codes = np.array([0, 7, 3, 5, 1], dtype=np.uint8)
    body = laqcore.pack_bits(codes, 3).tobytes()
    p = laqcore.LAQPayload.from_bytes(frame(5, meta(3, 2.0), body))
    np.testing.assert_array_equal(laqcore.unpack_bits(p.packed, 3, 5), codes)
    np.testing.assert_array_equal(laqcore.laq_dequantize(p), ref.laq_lut(2.0, 3)[codes])


@pytest.fixture
def good_frame(rng) -> bytes:
    return laqcore.laq_quantize(rng.standard_normal(21).astype(np.float32), None, 3).to_bytes()


def test_rejects_truncated(good_frame):
    for cut in (1, 4, len(good_frame) - 10, len(good_frame) - 1):
        with pytest.raises(ValueError, match=r"truncated|CRC|expected exactly"):
            laqcore.LAQPayload.from_bytes(good_frame[:cut])


def test_rejects_extended(good_frame):
    with pytest.raises(ValueError, match="CRC"):
        laqcore.LAQPayload.from_bytes(good_frame + b"\x00")


@pytest.mark.parametrize("position", [0, 3, 5, 13, 22, -5, -1])
def test_rejects_flipped_bit(good_frame, position):
    buf = bytearray(good_frame)
    buf[position] ^= 0x10
    with pytest.raises(ValueError, match=r"CRC|magic|kind|version"):
        laqcore.LAQPayload.from_bytes(bytes(buf))


@pytest.mark.parametrize("bits", [0, 9, 255])
def test_rejects_bad_bits(bits):
    with pytest.raises(ValueError, match="bits must be in"):
        laqcore.LAQPayload.from_bytes(frame(8, meta(bits=bits), b"\x00" * 3))


@pytest.mark.parametrize("radius", [-1.0, float("nan"), float("inf")])
def test_rejects_bad_radius(radius):
    with pytest.raises(ValueError, match="radius"):
        laqcore.LAQPayload.from_bytes(frame(8, meta(3, radius), b"\x00" * 3))


def test_rejects_nonzero_meta_padding():
    for kw in ({"pad8": 1}, {"pad16": 256}):
        with pytest.raises(ValueError, match="padding"):
            laqcore.LAQPayload.from_bytes(frame(8, meta(3, 1.0, **kw), b"\x00" * 3))


def test_rejects_nonzero_code_padding():
    # 5 codes of 3 bits = 15 bits: the top bit of byte 1 is padding.
    with pytest.raises(ValueError, match="padding bits"):
        laqcore.LAQPayload.from_bytes(frame(5, meta(3, 1.0), b"\x00\x80"))


@pytest.mark.parametrize("body_len", [0, 2, 4, 100])
def test_rejects_wrong_body_size(body_len):
    # 8 codes of 3 bits need exactly 3 bytes (valid CRC: the size itself is wrong).
    with pytest.raises(ValueError, match="expected exactly 3"):
        laqcore.LAQPayload.from_bytes(frame(8, meta(3, 1.0), b"\x00" * body_len))


def test_rejects_zero_length():
    with pytest.raises(ValueError, match="n must be >= 1"):
        laqcore.LAQPayload.from_bytes(frame(0, meta(3, 1.0), b""))


def test_rejects_bad_magic_version_kind():
    body = b"\x00" * 3
    with pytest.raises(ValueError, match="magic"):
        laqcore.LAQPayload.from_bytes(frame(8, meta(), body, magic=b"XX"))
    with pytest.raises(ValueError, match="version"):
        laqcore.LAQPayload.from_bytes(frame(8, meta(), body, version=2))
    with pytest.raises(ValueError, match="kind"):
        laqcore.LAQPayload.from_bytes(frame(8, meta(), body, kind=200))


def test_rejects_other_registered_kind(good_frame):
    # Re-label a valid LAQ frame (CRC recomputed) as another compressor's kind: whether or not
    # that kind is registered in this build, LAQPayload.from_bytes must refuse it.
    buf = bytearray(good_frame[:-4])
    buf[3] = int(PayloadKind.DENSE)
    buf += struct.pack("<I", zlib.crc32(bytes(buf)))
    with pytest.raises(ValueError, match=r"DENSE|kind"):
        laqcore.LAQPayload.from_bytes(bytes(buf))


def test_rejects_non_bytes():
    with pytest.raises(TypeError, match="bytes-like"):
        laqcore.LAQPayload.from_bytes("not a frame")
    with pytest.raises(TypeError, match="uint8"):
        laqcore.LAQPayload.from_bytes(np.zeros(30, dtype=np.int32))


def test_strided_memoryview_frame_is_read(good_frame):
    # A strided uint8 array was read, the same bytes in a strided memoryview refused with
    # "a frame must be bytes-like, got memoryview".
    spread = np.zeros(2 * len(good_frame), dtype=np.uint8)
    spread[::2] = np.frombuffer(good_frame, dtype=np.uint8)
    want = laqcore.LAQPayload.from_bytes(good_frame)
    assert laqcore.LAQPayload.from_bytes(memoryview(spread)[::2]) == want
    assert laqcore.LAQPayload.from_bytes(spread[::2]) == want
    bundle = pack_uploads([(0, want)])
    spread = np.zeros(2 * len(bundle), dtype=np.uint8)
    spread[::2] = np.frombuffer(bundle, dtype=np.uint8)
    got = unpack_uploads(memoryview(spread)[::2], expected_n=want.n, owned={0}, sender="a")
    assert got == [(0, want)]


# --- bad input -----------------------------------------------------------------------------
def test_nan_inf_rejected_and_named():
    n = 2**20 + 3  # also the parallel path, with the bad value in the last block
    base = np.ones(n, dtype=np.float32)
    for name, bad in (("grad", np.nan), ("grad", np.inf), ("prev", -np.inf), ("prev", np.nan)):
        grad, prev = base.copy(), base.copy()
        (grad if name == "grad" else prev)[-1] = bad
        with pytest.raises(ValueError, match=f"{name} contains NaN or Inf"):
            laqcore.laq_quantize(grad, prev, 4)
    small = np.array([1.0, np.nan], dtype=np.float32)
    with pytest.raises(ValueError, match="grad contains NaN or Inf"):
        laqcore.laq_quantize(small, None, 4)


@pytest.mark.parametrize(
    "grad",
    [
        np.zeros(4, dtype=np.int32),
        np.zeros(4, dtype=np.bool_),
        np.zeros(4, dtype=np.complex64),
        np.array(["a", "b"]),
        np.array([1.0, 2.0], dtype=object),
        "abc",
    ],
    ids=["int", "bool", "complex", "str", "object", "string"],
)
def test_wrong_dtype(grad):
    with pytest.raises(TypeError, match="grad must be a floating-point array"):
        laqcore.laq_quantize(grad, None, 4)
    with pytest.raises(TypeError, match="prev must be a floating-point array"):
        laqcore.laq_quantize(np.zeros(2, dtype=np.float32), grad, 4)


def test_wrong_shape_and_size():
    with pytest.raises(ValueError, match="grad must be a 1-D array"):
        laqcore.laq_quantize(np.zeros((2, 2), dtype=np.float32), None, 4)
    with pytest.raises(ValueError, match="grad must be contiguous"):
        laqcore.laq_quantize(np.zeros(8, dtype=np.float32)[::2], None, 4)
    with pytest.raises(ValueError, match="grad must not be empty"):
        laqcore.laq_quantize(np.zeros(0, dtype=np.float32), None, 4)
    with pytest.raises(ValueError, match="prev has length 3 but grad has length 4"):
        laqcore.laq_quantize(np.zeros(4, np.float32), np.zeros(3, np.float32), 4)
    with pytest.raises(ValueError, match="grad must be a 1-D array"):
        laqcore.laq_quantize(np.float32(1.0), None, 4)


@pytest.mark.parametrize("bits", [0, 9, -1])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 8\]"):
        laqcore.laq_quantize(np.ones(4, np.float32), None, bits)
    with pytest.raises(ValueError, match=r"bits must be an integer in \[1, 8\]"):
        laqcore.LAQCompressor(bits)


@pytest.mark.parametrize("bits", [2.0, "4", None, True])
def test_bits_wrong_type(bits):
    with pytest.raises(TypeError, match="bits"):
        laqcore.laq_quantize(np.ones(4, np.float32), None, bits)


@pytest.fixture
def payload8(rng) -> laqcore.LAQPayload:
    return laqcore.laq_quantize(rng.standard_normal(8).astype(np.float32), None, 4)


@pytest.mark.parametrize("func", [laqcore.laq_apply, laqcore.laq_accumulate])
def test_out_array_checked(func, payload8):
    name = "prev" if func is laqcore.laq_apply else "aggregate"
    with pytest.raises(TypeError, match=f"{name} must have dtype float32"):
        func(np.zeros(8, dtype=np.float64), payload8)
    with pytest.raises(TypeError, match=f"{name} must be a numpy float32 array"):
        func([0.0] * 8, payload8)
    readonly = np.zeros(8, dtype=np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=f"{name} must be writeable"):
        func(readonly, payload8)
    with pytest.raises(ValueError, match=f"{name} has length 7, expected 8"):
        func(np.zeros(7, dtype=np.float32), payload8)
    with pytest.raises(ValueError, match=f"{name} must be a 1-D contiguous array"):
        func(np.zeros((2, 4), dtype=np.float32), payload8)
    # a strided view was described by its shape alone, "got shape (8,)", which is 1-D
    with pytest.raises(ValueError, match=rf"{name} must be a 1-D contiguous array, got a strided"):
        func(np.zeros(16, dtype=np.float32)[::2], payload8)
    with pytest.raises(TypeError, match="payload must be a LAQPayload"):
        func(np.zeros(8, dtype=np.float32), b"\x00" * 30)


def test_dequantize_wrong_payload_type():
    with pytest.raises(TypeError, match="payload must be a LAQPayload"):
        laqcore.laq_dequantize(np.zeros(8, dtype=np.uint8))


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), 1e39])
def test_accumulate_bad_weight_value(weight, payload8):
    agg = np.zeros(8, dtype=np.float32)
    with pytest.raises(ValueError, match="weight must be finite"):
        laqcore.laq_accumulate(agg, payload8, weight=weight)
    assert not agg.any()


@pytest.mark.parametrize("weight", ["1", None, True, [1.0]])
def test_accumulate_bad_weight_type(weight, payload8):
    with pytest.raises(TypeError, match="weight must be a real number"):
        laqcore.laq_accumulate(np.zeros(8, dtype=np.float32), payload8, weight=weight)


def test_accumulate_overflowing_weight_rejected():
    p = laqcore.laq_quantize(np.array([3e38, -3e38], dtype=np.float32), None, 2)
    agg = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match="overflows float32"):
        laqcore.laq_accumulate(agg, p, weight=10.0)
    assert not agg.any()  # checked before any element is written


def test_payload_constructor_validates():
    packed = np.zeros(3, dtype=np.uint8)
    assert laqcore.LAQPayload(packed, 1.0, 3, 8).innov_sq == 8.0  # all codes 0 -> dQ = -R
    with pytest.raises(ValueError, match="need exactly 3"):
        laqcore.LAQPayload(np.zeros(4, dtype=np.uint8), 1.0, 3, 8)
    with pytest.raises(TypeError, match="uint8"):
        laqcore.LAQPayload(np.zeros(3, dtype=np.int8), 1.0, 3, 8)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        laqcore.LAQPayload(packed, -1.0, 3, 8)
    with pytest.raises(ValueError, match="radius must be finite"):
        laqcore.LAQPayload(packed, float("nan"), 3, 8)
    with pytest.raises(ValueError, match="float32"):
        laqcore.LAQPayload(packed, 0.1, 3, 8)
    with pytest.raises(ValueError, match="n must be >= 1"):
        laqcore.LAQPayload(packed, 1.0, 3, 0)
    bad_pad = laqcore.LAQPayload(np.array([0, 0, 0x80], dtype=np.uint8), 1.0, 3, 7)
    with pytest.raises(ValueError, match="padding bits"):
        laqcore.laq_dequantize(bad_pad)


def test_native_bindings_check_sizes():
    # _core is importable directly: it must refuse bad sizes too, never read out of bounds.
    core = laqcore._core.laq
    with pytest.raises(ValueError, match="need exactly 3"):
        core.dequantize(np.zeros(2, dtype=np.uint8), 8, 3, 1.0)
    with pytest.raises(ValueError, match="need exactly 3"):
        core.accumulate(np.zeros(8, dtype=np.float32), np.zeros(4, dtype=np.uint8), 8, 3, 1.0)
    with pytest.raises(ValueError, match="prev has length"):
        core.quantize(np.zeros(4, np.float32), np.zeros(5, np.float32), 3)
    with pytest.raises(ValueError, match="radius must be finite"):
        core.dequantize(np.zeros(3, dtype=np.uint8), 8, 3, -2.0)
    with pytest.raises(TypeError):
        core.quantize(np.zeros(4, np.float64), None, 3)
    with pytest.raises(ValueError, match="must not be empty"):
        core.quantize(np.zeros(0, np.float32), None, 3)


# --- compressor protocol and the stateful worker helper ------------------------------------
def test_compressor_protocol(rng, bits):
    comp = laqcore.LAQCompressor(bits=bits)
    assert comp.name == "laq"
    x = rng.standard_normal(1001).astype(np.float32)
    payload = comp.compress(x, step=3)
    assert payload == laqcore.laq_quantize(x, None, bits)
    np.testing.assert_array_equal(comp.decompress(payload), ref.laq_quantize(x, None, bits)["dq"])
    assert comp.from_bytes(payload.to_bytes()) == payload
    with pytest.raises(ValueError, match="step must be >= 0"):
        comp.compress(x, step=-1)


def test_innovation_quantizer_tracks_reference(rng):
    n, bits = 257, 3
    iq = laqcore.InnovationQuantizer(n, bits)
    q_prev = np.zeros(n, dtype=np.float32)
    err_hat = 0.0
    for k in range(6):
        grad = rng.standard_normal(n).astype(np.float32)
        payload = iq.propose(grad)
        expected = ref.laq_quantize(grad, q_prev, bits)
        np.testing.assert_array_equal(payload.packed, expected["packed"])
        np.testing.assert_array_equal(iq.q_prev, q_prev)  # propose changes nothing
        assert iq.err_hat_sq == err_hat
        if k % 2 == 0:  # upload every other iteration
            iq.commit(payload)
            q_prev, err_hat = expected["q_new"], payload.err_sq
            np.testing.assert_array_equal(iq.q_prev, q_prev)
    assert not iq.q_prev.flags.writeable
    iq.reset()
    assert not iq.q_prev.any()
    assert iq.err_hat_sq == 0.0


def test_innovation_quantizer_rejects_stale_commits(rng):
    iq = laqcore.InnovationQuantizer(16, 4)
    first = iq.propose(rng.standard_normal(16).astype(np.float32))
    second = iq.propose(rng.standard_normal(16).astype(np.float32))
    with pytest.raises(ValueError, match="latest propose"):
        iq.commit(first)
    iq.commit(second)
    with pytest.raises(ValueError, match="latest propose"):
        iq.commit(second)  # twice would apply dQ twice
    other = laqcore.laq_quantize(np.ones(16, np.float32), None, 4)
    with pytest.raises(ValueError, match="latest propose"):
        iq.commit(other)
    with pytest.raises(ValueError, match="grad has length 15, expected 16"):
        iq.propose(np.ones(15, np.float32))
    with pytest.raises(ValueError, match="n must be >= 1"):
        laqcore.InnovationQuantizer(0, 4)


def test_docstring_examples():
    import doctest

    import laqcore.laq
    import laqcore.laq_payload
    import laqcore.lazy

    for module in (laqcore.laq, laqcore.laq_payload, laqcore.lazy):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0
        assert result.failed == 0, module.__name__


def test_registry_builds_the_laq_compressor(rng):
    comp = laqcore.get_compressor("laq", bits=3)
    assert isinstance(comp, laqcore.LAQCompressor)
    assert isinstance(comp, laqcore.compressors.Compressor)
    x = rng.standard_normal(100).astype(np.float32)
    np.testing.assert_array_equal(
        comp.decompress(comp.compress(x)), ref.laq_quantize(x, None, 3)["dq"]
    )
    other = laqcore.get_compressor("sign").compress(x)
    with pytest.raises(TypeError, match="payload must be a LAQPayload"):
        comp.decompress(other)


def unaligned_float32(values: np.ndarray) -> np.ndarray:
    """A float32 view starting one byte into a buffer: C-contiguous but not aligned."""
    buf = bytearray(4 * values.size + 1)
    view = np.frombuffer(buf, dtype=np.float32, offset=1, count=values.size)
    view[:] = values
    assert not view.flags.aligned
    return view


def test_unaligned_inputs_are_copied_outputs_refused(rng):
    grad, prev = make_pair(rng, 1001)
    payload = laqcore.laq_quantize(unaligned_float32(grad), unaligned_float32(prev), 5)
    assert payload == laqcore.laq_quantize(grad, prev, 5)
    target = unaligned_float32(prev)
    with pytest.raises(ValueError, match="prev must be aligned"):
        laqcore.laq_apply(target, payload)
    with pytest.raises(ValueError, match="aggregate must be aligned"):
        laqcore.laq_accumulate(target, payload)
    np.testing.assert_array_equal(target, prev)  # untouched
    with pytest.raises(ValueError, match="aggregate must be aligned"):  # the raw binding too
        laqcore._core.laq.accumulate(target, payload.packed, 1001, 5, payload.radius)
    assert laqcore.squared_distance(unaligned_float32(grad), prev) == laqcore.squared_distance(
        grad, prev
    )


@pytest.mark.parametrize("n", [2**61, 2**61 + 8, 2**63 + 3, 2**64 - 1])
def test_rejects_huge_n_without_overflow(n):
    # n * bits would wrap around in 64 bits; the size check must still see a huge body.
    assert laqcore.packed_size(n, 8) == n
    assert laqcore.packed_size(n, 3) == (n * 3 + 7) // 8
    with pytest.raises(ValueError, match="expected exactly"):
        laqcore.LAQPayload.from_bytes(frame(n, meta(8, 1.0), b""))
    with pytest.raises(ValueError, match="need exactly"):
        laqcore._core.laq.innov_sq(np.zeros(0, np.uint8), n, 8, 1.0)


def test_fuzz_laq_innov_sq_input_is_summed_accurately():
    """The fuzz_laq.cpp input (fuzz/README.md, finding 5; zlib + base64 here): bits = 1,
    36904 codes, every |dQ| = R, so ||dQ||^2 = n R^2 exactly. The harness's plain serial
    reference sum was 1e-12 off and tripped its 1e-12 tolerance. The kernel's float32 lanes
    (laq.hpp, "Arithmetic") hold 1024 terms each here: the harness's bound is 1026 * 2^-24
    relative, and the kernel is the reference's sum bit for bit."""
    import base64
    from fractions import Fraction

    blob = zlib.decompress(
        base64.b64decode(
            "eNpLEPg/z5aBNHAfHYSSAdbis8EFu7AlDsBAbaDGwMABpLgYFiyg0CQHhp8YRjMkJCQATQYBhDiEW5cJZD5G"
            "iIYDAYp2oGkJSDGBph3mcIhQAgLEJ6AAsOKaHCAg6IHfVPY7BsD0oTUDig/VIL6jW1BhuhtbuiDGSfjDHxT8"
            "uTkwANd7DdPaKvLjwMcPRGKxhloAd2BhARhOQNGtwDCQgIMBGJ8LGLjgEUuCz0jMJAMfEaQDkyFRAvwnuwhA"
            "AzQqEQgXUljcROV8QVypNJo0OEbTAo1rqMFX+g9BJxNTYan9Z8jHlTjRAJWNG02MNI5ZAvEwyNt/w67lg9ct"
            "lFYQIz3OGQdxa5e07gPlTQXMdhCygeBikxTn8zMAAMTPhXs="
        )
    )
    assert len(blob) == 4618 and blob[0] == 0x60  # decode mode, bits = 1 + (0x60 >> 1) % 8
    (radius,) = struct.unpack("<f", blob[1:5])
    packed = np.frombuffer(blob[5:], dtype=np.uint8).copy()
    n = 8 * packed.size
    exact = float(Fraction(radius) ** 2 * n)
    results = set()
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            results.add(laqcore._core.laq.innov_sq(packed, n, 1, radius))
    (got,) = results  # bit-identical for any thread count
    codes = laqcore.unpack_bits(packed, 1, n)
    assert got == sum(ref.laq_square_pieces(ref.laq_lut(radius, 1)[codes], radius))
    assert abs(got - exact) <= 1026 * 2.0**-24 * exact
    assert laqcore.LAQPayload(packed, radius, 1, n).innov_sq == got
