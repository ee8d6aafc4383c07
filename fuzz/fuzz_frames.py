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


# Constructor arguments for registered compressors that have no usable defaults.
_COMPRESSOR_ARGS: dict[str, dict[str, Any]] = {
    "topk": {"ratio": 0.25},
    "randk": {"ratio": 0.25},
    "sparse_quant": {"ratio": 0.25},
}


def _compressors() -> list[Any]:
    """One instance of every registered compressor (the receiving side of each format)."""
    return [
        laqcore.get_compressor(name, **_COMPRESSOR_ARGS.get(name, {}))
        for name in laqcore.available_compressors()
    ]


# A sparse frame of a few dozen bytes can declare n = 2**31: it decodes fine, and decompress
# then allocates n float32s (8 GiB), which the receiver cannot refuse because it has no
# expected length to compare with (see fuzz/README.md, "Findings"). Larger frames are still
# decoded and re-encoded above; only their decompression is skipped.
MAX_DECOMPRESS_N = 1 << 20

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
        if payload.n > MAX_DECOMPRESS_N:
            continue
        out = common.expect_clean(lambda comp=comp, payload=payload: comp.decompress(payload))
        if out is not None:
            _check_vector(out, payload.n)
    # Other buffer types must be accepted or refused cleanly too.
    common.expect_clean(lambda: wire.payload_from_bytes(np.frombuffer(frame, dtype=np.uint8)))
    common.expect_clean(lambda: wire.payload_from_bytes(bytearray(frame)))


def seeds() -> list[bytes]:
    """Valid frames of every compressor, as is (mode 0) and without their CRC (mode 1, so
    mutated bodies still pass the checksum), and headers of every kind with zero bodies."""
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
            frame = comp.compress(x, step=0).to_bytes()
            out.append(b"\x00" + frame)
            out.append(b"\x01" + frame[:-4])  # mutations keep a valid CRC
    return out


if __name__ == "__main__":
    common.main(test_one_input, seeds)
    sys.exit(0)
