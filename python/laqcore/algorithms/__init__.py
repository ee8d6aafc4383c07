"""Algorithms, one module per family, all on the worker/server step interface of :mod:`.base`.

>>> from laqcore.algorithms import available_algorithms, get_algorithm
>>> "laq" in available_algorithms()
True
>>> get_algorithm("laq").params.alpha, get_algorithm("slaq").params.bits
(0.02, 3)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._registry import Registry
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
    "algorithm_parameters",
    "available_algorithms",
    "check_entropy_codable",
    "get_algorithm",
    "own_overrides",
    "uploads_width_frames",
]


def __dir__() -> list[str]:
    return __all__


#: Other spellings of some algorithms (matched by the same rule as the names).
_ALIASES: dict[str, tuple[str, ...]] = {
    "lag-wk": ("lag", "lagwk"),
    "lag-ps": ("lagps",),
    "topk-ef": ("topk", "ef-topk"),
    "ef-sign": ("efsign",),
    "sparse-qsgd": ("sparse-quant",),
    "random-select": ("random", "random-selection"),
    "one-shot": ("oneshot",),
    "dynamic-avg": ("dynamic", "dynamic-averaging"),
}
_REGISTRY: Registry[type[Algorithm]] = Registry("algorithm")
for _cls in (
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
):
    _REGISTRY.add(_cls.name, _cls, aliases=_ALIASES.get(_cls.name, ()))
#: Every algorithm class by its name.
ALGORITHMS: dict[str, type[Algorithm]] = _REGISTRY.entries


def available_algorithms() -> list[str]:
    """Names accepted by :func:`get_algorithm`."""
    return _REGISTRY.names()


def check_entropy_codable(
    classes: Iterable[type[Algorithm]], label: str, width_block: str | None = None
) -> None:
    """``ValueError`` (starting with ``label``) unless entropy coding would code the uploads
    of ``classes``: one of them uploads payloads it codes (:attr:`Algorithm.entropy_codable`),
    and no width per block is set (``width_block`` names that setting where it is set, e.g.
    ``"--width-block"``; its LAQ_WIDTHS frames are not coded). Otherwise the run would be
    recorded as entropy-coded while sending all or most of its frames plain."""
    classes = list(classes)
    if width_block is not None:
        raise ValueError(
            f"{label}: the frames of {width_block} (LAQ_WIDTHS) are not entropy coded, so most "
            "uploads would go uncoded in a run recorded as coded; drop one of the two"
        )
    if any(cls.entropy_codable for cls in classes):
        return
    codable = [n for n in available_algorithms() if ALGORITHMS[n].entropy_codable]
    raise ValueError(
        f"{label}: the uploads of {', '.join(cls.name for cls in classes)} carry no code "
        f"stream to entropy-code, so it would change nothing (codable: {', '.join(codable)})"
    )


def uploads_width_frames(algorithm: Algorithm) -> bool:
    """Whether ``algorithm`` uploads LAQ_WIDTHS frames (LAQ with ``Params.width_block``)."""
    return getattr(getattr(algorithm, "params", None), "width_block", None) is not None


def algorithm_parameters(name: str) -> frozenset[str]:
    """The :class:`Params` fields algorithm ``name`` reads (its class's ``USES``).

    >>> sorted(algorithm_parameters("qsgd"))
    ['alpha', 'batch', 'bucket_size', 'levels', 'seed']
    """
    return ALGORITHMS[_REGISTRY.resolve(name)].USES


def own_overrides(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``overrides`` that algorithm ``name`` reads.

    For settings given to several algorithms at once (``laqcore compare --algorithms
    laq,qsgd --levels 4``: QSGD's levels, which LAQ does not have); the commands first check
    that every such setting is read by at least one of them.
    """
    uses = algorithm_parameters(name)
    return {k: v for k, v in overrides.items() if k in uses}


def get_algorithm(name: str, params: Params | None = None, **overrides: Any) -> Algorithm:
    """Build an algorithm by name with its defaults, then ``params``/``overrides``.

    ``name`` is matched as compressor names are (:class:`laqcore._registry.Registry`: case,
    blanks and ``-``/``_`` ignored, plus a few aliases). ``overrides`` whose value is None are
    ignored (so CLI flags left unset keep each algorithm's own default). An override of a
    field the algorithm does not read (``get_algorithm("qsgd", momentum=0.9)``) is a
    ``TypeError`` naming the fields it does read (:func:`algorithm_parameters`);
    :func:`own_overrides` keeps the ones it reads.
    """
    cls = ALGORITHMS[_REGISTRY.resolve(name)]
    clean = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(clean) - set(Params.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown algorithm parameter(s): {', '.join(sorted(unknown))}")
    return cls(params, **clean)
