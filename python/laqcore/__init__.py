"""laqcore: communication-efficient distributed learning.

Native kernels (``laqcore._core``, C++17/OpenMP) for the LAQ innovation quantizer, bit
packing, QSGD, TernGrad, sign and sparse compressors, and the lazy-aggregation upload rule;
a typed Python layer with a many-worker simulator and a torch.distributed engine.
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as err:  # pragma: no cover - only hit on a broken install
    raise ImportError(
        "laqcore's native extension laqcore._core could not be imported. Did you build and "
        "install laqcore (`python -m pip install .`)? Importing from a source checkout "
        "without installing does not work."
    ) from err

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

__version__: str = _core.__version__

__all__ = [
    "Compressor",
    "ErrorFeedback",
    "IdentityCompressor",
    "InnovationQuantizer",
    "IterateHistory",
    "LAQCompressor",
    "LAQBlockPayload",
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
