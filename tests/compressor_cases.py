"""Helpers shared by the compressor tests (test_qsgd/terngrad/sign/sparse/compressors)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import laqcore

HEADER = 12  # magic, version, kind, n (laqcore.wire)

# Round-trip property inputs shared by the QSGD and TernGrad tests: finite float32 vectors
# of 1..300 values in [-1e6, 1e6], no subnormals.
FINITE_F32_VECTORS = hnp.arrays(
    np.float32,
    st.integers(1, 300),
    elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=False),
)

# Inputs that must raise, with the exception type and a fragment of the message.
BAD_VECTORS: list[Any] = [
    pytest.param(
        np.array([1.0, np.nan, 2.0], dtype=np.float32), ValueError, "NaN or Inf", id="nan"
    ),
    pytest.param(np.array([np.inf, 1.0], dtype=np.float32), ValueError, "NaN or Inf", id="inf"),
    pytest.param(np.array([1.0, -np.inf]), ValueError, "NaN or Inf", id="-inf-float64"),
    pytest.param(np.arange(4, dtype=np.int64), TypeError, "floating-point", id="int64"),
    pytest.param(np.array(["a", "b"]), TypeError, "floating-point", id="str"),
    pytest.param(np.array([1.0, 2.0], dtype=object), TypeError, "floating-point", id="object"),
    pytest.param(np.ones(3, dtype=np.complex64), TypeError, "floating-point", id="complex"),
    pytest.param(np.ones((2, 3), dtype=np.float32), ValueError, "1-D", id="2d"),
    pytest.param(np.ones(8, dtype=np.float32)[::2], ValueError, "contiguous", id="strided"),
    pytest.param(np.zeros(0, dtype=np.float32), ValueError, "empty", id="empty"),
]


def check_bad_vectors(compress: Callable[[Any], Any], x: Any, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        compress(x)


def nan_in_large_input(compress: Callable[[Any], Any], n: int = 2**20 + 3) -> None:
    """NaN near the end of an input long enough for the parallel path is still caught."""
    x = np.ones(n, dtype=np.float32)
    x[n - 5] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        compress(x)


def patch_frame(frame: bytes, offset: int, new: bytes) -> bytes:
    """Overwrite bytes of a frame and fix its CRC, to build *consistent-looking* corrupt frames
    that only the payload's own validation can reject."""
    body = bytearray(frame[:-4])
    body[offset : offset + len(new)] = new
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def resize_frame(frame: bytes, delta: int) -> bytes:
    """Drop (delta < 0) or append (delta > 0) body bytes and fix the CRC."""
    body = frame[:-4]
    body = body[:delta] if delta < 0 else body + b"\0" * delta
    return body + struct.pack("<I", zlib.crc32(body))


def check_generic_corruption(comp: Any, payload: Any) -> None:
    """Every frame: truncation, CRC, magic, a body of the wrong size, another kind's frame
    and (in ``decompress``) another compressor's payload are rejected."""
    frame = payload.to_bytes()
    assert len(frame) == payload.nbytes
    for cut in (0, 5, HEADER, len(frame) - 1):
        with pytest.raises(ValueError, match=r"truncated|CRC"):
            comp.from_bytes(frame[:cut])
    flipped = bytearray(frame)
    flipped[len(frame) // 2] ^= 0x10
    with pytest.raises(ValueError, match="CRC"):
        comp.from_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="magic"):
        comp.from_bytes(patch_frame(frame, 0, b"XX"))
    for delta in (-1, 1):
        with pytest.raises(ValueError, match="frame"):
            comp.from_bytes(resize_frame(frame, delta))
    with pytest.raises(ValueError, match=r"n = 0|frame body|truncated"):
        comp.from_bytes(patch_frame(frame, 4, struct.pack("<Q", 0)))
    with pytest.raises(ValueError, match="frame"):  # a length the body cannot hold
        comp.from_bytes(patch_frame(frame, 4, struct.pack("<Q", 2**40)))
    with pytest.raises(TypeError):
        comp.from_bytes(12345)
    # another compressor's frame and payload: refused, naming what was expected
    kind = payload.KIND.name
    other = laqcore.get_compressor("sign" if kind != "SIGN" else "none")
    foreign = other.compress(np.ones(payload.n, dtype=np.float32))
    with pytest.raises(ValueError, match=f"expected {kind}"):
        comp.from_bytes(foreign.to_bytes())
    with pytest.raises(TypeError, match=type(payload).__name__):
        comp.decompress(foreign)


def thread_outputs(fn: Callable[[], Any]) -> list[Any]:
    """fn() run with 1, 2 and 7 threads."""
    outs = []
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            outs.append(fn())
    return outs


def mean_of_draws(comp: Any, x: Any, trials: int) -> Any:
    """Mean (float64) of ``decompress(compress(x, step))`` over steps 0..trials-1: the
    empirical expectation of a stochastic compressor's output, for unbiasedness tests."""
    mean = np.zeros(x.size)
    for step in range(trials):
        mean += comp.decompress(comp.compress(x, step=step))
    mean /= trials
    return mean
