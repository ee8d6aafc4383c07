"""The benchmarked kernels: for each, how to build one timed :class:`Case` (the kernel call,
its numpy and torch baselines on the same input, and a check that they do the same job).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _reference, packing
from . import baselines as bl

__all__ = ["KERNELS", "Case", "Fn", "Kernel", "available_kernels"]


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


def _make_pack(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    codes = bl.random_codes(n, bits, rng)
    tcodes = torch.from_numpy(codes) if torch is not None and 8 % bits == 0 else None
    kernel: Fn = lambda: packing.pack_bits(codes, bits)
    numpy_fn: Fn = lambda: bl.np_pack(codes, bits)
    torch_fn = None if tcodes is None else (lambda: bl.torch_pack(torch, tcodes, bits))
    return Case(kernel, codes, numpy_fn, torch_fn, _verify_outputs(kernel, numpy_fn, torch_fn))


def _make_unpack(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    packed = packing.pack_bits(bl.random_codes(n, bits, rng), bits)
    tpacked = torch.from_numpy(packed) if torch is not None and 8 % bits == 0 else None
    kernel: Fn = lambda: packing.unpack_bits(packed, bits, n)
    numpy_fn: Fn = lambda: bl.np_unpack(packed, bits, n)
    torch_fn = None if tpacked is None else (lambda: bl.torch_unpack(torch, tpacked, bits, n))
    return Case(
        kernel,
        np.empty(n, np.uint8),
        numpy_fn,
        torch_fn,
        _verify_outputs(kernel, numpy_fn, torch_fn),
    )


def _make_laq_quantize(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    import laqcore

    g = _gradient(n, rng)
    prev = (g + 0.1 * _gradient(n, rng)).astype(np.float32)
    kernel: Fn = lambda: laqcore.laq_quantize(g, prev, bits)
    numpy_fn: Fn = lambda: bl.np_laq(g, prev, bits)
    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0:
        tg, tp = torch.from_numpy(g), torch.from_numpy(prev)
        torch_fn = lambda: bl.torch_laq(torch, tg, tp, bits)

    def verify() -> None:
        p = kernel()
        for base in [f for f in (numpy_fn, torch_fn) if f is not None]:
            packed, radius, _, innov_sq = base()
            _same("LAQ codes", p.packed, packed)
            # the kernel sums in float32 lanes (laq.hpp, "Arithmetic"), the baselines in
            # float64: equal to about 1e-7, at worst 1e-4
            if radius != p.radius or not np.isclose(innov_sq, p.innov_sq, rtol=1e-4):
                raise RuntimeError("bench: LAQ baseline disagrees on the radius or ||dQ||^2")

    return Case(kernel, g, numpy_fn, torch_fn, verify)


# Blockwise radius (laq.hpp): one radius per BLOCK_SIZE coordinates, each block read once.
# No vectorised numpy baseline; verified against the numpy reference.
BLOCK_SIZE = 256


def _make_laq_block_quantize(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    import laqcore

    g = _gradient(n, rng)
    prev = (g + 0.1 * _gradient(n, rng)).astype(np.float32)
    kernel: Fn = lambda: laqcore.laq_quantize(g, prev, bits, block_size=BLOCK_SIZE)

    def verify() -> None:
        want = _reference.laq_quantize_blocks(g, prev, bits, BLOCK_SIZE)
        p = kernel()
        _same("LAQ block codes", p.packed, want["packed"])
        _same("LAQ block radii", p.radii, want["radii"])

    return Case(kernel, g, None, None, verify)


def _make_laq_block_accumulate(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    import laqcore

    payload = laqcore.laq_quantize(_gradient(n, rng), None, bits, block_size=BLOCK_SIZE)
    base = _gradient(n, rng)
    agg = base.copy()
    kernel: Fn = lambda: laqcore.laq_accumulate(agg, payload)

    def verify() -> None:  # one application equals base + dQ in float32
        np.copyto(agg, base)
        kernel()
        _same("block accumulate", agg, base + laqcore.laq_dequantize(payload))

    return Case(kernel, agg, None, None, verify)


def _make_laq_accumulate(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    import laqcore

    payload = laqcore.laq_quantize(_gradient(n, rng), None, bits)
    base = _gradient(n, rng)
    agg, agg_np = base.copy(), base.copy()
    lut = _reference.laq_lut(payload.radius, bits)
    kernel: Fn = lambda: laqcore.laq_accumulate(agg, payload)

    def numpy_fn() -> None:
        agg_np.__iadd__(lut[bl.np_unpack(payload.packed, bits, n)])

    targets: list[tuple[Fn, npt.NDArray[np.float32]]] = [(kernel, agg), (numpy_fn, agg_np)]
    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0:
        agg_t = torch.from_numpy(base.copy())
        packed_t = torch.from_numpy(np.array(payload.packed))
        lut_t = torch.from_numpy(lut)

        def _torch_job() -> None:  # table lookup with an int64 index, as torch requires
            agg_t.add_(lut_t[bl.torch_unpack(torch, packed_t, bits, n).long()])

        torch_fn = _torch_job
        targets.append((_torch_job, agg_t.numpy()))

    def verify() -> None:  # one application from the same start gives the same floats
        for fn, arr in targets:
            np.copyto(arr, base)
            fn()
        for _, arr in targets[1:]:
            _same("accumulate", agg, arr)

    return Case(kernel, agg, numpy_fn, torch_fn, verify)


def _make_qsgd(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    levels = bl.qsgd_levels(bits)
    bucket = min(bl.QSGD_BUCKET, n)
    comp = _compressor("qsgd", levels=levels, bucket_size=bucket, norm="l2", seed=0)
    kernel: Fn = lambda: comp.compress(x, step=0)
    np_rng = np.random.default_rng(0)
    numpy_fn: Fn = lambda: bl.np_qsgd(x, levels, bucket, bits, np_rng)
    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0 and n % bucket == 0:
        tx = torch.from_numpy(x)
        torch_fn = lambda: bl.torch_qsgd(torch, tx, levels, bucket, bits)

    def verify() -> None:  # stochastic: same scales and sizes, not the same draws
        p = kernel()
        for fn in [f for f in (numpy_fn, torch_fn) if f is not None]:
            norms, packed = fn()
            ok = np.allclose(_as_numpy(norms).reshape(-1), p.scales, rtol=1e-5)
            if not ok or _as_numpy(packed).shape != p.packed.shape:
                raise RuntimeError("bench: QSGD baseline disagrees on scales or payload size")

    return Case(kernel, x, numpy_fn, torch_fn, verify)


def _make_terngrad(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    comp = _compressor("terngrad", clip_factor=bl.TERNGRAD_CLIP, seed=0)
    kernel: Fn = lambda: comp.compress(x, step=0)
    np_rng = np.random.default_rng(0)
    numpy_fn: Fn = lambda: bl.np_terngrad(x, np_rng)
    torch_fn: Fn | None = None
    if torch is not None:
        tx = torch.from_numpy(x)
        torch_fn = lambda: bl.torch_terngrad(torch, tx)

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
            return scale, bl.torch_pack(torch, (tx < 0).to(torch.uint8), 1)

        torch_fn = _torch_job

    def verify() -> None:
        p = kernel()
        for fn in [f for f in (numpy_fn, torch_fn) if f is not None]:
            scale, packed = fn()
            _same("sign bits", p.packed, packed)
            if not np.isclose(float(scale), p.scale, rtol=1e-6):
                raise RuntimeError("bench: sign baseline disagrees on the scale")

    return Case(kernel, x, numpy_fn, torch_fn, verify)


def _make_topk(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    x = _gradient(n, rng)
    k = max(1, int(n * bl.TOPK_RATIO))
    comp = _compressor("topk", k=k)
    kernel: Fn = lambda: comp.compress(x)

    def numpy_fn() -> Any:
        idx = bl.np_topk(x, k)
        return idx, x[idx]

    torch_fn: Fn | None = None
    if torch is not None:
        tx = torch.from_numpy(x)

        def _torch_job() -> Any:
            idx = bl.torch_topk(torch, tx, k)
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
    k = max(1, int(n * bl.TOPK_RATIO))
    levels = bl.qsgd_levels(bits)
    comp = _compressor("sparse_quant", k=k, bits=bits, selection="topk", seed=0)
    kernel: Fn = lambda: comp.compress(x, step=0)
    np_rng = np.random.default_rng(0)

    def numpy_fn() -> Any:
        idx = bl.np_topk(x, k)
        vals = x[idx]
        scale = np.abs(vals).max()
        r = np.abs(vals) / scale * np.float32(levels)
        low = np.floor(r)
        level = np.minimum(low + (np_rng.random(k, dtype=np.float32) < r - low), levels)
        codes = (2 * level + ((vals < 0) & (level > 0))).astype(np.uint8)
        return idx, scale, bl.np_pack(codes, bits)

    torch_fn: Fn | None = None
    if torch is not None and 8 % bits == 0:
        tx = torch.from_numpy(x)

        def _torch_job() -> Any:
            idx = bl.torch_topk(torch, tx, k)
            vals = tx[idx]
            scale = vals.abs().max()
            r = vals.abs() / scale * levels
            low = r.floor()
            level = (low + (torch.rand(k) < r - low).float()).clamp_(max=levels)
            codes = (2 * level + ((vals < 0) & (level > 0)).float()).to(torch.uint8)
            return idx, scale, bl.torch_pack(torch, codes, bits)

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
        Kernel(
            "laq_block_quantize_pack", _make_laq_block_quantize, available=_has("LAQBlockPayload")
        ),
        Kernel(
            "laq_block_accumulate", _make_laq_block_accumulate, available=_has("LAQBlockPayload")
        ),
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
