"""The Compressor protocol and the registry, checked on every registered compressor."""

from __future__ import annotations

import numpy as np
import pytest

import laqcore
from laqcore.compressors import Compressor
from laqcore.wire import Payload, PayloadKind

# One configuration per registered name (kwargs), and whether it is stochastic.
CONFIGS = {
    "none": ({}, False),
    "qsgd": ({"levels": 7, "bucket_size": 64, "seed": 3}, True),
    "terngrad": ({"clip_factor": 2.5, "seed": 3}, True),
    "sign": ({}, False),
    "topk": ({"ratio": 0.1}, False),
    "randk": ({"k": 20, "seed": 3}, True),
    "sparse_quant": ({"k": 20, "bits": 4, "selection": "randk", "seed": 3}, True),
    "laq": ({"bits": 4}, False),
    "rotation": ({"levels": 7, "bucket_size": 64, "seed": 3}, True),
}
KINDS = {
    "none": PayloadKind.DENSE,
    "qsgd": PayloadKind.QSGD,
    "terngrad": PayloadKind.TERNGRAD,
    "sign": PayloadKind.SIGN,
    "topk": PayloadKind.TOPK,
    "randk": PayloadKind.RANDK,
    "sparse_quant": PayloadKind.SPARSE_QUANT,
    "laq": PayloadKind.LAQ,
    "rotation": PayloadKind.ROTATION,
}


def make(name: str) -> Compressor:
    if name == "laq":
        pytest.importorskip("laqcore.laq", reason="the LAQ module is not part of this build")
    return laqcore.get_compressor(name, **CONFIGS[name][0])


def test_every_registered_name_is_covered():
    assert set(laqcore.available_compressors()) == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_protocol_round_trip(name, rng):
    comp = make(name)
    assert isinstance(comp, Compressor)
    assert comp.name == name
    x = rng.standard_normal(333).astype(np.float32)
    payload = comp.compress(x, step=4)
    assert isinstance(payload, Payload)
    assert payload.KIND == KINDS[name]
    assert payload.n == 333
    frame = payload.to_bytes()
    assert len(frame) == payload.nbytes
    decoded = comp.from_bytes(frame)
    assert decoded.to_bytes() == frame
    out = comp.decompress(decoded)
    assert out.dtype == np.float32
    assert out.shape == x.shape
    np.testing.assert_array_equal(out, comp.decompress(payload))
    np.testing.assert_array_equal(laqcore.wire.payload_from_bytes(frame).to_bytes(), frame)
    # decompress returns a new array: writing into it must not change the payload
    out[:] = 123.0
    assert not np.array_equal(comp.decompress(payload), out)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_payload_equals_its_decoded_copy(name, rng):
    """Only LAQ payloads compared by content: payload_from_bytes(p.to_bytes()) == p was
    False for every other kind (identity), as was the entropy round trip."""
    comp = make(name)
    x = rng.standard_normal(333).astype(np.float32)
    payload = comp.compress(x, step=4)
    decoded = laqcore.wire.payload_from_bytes(payload.to_bytes())
    assert decoded == payload and not (decoded != payload)
    other = comp.compress(2 * x + 1, step=5)
    assert other != payload
    assert payload != payload.to_bytes()  # not a payload: not equal, no error
    with pytest.raises(TypeError, match="unhashable"):
        hash(payload)
    if laqcore.entropy.is_codable(payload):
        coded = laqcore.entropy.entropy_encode(payload)
        assert laqcore.entropy.entropy_decode(coded.to_bytes()) == payload
        assert laqcore.wire.payload_from_bytes(coded.to_bytes()) == coded


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_deterministic_given_step_and_float64(name, rng):
    x = rng.standard_normal(200)
    a = make(name).compress(x, step=9).to_bytes()
    b = make(name).compress(x.astype(np.float32), step=9).to_bytes()
    assert a == b
    stochastic = CONFIGS[name][1]
    c = make(name).compress(x, step=10).to_bytes()
    assert (a != c) == stochastic


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_float64_input_beyond_float32_is_named(name):
    """A finite float64 value past float32's maximum became inf in the conversion, and the
    kernel then said "x contains NaN or Inf" (e.g. `laqcore run -a ef-sign --alpha 1e100`)."""
    x = np.ones(100)
    x[7] = 1e100
    with pytest.raises(OverflowError, match="finite values beyond the float32 range") as info:
        make(name).compress(x)
    assert isinstance(info.value, ValueError)  # the kernels' FloatRangeError
    x[7] = np.inf  # a non-finite input is still reported as one
    with pytest.raises(ValueError, match="NaN or Inf"):
        make(name).compress(x)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rejects_nan_and_wrong_payload(name):
    comp = make(name)
    x = np.ones(100, dtype=np.float32)
    x[50] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        comp.compress(x)
    other = "sign" if name != "sign" else "none"
    foreign = laqcore.get_compressor(other).compress(np.ones(30, dtype=np.float32))
    with pytest.raises(TypeError):
        comp.decompress(foreign)
    with pytest.raises(ValueError, match="expected"):
        comp.from_bytes(foreign.to_bytes())


def test_compression_ratios_are_as_documented():
    n = 10_000
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    dense = laqcore.get_compressor("none").compress(x).nbytes
    assert dense == 4 * n + 16
    sign = laqcore.get_compressor("sign").compress(x).nbytes
    assert sign == n // 8 + 20  # 1 bit per coordinate + scale + frame
    tern = laqcore.get_compressor("terngrad").compress(x).nbytes
    assert tern == n // 4 + 20
    q = laqcore.get_compressor("qsgd", levels=7, bucket_size=n).compress(x).nbytes
    assert q == n // 2 + 4 + 10 + 16


def test_aliases_and_case():
    assert isinstance(laqcore.get_compressor("Top-K", k=1), laqcore.TopKCompressor)
    for old_name in ("identity", "Dense"):
        # deprecated names of "none": they resolve, and say which name to use
        with pytest.warns(DeprecationWarning, match=f"{old_name!r} is deprecated; use 'none'"):
            comp = laqcore.get_compressor(old_name)
        assert isinstance(comp, laqcore.IdentityCompressor) and comp.name == "none"
    assert isinstance(laqcore.get_compressor("rand_k", k=1), laqcore.RandKCompressor)
    assert isinstance(laqcore.get_compressor("scaled-sign"), laqcore.SignCompressor)
    assert isinstance(
        laqcore.get_compressor("sparse_quantized", k=1), laqcore.SparseQuantCompressor
    )
    assert "top_k" not in laqcore.available_compressors()  # aliases are not listed


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown compressor 'powersgd'; available: .*qsgd"):
        laqcore.get_compressor("powersgd")
    with pytest.raises(TypeError, match="string"):
        laqcore.get_compressor(3)  # type: ignore[arg-type]


def test_bad_kwargs_name_the_problem():
    with pytest.raises(TypeError, match=r"compressor 'qsgd'.*levle.*accepted parameters: levels"):
        laqcore.get_compressor("qsgd", levle=4)
    with pytest.raises(TypeError, match="compressor 'sign'.*bits.*; it takes none"):
        laqcore.get_compressor("sign", bits=2)
    with pytest.raises(TypeError, match="compressor 'laq'.*levels.*accepted parameters: bits"):
        laqcore.get_compressor("laq", levels=4)
    assert laqcore.get_compressor("laq", bits=3).bits == 3
    with pytest.raises(ValueError, match="levels must be in"):
        laqcore.get_compressor("qsgd", levels=1000)
    with pytest.raises(TypeError, match="exactly one of k"):
        laqcore.get_compressor("topk")


def test_register_compressor():
    from laqcore.compressors import base

    class Half:
        name = "half"

        def __init__(self, *, scale: float = 0.5) -> None:
            self.scale = scale

        def compress(self, x, *, step=None):
            return laqcore.get_compressor("none").compress(np.asarray(x) * self.scale)

        def decompress(self, payload):
            return laqcore.get_compressor("none").decompress(payload)

        def from_bytes(self, buf):
            return laqcore.get_compressor("none").from_bytes(buf)

    try:
        laqcore.register_compressor("half", Half, aliases=("demi",))
        assert "half" in laqcore.available_compressors()
        comp = laqcore.get_compressor("demi", scale=0.25)
        np.testing.assert_array_equal(comp.decompress(comp.compress([4.0])), [1.0])
        with pytest.raises(ValueError, match="already registered"):
            laqcore.register_compressor("half", Half)
        with pytest.raises(ValueError, match="already registered"):
            laqcore.register_compressor("other", Half, aliases=("qsgd",))
        laqcore.register_compressor("half", Half, replace=True)
    finally:
        base._FACTORIES.pop("half", None)
        base._ALIASES.pop("demi", None)
    with pytest.raises(TypeError, match="non-empty string"):
        laqcore.register_compressor("", Half)
    with pytest.raises(TypeError, match="callable"):
        laqcore.register_compressor("x", 3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "aliases", "key"),
    [
        ("qsgd", (), "qsgd"),
        ("QSGD", (), "qsgd"),
        ("top-k", (), "top_k"),
        ("mine", ("hadamard",), "hadamard"),
    ],
)
def test_built_in_compressor_names_cannot_be_replaced(name, aliases, key):
    """``replace=True`` over a built-in name or alias (any spelling) silently changed what
    the algorithms, the DDP hooks and the launch engine build by that name."""
    from laqcore.compressors import SignCompressor, base

    saved = (dict(base._FACTORIES), dict(base._ALIASES))
    try:
        with pytest.raises(ValueError, match=f"name '{key}' is already registered, built in"):
            laqcore.register_compressor(name, SignCompressor, aliases=aliases, replace=True)
        assert (base._FACTORIES, base._ALIASES) == saved  # refused before any change
    finally:  # without the refusal the registration went through: undo it
        base._FACTORIES.clear()
        base._FACTORIES.update(saved[0])
        base._ALIASES.clear()
        base._ALIASES.update(saved[1])


def test_docstring_examples():
    import doctest

    import laqcore.compressors
    import laqcore.error_feedback
    from laqcore.compressors import base, dense, qsgd, sign, sparse, terngrad

    saved = (dict(base._FACTORIES), dict(base._ALIASES))
    try:  # register_compressor's example registers a name: undo it afterwards
        for module in (
            laqcore.compressors,
            base,
            dense,
            qsgd,
            sign,
            sparse,
            terngrad,
            laqcore.error_feedback,
        ):
            result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
            assert result.attempted > 0, module.__name__
            assert result.failed == 0, module.__name__
    finally:
        base._FACTORIES.clear()
        base._FACTORIES.update(saved[0])
        base._ALIASES.clear()
        base._ALIASES.update(saved[1])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_validation_and_failed_calls_keep_the_counter(name):
    comp = make(name)
    with pytest.raises(ValueError, match="step"):
        comp.compress(np.ones(50, dtype=np.float32), step=-1)
    with pytest.raises(TypeError, match="step"):
        comp.compress(np.ones(50, dtype=np.float32), step="3")
    bad = np.ones(50, dtype=np.float32)
    bad[3] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        comp.compress(bad)
    x = np.random.default_rng(1).standard_normal(50).astype(np.float32)
    # the failed call did not consume step 0 of the internal counter
    assert comp.compress(x).to_bytes() == make(name).compress(x, step=0).to_bytes()


# -- expected_n: a receiver bounds what a frame can make it allocate ---------------------
def _with_n(frame: bytes, n: int) -> bytes:
    """``frame`` with its header's n replaced and the CRC fixed up."""
    import struct
    import zlib

    body = frame[:4] + struct.pack("<Q", n) + frame[12:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_fuzz_finding_sparse_frame_declaring_huge_n():
    """Regression (fuzz/README.md, fixed finding 1): fuzz_frames.py found a 32-byte top-k
    frame declaring n = 2013265921 (the artifact was not kept; this is that frame as the
    finding describes it: k = 1, index 1, value 3.0, valid CRC). It decodes, and
    decompressing it allocated 8 GiB; with expected_n the receiver refuses it at the header,
    naming both lengths."""
    frame = bytes.fromhex("4c51010501000078000000000100000000000000010000000000404058c27aa5")
    assert len(frame) == 32
    assert laqcore.wire.payload_from_bytes(frame).n == 2013265921  # what a receiver gets
    comp = laqcore.get_compressor("topk", k=1)
    ef = laqcore.ErrorFeedback(comp)
    for decode in (
        lambda: laqcore.wire.payload_from_bytes(frame, expected_n=2),
        lambda: Payload.from_bytes(frame, expected_n=2),
        lambda: laqcore.compressors.TopKPayload.from_bytes(frame, expected_n=2),
        lambda: comp.from_bytes(frame, expected_n=2),
        lambda: ef.from_bytes(frame, expected_n=2),
    ):
        with pytest.raises(ValueError, match=r"n = 2013265921.*expected_n = 2"):
            decode()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_bytes_expected_n(name, rng):
    comp = make(name)
    x = rng.standard_normal(333).astype(np.float32)
    frame = comp.compress(x, step=0).to_bytes()
    # The right length decodes exactly as without expected_n (any integer type).
    for want in (333, np.int64(333)):
        assert comp.from_bytes(frame, expected_n=want).to_bytes() == frame
    assert laqcore.wire.payload_from_bytes(frame, expected_n=333).to_bytes() == frame
    # Another length is refused, naming both numbers (also one that would decode fine).
    for other in (332, 334, 1):
        with pytest.raises(ValueError, match=rf"n = 333.*expected_n = {other}"):
            comp.from_bytes(frame, expected_n=other)
    # A frame declaring a huge n is refused before its body is looked at.
    with pytest.raises(ValueError, match=r"n = 4294967296.*expected_n = 333"):
        comp.from_bytes(_with_n(frame, 2**32), expected_n=333)
    # A malformed expected_n names the argument.
    for bad, exc in (
        (0, ValueError),
        (-5, ValueError),
        (3.0, TypeError),
        (True, TypeError),
        ("333", TypeError),
    ):
        with pytest.raises(exc, match="expected_n"):
            comp.from_bytes(frame, expected_n=bad)


def test_error_feedback_from_bytes_keeps_old_compressors_working(rng):
    """ErrorFeedback forwards expected_n, but only when given, so a user compressor whose
    from_bytes predates expected_n still works without it."""

    class OldStyle:
        name = "old"

        def __init__(self) -> None:
            self.inner = laqcore.get_compressor("none")

        def compress(self, x, *, step=None):
            return self.inner.compress(x)

        def decompress(self, payload):
            return self.inner.decompress(payload)

        def from_bytes(self, buf):
            return self.inner.from_bytes(buf)

    ef = laqcore.ErrorFeedback(OldStyle())
    frame = ef.compress(rng.standard_normal(5)).to_bytes()
    assert ef.from_bytes(frame).n == 5
    ef_new = laqcore.ErrorFeedback(laqcore.get_compressor("none"))
    assert ef_new.from_bytes(frame, expected_n=5).n == 5
    with pytest.raises(ValueError, match="expected_n = 6"):
        ef_new.from_bytes(frame, expected_n=6)


def test_hand_built_payloads_check_their_fields():
    """A payload built by hand with a field no compressor produces: SparseQuantPayload(bits=0)
    failed at decode with "negative shift count", bits=9 with a message about QSGD levels of
    255, a bogus selection or QSGD norm decoded without a word (decoding never reads them)."""
    from laqcore.compressors.qsgd import QSGDPayload
    from laqcore.compressors.sparse import SparseQuantPayload

    x = np.arange(16, dtype=np.float32)
    sq = laqcore.get_compressor("sparse_quant", k=4, bits=4).compress(x)
    parts = (sq.scale, sq.indices, sq.packed)
    for bits in (0, 1, 9):
        with pytest.raises(ValueError, match=r"bits must be in \[2, 8\]"):
            SparseQuantPayload(16, bits, "topk", *parts)
    with pytest.raises(ValueError, match="selection"):
        SparseQuantPayload(16, 4, "bogus", *parts)
    q = laqcore.get_compressor("qsgd", levels=4).compress(x)
    with pytest.raises(ValueError, match="norm"):
        QSGDPayload(16, q.levels, "bogus", q.bucket_size, q.scales, q.packed)
    assert SparseQuantPayload(16, 4, "topk", *parts) == sq  # the valid fields still build
