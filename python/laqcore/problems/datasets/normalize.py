"""Feature normalisation of the file-based data sets (``--normalize``).

``maxabs`` (default) divides each column by its maximum absolute value (MNIST: every pixel by
255, the pixels' range), so the papers' step sizes behave as on their data; ``standard``
centres each column and divides it by its standard deviation (statistics of the training
set, applied to the test set too); ``none`` keeps the raw values.
"""

from __future__ import annotations

import numpy as np

from ..._typing import F64
from ..._validate import check_choice

__all__ = ["NORMALIZATIONS", "check_normalize", "normalize_columns"]


def __dir__() -> list[str]:
    return __all__


NORMALIZATIONS = ("none", "maxabs", "standard")


def check_normalize(how: str) -> str:
    """Return ``how`` if it is one of :data:`NORMALIZATIONS`, else raise (the ``normalize``
    argument of the dataset loaders)."""
    return check_choice(how, "normalize", NORMALIZATIONS)


def normalize_columns(X: F64, how: str, X_test: F64 | None = None) -> None:
    """Normalise ``X`` (and ``X_test`` with ``X``'s statistics) in place, column by column.

    Examples
    --------
    >>> X = np.array([[2.0, -1.0], [4.0, 0.5]])
    >>> normalize_columns(X, "maxabs"); X.tolist()
    [[0.5, -1.0], [1.0, 0.5]]
    """
    check_normalize(how)
    if how == "none":
        return
    if how == "maxabs":
        # max |X| per column without an |X|-sized temporary (X may be large).
        scale = np.maximum(X.max(axis=0), -X.min(axis=0))
        shift = np.zeros(X.shape[1])
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            shift = X.mean(axis=0)
            scale = X.std(axis=0)
        if not (np.isfinite(shift).all() and np.isfinite(scale).all()):
            # |x| above ~1e154: the sums of squares overflow, and the features became NaN
            raise ValueError(
                "normalize='standard': the column means or standard deviations overflow "
                f"float64 (values up to {np.abs(X).max():.3g}); use normalize='maxabs'"
            )
    scale = np.where(scale > 0, scale, 1.0)
    for arr in (X,) if X_test is None else (X, X_test):
        arr -= shift
        arr /= scale
