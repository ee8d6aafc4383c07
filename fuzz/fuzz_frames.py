"""Fuzz every wire-frame decoder: ``laqcore.wire.payload_from_bytes``, each registered
payload class's ``from_bytes``, and (when a frame decodes) the payload's own accessors.

Every frame ends in a CRC-32, so random bytes almost never get past the checksum. Byte 0 of
the input therefore picks a mode: even = the rest is decoded as is; odd = the rest is a frame
*without* its CRC, and the harness appends the correct one, so the fuzzer explores the
header, metadata and body checks behind it.
"""

from __future__ import annotations

import struct
import sys
import zlib

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


PAYLOAD_CLASSES = _payload_classes()


def _check_decoded(payload: object, frame: bytes) -> None:
    assert isinstance(payload, wire.Payload)
    # A decoded frame must re-encode to exactly the same bytes (nothing was ignored).
    assert payload.nbytes == len(frame), "nbytes disagrees with the frame length"
    assert payload.to_bytes() == frame, "decode -> encode is not the identity"


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
    # Other buffer types must be accepted or refused cleanly too.
    common.expect_clean(lambda: wire.payload_from_bytes(np.frombuffer(frame, dtype=np.uint8)))
    common.expect_clean(lambda: wire.payload_from_bytes(bytearray(frame)))


def seeds() -> list[bytes]:
    out = []
    header = struct.Struct("<2sBBQ")
    for kind in wire.PayloadKind:
        for n in (0, 1, 9):
            frame = header.pack(wire.MAGIC, wire.FORMAT_VERSION, int(kind), n) + bytes(8)
            out.append(b"\x01" + frame)
    _ = laqcore  # the package import registers every payload class
    return out


if __name__ == "__main__":
    common.main(test_one_input, seeds)
    sys.exit(0)
