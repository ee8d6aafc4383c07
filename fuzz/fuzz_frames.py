"""Fuzz every wire-frame decoder: ``laqcore.wire.payload_from_bytes``, each registered
payload class's ``from_bytes``, and every compressor's ``from_bytes`` + ``decompress``.

Every frame ends in a CRC-32, so random bytes almost never get past the checksum. Byte 0 of
the input therefore picks a mode: even = the rest is decoded as is; odd = the rest is a frame
*without* its CRC, and the harness appends the correct one, so the fuzzer explores the
header, metadata and body checks behind it.
"""

from __future__ import annotations

import struct
import sys
import zlib
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


def _compressors() -> list[Any]:
    """One instance of every compressor (the receiving side of each wire format)."""
    return [laqcore.LAQCompressor()]


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


def test_one_input(data: bytes) -> None:
    if not data:
        return
    frame = data[1:]
    if data[0] & 1:
        frame += struct.pack("<I", zlib.crc32(frame))
    decoded = common.expect_clean(lambda: wire.payload_from_bytes(frame))
    if decoded is not None:
        _check_decoded(decoded, frame)
    for cls in PAYLOAD_CLASSES:
        one = common.expect_clean(lambda cls=cls: cls.from_bytes(frame))
        if one is not None:
            _check_decoded(one, frame)
    for comp in COMPRESSORS:
        payload = common.expect_clean(lambda comp=comp: comp.from_bytes(frame))
        if payload is None:
            continue
        _check_decoded(payload, frame)
        out = common.expect_clean(lambda comp=comp, payload=payload: comp.decompress(payload))
        if out is not None:
            _check_vector(out, payload.n)
    # Other buffer types must be accepted or refused cleanly too.
    common.expect_clean(lambda: wire.payload_from_bytes(np.frombuffer(frame, dtype=np.uint8)))
    common.expect_clean(lambda: wire.payload_from_bytes(bytearray(frame)))


def seeds() -> list[bytes]:
    """Valid frames of every compressor (mode byte 0: used as is; the fuzzer mutates them),
    and headers of every kind with zero bodies (mode byte 1: CRC fixed up)."""
    out = []
    header = struct.Struct("<2sBBQ")
    for kind in wire.PayloadKind:
        for n in (0, 1, 9):
            frame = header.pack(wire.MAGIC, wire.FORMAT_VERSION, int(kind), n) + bytes(8)
            out.append(b"\x01" + frame)
    rng = np.random.default_rng(0)
    for comp in COMPRESSORS:
        for n in (1, 7, 33, 300):
            x = rng.standard_normal(n).astype(np.float32)
            out.append(b"\x00" + comp.compress(x, step=0).to_bytes())
    return out


if __name__ == "__main__":
    common.main(test_one_input, seeds)
    sys.exit(0)
