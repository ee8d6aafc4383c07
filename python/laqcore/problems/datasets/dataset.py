"""The :class:`Dataset` every loader and generator returns, and :class:`DatasetError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Dataset", "DatasetError", "FloatMatrix", "are_class_ids"]


def __dir__() -> list[str]:
    return __all__


FloatMatrix = npt.NDArray[np.float64]


def are_class_ids(y: npt.NDArray[Any], num_classes: int) -> bool:
    """Whether every label is a whole number in ``0..num_classes-1`` (integer or float
    dtype; NaN is not); an empty ``y`` is. The one test of class labels for the data sets,
    the problems and the MNIST loader."""
    return bool(np.all(y >= 0) and np.all(y < num_classes) and np.all(y == np.floor(y)))


class DatasetError(ValueError):
    """A dataset file is missing, truncated or not in the expected format."""


@dataclass
class Dataset:
    """Features and labels of one dataset.

    Attributes
    ----------
    name : str
        Short name used in results and cache keys.
    X, y : ndarray
        Training features ``(N, d)`` float64 and labels ``(N,)`` (int64 class ids in
        ``0..num_classes-1``; float64 targets when ``num_classes == 0``, i.e. regression).
    X_test, y_test : ndarray or None
        Held-out data, when the source has an official test set (MNIST); otherwise
        :func:`laqcore.problems.make_problem` splits one off.
    num_classes : int
        Number of classes (0 for regression).
    groups : int or None
        For generators whose samples belong to designated workers (LAG's heterogeneous
        data): the samples are ordered by worker in ``groups`` equal blocks, and only the
        ``contiguous`` partition with that many workers keeps the design.
    """

    name: str
    X: FloatMatrix
    y: npt.NDArray[Any]
    num_classes: int
    X_test: FloatMatrix | None = None
    y_test: npt.NDArray[Any] | None = None
    groups: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the arrays against the layout above, so that a hand-built Dataset given to
        :func:`~laqcore.problems.make_problem` fails here, naming the field, instead of
        with an IndexError deep in a model, or not at all (a label -1 indexed the last
        class; NaN features gave F* = nan)."""
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ValueError(f"Dataset {self.name!r}: num_classes must be an int >= 0, got {k!r}")
        if (self.X_test is None) != (self.y_test is None):
            raise ValueError(f"Dataset {self.name!r}: give both X_test and y_test, or neither")
        width = None
        for xname, yname in (("X", "y"), ("X_test", "y_test")):
            X, y = getattr(self, xname), getattr(self, yname)
            if X is None:
                continue
            if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype.kind not in "uif":
                got = (
                    f"{X.dtype} array of shape {X.shape}"
                    if isinstance(X, np.ndarray)
                    else type(X).__name__
                )
                raise ValueError(
                    f"Dataset {self.name!r}: {xname} must be a 2-D numeric array (samples x "
                    f"features), got {got}"
                )
            if width is not None and X.shape[1] != width:
                raise ValueError(
                    f"Dataset {self.name!r}: X_test has {X.shape[1]} features, X has {width}"
                )
            width = X.shape[1]
            # min/max per column: NaN and +-Inf show there, without an X-sized boolean
            # temporary (X may take gigabytes)
            if (
                X.dtype.kind == "f"
                and X.size
                and not (np.isfinite(X.min(axis=0)).all() and np.isfinite(X.max(axis=0)).all())
            ):
                raise ValueError(f"Dataset {self.name!r}: {xname} contains NaN or Inf")
            if not isinstance(y, np.ndarray) or y.ndim != 1 or y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"Dataset {self.name!r}: {yname} must be a 1-D array with one label per "
                    f"row of {xname} ({X.shape[0]}), got shape {getattr(y, 'shape', None)}"
                )
            if y.dtype.kind not in "uif" or (y.dtype.kind == "f" and not np.isfinite(y).all()):
                raise ValueError(f"Dataset {self.name!r}: {yname} must hold finite numbers")
            if k and not are_class_ids(y, k):
                raise ValueError(
                    f"Dataset {self.name!r}: {yname} must hold class ids 0..{k - 1} "
                    f"(num_classes={k}), got values in [{y.min()}, {y.max()}]"
                )

    @property
    def num_features(self) -> int:
        return int(self.X.shape[1])

    def fingerprint(self) -> str:
        """A short content hash (used to key cached optima)."""
        import hashlib

        h = hashlib.sha256()
        for arr in (self.X, self.y, self.X_test, self.y_test):
            if arr is not None:
                h.update(str(arr.shape).encode())
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]
