"""Slow, readable numpy references for every native kernel, and transcriptions of the
official LAQ code.

The kernel references live in the package (:mod:`laqcore._reference`, which the benchmark's
numpy baselines also use) and are re-exported here, so tests write ``ref.laq_quantize``.
This file adds what only tests need: literal transcriptions of the official LAQ/SLAQ code
(the formulas of docs/algorithms.md as that code writes them), used to pin the algorithms.
"""

from __future__ import annotations

import numpy as np

from laqcore._reference import *  # noqa: F403  (the kernel references, one source)


def laq_official_quantd(vec: np.ndarray, v2: np.ndarray, b: int) -> np.ndarray:
    """The official code's formula, transcribed (float64 throughout):
    r = max|vec - v2|; delta = r / (2^b - 1); Q = v2 - r + 2 delta floor((vec - v2 + r + delta) / (2 delta))."""
    vec = np.asarray(vec, dtype=np.float64)
    v2 = np.asarray(v2, dtype=np.float64)
    r = np.max(np.abs(vec - v2))
    delta = r / (np.floor(2**b) - 1)
    return v2 - r + 2 * delta * np.floor((vec - v2 + r + delta) / (2 * delta))


def official_laq_me(diffs: list[float], D: int = 10, ck: float = 0.8) -> float:
    """`me` of the official LAQ.py loop at iteration k = len(diffs), transcribed literally.

    diffs[j] = ||theta^{j+1} - theta^j||^2, so dtheta[k] = diffs[k-1] (dtheta[0] = 0).
    ksi[:, 0] = ck; ksi[:, i] = ck * (1/i) for i = 1..D.
    """
    k = len(diffs)
    dtheta_sq = [0.0, *diffs]
    ksi = np.ones((D, D + 1))
    for i in range(D + 1):
        ksi[:, i] = np.ones(D) if i == 0 else 1 / i * np.ones(D)
    ksi = ck * ksi
    me = 0.0
    for d in range(D):
        if k - d >= 0:
            if k <= D:
                me = me + ksi[d, k] * dtheta_sq[k - d]
            if k > D:
                me = me + ksi[d, D] * dtheta_sq[k - d]
    return float(me)


def official_slaq_me_steady(diffs: list[float], D: int = 10, ck: float = 0.8) -> float:
    """`me` of the official SLAQ.py loop for k = len(diffs) >= D (its shift buffer holds the D
    most recent differences, column D-1 the newest; the sum runs over d = 1..D-1)."""
    k = len(diffs)
    assert k >= D
    dtheta_sq = list(diffs[-D:])  # columns 0..D-1, oldest first
    me = 0.0
    for d in range(1, D):
        w = ck * (1 / D)
        me = me + w * (dtheta_sq[k - d] if k <= D else dtheta_sq[D - d])
    return float(me)


# ---------------------------------------------------------------------------------------
# Entropy coder (cpp/include/laqcore/entropy.hpp): table normalisation and a plain decoder
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
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.bit = data, 8 * pos

    def get(self, n: int) -> int:
        v = 0
        for i in range(n):
            v |= ((self.data[self.bit // 8] >> (self.bit % 8)) & 1) << i
            self.bit += 1
        return v


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
    freq[skip] = M - sum(freq)
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
