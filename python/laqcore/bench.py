"""``laqcore bench``: kernel throughput against memcpy, numpy and torch, in one run.

For every kernel, size ``n`` (float32 elements or uint8 codes), bit width and thread count,
the benchmark times four things back to back on the same input:

* the laqcore kernel;
* ``memcpy`` of the kernel's streamed bytes (``np.copyto`` into a preallocated array), the
  practical streaming limit of the machine: ``memcpy_ratio`` = kernel time / memcpy time;
* a vectorised numpy implementation of the same job: ``numpy_speedup`` = numpy / kernel;
* torch CPU tensor ops doing the job the way GRACE compressors and DDP comm hooks do (when
  torch is importable): ``torch_speedup`` = torch / kernel.

The kernel and memcpy samples are interleaved, so both see the same machine load; each
figure is the median of ``repeats`` short samples after a warm-up (each sample loops enough
calls to last at least ``min_time`` seconds); the fastest sample is kept too, as ``*_min``.
numpy is single-threaded; torch gets the same
thread count as laqcore. Every baseline's output is checked against laqcore's before timing.

The streamed bytes are those of the uncompressed side: ``4 n`` for kernels on float32
vectors (quantizers, unpack+accumulate) and ``n`` for pack/unpack of uint8 codes. ``gbps``
is that many bytes per second of kernel time.

Examples
--------
>>> from laqcore import bench
>>> report = bench.run(kernels=["pack"], sizes=[2**10], bits=[4], threads=[1], quick=True)
>>> sorted(report["results"][0])[:4]
['bits', 'gbps', 'kernel', 'memcpy_ratio']
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import packing, runtime
from ._validate import check_bits

__all__ = [
    "KERNELS",
    "add_arguments",
    "add_parser",
    "available_kernels",
    "main",
    "markdown_table",
    "run",
    "run_cli",
]


def __dir__() -> list[str]:
    return __all__


Fn = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    """One timed configuration: the kernel call and its baselines on shared inputs.

    ``verify`` runs once before timing and raises if a baseline does not do the same job
    (same bytes for deterministic kernels; same shapes and scale for stochastic ones).
    """

    kernel: Fn
    memcpy_src: npt.NDArray[Any]  # the streamed bytes, copied by the memcpy baseline
    numpy: Fn | None
    torch: Fn | None
    verify: Fn | None = None


@dataclass(frozen=True)
class Kernel:
    """A benchmarked kernel: ``make(n, bits, rng, torch_module)`` builds a :class:`Case`.

    ``widths`` are the bit widths the kernel supports; a ``fixed`` kernel has one code width
    (e.g. TernGrad's 2 bits) and runs once whatever ``bits`` were asked for.
    """

    name: str
    make: Callable[[int, int, np.random.Generator, Any], Case]
    widths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    fixed: bool = False
    available: Callable[[], bool] = lambda: True


# --- shared numpy / torch building blocks -------------------------------------------------
def _np_pack(codes: npt.NDArray[np.uint8], bits: int) -> npt.NDArray[np.uint8]:
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


def _np_unpack(packed: npt.NDArray[np.uint8], bits: int, n: int) -> npt.NDArray[np.uint8]:
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


def _torch_pack(torch: Any, codes: Any, bits: int) -> Any:
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


def _torch_unpack(torch: Any, packed: Any, bits: int, n: int) -> Any:
    if bits == 8:
        return packed[:n].clone()
    per = 8 // bits
    shifts = torch.arange(per, dtype=torch.uint8) * bits
    return ((packed[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1)[:n]


def _random_codes(n: int, bits: int, rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    return rng.integers(0, 1 << bits, size=n, dtype=np.uint8)


def _as_numpy(x: Any) -> npt.NDArray[Any]:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def _same(name: str, ours: Any, theirs: Any) -> None:
    a, b = _as_numpy(ours), _as_numpy(theirs)
    if a.shape != b.shape or not np.array_equal(a, b):
        raise RuntimeError(f"bench: the {name} baseline disagrees with laqcore; not timing it")


def _verify_outputs(kernel: Fn, numpy_fn: Fn | None, torch_fn: Fn | None) -> Fn:
    """A verify function: every baseline returns exactly laqcore's output."""

    def verify() -> None:
        ours = kernel()
        if numpy_fn is not None:
            _same("numpy", ours, numpy_fn())
        if torch_fn is not None:
            _same("torch", ours, torch_fn())

    return verify


# --- kernels -----------------------------------------------------------------------------
def _make_pack(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    codes = _random_codes(n, bits, rng)
    tcodes = torch.from_numpy(codes) if torch is not None and 8 % bits == 0 else None
    kernel: Fn = lambda: packing.pack_bits(codes, bits)
    numpy_fn: Fn = lambda: _np_pack(codes, bits)
    torch_fn = None if tcodes is None else (lambda: _torch_pack(torch, tcodes, bits))
    return Case(kernel, codes, numpy_fn, torch_fn, _verify_outputs(kernel, numpy_fn, torch_fn))


def _make_unpack(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    packed = packing.pack_bits(_random_codes(n, bits, rng), bits)
    tpacked = torch.from_numpy(packed) if torch is not None and 8 % bits == 0 else None
    kernel: Fn = lambda: packing.unpack_bits(packed, bits, n)
    numpy_fn: Fn = lambda: _np_unpack(packed, bits, n)
    torch_fn = None if tpacked is None else (lambda: _torch_unpack(torch, tpacked, bits, n))
    return Case(
        kernel,
        np.empty(n, np.uint8),
        numpy_fn,
        torch_fn,
        _verify_outputs(kernel, numpy_fn, torch_fn),
    )


def _gradient(n: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    return rng.standard_normal(n, dtype=np.float32)


def _has(name: str) -> Callable[[], bool]:
    """Availability test: the public laqcore API has ``name`` (kernels land separately)."""

    def check() -> bool:
        import laqcore

        return hasattr(laqcore, name)

    return check


def _has_compressor(name: str) -> Callable[[], bool]:
    def check() -> bool:
        import laqcore

        names: list[str] = getattr(laqcore, "available_compressors", list)()
        return name in names

    return check


def _compressor(name: str, **kwargs: Any) -> Any:
    import laqcore

    return laqcore.get_compressor(name, **kwargs)


# LAQ (laq.hpp): v = g - q_prev (float32), R = max|v|, code = floor((v + R) / step + 1/2) with
# step = 2R / (2^b - 1) in double, dQ = lut[code], plus ||q_prev + dQ - g||^2 and ||dQ||^2.
def _laq_lut(radius: float, bits: int) -> npt.NDArray[np.float32]:
    levels = (1 << bits) - 1
    step = (2.0 * float(radius)) / levels
    return (np.arange(levels + 1, dtype=np.float64) * step - float(radius)).astype(np.float32)


def _np_laq(g: npt.NDArray[np.float32], prev: npt.NDArray[np.float32], bits: int) -> Any:
    levels = (1 << bits) - 1
    v = g - prev
    radius = np.abs(v).max()
    step = (2.0 * float(radius)) / levels if radius > 0 else 1.0
    codes = np.floor((v.astype(np.float64) + float(radius)) / step + 0.5)
    codes = np.clip(codes, 0, levels).astype(np.uint8)
    dq = _laq_lut(float(radius), bits)[codes]
    q_new = prev + dq
    err_sq = float(np.sum((q_new.astype(np.float64) - g) ** 2))
    innov_sq = float(np.sum(dq.astype(np.float64) ** 2))
    return _np_pack(codes, bits), float(radius), err_sq, innov_sq


def _torch_laq(torch: Any, g: Any, prev: Any, bits: int) -> Any:
    levels = (1 << bits) - 1
    v = g - prev
    radius = v.abs().max()
    r64 = radius.double()
    step = (2.0 * r64) / levels if float(radius) > 0 else torch.ones((), dtype=torch.float64)
    codes = torch.floor((v.double() + r64) / step + 0.5).clamp_(0, levels).to(torch.uint8)
    lut = torch.from_numpy(_laq_lut(float(radius), bits))
    dq = lut[codes.long()]
    q_new = prev + dq
    err_sq = float(((q_new.double() - g.double()) ** 2).sum())
    innov_sq = float((dq.double() ** 2).sum())
    return _torch_pack(torch, codes, bits), float(radius), err_sq, innov_sq


def _make_laq_quantize(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    import laqcore

    g = _gradient(n, rng)
    prev = (g + 0.1 * _gradient(n, rng)).astype(np.float32)
    kernel: Fn = lambda: laqcore.laq_quantize(g, prev, bits)
    numpy_fn: Fn = lambda: _np_laq(g, prev, bits)
    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0:
        tg, tp = torch.from_numpy(g), torch.from_numpy(prev)
        torch_fn = lambda: _torch_laq(torch, tg, tp, bits)

    def verify() -> None:
        p = kernel()
        for base in [f for f in (numpy_fn, torch_fn) if f is not None]:
            packed, radius, _, innov_sq = base()
            _same("LAQ codes", p.packed, packed)
            if radius != p.radius or not np.isclose(innov_sq, p.innov_sq, rtol=1e-9):
                raise RuntimeError("bench: LAQ baseline disagrees on the radius or ||dQ||^2")

    return Case(kernel, g, numpy_fn, torch_fn, verify)


def _make_laq_accumulate(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    import laqcore

    payload = laqcore.laq_quantize(_gradient(n, rng), None, bits)
    base = _gradient(n, rng)
    agg, agg_np = base.copy(), base.copy()
    lut = _laq_lut(payload.radius, bits)
    kernel: Fn = lambda: laqcore.laq_accumulate(agg, payload)

    def numpy_fn() -> None:
        agg_np.__iadd__(lut[_np_unpack(payload.packed, bits, n)])

    targets: list[tuple[Fn, npt.NDArray[np.float32]]] = [(kernel, agg), (numpy_fn, agg_np)]
    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0:
        agg_t = torch.from_numpy(base.copy())
        packed_t = torch.from_numpy(np.array(payload.packed))
        lut_t = torch.from_numpy(lut)

        def _torch_job() -> None:  # table lookup with an int64 index, as torch requires
            agg_t.add_(lut_t[_torch_unpack(torch, packed_t, bits, n).long()])

        torch_fn = _torch_job
        targets.append((_torch_job, agg_t.numpy()))

    def verify() -> None:  # one application from the same start gives the same floats
        for fn, arr in targets:
            np.copyto(arr, base)
            fn()
        for _, arr in targets[1:]:
            _same("accumulate", agg, arr)

    return Case(kernel, agg, numpy_fn, torch_fn, verify)


def _qsgd_levels(bits: int) -> int:
    """Largest QSGD level count whose (sign, level) code fits in ``bits`` bits."""
    return (1 << (bits - 1)) - 1


def _np_qsgd(
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
    return norms, _np_pack(codes, bits)


def _torch_qsgd(torch: Any, x: Any, levels: int, bucket: int, bits: int) -> Any:
    # GRACE's QSGD (norm, scale, floor, uniform_, compare, sign, cast), bucketed, plus packing.
    xb = x.view(-1, bucket)
    norms = xb.norm(dim=1, keepdim=True)
    level_float = levels / norms * xb.abs()
    previous = level_float.floor()
    prob = torch.empty_like(xb).uniform_()
    level = (previous + (prob < level_float - previous).float()).clamp_(max=levels)
    codes = (2 * level + ((xb < 0) & (level > 0)).float()).to(torch.uint8).view(-1)
    return norms, _torch_pack(torch, codes, bits)


QSGD_BUCKET = 512


def _make_qsgd(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    levels = _qsgd_levels(bits)
    bucket = min(QSGD_BUCKET, n)
    comp = _compressor("qsgd", levels=levels, bucket_size=bucket, norm="l2", seed=0)
    kernel: Fn = lambda: comp.compress(x, step=0)
    np_rng = np.random.default_rng(0)
    numpy_fn: Fn = lambda: _np_qsgd(x, levels, bucket, bits, np_rng)
    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0 and n % bucket == 0:
        tx = torch.from_numpy(x)
        torch_fn = lambda: _torch_qsgd(torch, tx, levels, bucket, bits)

    def verify() -> None:  # stochastic: same scales and sizes, not the same draws
        p = kernel()
        for fn in [f for f in (numpy_fn, torch_fn) if f is not None]:
            norms, packed = fn()
            ok = np.allclose(_as_numpy(norms).reshape(-1), p.scales, rtol=1e-5)
            if not ok or _as_numpy(packed).shape != p.packed.shape:
                raise RuntimeError("bench: QSGD baseline disagrees on scales or payload size")

    return Case(kernel, x, numpy_fn, torch_fn, verify)


TERNGRAD_CLIP = 2.5


def _np_terngrad(x: npt.NDArray[np.float32], rng: np.random.Generator) -> Any:
    sigma = np.float32(np.std(x.astype(np.float64)))
    a = np.minimum(np.abs(x), np.float32(TERNGRAD_CLIP) * sigma)
    s = a.max()
    keep = rng.random(x.shape[0], dtype=np.float32) < a / s
    codes = (keep * np.where(x < 0, 2, 1)).astype(np.uint8)
    return s, _np_pack(codes, 2)


def _torch_terngrad(torch: Any, x: Any) -> Any:
    # GRACE's TernGrad: clamp at 2.5 std, scalar = max |g|, Bernoulli by a uniform draw.
    c = TERNGRAD_CLIP * x.std(unbiased=False)
    g = torch.clamp(x, -c, c)
    a = g.abs()
    s = a.max()
    keep = torch.empty_like(x).uniform_(0, float(s)) < a
    codes = (keep * torch.where(g < 0, 2, 1)).to(torch.uint8)
    return s, _torch_pack(torch, codes, 2)


def _make_terngrad(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    comp = _compressor("terngrad", clip_factor=TERNGRAD_CLIP, seed=0)
    kernel: Fn = lambda: comp.compress(x, step=0)
    np_rng = np.random.default_rng(0)
    numpy_fn: Fn = lambda: _np_terngrad(x, np_rng)
    torch_fn: Fn | None = None
    if torch is not None:
        tx = torch.from_numpy(x)
        torch_fn = lambda: _torch_terngrad(torch, tx)

    def verify() -> None:
        p = kernel()
        for fn in [f for f in (numpy_fn, torch_fn) if f is not None]:
            s, packed = fn()
            same_size = _as_numpy(packed).shape == p.packed.shape
            if not (np.isclose(float(s), p.scaler, rtol=1e-5) and same_size):
                raise RuntimeError("bench: TernGrad baseline disagrees on scaler or size")

    return Case(kernel, x, numpy_fn, torch_fn, verify)


def _make_sign(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    comp = _compressor("sign")
    kernel: Fn = lambda: comp.compress(x)

    def numpy_fn() -> Any:
        scale = np.float32(np.sum(np.abs(x), dtype=np.float64) / n)
        return scale, np.packbits(x < 0, bitorder="little")

    torch_fn: Fn | None = None
    if torch is not None:
        tx = torch.from_numpy(x)

        def _torch_job() -> Any:  # EF-sign as in GRACE: mean |x| and the sign bits
            scale = tx.abs().sum(dtype=torch.float64) / n
            return scale, _torch_pack(torch, (tx < 0).to(torch.uint8), 1)

        torch_fn = _torch_job

    def verify() -> None:
        p = kernel()
        for fn in [f for f in (numpy_fn, torch_fn) if f is not None]:
            scale, packed = fn()
            _same("sign bits", p.packed, packed)
            if not np.isclose(float(scale), p.scale, rtol=1e-6):
                raise RuntimeError("bench: sign baseline disagrees on the scale")

    return Case(kernel, x, numpy_fn, torch_fn, verify)


TOPK_RATIO = 0.01


def _np_topk(x: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    n = x.shape[0]
    return np.sort(np.argpartition(np.abs(x), n - k)[n - k :])


def _torch_topk(torch: Any, x: Any, k: int) -> Any:  # GRACE's top-k: topk of |x|, gather
    return torch.topk(x.abs(), k, sorted=False).indices.sort().values


def _make_topk(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    k = max(1, int(n * TOPK_RATIO))
    comp = _compressor("topk", k=k)
    kernel: Fn = lambda: comp.compress(x)

    def numpy_fn() -> Any:
        idx = _np_topk(x, k)
        return idx, x[idx]

    torch_fn: Fn | None = None
    if torch is not None:
        tx = torch.from_numpy(x)

        def _torch_job() -> Any:
            idx = _torch_topk(torch, tx, k)
            return idx, tx[idx]

        torch_fn = _torch_job

    def verify() -> None:  # random normals: no ties, so the kept set is unique
        p = kernel()
        for fn in [f for f in (numpy_fn, torch_fn) if f is not None]:
            idx, values = fn()
            _same("top-k indices", p.indices.astype(np.int64), _as_numpy(idx).astype(np.int64))
            _same("top-k values", p.values, values)

    return Case(kernel, x, numpy_fn, torch_fn, verify)


def _make_sparse_quant(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    k = max(1, int(n * TOPK_RATIO))
    levels = _qsgd_levels(bits)
    comp = _compressor("sparse_quant", k=k, bits=bits, selection="topk", seed=0)
    kernel: Fn = lambda: comp.compress(x, step=0)
    np_rng = np.random.default_rng(0)

    def numpy_fn() -> Any:
        idx = _np_topk(x, k)
        vals = x[idx]
        scale = np.abs(vals).max()
        r = np.abs(vals) / scale * np.float32(levels)
        low = np.floor(r)
        level = np.minimum(low + (np_rng.random(k, dtype=np.float32) < r - low), levels)
        codes = (2 * level + ((vals < 0) & (level > 0))).astype(np.uint8)
        return idx, scale, _np_pack(codes, bits)

    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0:
        tx = torch.from_numpy(x)

        def _torch_job() -> Any:
            idx = _torch_topk(torch, tx, k)
            vals = tx[idx]
            scale = vals.abs().max()
            r = vals.abs() / scale * levels
            low = r.floor()
            level = (low + (torch.rand(k) < r - low).float()).clamp_(max=levels)
            codes = (2 * level + ((vals < 0) & (level > 0)).float()).to(torch.uint8)
            return idx, scale, _torch_pack(torch, codes, bits)

        torch_fn = _torch_job

    def verify() -> None:
        p = kernel()
        for fn in [f for f in (numpy_fn, torch_fn) if f is not None]:
            idx, scale, packed = fn()
            _same("sparse indices", p.indices.astype(np.int64), _as_numpy(idx).astype(np.int64))
            if float(scale) != p.scale or _as_numpy(packed).shape != p.packed.shape:
                raise RuntimeError("bench: sparse+quantized baseline disagrees on scale or size")

    return Case(kernel, x, numpy_fn, torch_fn, verify)


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in [
        Kernel("laq_quantize_pack", _make_laq_quantize, available=_has("laq_quantize")),
        Kernel("laq_unpack_accumulate", _make_laq_accumulate, available=_has("laq_accumulate")),
        Kernel("pack", _make_pack),
        Kernel("unpack", _make_unpack),
        Kernel("qsgd", _make_qsgd, widths=(2, 3, 4, 5, 6, 7, 8), available=_has_compressor("qsgd")),
        Kernel(
            "terngrad",
            _make_terngrad,
            widths=(2,),
            fixed=True,
            available=_has_compressor("terngrad"),
        ),
        Kernel("sign", _make_sign, widths=(1,), fixed=True, available=_has_compressor("sign")),
        Kernel("topk", _make_topk, widths=(32,), fixed=True, available=_has_compressor("topk")),
        Kernel(
            "sparse_quant",
            _make_sparse_quant,
            widths=(2, 3, 4, 5, 6, 7, 8),
            available=_has_compressor("sparse_quant"),
        ),
    ]
}


def available_kernels() -> list[str]:
    """Names of the kernels this build provides, in benchmark order."""
    return [name for name, k in KERNELS.items() if k.available()]


# --- timing ------------------------------------------------------------------------------
def _loops_for(fn: Fn, min_time: float) -> int:
    """Calls per sample so that one sample lasts about ``min_time`` seconds."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    return max(1, int(min_time / max(once, 1e-9)))


def _sample(fn: Fn, loops: int) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - start) / loops


def _time_interleaved(
    fns: Sequence[Fn], repeats: int, min_time: float, budget: float = 2.0
) -> list[tuple[float, float]]:
    """(median, min) seconds per call of each function, samples interleaved in rounds.

    Short samples and many of them keep the median robust on a shared machine: a sample
    that lost its core to another process is an outlier, not part of every sample. After
    ``budget`` seconds the rounds stop early (but never before 3), so slow baselines at
    large n do not dominate the run.
    """
    for fn in fns:  # warm-up: page in buffers, start the thread pool, fill caches
        fn()
    loops = [_loops_for(fn, min_time) for fn in fns]
    samples: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    for rnd in range(repeats):
        for i, fn in enumerate(fns):
            samples[i].append(_sample(fn, loops[i]))
        if rnd >= 2 and time.perf_counter() - start > budget:
            break
    return [(statistics.median(s), min(s)) for s in samples]


# --- machine description ------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(torch: Any) -> dict[str, Any]:
    """CPU, thread and build description stored with every report."""
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": runtime.get_num_threads(),
        "simd": runtime.simd_level(),
        "build": runtime.build_info(),
        "numpy": np.__version__,
        "torch": None if torch is None else str(torch.__version__),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _import_torch(use_torch: bool) -> Any:
    if not use_torch:
        return None
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return torch


# --- the sweep ---------------------------------------------------------------------------
def run(
    *,
    kernels: Iterable[str] | None = None,
    sizes: Iterable[int] | None = None,
    bits: Iterable[int] = (1, 2, 4, 8),
    threads: Iterable[int] | None = None,
    repeats: int | None = None,
    min_time: float | None = None,
    quick: bool = False,
    use_torch: bool = True,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark sweep and return ``{"machine": {...}, "results": [...]}``.

    Parameters
    ----------
    kernels : iterable of str, optional
        Subset of :func:`available_kernels` (default: all of them).
    sizes : iterable of int, optional
        Element counts (default ``2**10 .. 2**24``; with ``quick``, ``2**10, 2**16, 2**20``).
    bits : iterable of int
        Bit widths for the kernels that take one.
    threads : iterable of int, optional
        Thread counts (default ``1`` and all threads).
    repeats, min_time : optional
        Samples per figure (median taken) and minimum seconds per sample
        (default 21 and 0.001; with ``quick``, 3 and 0.0005). Sampling of one figure stops
        after about 2 s once 3 samples are in.
    quick : bool
        Small, fast configuration (for smoke tests; numbers are rough).
    use_torch : bool
        Time the torch baseline when torch is importable.
    seed : int
        Seed of the random inputs.
    log : callable, optional
        Receives one progress line per result.

    Returns
    -------
    dict
        ``machine`` (see :func:`machine_info`) and ``results``: one dict per configuration
        with ``kernel, n, bits, threads, seconds, gbps, memcpy_seconds, memcpy_ratio,
        numpy_seconds, numpy_speedup, torch_seconds, torch_speedup`` (medians; ``None``
        where a baseline does not exist) and the matching ``*_min`` fastest samples.
    """
    avail = available_kernels()
    names = list(avail if kernels is None else kernels)
    for name in names:
        if name not in avail:
            raise ValueError(f"unknown or unavailable kernel {name!r}; available: {avail}")
    size_list = (
        list(sizes)
        if sizes is not None
        else ([2**10, 2**16, 2**20] if quick else [2**e for e in range(10, 25)])
    )
    if not size_list or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in size_list
    ):
        raise ValueError(f"sizes must be positive ints, got {size_list}")
    bit_list = [check_bits(b) for b in bits]
    if not bit_list:
        raise ValueError("bits must name at least one bit width")
    max_threads = runtime.get_num_threads()
    thread_list = list(threads) if threads is not None else sorted({1, max_threads})
    for t in thread_list:
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"threads must be positive ints, got {thread_list}")
    reps = repeats if repeats is not None else (3 if quick else 21)
    mtime = min_time if min_time is not None else (0.0005 if quick else 0.001)
    if reps < 1 or mtime < 0:
        raise ValueError("repeats must be >= 1 and min_time >= 0")

    torch = _import_torch(use_torch)
    torch_threads = torch.get_num_threads() if torch is not None else 0
    rng = np.random.default_rng(seed)
    results: list[dict[str, Any]] = []
    try:
        for name in names:
            spec = KERNELS[name]
            for n in size_list:
                widths = (
                    spec.widths[:1] if spec.fixed else [b for b in bit_list if b in spec.widths]
                )
                for b in widths:
                    case = spec.make(n, b, rng, torch)
                    results.extend(
                        _measure_case(name, n, b, case, thread_list, reps, mtime, torch, log)
                    )
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return {"machine": machine_info(torch), "results": results}


def _measure_case(
    name: str,
    n: int,
    bits: int,
    case: Case,
    thread_list: list[int],
    reps: int,
    mtime: float,
    torch: Any,
    log: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    if case.verify is not None:
        if torch is not None:
            torch.set_num_threads(thread_list[0])
        case.verify()
    dst = np.empty_like(case.memcpy_src)
    src = case.memcpy_src

    def memcpy() -> None:
        np.copyto(dst, src)

    rows = []
    numpy_s: tuple[float, float] | None = None
    for t in thread_list:
        with runtime.num_threads(t):
            (kernel_s, kernel_min), (memcpy_s, memcpy_min) = _time_interleaved(
                [case.kernel, memcpy], reps, mtime
            )
        if numpy_s is None and case.numpy is not None:  # single-threaded: time it once
            numpy_s = _time_interleaved([case.numpy], reps, mtime)[0]
        torch_s: tuple[float, float] | None = None
        if case.torch is not None:
            torch.set_num_threads(t)
            torch_s = _time_interleaved([case.torch], reps, mtime)[0]
        row = {
            "kernel": name,
            "n": n,
            "bits": bits,
            "threads": t,
            "seconds": kernel_s,
            "gbps": src.nbytes / kernel_s / 1e9,
            "memcpy_seconds": memcpy_s,
            "memcpy_ratio": kernel_s / memcpy_s,
            "numpy_seconds": None if numpy_s is None else numpy_s[0],
            "numpy_speedup": None if numpy_s is None else numpy_s[0] / kernel_s,
            "torch_seconds": None if torch_s is None else torch_s[0],
            "torch_speedup": None if torch_s is None else torch_s[0] / kernel_s,
            # Fastest samples: the least disturbed by other processes on a shared machine.
            "seconds_min": kernel_min,
            "memcpy_seconds_min": memcpy_min,
            "numpy_seconds_min": None if numpy_s is None else numpy_s[1],
            "torch_seconds_min": None if torch_s is None else torch_s[1],
        }
        rows.append(row)
        if log is not None:
            log(format_row(row))
    return rows


# --- output ------------------------------------------------------------------------------
def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def format_row(r: dict[str, Any]) -> str:
    """One aligned text line of a result."""
    return (
        f"{r['kernel']:<18} n=2^{int(np.log2(r['n'])):<3d} bits={r['bits']} thr={r['threads']:<2d} "
        f"{r['seconds'] * 1e3:9.3f} ms {r['gbps']:7.2f} GB/s  memcpy x{r['memcpy_ratio']:5.2f}  "
        f"numpy x{_fmt(r['numpy_speedup'], '7.1f')}  torch x{_fmt(r['torch_speedup'], '6.1f')}"
    )


def markdown_table(report: dict[str, Any], n: int | None = None) -> str:
    """Markdown table of the results (optionally only size ``n``), as in the README."""
    rows = [r for r in report["results"] if n is None or r["n"] == n]
    lines = [
        "| kernel | n | bits | threads | ms | GB/s | x memcpy | numpy speedup | torch speedup |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kernel']} | 2^{int(np.log2(r['n']))} | {r['bits'] or '-'} | {r['threads']} | "
            f"{r['seconds'] * 1e3:.3f} | {r['gbps']:.2f} | {r['memcpy_ratio']:.2f} | "
            f"{_fmt(r['numpy_speedup'], '.1f')} | {_fmt(r['torch_speedup'], '.1f')} |"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str) -> None:
    """Throughput (GB/s) against n, one panel per kernel, one line per (bits, threads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["kernel"] for r in report["results"]))
    cols = min(3, max(1, len(names)))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        res = [r for r in report["results"] if r["kernel"] == name]
        for key in dict.fromkeys((r["bits"], r["threads"]) for r in res):
            pts = sorted((r["n"], r["gbps"]) for r in res if (r["bits"], r["threads"]) == key)
            label = (f"{key[0]} bit, " if key[0] else "") + f"{key[1]} thr"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=label)
        mem = sorted({(r["n"], r["gbps"] * r["memcpy_ratio"]) for r in res if r["threads"] == 1})
        ax.plot([p[0] for p in mem], [p[1] for p in mem], "k--", lw=1, label="memcpy")
        ax.set_xscale("log", base=2)
        ax.set_title(name)
        ax.set_xlabel("n")
        ax.set_ylabel("GB/s")
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    fig.suptitle(f"laqcore bench: {report['machine']['cpu']} ({report['machine']['simd']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- command line ------------------------------------------------------------------------
def _parse_sizes(text: str) -> list[int]:
    """``"10:24"`` (exponents, inclusive), ``"10:24:2"`` (with step), or a comma list of
    counts and powers of two such as ``"1000,2^16,2^24"``."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3) or not 0 <= parts[0] <= parts[1] <= 40:
                raise ValueError
            step = parts[2] if len(parts) == 3 else 1
            if step < 1:
                raise ValueError
            return [2**e for e in range(parts[0], parts[1] + 1, step)]
        return [2 ** int(p[2:]) if p.startswith("2^") else int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes: expected LO:HI[:STEP] exponents or comma-separated counts, got {text!r}"
        ) from None


def _parse_ints(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` (used by ``laqcore bench``)."""
    parser.add_argument(
        "--kernels",
        type=lambda s: s.split(","),
        default=None,
        help=f"comma-separated subset of: {', '.join(KERNELS)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        help="exponents LO:HI[:STEP] of n, or counts like 1000,2^20 (default 10:24)",
    )
    parser.add_argument(
        "--bits",
        type=_parse_ints,
        default=[1, 2, 4, 8],
        help="comma-separated bit widths (default 1,2,4,8)",
    )
    parser.add_argument(
        "--threads",
        type=_parse_ints,
        default=None,
        help="comma-separated thread counts (default: 1 and all)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="samples per figure (median)")
    parser.add_argument("--min-time", type=float, default=None, help="seconds per sample")
    parser.add_argument("--quick", action="store_true", help="small fast sweep (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--plot", metavar="FILE", help="draw GB/s against n (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table at the end")


def add_parser(subparsers: Any) -> None:
    """Register the ``bench`` subcommand of the ``laqcore`` command (see cli.py)."""
    parser = subparsers.add_parser(
        "bench",
        help="kernel throughput against memcpy, numpy and torch",
        description=(__doc__ or "").split("\n\n")[0],
    )
    add_arguments(parser)
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace) -> int:
    """Run ``laqcore bench`` with parsed arguments; returns the exit status."""
    report = run(
        kernels=args.kernels,
        sizes=args.sizes,
        bits=args.bits,
        threads=args.threads,
        repeats=args.repeats,
        min_time=args.min_time,
        quick=args.quick,
        use_torch=not args.no_torch,
        seed=args.seed,
        log=lambda line: print(line, flush=True),
    )
    m = report["machine"]
    print(f"# {m['cpu']}, {m['cpu_count']} cpus, simd={m['simd']}, torch={m['torch']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    if args.plot:
        plot(report, args.plot)
    if args.markdown:
        print(markdown_table(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m laqcore.bench``."""
    parser = argparse.ArgumentParser(prog="laqcore bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    try:
        return run_cli(parser.parse_args(argv))
    except ValueError as err:
        parser.error(str(err))  # NoReturn: exits with status 2


if __name__ == "__main__":
    sys.exit(main())
