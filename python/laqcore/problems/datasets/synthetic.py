"""Synthetic data sets: Gaussian classes, a linear regression and LAG's heterogeneous
workers (seeded, generated in memory)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .dataset import Dataset

__all__ = ["make_classification", "make_heterogeneous", "make_regression"]


def __dir__() -> list[str]:
    return __all__


def make_classification(
    n: int = 2000, d: int = 20, num_classes: int = 2, *, seed: int = 0
) -> Dataset:
    """Gaussian classes around random centres (a linearly separable-ish toy problem)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, d))
    y = rng.integers(0, num_classes, size=n)
    X = centres[y] + rng.normal(size=(n, d))
    return Dataset(name=f"synthetic-c{num_classes}", X=X / np.sqrt(d), y=y, num_classes=num_classes)


def make_regression(n: int = 2000, d: int = 20, *, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Linear model ``y = X w + noise`` with standard normal features (scaled by 1/sqrt(d))."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    w = rng.normal(size=d)
    y = X @ w + noise * rng.normal(size=n)
    return Dataset(name="synthetic-regression", X=X, y=y, num_classes=0)


def make_heterogeneous(
    workers: int,
    n_per_worker: int = 50,
    d: int = 20,
    *,
    growth: float = 1.3,
    seed: int = 0,
    num_classes: int = 0,
) -> Dataset:
    """LAG's heterogeneous workers: worker m's features are scaled so that its smoothness
    constant L_m grows geometrically, ``L_m ∝ growth**m`` (the LAG paper's synthetic setting,
    where lazy aggregation saves the most because most workers are "smooth").

    Samples are ordered by worker in ``workers`` equal blocks (``Dataset.groups``).
    ``num_classes=0`` gives regression targets (least squares), 2 gives binary labels.
    """
    try:  # the last worker's scale; 1.3**2706 overflows float64
        top = float(growth) ** (workers - 1)
    except OverflowError:
        top = math.inf
    if not math.isfinite(top):
        raise ValueError(
            f"{workers} workers: worker m's features are scaled by sqrt(growth**m) = "
            f"sqrt({growth}**m), which overflows float64 for m = {workers - 1}"
        )
    rng = np.random.default_rng(seed)
    blocks = []
    for m in range(workers):
        blocks.append(rng.normal(size=(n_per_worker, d)) * np.sqrt(growth**m))
    X = np.concatenate(blocks)
    w = rng.normal(size=d) / np.sqrt(d)
    score = X @ w
    if num_classes == 0:
        y: npt.NDArray[Any] = score + 0.1 * rng.normal(size=score.shape)
    else:
        if num_classes != 2:
            raise ValueError(f"num_classes must be 0 (regression) or 2, got {num_classes}")
        y = (score + 0.1 * rng.normal(size=score.shape) > 0).astype(np.int64)
    return Dataset(
        name=f"synthetic-lag-m{workers}",
        X=X,
        y=y,
        num_classes=num_classes,
        groups=workers,
        meta={"growth": growth},
    )
