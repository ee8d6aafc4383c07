"""Compressors behind one protocol, built by name from a registry.

>>> import laqcore
>>> laqcore.available_compressors()
['laq', 'none', 'qsgd', 'randk', 'rotation', 'sign', 'sparse_quant', 'terngrad', 'topk']

Each compressor lives in its own module; ``base`` holds the :class:`Compressor` protocol and
the registry. ``none`` is the one name of "no compression" (:class:`IdentityCompressor`,
whose payload is the DENSE frame of raw float32 values); ``identity`` and ``dense`` are
deprecated aliases that still resolve to it with a ``DeprecationWarning``. Aliases:
``top_k`` -> ``topk``;
``rand_k``/``random_k`` -> ``randk``; ``scaled_sign`` -> ``sign``;
``sparse_quantized``/``sparsified_qsgd`` -> ``sparse_quant``; ``hadamard``/``rotated_qsgd`` ->
``rotation`` (``-`` equals ``_``, case
ignored).
"""

from __future__ import annotations

from typing import cast

from .base import (
    _REGISTRY,
    Compressor,
    SeededCompressor,
    available_compressors,
    get_compressor,
    register_compressor,
)
from .dense import DensePayload, IdentityCompressor
from .qsgd import (
    QSGDCompressor,
    QSGDPayload,
    elias_omega_length,
    qsgd_code_bits,
    qsgd_dequantize,
    qsgd_elias_bits,
    qsgd_quantize,
)
from .rotation import RotationCompressor, RotationPayload, rotation_padded_size
from .sign import SignCompressor, SignPayload
from .sparse import (
    RandKCompressor,
    RandKPayload,
    SparseQuantCompressor,
    SparseQuantPayload,
    TopKCompressor,
    TopKPayload,
)
from .terngrad import TernGradCompressor, TernGradPayload

__all__ = [
    "Compressor",
    "DensePayload",
    "IdentityCompressor",
    "QSGDCompressor",
    "QSGDPayload",
    "RandKCompressor",
    "RandKPayload",
    "RotationCompressor",
    "RotationPayload",
    "SeededCompressor",
    "SignCompressor",
    "SignPayload",
    "SparseQuantCompressor",
    "SparseQuantPayload",
    "TernGradCompressor",
    "TernGradPayload",
    "TopKCompressor",
    "TopKPayload",
    "available_compressors",
    "elias_omega_length",
    "get_compressor",
    "qsgd_code_bits",
    "qsgd_dequantize",
    "qsgd_elias_bits",
    "qsgd_quantize",
    "register_compressor",
    "rotation_padded_size",
]


def __dir__() -> list[str]:
    return __all__


def _laq_factory(bits: int = 4) -> Compressor:
    """``"laq"``: the LAQ innovation quantizer, laqcore.laq.LAQCompressor (imported lazily
    so that this package does not depend on the LAQ module at import time). Its parameters
    are spelled out so that get_compressor names them when given others."""
    try:
        from ..laq import LAQCompressor
    except ImportError as err:  # only before the LAQ module is part of the build
        raise ValueError(f"compressor 'laq' is not available in this build: {err}") from err
    # cast: LAQCompressor.decompress is annotated for its own payload type only
    return cast(Compressor, LAQCompressor(bits=bits))


register_compressor("none", IdentityCompressor, deprecated_aliases=("identity", "dense"))
register_compressor("qsgd", QSGDCompressor)
register_compressor("terngrad", TernGradCompressor)
register_compressor("sign", SignCompressor, aliases=("scaled_sign",))
register_compressor("topk", TopKCompressor, aliases=("top_k",))
register_compressor("randk", RandKCompressor, aliases=("rand_k", "random_k"))
register_compressor(
    "sparse_quant", SparseQuantCompressor, aliases=("sparse_quantized", "sparsified_qsgd")
)
register_compressor("laq", _laq_factory)
register_compressor("rotation", RotationCompressor, aliases=("hadamard", "rotated_qsgd"))
# The algorithms, the DDP hooks and the launch engine build these by name: replacing one
# (register_compressor(..., replace=True)) would silently change what they run.
_REGISTRY.seal()
