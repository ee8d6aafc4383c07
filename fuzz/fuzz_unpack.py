"""Fuzz ``laqcore.unpack_bits`` (and ``pack_bits`` on what it returns).

Input layout: ``bits = byte0 - 1`` (so 0, 9 and beyond are exercised too), ``n`` = bytes 1-2
little-endian (often more codes than the buffer holds, so short buffers are exercised), the
rest is the packed buffer. On success the codes must fit in ``bits`` and re-pack to the same bytes.
"""

from __future__ import annotations

import sys

import atheris
import numpy as np

# Instrument laqcore's Python layer only (numpy's coverage would just add noise).
with atheris.instrument_imports(include=["laqcore"]):
    import laqcore

import common


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    bits = data[0] - 1
    n = int.from_bytes(data[1:3], "little")
    packed = np.frombuffer(data[3:], dtype=np.uint8)
    codes = common.expect_clean(lambda: laqcore.unpack_bits(packed, bits, n))
    if codes is None:
        return
    assert isinstance(codes, np.ndarray)
    assert codes.dtype == np.uint8
    assert codes.shape == (n,)
    assert int(codes.max(initial=0)) < (1 << bits)
    again = laqcore.pack_bits(codes, bits)
    assert again.tobytes() == packed.tobytes(), "unpack -> pack is not the identity"


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for bits in range(1, 9):
        for n in (0, 1, 7, 8, 9, 100):
            codes = rng.integers(0, 1 << bits, size=n, dtype=np.uint8)
            out.append(
                bytes([bits + 1])
                + n.to_bytes(2, "little")
                + laqcore.pack_bits(codes, bits).tobytes()
            )
    return out


if __name__ == "__main__":
    common.main(test_one_input, seeds)
    sys.exit(0)
