"""Slow, readable numpy references of laqcore's native kernels.

Each function writes the kernel's formula (docs/algorithms.md, or the layout comment at the
top of the C++ header it names) as literally as possible; speed is irrelevant. The tests
compare every kernel against these (``tests/reference.py`` re-exports them), exactly for
integer codes and packing, with a tight tolerance for floats; ``laqcore bench`` builds its
numpy LAQ baseline from :func:`laq_quantize` with a faster packer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

__all__ = [
    "LAQ_SUM_LANES",
    "REDUCE_BLOCK",
    "SUM_LANES",
    "add_scaled",
    "add_scaled_difference",
    "blocked_sum",
    "elias_omega_length",
    "lane_blocked_sum",
    "laq_accumulate_all",
    "laq_apply_average",
    "laq_decode_add",
    "laq_lut",
    "laq_quantize",
    "laq_quantize_blocks",
    "laq_square_pieces",
    "laq_sum_scale",
    "laq_widths_quantize",
    "make_key",
    "pack_bits",
    "packed_size",
    "qsgd_code_bits",
    "qsgd_codes",
    "qsgd_scales",
    "qsgd_values",
    "randk_indices",
    "random_bits",
    "segment_squares",
    "sign_bits",
    "sign_scale",
    "squared_distance",
    "terngrad_codes",
    "terngrad_scaler",
    "terngrad_values",
    "topk_indices",
    "uniform01",
    "unpack_bits",
]


def __dir__() -> list[str]:
    return __all__


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


def _mix64_array(z: Array) -> Array:
    z = z.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: Array = z ^ (z >> np.uint64(31))
    return out


def random_bits(key: int, n: int) -> Array:
    """random_bits(key, i) for i = 0..n-1 (uint64 arithmetic wraps modulo 2**64)."""
    counters = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix64_array(np.uint64(key) + counters * np.uint64(_GOLDEN))


def uniform01(key: int, n: int) -> Array:
    """Uniform floats in [0, 1) with 24 random bits, as laqcore::uniform01."""
    return (random_bits(key, n) >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


# ---------------------------------------------------------------------------------------
# Bit packing (cpp/include/laqcore/pack.hpp)
# ---------------------------------------------------------------------------------------
def packed_size(n: int, bits: int) -> int:
    return (n * bits + 7) // 8


def pack_bits(codes: Array, bits: int) -> Array:
    """Little-endian bit stream: code i -> stream bits [i*bits, (i+1)*bits)."""
    codes = np.asarray(codes, dtype=np.uint8)
    if not np.all(codes < (1 << bits)):
        raise ValueError(f"a code does not fit in {bits} bits")
    # bit matrix: row i holds the `bits` bits of code i, least significant first
    bit_matrix = (codes[:, None] >> np.arange(bits, dtype=np.uint8)[None, :]) & 1
    return np.packbits(bit_matrix.reshape(-1), bitorder="little")


def unpack_bits(packed: Array, bits: int, n: int) -> Array:
    stream = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[: n * bits]
    bit_matrix = stream.reshape(n, bits).astype(np.uint16)
    weights = (1 << np.arange(bits)).astype(np.uint16)
    codes: Array = (bit_matrix * weights).sum(axis=1).astype(np.uint8)
    return codes


# ---------------------------------------------------------------------------------------
# Compressors: QSGD, TernGrad, scaled sign, top-k / rand-k (cpp/include/laqcore/{qsgd,
# terngrad,sign,sparse}.hpp). Float32 arithmetic is written in the same order as the
# kernels, so codes given the same uniforms match exactly.
# ---------------------------------------------------------------------------------------
REDUCE_BLOCK = 2**14  # parallel.hpp kReduceBlock


def blocked_sum(values: Array) -> float:
    """float64 sum under laqcore's fixed-block rule: left to right inside each block of
    REDUCE_BLOCK elements (np.cumsum is strictly sequential), block sums added in order."""
    v = np.asarray(values, dtype=np.float64)
    total = 0.0
    for start in range(0, v.size, REDUCE_BLOCK):
        total += float(np.cumsum(v[start : start + REDUCE_BLOCK])[-1])
    return total


SUM_LANES = 8  # parallel.hpp kSumLanes


def lane_blocked_sum(values: Array) -> float:
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
        total += _lane_total(lane)
    return total


def _lane_total(lane: Any) -> float:
    """parallel.hpp ``LaneSum::total()``: ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))."""
    return float(
        ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]))
    )


LAQ_SUM_LANES = 16  # laq.hpp kLaqSumLanes


def laq_sum_scale(radius: float) -> tuple[np.float32, float]:
    """laq.hpp ``laq_sum_scale``: s = 2^k, k = 127 - clamp(exponent bits of R, 1, 253), and
    1 / s^2."""
    biased = int(np.float32(radius).view(np.uint32)) >> 23 & 0xFF
    k = 127 - min(max(biased, 1), 253)
    return np.float32(2.0**k), 2.0 ** (-2 * k)


def laq_square_pieces(terms: Array, radius: float) -> list[float]:
    """The LAQ sums of squares (laq.hpp, "Arithmetic") of one radius block, one float per
    piece of REDUCE_BLOCK terms: each term times s and squared in float32, term i added in
    float32 to lane i % 16 (np.add.accumulate is strictly sequential), the lanes' halves
    widened and added, LaneSum's tree, times 1 / s^2."""
    scale, unscale = laq_sum_scale(radius)
    t = np.asarray(terms, dtype=np.float32) * scale
    squares = t * t
    pieces: list[float] = []
    for start in range(0, squares.size, REDUCE_BLOCK):
        piece = squares[start : start + REDUCE_BLOCK]
        rows = np.zeros(-(-piece.size // LAQ_SUM_LANES) * LAQ_SUM_LANES, np.float32)
        rows[: piece.size] = piece  # padding adds +0.0, as a kernel's dead lanes
        lane = np.add.accumulate(rows.reshape(-1, LAQ_SUM_LANES), axis=0)[-1].astype(np.float64)
        pieces.append(_lane_total(lane[:SUM_LANES] + lane[SUM_LANES:]) * unscale)
    return pieces


def _per_element(per_bucket: Array, bucket_size: int, n: int) -> Array:
    return per_bucket[np.arange(n) // bucket_size]


def qsgd_scales(x: Array, bucket_size: int, norm: str) -> Array:
    """One float32 scale per bucket: L2 norm (lane-blocked float64 sum of squares) or max |x|."""
    scales = []
    for start in range(0, x.size, bucket_size):
        b = x[start : start + bucket_size]
        if norm == "l2":
            scales.append(np.sqrt(lane_blocked_sum(b.astype(np.float64) ** 2)))
        else:
            scales.append(np.abs(b).max())
    return np.array(scales, dtype=np.float32)


def qsgd_codes(x: Array, levels: int, bucket_size: int, scales: Array, u: Array) -> Array:
    """code = 2 * level + negative; level = floor(r) + [u < r - floor(r)], r = |x|/scale*s."""
    s = np.float32(levels)
    scale = _per_element(scales, bucket_size, x.size)
    ratio = np.divide(np.abs(x), scale, out=np.zeros_like(x), where=scale > 0)
    r = np.minimum(ratio * s, s)
    low = np.floor(r)
    level = np.minimum(low + (u < r - low), s).astype(np.int64)
    neg = (x < 0) & (level > 0)
    codes: Array = (2 * level + neg).astype(np.uint8)
    return codes


def qsgd_values(codes: Array, scales: Array, levels: int, bucket_size: int) -> Array:
    """x_hat = +-min(level * (scale / s), scale) in float32."""
    step = _per_element(scales / np.float32(levels), bucket_size, codes.size)
    with np.errstate(over="ignore"):
        v = (codes >> 1).astype(np.float32) * step
    v = np.minimum(v, _per_element(scales.astype(np.float32), bucket_size, codes.size))
    return np.where(codes & 1, -v, v).astype(np.float32)


def qsgd_code_bits(levels: int) -> int:
    return 1 + int(np.ceil(np.log2(levels + 1)))


def terngrad_scaler(x: Array, clip_factor: float) -> tuple[float, float]:
    """(local scaler, clipping threshold): threshold = c * population std (+Inf if c <= 0 or
    the std is 0: a constant vector has nothing to clip)."""
    thr = np.float32(np.inf)
    if clip_factor > 0:
        x64 = x.astype(np.float64)
        mean = lane_blocked_sum(x64) / x.size
        sigma = np.sqrt(lane_blocked_sum((x64 - mean) ** 2) / x.size)
        if sigma > 0:
            thr = np.float32(float(np.float32(clip_factor)) * sigma)
    return float(min(np.abs(x).max(), thr)), float(thr)


def terngrad_codes(x: Array, threshold: float, scaler: float, u: Array) -> Array:
    """0 -> 0, 1 -> +s, 2 -> -s with P(non-zero) = min(|x|, threshold) / s."""
    a = np.minimum(np.abs(x), np.float32(threshold))
    p = a / np.float32(scaler) if scaler > 0 else np.zeros_like(a)
    keep = (u < p).astype(np.uint8)
    return keep * (1 + (x < 0)).astype(np.uint8)


def terngrad_values(codes: Array, scaler: float) -> Array:
    return np.array([0.0, scaler, -scaler, np.nan], dtype=np.float32)[codes]


def sign_scale(x: Array) -> float:
    return float(np.float32(lane_blocked_sum(np.abs(x)) / x.size))


def sign_bits(x: Array) -> Array:
    return (x < 0).astype(np.uint8)


def _select_largest(primary: Array, k: int) -> Array:
    """Indices of the k largest primaries, ties to the lower index, returned sorted."""
    order = np.lexsort((np.arange(primary.size), -primary.astype(np.float64)))
    return np.sort(order[:k]).astype(np.uint32)


def topk_indices(x: Array, k: int) -> Array:
    return _select_largest(np.abs(x), k)


def randk_indices(key: int, n: int, k: int) -> Array:
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
# LAQ innovation quantizer (cpp/include/laqcore/laq.hpp; docs/algorithms.md, LAQ quantizer)
# ---------------------------------------------------------------------------------------
def laq_lut(radius: float, bits: int) -> Array:
    """Dequantized value of every code: float32(c * step - R), step = (2R) / (2**bits - 1)."""
    levels = (1 << bits) - 1
    r = float(radius)
    step = (2.0 * r) / levels
    c = np.arange(levels + 1, dtype=np.float64)
    return (c * step - r).astype(np.float32)


def laq_quantize(
    grad: Array,
    prev: Array | None,
    bits: int,
    *,
    pack: Callable[[Array, int], Array] | None = None,
    square_pieces: Callable[[Array, float], list[float]] | None = None,
) -> dict[str, Any]:
    """v = g - q_prev (float32); R = max|v|; c = floor((v + R) / (2 tau R) + 1/2) in double,
    clamped; dQ = lut[c]; q_new = q_prev + dQ (float32); err_sq / innov_sq the sums of
    squares of q_new - g (float32) and of dQ (:func:`laq_square_pieces`, or
    ``square_pieces``: the bench's vectorised baseline sums in float64), with the piece sums
    in ``err_pieces`` / ``innov_pieces``."""
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
    pieces = laq_square_pieces if square_pieces is None else square_pieces
    err_pieces = pieces(q_new - g, radius)
    innov_pieces = pieces(dq, radius)
    return {
        "codes": codes,
        "packed": (pack_bits if pack is None else pack)(codes, bits),
        "radius": radius,
        "dq": dq,
        "q_new": q_new,
        "err_pieces": err_pieces,
        "innov_pieces": innov_pieces,
        "err_sq": sum(err_pieces),  # left to right from 0.0, as the kernel adds its pieces
        "innov_sq": sum(innov_pieces),
    }


def laq_quantize_blocks(
    grad: Array, prev: Array | None, bits: int, block_size: int
) -> dict[str, Any]:
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
        # every block's pieces, left to right over the whole vector
        "err_sq": sum(x for b in blocks for x in b["err_pieces"]),
        "innov_sq": sum(x for b in blocks for x in b["innov_pieces"]),
    }


def laq_decode_add(
    target: Array, codes: Array, radius: float, bits: int, weight: float = 1.0
) -> Array:
    """target + float32(weight) * lut[codes], all in float32 (the apply / accumulate kernels)."""
    table = np.float32(weight) * laq_lut(radius, bits)
    return np.asarray(target, dtype=np.float32) + table[codes]


def laq_accumulate_all(
    target: Array, payloads: list[tuple[Array, Array]], bits: int, block_size: int
) -> Array:
    """``laq_accumulate_all``: ``target`` plus each payload's table entries in turn, in
    float32; a payload is (codes, radii) with one radius per block of ``block_size`` (one
    block of ``n`` for the global radius)."""
    new = np.array(target, dtype=np.float32, copy=True)
    for codes, radii in payloads:
        for j, radius in enumerate(radii):
            s, e = j * block_size, min((j + 1) * block_size, new.size)
            new[s:e] = laq_decode_add(new[s:e], codes[s:e], float(radius), bits)
    return new


def laq_apply_average(
    target: Array, codes: Array, radii: Array, bits: int, block_size: int, divisor: float
) -> tuple[Array, Array]:
    """The fused apply + average (``laq_accumulate_divide``): block j of ``target`` (blocks of
    ``block_size``, the last one shorter; one block of ``n`` for the global radius) plus its
    table entries ``lut(radii[j])[codes]`` in float32, then that sum divided by
    ``float32(divisor)``. Returns (new target, average)."""
    new = laq_accumulate_all(target, [(codes, radii)], bits, block_size)
    return new, new / np.float32(divisor)


# ---------------------------------------------------------------------------------------
# Lazy upload rule (cpp/include/laqcore/lazy_rule.hpp; docs/algorithms.md, lazy upload rule)
# ---------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------
# LAQ with a width per block (cpp/include/laqcore/laq_widths.hpp)
# ---------------------------------------------------------------------------------------
#: float32(2^(-e/2)), e = 0..7: the block radii's scales.
WIDTHS_RADIUS_SCALE = np.array([2.0 ** (-e / 2) for e in range(8)], dtype=np.float32)


def _seq_sum(values: Array) -> float:
    """A sum in float64 from 0.0, left to right (numpy's sum is pairwise)."""
    total = 0.0
    for x in np.asarray(values, dtype=np.float64).tolist():
        total += x
    return total


def _widths_pick(err: Array, cost: Array, sent: Array, lam: float) -> tuple[Array, float]:
    """Each block's table index minimising err + lam * cost (the first such; 0 for blocks
    whose maximum is 0), and the total error of the pick in block order."""
    pick = np.where(sent, np.argmin(err + lam * cost, axis=1), 0)
    return pick, _seq_sum(err[np.arange(len(pick)), pick])


def laq_widths_quantize(  # noqa: PLR0913 - the kernel's arguments
    grad: Array,
    prev: Array | None,
    block: int,
    widths: tuple[int, ...],
    budget: float,
    cap: float,
) -> dict[str, Any]:
    """The kernel's formula (laq_widths.hpp) step by step: block maxima and exponents, every
    block's error at every table width, the Lagrangian allocation, then the body bits, dQ and
    the two sums."""
    g = np.asarray(grad, dtype=np.float32)
    p = np.zeros_like(g) if prev is None else np.asarray(prev, dtype=np.float32)
    v = g - p
    n = g.shape[0]
    nb = -(-n // block)
    spans = [(j * block, min((j + 1) * block, n)) for j in range(nb)]
    vmax = np.array([np.max(np.abs(v[a:b])) for a, b in spans], dtype=np.float32)
    r_max = np.float32(vmax.max())
    exponent = np.zeros(nb, dtype=np.int64)
    radius = np.zeros(nb, dtype=np.float32)
    err = np.zeros((nb, 4))
    codes: dict[tuple[int, int], Array] = {}
    for j, (a, b) in enumerate(spans):
        vj = v[a:b]
        err[j, 0] = _seq_sum(vj.astype(np.float64) ** 2)
        if vmax[j] == 0:
            continue
        e = max(k for k in range(8) if r_max * WIDTHS_RADIUS_SCALE[k] >= vmax[j])
        exponent[j], radius[j] = e, r_max * WIDTHS_RADIUS_SCALE[e]
        for k in range(1, 4):
            w = widths[k]
            top = (1 << w) - 1
            step = (2.0 * float(radius[j])) / top
            c = np.clip(np.floor((vj.astype(np.float64) + float(radius[j])) / step + 0.5), 0, top)
            codes[j, k] = c.astype(np.int64)
            dq = laq_lut(float(radius[j]), w)[codes[j, k]]
            err[j, k] = _seq_sum((dq.astype(np.float64) - vj.astype(np.float64)) ** 2)
    target = min(budget, cap * _seq_sum(err[:, 0]))
    sizes = np.array([b - a for a, b in spans], dtype=np.float64)
    w_arr = np.array(widths, dtype=np.float64)
    cost = 2.0 + np.where(w_arr[None, :] > 0, 3.0 + w_arr[None, :] * sizes[:, None], 0.0)
    sent = vmax != 0
    best = np.where(sent, 3, 0)
    if _seq_sum(err[np.arange(nb), best]) <= target:
        lo, hi = -64, 64
        while hi - lo > 1:
            mid = (lo + hi) // 2
            pick, total = _widths_pick(err, cost, sent, 2.0**mid)
            if total <= target:
                best, lo = pick, mid
            else:
                hi = mid
        a_lam, b_lam = 2.0**lo, 2.0 ** (lo + 1)
        for _ in range(40):
            m = 0.5 * (a_lam + b_lam)
            pick, total = _widths_pick(err, cost, sent, m)
            if total <= target:
                best, a_lam = pick, m
            else:
                b_lam = m
    bits: list[int] = []

    def put(value: int, width: int) -> None:
        bits.extend((value >> i) & 1 for i in range(width))

    for j in range(nb):
        put(int(best[j]), 2)
    for j in range(nb):
        if best[j] > 0:
            put(int(exponent[j]), 3)
    dq_all = np.zeros(n, dtype=np.float32)
    for j, (a, b) in enumerate(spans):
        k = int(best[j])
        if k > 0:
            for c in codes[j, k].tolist():
                put(c, widths[k])
            dq_all[a:b] = laq_lut(float(radius[j]), widths[k])[codes[j, k]]
    sent_mask = np.repeat(best > 0, [b - a for a, b in spans])
    q_new = np.where(sent_mask, p + dq_all, p)
    body = np.packbits(np.array(bits, dtype=np.uint8), bitorder="little")
    return {
        "body": body,
        "r_max": float(r_max),
        "block_widths": np.array([widths[k] for k in best], dtype=np.int8),
        "radii": np.where(best > 0, radius, np.float32(0)),
        "dq": dq_all,
        "err_sq": _seq_sum((q_new.astype(np.float64) - g.astype(np.float64)) ** 2),
        "innov_sq": _seq_sum(dq_all.astype(np.float64) ** 2),
    }


def squared_distance(a: Array, b: Array) -> float:
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(np.sum(d * d))


def add_scaled(inout: Array, x: Array, weight: float) -> Array:
    """``inout + x * weight`` in float32, one element at a time: the product rounded to
    float32, then the sum (what ``_core.lazy.add_scaled`` writes into ``inout``)."""
    w = np.float32(weight)
    out = np.empty(len(inout), dtype=np.float32)
    for i, (a, b) in enumerate(zip(inout.tolist(), x.tolist())):
        product = np.float32(np.float32(b) * w)
        out[i] = np.float32(np.float32(a) + product)
    return out


def add_scaled_difference(x: Array, a: Array, b: Array, weight: float) -> Array:
    """``x + (a - b) * weight`` in float32, one element at a time: the difference rounded to
    float32, then the product, then the sum (what ``_core.lazy.add_scaled_difference``
    writes into ``out``)."""
    w = np.float32(weight)
    out = np.empty(len(x), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # IEEE: an overflow is inf, as in C++
        for i, (xi, ai, bi) in enumerate(zip(x.tolist(), a.tolist(), b.tolist())):
            difference = np.float32(np.float32(ai) - np.float32(bi))
            product = np.float32(difference * w)
            out[i] = np.float32(np.float32(xi) + product)
    return out


def segment_squares(a: Array, b: Array, offsets: Array) -> tuple[Array, Array]:
    """Per segment ``[offsets[j], offsets[j+1])``: ``(||a_j - b_j||^2, ||a_j||^2)`` in
    float64, one segment at a time."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    bounds = list(zip(offsets[:-1], offsets[1:]))
    dist = [float(np.sum((x[s:e] - y[s:e]) ** 2)) for s, e in bounds]
    norm = [float(np.sum(x[s:e] ** 2)) for s, e in bounds]
    return np.array(dist, dtype=np.float64), np.array(norm, dtype=np.float64)
