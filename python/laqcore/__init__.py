"""laqcore: communication-efficient distributed learning.

Native kernels (``laqcore._core``, C++17/OpenMP) for the LAQ innovation quantizer, bit
packing, QSGD, TernGrad, sign and sparse compressors, and the lazy-aggregation upload rule;
a typed Python layer with a many-worker simulator and a torch.distributed engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:
    from . import _core
except ImportError as err:  # pragma: no cover - only hit on a broken install
    if "LAQCORE_SIMD" in str(err):  # a bad setting of the environment, not a broken install
        raise
    raise ImportError(
        "laqcore's native extension laqcore._core could not be imported. Did you build and "
        "install laqcore (`python -m pip install .`)? Importing from a source checkout "
        "without installing does not work."
    ) from err

if TYPE_CHECKING:  # what type checkers see; at run time __getattr__ imports on first use
    from .algorithms import available_algorithms, get_algorithm
    from .compressors import (
        Compressor,
        IdentityCompressor,
        QSGDCompressor,
        RandKCompressor,
        SignCompressor,
        SparseQuantCompressor,
        TernGradCompressor,
        TopKCompressor,
        available_compressors,
        get_compressor,
        qsgd_dequantize,
        qsgd_quantize,
        register_compressor,
    )
    from .error_feedback import ErrorFeedback
    from .laq import (
        InnovationQuantizer,
        LAQBlockPayload,
        LAQCompressor,
        LAQPayload,
        laq_accumulate,
        laq_apply,
        laq_dequantize,
        laq_quantize,
    )
    from .lazy import IterateHistory, UploadRule, laq_should_upload, squared_distance
    from .packing import pack_bits, packed_size, unpack_bits
    from .problems import make_problem
    from .runtime import build_info, get_num_threads, num_threads, set_num_threads
    from .simulator import RunResult, simulate

#: Where each public name lives: ``import laqcore`` (and ``import laqcore.wire``) stays cheap
#: and imports neither the algorithms, the problems nor the simulator until one is used.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "algorithms": (
        "available_algorithms",
        "get_algorithm",
    ),
    "compressors": (
        "Compressor",
        "IdentityCompressor",
        "QSGDCompressor",
        "RandKCompressor",
        "SignCompressor",
        "SparseQuantCompressor",
        "TernGradCompressor",
        "TopKCompressor",
        "available_compressors",
        "get_compressor",
        "qsgd_dequantize",
        "qsgd_quantize",
        "register_compressor",
    ),
    "error_feedback": ("ErrorFeedback",),
    "laq": (
        "InnovationQuantizer",
        "LAQBlockPayload",
        "LAQCompressor",
        "LAQPayload",
        "laq_accumulate",
        "laq_apply",
        "laq_dequantize",
        "laq_quantize",
    ),
    "lazy": (
        "IterateHistory",
        "UploadRule",
        "laq_should_upload",
        "squared_distance",
    ),
    "packing": (
        "pack_bits",
        "packed_size",
        "unpack_bits",
    ),
    "problems": ("make_problem",),
    "runtime": (
        "build_info",
        "get_num_threads",
        "num_threads",
        "set_num_threads",
    ),
    "simulator": (
        "RunResult",
        "simulate",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

#: Subpackages and modules reachable as attributes (``laqcore.problems.make_problem``).
_SUBMODULES = frozenset(
    {
        "algorithms",
        "bench",
        "cli",
        "compressors",
        "distributed",
        "downlink",
        "entropy",
        "error_feedback",
        "experiments",
        "laq",
        "lazy",
        "lazy_state",
        "network",
        "packing",
        "problems",
        "runtime",
        "serialization",
        "simulator",
        "torch",
        "wire",
    }
)

__version__: str = _core.__version__

__all__ = [
    "Compressor",
    "ErrorFeedback",
    "IdentityCompressor",
    "InnovationQuantizer",
    "IterateHistory",
    "LAQBlockPayload",
    "LAQCompressor",
    "LAQPayload",
    "QSGDCompressor",
    "RandKCompressor",
    "RunResult",
    "SignCompressor",
    "SparseQuantCompressor",
    "TernGradCompressor",
    "TopKCompressor",
    "UploadRule",
    "__version__",
    "available_algorithms",
    "available_compressors",
    "build_info",
    "get_algorithm",
    "get_compressor",
    "get_num_threads",
    "laq_accumulate",
    "laq_apply",
    "laq_dequantize",
    "laq_quantize",
    "laq_should_upload",
    "make_problem",
    "num_threads",
    "pack_bits",
    "packed_size",
    "qsgd_dequantize",
    "qsgd_quantize",
    "register_compressor",
    "set_num_threads",
    "simulate",
    "squared_distance",
    "unpack_bits",
]


def __dir__() -> list[str]:
    return __all__


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'laqcore' has no attribute {name!r}")
    globals()[name] = value
    return value
