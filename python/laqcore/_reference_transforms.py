"""Slow, readable numpy references of the entropy coder and the Hadamard rotation (layouts
in ``cpp/include/laqcore/entropy.hpp`` and ``cpp/include/laqcore/rotation.hpp``); the
companion of :mod:`laqcore._reference`, re-exported with it by ``tests/reference.py``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._reference import random_bits

Array = npt.NDArray[Any]

__all__ = [
    "entropy_decode",
    "entropy_encode",
    "entropy_normalise",
    "entropy_table",
    "fwht",
    "hadamard",
    "rotation_forward",
    "rotation_signs",
]


def __dir__() -> list[str]:
    return __all__


# ---------------------------------------------------------------------------------------
# Entropy coder: table normalisation and a plain symbol-by-symbol decoder
# ---------------------------------------------------------------------------------------
def entropy_normalise(counts: list[int], m: int) -> list[int]:
    """Counts scaled to 2**m by largest remainders (ties: lower symbol), then every present
    symbol raised to 1 by taking units from the (first) largest frequency."""
    total, M = sum(counts), 1 << m
    freq = [c * M // total for c in counts]
    rem = [c * M % total for c in counts]
    order = sorted(range(len(counts)), key=lambda s: (-rem[s], s))
    for s in order[: M - sum(freq)]:
        freq[s] += 1
    for s, c in enumerate(counts):
        if c and not freq[s]:
            big = freq.index(max(freq))
            freq[big] -= 1
            freq[s] = 1
    return freq


class _Bits:
    """LSB-first bit reader."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.bit = data, 8 * pos

    def get(self, n: int) -> int:
        v = 0
        for i in range(n):
            v |= ((self.data[self.bit // 8] >> (self.bit % 8)) & 1) << i
            self.bit += 1
        return v


def _read_table(r: _Bits, m: int, alphabet_bits: int) -> list[int]:
    k = r.get(4)
    skip = r.get(alphabet_bits)
    freq = [0] * (1 << alphabet_bits)
    for s in range(len(freq)):
        if s == skip:
            continue
        zeros = 0
        while r.get(1) == 0:
            zeros += 1
        u = (1 << zeros) | r.get(zeros)
        freq[s] = ((u - 1) << k) | r.get(k)
    freq[skip] = (1 << m) - sum(freq)
    return freq


def entropy_table(stream: bytes, alphabet_bits: int) -> tuple[int, list[int]]:
    """(m, frequencies) of a non-empty stream's table."""
    return stream[0] & 15, _read_table(_Bits(stream, 1), stream[0] & 15, alphabet_bits)


def _write_table(freq: list[int], alphabet_bits: int) -> bytes:
    """The table's bit stream: the exp-Golomb order k with the fewest bits (ties: smallest),
    the first largest frequency implied."""
    skip = freq.index(max(freq))
    others = [f for s, f in enumerate(freq) if s != skip]

    def golomb(f: int, k: int) -> str:  # bits in stream order
        u = (f >> k) + 1
        w = u.bit_length()
        low = [(u >> i) & 1 for i in range(w - 1)] + [(f >> i) & 1 for i in range(k)]
        return "0" * (w - 1) + "1" + "".join(map(str, low))

    k = min(range(16), key=lambda k: (sum(len(golomb(f, k)) for f in others), k))
    bits = [(k >> i) & 1 for i in range(4)] + [(skip >> i) & 1 for i in range(alphabet_bits)]
    bits += [int(b) for f in others for b in golomb(f, k)]
    bits += [0] * (-len(bits) % 8)
    return bytes(sum(bits[8 * i + j] << j for j in range(8)) for i in range(len(bits) // 8))


def entropy_encode(
    symbols: list[int], alphabet_bits: int, m: int, freq: list[int], chunk: int = 1 << 17
) -> bytes:
    """Encode with a given table (frequencies summing to 2**m, non-zero for every symbol
    present), symbol by symbol in reverse, following the layout comment of entropy.hpp."""
    count = len(symbols)
    if count == 0:
        return b"\x00"
    lanes_log2 = 3 if count >= 4096 else 0
    lanes, M, L = 1 << lanes_log2, 1 << m, 1 << 15
    cum = [sum(freq[:s]) for s in range(len(freq))]
    chunks = []
    for begin in range(0, count, chunk):
        part = symbols[begin : begin + chunk]
        x = [L] * lanes
        words: list[int] = []  # in encoding order; the decoder reads them reversed
        for i in reversed(range(len(part))):
            j, s = i % lanes, part[i]
            f = freq[s]
            if x[j] >= ((L >> m) << 16) * f:
                words.append(x[j] & 0xFFFF)
                x[j] >>= 16
            x[j] = (x[j] // f) * M + x[j] % f + cum[s]
        states = b"".join(v.to_bytes(4, "little") for v in x)
        chunks.append(states + b"".join(w.to_bytes(2, "little") for w in reversed(words)))
    directory = b"".join(len(c).to_bytes(4, "little") for c in chunks[:-1])
    head = bytes([m | lanes_log2 << 4]) + _write_table(freq, alphabet_bits)
    return head + directory + b"".join(chunks)


def entropy_decode(
    stream: bytes, count: int, alphabet_bits: int, chunk: int = 1 << 17
) -> list[int]:
    """Decode a stream symbol by symbol, following the layout comment of entropy.hpp."""
    if count == 0:
        assert stream == b"\x00"
        return []
    m, lanes = stream[0] & 15, 1 << (stream[0] >> 4)
    M, L = 1 << m, 1 << 15
    r = _Bits(stream, 1)
    freq = _read_table(r, m, alphabet_bits)
    cum = [sum(freq[:s]) for s in range(len(freq))]
    pos = (r.bit + 7) // 8
    nchunks = -(-count // chunk)
    lengths = [
        int.from_bytes(stream[pos + 4 * c : pos + 4 * c + 4], "little") for c in range(nchunks - 1)
    ]
    pos += 4 * (nchunks - 1)
    out: list[int] = []
    for c in range(nchunks):
        size = lengths[c] if c < nchunks - 1 else len(stream) - pos
        data, p = stream[pos : pos + size], 4 * lanes
        x = [int.from_bytes(data[4 * j : 4 * j + 4], "little") for j in range(lanes)]
        for i in range(min(chunk, count - c * chunk)):
            j = i % lanes
            slot = x[j] % M
            s = max(t for t in range(len(freq)) if freq[t] and cum[t] <= slot)
            out.append(s)
            x[j] = freq[s] * (x[j] // M) + slot - cum[s]
            if x[j] < L:
                x[j] = (x[j] << 16) | int.from_bytes(data[p : p + 2], "little")
                p += 2
        assert p == len(data) and all(v == L for v in x)
        pos += size
    return out


# ---------------------------------------------------------------------------------------
# Randomized Hadamard rotation
# ---------------------------------------------------------------------------------------
def fwht(x: Array) -> Array:
    """H_N x with butterflies (a, b) -> (a + b, a - b) for h = 1, 2, ..., N/2, in the dtype
    of x (float32: the kernel's exact operations)."""
    y = np.array(x)
    h = 1
    while h < y.size:
        pairs = y.reshape(-1, 2, h)
        a, b = pairs[:, 0, :].copy(), pairs[:, 1, :].copy()
        pairs[:, 0, :] = a + b
        pairs[:, 1, :] = a - b
        h *= 2
    return y


def hadamard(N: int) -> Array:
    """The Sylvester-Hadamard matrix H_N (float64)."""
    H = np.ones((1, 1))
    while H.shape[0] < N:
        H = np.block([[H, H], [H, -H]])
    return H


def rotation_signs(key: int, N: int) -> Array:
    """d_i = -1 iff bit (i mod 64) of random_bits(key, i // 64) is 1 (float32 +-1)."""
    words = random_bits(key, -(-N // 64))
    i = np.arange(N)
    bit = (words[i // 64] >> (i % 64).astype(np.uint64)) & np.uint64(1)
    return np.where(bit == 1, -1.0, 1.0).astype(np.float32)


def rotation_forward(x: Array, key: int) -> Array:
    """(1/sqrt(N)) H_N D x' in float32, x' = x zero-padded to the next power of two N."""
    N = 1 << max(0, (x.size - 1).bit_length())
    xp = np.zeros(N, dtype=np.float32)
    xp[: x.size] = x
    s = np.float32(1.0 / np.sqrt(float(N)))
    out: Array = fwht(xp * rotation_signs(key, N)) * s
    return out
