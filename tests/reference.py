"""Slow, readable numpy references for every native kernel.

Each function follows the formula in shared/docs/ALGORITHMS.md (or the layout comment of the
C++ header) as literally as possible; speed is irrelevant here. Tests compare the kernels
against these: exactly for integer codes and packing, with a tight tolerance for floats.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------
# Counter-based RNG (cpp/include/laqcore/rng.hpp)
# ---------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix64_int(z: int) -> int:
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def make_key(seed: int, step: int, stream: int) -> int:
    k = _mix64_int(seed + _GOLDEN)
    k = _mix64_int(k ^ ((step + 0x632BE59BD9B4E019) & _MASK64))
    k = _mix64_int(k ^ ((stream + 0x8CB92BA72F3D8DD7) & _MASK64))
    return k


def _mix64_array(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_bits(key: int, n: int) -> np.ndarray:
    """random_bits(key, i) for i = 0..n-1 (uint64 arithmetic wraps modulo 2**64)."""
    counters = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64_array(np.uint64(key) + counters * np.uint64(_GOLDEN))


def uniform01(key: int, n: int) -> np.ndarray:
    """Uniform floats in [0, 1) with 24 random bits, as laqcore::uniform01."""
    return (random_bits(key, n) >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


# ---------------------------------------------------------------------------------------
# Bit packing (cpp/include/laqcore/pack.hpp)
# ---------------------------------------------------------------------------------------
def packed_size(n: int, bits: int) -> int:
    return (n * bits + 7) // 8


def pack_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Little-endian bit stream: code i -> stream bits [i*bits, (i+1)*bits)."""
    codes = np.asarray(codes, dtype=np.uint8)
    assert np.all(codes < (1 << bits))
    # bit matrix: row i holds the `bits` bits of code i, least significant first
    bit_matrix = (codes[:, None] >> np.arange(bits, dtype=np.uint8)[None, :]) & 1
    return np.packbits(bit_matrix.reshape(-1), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    stream = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[: n * bits]
    bit_matrix = stream.reshape(n, bits).astype(np.uint16)
    weights = (1 << np.arange(bits)).astype(np.uint16)
    return (bit_matrix * weights).sum(axis=1).astype(np.uint8)
