"""The :class:`Dataset` every loader and generator returns, and :class:`DatasetError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Dataset", "DatasetError", "FloatMatrix"]


def __dir__() -> list[str]:
    return __all__


FloatMatrix = npt.NDArray[np.float64]


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
