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
numpy is single-threaded; torch gets the same thread count as laqcore. Every baseline's output is checked against laqcore's before timing.

The streamed bytes are those of the uncompressed side: ``4 n`` for kernels on float32
vectors (quantizers, unpack+accumulate) and ``n`` for pack/unpack of uint8 codes. ``gbps``
is that many bytes per second of kernel time.

The package holds one concern per module: :mod:`~laqcore.bench.cases` (the kernels and
how each is set up), :mod:`~laqcore.bench.baselines` (numpy and torch implementations),
:mod:`~laqcore.bench.timing` (harness, machine description), :mod:`~laqcore.bench.runner`
(the sweep), :mod:`~laqcore.bench.report` (text, markdown, plot), :mod:`~laqcore.bench.cli`.

Examples
--------
>>> from laqcore import bench
>>> report = bench.run(kernels=["pack"], sizes=[2**10], bits=[4], threads=[1], quick=True)
>>> sorted(report["results"][0])[:4]
['bits', 'gbps', 'kernel', 'memcpy_ratio']
"""

from __future__ import annotations

from .cases import KERNELS, available_kernels
from .cli import add_arguments, add_parser, main, run_cli
from .report import format_row, markdown_table, plot
from .runner import run
from .timing import machine_info

__all__ = [
    "KERNELS",
    "add_arguments",
    "add_parser",
    "available_kernels",
    "format_row",
    "machine_info",
    "main",
    "markdown_table",
    "plot",
    "run",
    "run_cli",
]


def __dir__() -> list[str]:
    return __all__
