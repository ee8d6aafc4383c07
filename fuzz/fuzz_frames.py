"""Fuzz every wire-frame decoder: ``laqcore.wire.payload_from_bytes``, each registered
payload class's ``from_bytes``, and every compressor's ``from_bytes`` + ``decompress``.

Every frame ends in a CRC-32, so random bytes almost never get past the checksum. Byte 0 of
the input therefore picks a mode: even = the frame is decoded as is; odd = the frame comes
*without* its CRC, and the harness appends the correct one, so the fuzzer explores the
header, metadata and body checks behind it. Bytes 1-2 are the receiver's ``expected_n - 1``
(little-endian, so 1..65536); the frame is the rest.

Every frame is decoded twice. Without ``expected_n`` (decoding is bounded by the frame's own
size) it must decode cleanly and re-encode to the same bytes. With ``expected_n``, as a
receiver of untrusted frames is told to (``laqcore.wire``), it must be refused exactly when
it declares another length, and otherwise decode the same way and *decompress* to a finite
float32 vector of that length: the memory a frame can make a receiver allocate is bounded by
what the receiver expects.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from typing import Any

import atheris
import numpy as np

with atheris.instrument_imports(include=["laqcore"]):
    import laqcore
    from laqcore import wire

import common


def _payload_classes() -> list[type[wire.Payload]]:
    found: list[type[wire.Payload]] = []
    todo = list(wire.Payload.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "KIND" in cls.__dict__:
            found.append(cls)
    return sorted(found, key=lambda c: int(c.KIND))


# Constructor arguments for registered compressors that have no usable defaults.
_COMPRESSOR_ARGS: dict[str, dict[str, Any]] = {
    "topk": {"ratio": 0.25},
    "randk": {"ratio": 0.25},
    "sparse_quant": {"ratio": 0.25},
}


def _compressors() -> list[Any]:
    """One instance of every registered compressor (the receiving side of each format), and
    the entropy-coded variant of each codable one (``laqcore.entropy``)."""
    from laqcore.entropy import CODABLE_COMPRESSORS

    plain = [
        laqcore.get_compressor(name, **_COMPRESSOR_ARGS.get(name, {}))
        for name in laqcore.available_compressors()
    ]
    return plain + [laqcore.get_compressor(name, entropy=True) for name in CODABLE_COMPRESSORS]


PAYLOAD_CLASSES = _payload_classes()
COMPRESSORS = _compressors()


def _check_decoded(payload: object, frame: bytes) -> None:
    assert isinstance(payload, wire.Payload)
    # A decoded frame must re-encode to exactly the same bytes (nothing was ignored).
    assert payload.nbytes == len(frame), "nbytes disagrees with the frame length"
    assert payload.to_bytes() == frame, "decode -> encode is not the identity"


def _check_vector(out: object, n: int) -> None:
    assert isinstance(out, np.ndarray), type(out)
    assert out.dtype == np.float32, out.dtype
    assert out.shape == (n,), (out.shape, n)
    assert bool(np.isfinite(out).all()), "decoded a frame into NaN/Inf"


def _check_expected(plain: object, checked: object, expected_n: int, frame: bytes) -> None:
    """``checked`` (decoded with ``expected_n``) agrees with ``plain`` (decoded without)."""
    if plain is None:  # refused without expected_n: refused with it too
        assert checked is None, "expected_n made a refused frame decode"
        return
    assert isinstance(plain, wire.Payload)
    if plain.n != expected_n:
        assert checked is None, f"a frame of n = {plain.n} passed expected_n = {expected_n}"
        return
    assert checked is not None, "a frame of the expected length was refused"
    _check_decoded(checked, frame)


def _decode_with_and_without_n(
    decode: Callable[..., object], frame: bytes, expected_n: int
) -> object:
    """Decode ``frame`` without and with ``expected_n``; check both; return the second."""
    plain = common.expect_clean(lambda: decode(frame))
    if plain is not None:
        _check_decoded(plain, frame)
    checked = common.expect_clean(lambda: decode(frame, expected_n=expected_n))
    _check_expected(plain, checked, expected_n, frame)
    return checked


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    expected_n = 1 + int.from_bytes(data[1:3], "little")
    frame = data[3:]
    if data[0] & 1:
        frame += struct.pack("<I", zlib.crc32(frame))
    _decode_with_and_without_n(wire.payload_from_bytes, frame, expected_n)
    for cls in PAYLOAD_CLASSES:
        _decode_with_and_without_n(cls.from_bytes, frame, expected_n)
    for comp in COMPRESSORS:
        payload = _decode_with_and_without_n(comp.from_bytes, frame, expected_n)
        if payload is None:
            continue
        out = common.expect_clean(lambda comp=comp, payload=payload: comp.decompress(payload))
        if out is not None:
            _check_vector(out, expected_n)
    # Other buffer types must be accepted or refused cleanly too.
    common.expect_clean(lambda: wire.payload_from_bytes(np.frombuffer(frame, dtype=np.uint8)))
    common.expect_clean(lambda: wire.payload_from_bytes(bytearray(frame)))


def seeds() -> list[bytes]:
    """Valid frames of every compressor, as is (mode 0) and without their CRC (mode 1, so
    mutated bodies still pass the checksum), and headers of every kind with zero bodies."""
    out = []
    header = struct.Struct("<2sBBQ")

    def expecting(n: int) -> bytes:
        return (max(n, 1) - 1).to_bytes(2, "little")

    for kind in wire.PayloadKind:
        for n in (0, 1, 9):
            frame = header.pack(wire.MAGIC, wire.FORMAT_VERSION, int(kind), n) + bytes(8)
            out.append(b"\x01" + expecting(n) + frame)
    rng = np.random.default_rng(0)
    for comp in COMPRESSORS:
        for n in (1, 7, 33, 300):
            x = rng.standard_normal(n).astype(np.float32)
            frame = comp.compress(x, step=0).to_bytes()
            out.append(b"\x00" + expecting(n) + frame)
            out.append(b"\x01" + expecting(n) + frame[:-4])  # mutations keep a valid CRC
    # LAQ with a width per block has no compressor of its own (laqcore.laq_widths)
    from laqcore.laq_widths import laq_quantize_widths

    for n, budget in ((1, 0.0), (33, 1.0), (300, float("inf"))):
        x = rng.standard_t(3, n).astype(np.float32)
        frame = laq_quantize_widths(x, None, 16, budget).to_bytes()
        out.append(b"\x00" + expecting(n) + frame)
        out.append(b"\x01" + expecting(n) + frame[:-4])
    return out


if __name__ == "__main__":
    common.main(test_one_input, seeds)
    sys.exit(0)
