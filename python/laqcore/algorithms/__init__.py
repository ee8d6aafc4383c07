"""Algorithms, one module per family, all on the worker/server step interface of :mod:`.base`.

>>> from laqcore.algorithms import available_algorithms, get_algorithm
>>> "laq" in available_algorithms()
True
>>> get_algorithm("laq").params.alpha, get_algorithm("slaq").params.bits
(0.02, 3)
"""

from __future__ import annotations

from typing import Any

from .._validate import registry_key
from .asylpg import AccAsyLPG, AsyLPG, SparseAsyLPG
from .base import Algorithm, CompressedGradient, Message, Params, Server, Worker
from .compressed import GD, QSGD, SGD, SSGD, SparseQSGD, TernGrad
from .ef_sgd import EFSign, TopKEF
from .lag import LAGPS, LAGWK
from .laq import LAQ, QGD, SLAQ, RandomSelection
from .local import PQASGD, DynamicAveraging, OneShotAveraging

__all__ = [
    "ALGORITHMS",
    "GD",
    "LAGPS",
    "LAGWK",
    "LAQ",
    "PQASGD",
    "QGD",
    "QSGD",
    "SGD",
    "SLAQ",
    "SSGD",
    "AccAsyLPG",
    "Algorithm",
    "AsyLPG",
    "CompressedGradient",
    "DynamicAveraging",
    "EFSign",
    "Message",
    "OneShotAveraging",
    "Params",
    "RandomSelection",
    "Server",
    "SparseAsyLPG",
    "SparseQSGD",
    "TernGrad",
    "TopKEF",
    "Worker",
    "available_algorithms",
    "get_algorithm",
]


def __dir__() -> list[str]:
    return __all__


ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (
        GD,
        QGD,
        LAGWK,
        LAGPS,
        LAQ,
        SGD,
        QSGD,
        SSGD,
        SLAQ,
        TernGrad,
        EFSign,
        TopKEF,
        SparseQSGD,
        PQASGD,
        AsyLPG,
        SparseAsyLPG,
        AccAsyLPG,
        RandomSelection,
        OneShotAveraging,
        DynamicAveraging,
    )
}

_ALIASES = {
    "lag": "lag-wk",
    "lagwk": "lag-wk",
    "lagps": "lag-ps",
    "topk": "topk-ef",
    "ef-topk": "topk-ef",
    "efsign": "ef-sign",
    "sparse-quant": "sparse-qsgd",
    "random": "random-select",
    "random-selection": "random-select",
    "oneshot": "one-shot",
    "dynamic": "dynamic-avg",
    "dynamic-averaging": "dynamic-avg",
}


def available_algorithms() -> list[str]:
    """Names accepted by :func:`get_algorithm`."""
    return list(ALGORITHMS)


def get_algorithm(name: str, params: Params | None = None, **overrides: Any) -> Algorithm:
    """Build an algorithm by name with its defaults, then ``params``/``overrides``.

    ``overrides`` whose value is None are ignored (so CLI flags left unset keep each
    algorithm's own default).
    """
    if not isinstance(name, str):
        raise TypeError(f"algorithm name must be a str, got {type(name).__name__}")
    lookup = {registry_key(n): n for n in ALGORITHMS}
    lookup.update({registry_key(a): target for a, target in _ALIASES.items()})
    key = lookup.get(registry_key(name), "")
    if key not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {name!r}; available: {', '.join(available_algorithms())}"
        )
    cls = ALGORITHMS[key]
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - set(Params.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown algorithm parameter(s): {', '.join(sorted(unknown))}")
    return cls(params, **clean)
