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


# ---------------------------------------------------------------------------------------
# Compressors: QSGD, TernGrad, scaled sign, top-k / rand-k (cpp/include/laqcore/{qsgd,
# terngrad,sign,sparse}.hpp). Float32 arithmetic is written in the same order as the
# kernels, so codes given the same uniforms match exactly.
# ---------------------------------------------------------------------------------------
REDUCE_BLOCK = 2**14  # parallel.hpp kReduceBlock


def blocked_sum(values: np.ndarray) -> float:
    """float64 sum under laqcore's fixed-block rule: left to right inside each block of
    REDUCE_BLOCK elements (np.cumsum is strictly sequential), block sums added in order."""
    v = np.asarray(values, dtype=np.float64)
    total = 0.0
    for start in range(0, v.size, REDUCE_BLOCK):
        total += float(np.cumsum(v[start : start + REDUCE_BLOCK])[-1])
    return total


SUM_LANES = 8  # parallel.hpp kSumLanes


def lane_blocked_sum(values: np.ndarray) -> float:
    """float64 sum under the fixed-block rule with LaneSum order inside each block: element
    i of a block goes to lane i % 8 (each lane summed left to right), the lanes combined as
    ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)), block sums added in order."""
    v = np.asarray(values, dtype=np.float64)
    total = 0.0
    for start in range(0, v.size, REDUCE_BLOCK):
        block = v[start : start + REDUCE_BLOCK]
        lane = [
            float(np.cumsum(block[j::SUM_LANES])[-1]) if j < block.size else 0.0
            for j in range(SUM_LANES)
        ]
        total += ((lane[0] + lane[1]) + (lane[2] + lane[3])) + (
            (lane[4] + lane[5]) + (lane[6] + lane[7])
        )
    return total


def _per_element(per_bucket: np.ndarray, bucket_size: int, n: int) -> np.ndarray:
    return per_bucket[np.arange(n) // bucket_size]


def qsgd_scales(x: np.ndarray, bucket_size: int, norm: str) -> np.ndarray:
    """One float32 scale per bucket: L2 norm (lane-blocked float64 sum of squares) or max |x|."""
    scales = []
    for start in range(0, x.size, bucket_size):
        b = x[start : start + bucket_size]
        if norm == "l2":
            scales.append(np.sqrt(lane_blocked_sum(b.astype(np.float64) ** 2)))
        else:
            scales.append(np.abs(b).max())
    return np.array(scales, dtype=np.float32)


def qsgd_codes(
    x: np.ndarray, levels: int, bucket_size: int, scales: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """code = 2 * level + negative; level = floor(r) + [u < r - floor(r)], r = |x|/scale*s."""
    s = np.float32(levels)
    scale = _per_element(scales, bucket_size, x.size)
    ratio = np.divide(np.abs(x), scale, out=np.zeros_like(x), where=scale > 0)
    r = np.minimum(ratio * s, s)
    low = np.floor(r)
    level = np.minimum(low + (u < r - low), s).astype(np.int64)
    neg = (x < 0) & (level > 0)
    return (2 * level + neg).astype(np.uint8)


def qsgd_values(codes: np.ndarray, scales: np.ndarray, levels: int, bucket_size: int) -> np.ndarray:
    """x_hat = +-level * (scale / s) in float32."""
    step = _per_element(scales / np.float32(levels), bucket_size, codes.size)
    v = (codes >> 1).astype(np.float32) * step
    return np.where(codes & 1, -v, v).astype(np.float32)


def qsgd_code_bits(levels: int) -> int:
    return 1 + int(np.ceil(np.log2(levels + 1)))


def terngrad_scaler(x: np.ndarray, clip_factor: float) -> tuple[float, float]:
    """(local scaler, clipping threshold): threshold = c * population std (+Inf if c <= 0)."""
    thr = np.float32(np.inf)
    if clip_factor > 0:
        x64 = x.astype(np.float64)
        mean = lane_blocked_sum(x64) / x.size
        sigma = np.sqrt(lane_blocked_sum((x64 - mean) ** 2) / x.size)
        thr = np.float32(float(np.float32(clip_factor)) * sigma)
    return float(min(np.abs(x).max(), thr)), float(thr)


def terngrad_codes(x: np.ndarray, threshold: float, scaler: float, u: np.ndarray) -> np.ndarray:
    """0 -> 0, 1 -> +s, 2 -> -s with P(non-zero) = min(|x|, threshold) / s."""
    a = np.minimum(np.abs(x), np.float32(threshold))
    p = a / np.float32(scaler) if scaler > 0 else np.zeros_like(a)
    keep = (u < p).astype(np.uint8)
    return keep * (1 + (x < 0)).astype(np.uint8)


def terngrad_values(codes: np.ndarray, scaler: float) -> np.ndarray:
    return np.array([0.0, scaler, -scaler, np.nan], dtype=np.float32)[codes]


def sign_scale(x: np.ndarray) -> float:
    return float(np.float32(lane_blocked_sum(np.abs(x)) / x.size))


def sign_bits(x: np.ndarray) -> np.ndarray:
    return (x < 0).astype(np.uint8)


def _select_largest(primary: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest primaries, ties to the lower index, returned sorted."""
    order = np.lexsort((np.arange(primary.size), -primary.astype(np.float64)))
    return np.sort(order[:k]).astype(np.uint32)


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    return _select_largest(np.abs(x), k)


def randk_indices(key: int, n: int, k: int) -> np.ndarray:
    """Keyed selection: the k largest high halves of random_bits(key, i)."""
    return _select_largest(random_bits(key, n) >> np.uint64(32), k)


def elias_omega_length(m: int) -> int:
    """Bits of the Elias omega code of m >= 1 (recursive: m, then its length - 1, ...)."""
    bits, m = 1, int(m)
    while m > 1:
        nb = m.bit_length()
        bits += nb
        m = nb - 1
    return bits


# ---------------------------------------------------------------------------------------
# LAQ innovation quantizer (cpp/include/laqcore/laq.hpp; ALGORITHMS.md §1.1)
# ---------------------------------------------------------------------------------------
def laq_lut(radius: float, bits: int) -> np.ndarray:
    """Dequantized value of every code: float32(c * step - R), step = (2R) / (2**bits - 1)."""
    levels = (1 << bits) - 1
    r = float(radius)
    step = (2.0 * r) / levels
    c = np.arange(levels + 1, dtype=np.float64)
    return (c * step - r).astype(np.float32)


def laq_quantize(grad: np.ndarray, prev: np.ndarray | None, bits: int) -> dict:
    """v = g - q_prev (float32); R = max|v|; c = floor((v + R) / (2 tau R) + 1/2) in double,
    clamped; dQ = lut[c]; q_new = q_prev + dQ (float32); err_sq / innov_sq in double."""
    g = np.asarray(grad, dtype=np.float32)
    p = np.zeros_like(g) if prev is None else np.asarray(prev, dtype=np.float32)
    v = g - p
    radius = float(np.max(np.abs(v)))
    levels = (1 << bits) - 1
    step = (2.0 * radius) / levels if radius > 0 else 1.0  # R = 0: every code is 0
    codes = np.floor((v.astype(np.float64) + radius) / step + 0.5)
    codes = np.clip(codes, 0, levels).astype(np.uint8)
    dq = laq_lut(radius, bits)[codes]
    q_new = p + dq
    return {
        "codes": codes,
        "packed": pack_bits(codes, bits),
        "radius": radius,
        "dq": dq,
        "q_new": q_new,
        "err_sq": float(np.sum((q_new.astype(np.float64) - g.astype(np.float64)) ** 2)),
        "innov_sq": float(np.sum(dq.astype(np.float64) ** 2)),
    }


def laq_quantize_blocks(
    grad: np.ndarray, prev: np.ndarray | None, bits: int, block_size: int
) -> dict:
    """Blockwise radius: each block of ``block_size`` coordinates (the last one shorter) is
    quantized as :func:`laq_quantize` quantizes a vector; the codes are packed as one stream
    and the sums run over all coordinates."""
    g = np.asarray(grad, dtype=np.float32)
    p = np.zeros_like(g) if prev is None else np.asarray(prev, dtype=np.float32)
    blocks = [
        laq_quantize(g[s : s + block_size], p[s : s + block_size], bits)
        for s in range(0, g.size, block_size)
    ]
    codes = np.concatenate([b["codes"] for b in blocks])
    dq = np.concatenate([b["dq"] for b in blocks])
    q_new = np.concatenate([b["q_new"] for b in blocks])
    return {
        "codes": codes,
        "packed": pack_bits(codes, bits),
        "radii": np.array([b["radius"] for b in blocks], dtype=np.float32),
        "dq": dq,
        "q_new": q_new,
        "err_sq": float(np.sum((q_new.astype(np.float64) - g.astype(np.float64)) ** 2)),
        "innov_sq": float(np.sum(dq.astype(np.float64) ** 2)),
    }


def laq_official_quantd(vec: np.ndarray, v2: np.ndarray, b: int) -> np.ndarray:
    """The official code's formula, transcribed (float64 throughout):
    r = max|vec - v2|; delta = r / (2^b - 1); Q = v2 - r + 2 delta floor((vec - v2 + r + delta) / (2 delta))."""
    vec = np.asarray(vec, dtype=np.float64)
    v2 = np.asarray(v2, dtype=np.float64)
    r = np.max(np.abs(vec - v2))
    delta = r / (np.floor(2**b) - 1)
    return v2 - r + 2 * delta * np.floor((vec - v2 + r + delta) / (2 * delta))


def laq_decode_add(
    target: np.ndarray, codes: np.ndarray, radius: float, bits: int, weight: float = 1.0
) -> np.ndarray:
    """target + float32(weight) * lut[codes], all in float32 (the apply / accumulate kernels)."""
    table = np.float32(weight) * laq_lut(radius, bits)
    return np.asarray(target, dtype=np.float32) + table[codes]


# ---------------------------------------------------------------------------------------
# Lazy upload rule (cpp/include/laqcore/lazy_rule.hpp; ALGORITHMS.md §1.2, §1.5)
# ---------------------------------------------------------------------------------------
def squared_distance(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(np.sum(d * d))


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
