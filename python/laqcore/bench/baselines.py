"""The baselines ``laqcore bench`` times against each kernel: vectorised numpy and torch
tensor-op implementations of the same job (the torch ones written the way GRACE compressors
and DDP comm hooks do it).

The numpy LAQ baseline is the package's reference quantizer (:mod:`laqcore._reference`, the
same code the tests check the kernels against) with the vectorised packer below.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _reference

__all__ = [
    "QSGD_BUCKET",
    "TERNGRAD_CLIP",
    "TOPK_RATIO",
    "np_laq",
    "np_pack",
    "np_qsgd",
    "np_terngrad",
    "np_topk",
    "np_unpack",
    "qsgd_levels",
    "random_codes",
    "torch_laq",
    "torch_pack",
    "torch_qsgd",
    "torch_terngrad",
    "torch_topk",
    "torch_unpack",
]


def __dir__() -> list[str]:
    return __all__


def np_pack(codes: npt.NDArray[np.uint8], bits: int) -> npt.NDArray[np.uint8]:
    """Vectorised numpy packing (the layout of pack.hpp)."""
    if bits == 8:
        return codes.copy()
    if 8 % bits == 0:
        # Power-of-two widths: OR of strided slices, codes k, k+per, ... into byte lanes.
        per = 8 // bits
        pad = (-codes.size) % per
        c = np.concatenate([codes, np.zeros(pad, np.uint8)]) if pad else codes
        c = c.reshape(-1, per)
        out = c[:, 0].copy()
        for j in range(1, per):
            out |= c[:, j] << np.uint8(j * bits)
        return out
    bitmat = (codes[:, None] >> np.arange(bits, dtype=np.uint8)) & np.uint8(1)
    return np.packbits(bitmat.reshape(-1), bitorder="little")


def np_unpack(packed: npt.NDArray[np.uint8], bits: int, n: int) -> npt.NDArray[np.uint8]:
    if bits == 8:
        return packed[:n].copy()
    if 8 % bits == 0:
        shifts = (np.arange(8 // bits, dtype=np.uint8) * np.uint8(bits))[None, :]
        return ((packed[:, None] >> shifts) & np.uint8((1 << bits) - 1)).reshape(-1)[:n]
    stream = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits)
    codes: npt.NDArray[np.uint8] = (stream << np.arange(bits, dtype=np.uint8)).sum(
        axis=1, dtype=np.uint8
    )
    return codes


def torch_pack(torch: Any, codes: Any, bits: int) -> Any:
    """Packing with torch tensor ops (shift-and-or of strided views, as GRACE's 2-bit helper)."""
    if bits == 8:
        return codes.clone()
    per = 8 // bits
    pad = (-codes.numel()) % per
    c = torch.nn.functional.pad(codes, (0, pad)) if pad else codes
    c = c.view(-1, per)
    out = c[:, 0].clone()
    for j in range(1, per):
        out |= c[:, j] << (j * bits)
    return out


def torch_unpack(torch: Any, packed: Any, bits: int, n: int) -> Any:
    if bits == 8:
        return packed[:n].clone()
    per = 8 // bits
    shifts = torch.arange(per, dtype=torch.uint8) * bits
    return ((packed[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[:n]


def random_codes(n: int, bits: int, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    return rng.integers(0, 1 << bits, size=n, dtype=np.uint8)


# LAQ (laq.hpp): v = g - q_prev (float32), R = max|v|, code = floor((v + R) / step + 1/2) with
# step = 2R / (2^b - 1) in double, dQ = lut[code], plus ||q_prev + dQ - g||^2 and ||dQ||^2.
def _np_square_sum(terms: npt.NDArray[np.float32], radius: float) -> list[float]:
    t = terms.astype(np.float64)
    return [float(np.dot(t, t))]


def np_laq(g: npt.NDArray[np.float32], prev: npt.NDArray[np.float32], bits: int) -> Any:
    """numpy LAQ: the package's reference quantizer with the vectorised packer and the sums
    of squares as a numpy user writes them (float64 dot products, not the kernel's float32
    lanes, whose emulation would make the baseline slower than numpy is).

    Returns ``(packed, radius, err_sq, innov_sq)`` as the kernel's payload holds them.
    """
    out = _reference.laq_quantize(g, prev, bits, pack=np_pack, square_pieces=_np_square_sum)
    return out["packed"], out["radius"], out["err_sq"], out["innov_sq"]


def torch_laq(torch: Any, g: Any, prev: Any, bits: int) -> Any:
    levels = (1 << bits) - 1
    v = g - prev
    radius = v.abs().max()
    r64 = radius.double()
    step = (2.0 * r64) / levels if float(radius) > 0 else torch.ones((), dtype=torch.float64)
    codes = torch.floor((v.double() + r64) / step + 0.5).clamp_(0, levels).to(torch.uint8)
    lut = torch.from_numpy(_reference.laq_lut(float(radius), bits))
    dq = lut[codes.long()]
    q_new = prev + dq
    err_sq = float(((q_new.double() - g.double()) ** 2).sum())
    innov_sq = float((dq.double() ** 2).sum())
    return torch_pack(torch, codes, bits), float(radius), err_sq, innov_sq


def qsgd_levels(bits: int) -> int:
    """Largest QSGD level count whose (sign, level) code fits in ``bits`` bits."""
    return (1 << (bits - 1)) - 1


def np_qsgd(
    x: npt.NDArray[np.float32], levels: int, bucket: int, bits: int, rng: np.random.Generator
) -> Any:
    n = x.shape[0]
    pad = (-n) % bucket  # a short last bucket: zeros do not change its norm
    xb = (np.concatenate([x, np.zeros(pad, np.float32)]) if pad else x).reshape(-1, bucket)
    norms = np.sqrt(np.sum(xb.astype(np.float64) ** 2, axis=1)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero bucket: codes 0
        r = np.nan_to_num(np.abs(xb) / norms[:, None]) * np.float32(levels)
    low = np.floor(r)
    level = np.minimum(low + (rng.random(xb.shape, dtype=np.float32) < r - low), levels)
    codes = (2 * level + ((xb < 0) & (level > 0))).astype(np.uint8).reshape(-1)[:n]
    return norms, np_pack(codes, bits)


def torch_qsgd(torch: Any, x: Any, levels: int, bucket: int, bits: int) -> Any:
    # GRACE's QSGD (norm, scale, floor, uniform_, compare, sign, cast), bucketed, plus packing.
    xb = x.view(-1, bucket)
    norms = xb.norm(dim=1, keepdim=True)
    level_float = levels / norms * xb.abs()
    previous = level_float.floor()
    prob = torch.empty_like(xb).uniform_()
    level = (previous + (prob < level_float - previous).float()).clamp_(max=levels)
    codes = (2 * level + ((xb < 0) & (level > 0)).float()).to(torch.uint8).view(-1)
    return norms, torch_pack(torch, codes, bits)


QSGD_BUCKET = 512


TERNGRAD_CLIP = 2.5


def np_terngrad(x: npt.NDArray[np.float32], rng: np.random.Generator) -> Any:
    sigma = np.float32(np.std(x.astype(np.float64)))
    # sigma 0 (a constant vector, any of length 1): no clipping, as in laqcore's kernel
    clip = np.float32(TERNGRAD_CLIP) * sigma if sigma > 0 else np.float32(np.inf)
    a = np.minimum(np.abs(x), clip)
    s = a.max()
    keep = rng.random(x.shape[0], dtype=np.float32) < (a / s if s > 0 else a)
    codes = (keep * np.where(x < 0, 2, 1)).astype(np.uint8)
    return s, np_pack(codes, 2)


def torch_terngrad(torch: Any, x: Any) -> Any:
    # GRACE's TernGrad: clamp at 2.5 std, scalar = max |g|, Bernoulli by a uniform draw.
    c = TERNGRAD_CLIP * x.std(unbiased=False)
    if float(c) == 0.0:  # a constant vector: no clipping, as in laqcore's kernel
        c = x.abs().max()
    g = torch.clamp(x, -c, c)
    a = g.abs()
    s = a.max()
    keep = torch.empty_like(x).uniform_(0, float(s)) < a
    codes = (keep * torch.where(g < 0, 2, 1)).to(torch.uint8)
    return s, torch_pack(torch, codes, 2)


TOPK_RATIO = 0.01


def np_topk(x: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    n = x.shape[0]
    return np.sort(np.argpartition(np.abs(x), n - k)[n - k :])


def torch_topk(torch: Any, x: Any, k: int) -> Any:  # GRACE's top-k: topk of |x|, gather
    return torch.topk(x.abs(), k, sorted=False).indices.sort().values
