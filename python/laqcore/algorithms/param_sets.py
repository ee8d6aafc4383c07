"""Which :class:`~laqcore.algorithms.base.Params` fields each family of algorithms reads.

Every algorithm class declares its set as ``USES`` (built from these), and an override of a
field outside it is refused (:class:`~laqcore.algorithms.base.Algorithm`), so a setting the
algorithm would ignore is an error instead of a silent no-op. ``tests/test_algorithms.py``
records the fields each algorithm's code reads over a run and compares with ``USES``.
"""

from __future__ import annotations

__all__ = [
    "COMMON_PARAMS",
    "LAG_PARAMS",
    "LAQ_QUANTIZER_PARAMS",
    "LAQ_RULE_PARAMS",
    "LAZY_RULE_PARAMS",
    "QSGD_PARAMS",
    "SPARSE_QUANT_PARAMS",
    "STOCHASTIC_PARAMS",
]


def __dir__() -> list[str]:
    return __all__


#: Every algorithm: the step and the seed (even the deterministic ones key a generator on it).
COMMON_PARAMS: frozenset[str] = frozenset({"alpha", "seed"})
#: ... with minibatch gradients.
STOCHASTIC_PARAMS: frozenset[str] = COMMON_PARAMS | {"batch"}
#: The lazy rule: iterate history ``D``/``ck``/``xi`` and the clock ``t_bar``.
LAZY_RULE_PARAMS: frozenset[str] = frozenset({"D", "ck", "xi", "t_bar"})
#: LAQ's lazy rule adds the weight of its quantization-error term.
LAQ_RULE_PARAMS: frozenset[str] = LAZY_RULE_PARAMS | {"err_coef"}
#: LAG: the lazy rule and whether its clock forces uploads.
LAG_PARAMS: frozenset[str] = COMMON_PARAMS | LAZY_RULE_PARAMS | {"lag_forced"}
#: The LAQ innovation quantizer: width, blockwise radius, adaptive width.
LAQ_QUANTIZER_PARAMS: frozenset[str] = frozenset(
    {"bits", "block_size", "adaptive_bits", "width_block"}
)
#: QSGD's codec (QSGD, PQASGD).
QSGD_PARAMS: frozenset[str] = frozenset({"levels", "bucket_size"})
#: The random-k + quantization codec (sparse-QSGD, Sparse-AsyLPG).
SPARSE_QUANT_PARAMS: frozenset[str] = frozenset({"ratio", "bits"})
