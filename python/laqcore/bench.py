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

__all__ = ["KERNELS", "add_arguments", "available_kernels", "main", "run", "run_cli"]


def __dir__() -> list[str]:
    return __all__


Fn = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    """One timed configuration: the kernel call and its baselines on shared inputs."""

    kernel: Fn
    memcpy_src: npt.NDArray[Any]  # the streamed bytes, copied by the memcpy baseline
    numpy: Fn | None
    torch: Fn | None


@dataclass(frozen=True)
class Kernel:
    """A benchmarked kernel: ``make(n, bits, rng, torch_module)`` builds a :class:`Case`."""

    name: str
    make: Callable[[int, int, np.random.Generator, Any], Case]
    uses_bits: bool = True
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


# --- kernels -----------------------------------------------------------------------------
def _make_pack(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    codes = _random_codes(n, bits, rng)
    tcodes = torch.from_numpy(codes) if torch is not None and 8 % bits == 0 else None
    return Case(
        kernel=lambda: packing.pack_bits(codes, bits),
        memcpy_src=codes,
        numpy=lambda: _np_pack(codes, bits),
        torch=None if tcodes is None else (lambda: _torch_pack(torch, tcodes, bits)),
    )


def _make_unpack(n: int, bits: int, rng: np.random.Generator, torch: Any) -> Case:
    packed = packing.pack_bits(_random_codes(n, bits, rng), bits)
    tpacked = torch.from_numpy(packed) if torch is not None and 8 % bits == 0 else None
    return Case(
        kernel=lambda: packing.unpack_bits(packed, bits, n),
        memcpy_src=np.empty(n, np.uint8),
        numpy=lambda: _np_unpack(packed, bits, n),
        torch=None if tpacked is None else (lambda: _torch_unpack(torch, tpacked, bits, n)),
    )


KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in [
        Kernel("pack", _make_pack),
        Kernel("unpack", _make_unpack),
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


def _check_same(name: str, ours: Any, theirs: Any) -> None:
    a = np.asarray(ours)
    b = np.asarray(theirs.numpy() if hasattr(theirs, "numpy") else theirs)
    if a.shape != b.shape or not np.array_equal(a, b):
        raise RuntimeError(f"bench: {name} baseline disagrees with laqcore; refusing to time it")


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
    size_list = list(sizes) if sizes is not None else (
        [2**10, 2**16, 2**20] if quick else [2**e for e in range(10, 25)]
    )
    if not size_list or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in size_list):
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
                for b in bit_list if spec.uses_bits else [0]:
                    case = spec.make(n, b if spec.uses_bits else 4, rng, torch)
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
    ours = case.kernel()
    if case.numpy is not None:
        _check_same(f"{name} numpy", ours, case.numpy())
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
            if t == thread_list[0]:
                _check_same(f"{name} torch", ours, case.torch())
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
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"laqcore bench: {report['machine']['cpu']} ({report['machine']['simd']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- command line ------------------------------------------------------------------------
def _parse_sizes(text: str) -> list[int]:
    """``"10:24"`` (exponents, inclusive), ``"10:24:2"`` (with step) or ``"1024,65536"``."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3) or not 0 <= parts[0] <= parts[1] <= 40:
                raise ValueError
            step = parts[2] if len(parts) == 3 else 1
            if step < 1:
                raise ValueError
            return [2**e for e in range(parts[0], parts[1] + 1, step)]
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes: expected LO:HI[:STEP] exponents or comma-separated counts, got {text!r}"
        ) from None


def _parse_ints(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` (used by ``laqcore bench``)."""
    parser.add_argument("--kernels", type=lambda s: s.split(","), default=None,
                        help=f"comma-separated subset of: {', '.join(KERNELS)} (default: all)")
    parser.add_argument("--sizes", type=_parse_sizes, default=None,
                        help="exponents LO:HI[:STEP] of n, or counts (default 10:24)")
    parser.add_argument("--bits", type=_parse_ints, default=[1, 2, 4, 8],
                        help="comma-separated bit widths (default 1,2,4,8)")
    parser.add_argument("--threads", type=_parse_ints, default=None,
                        help="comma-separated thread counts (default: 1 and all)")
    parser.add_argument("--repeats", type=int, default=None, help="samples per figure (median)")
    parser.add_argument("--min-time", type=float, default=None, help="seconds per sample")
    parser.add_argument("--quick", action="store_true", help="small fast sweep (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--plot", metavar="FILE", help="draw GB/s against n (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table at the end")


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
