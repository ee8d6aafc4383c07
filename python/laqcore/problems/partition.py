"""How samples are dealt out to workers, and the train/test split.

Every function returns a list of index arrays, one per worker, that together cover
``range(n)`` exactly once (a partition). Randomised ones take a seed and are reproducible.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .._validate import check_real

__all__ = ["PARTITIONS", "contiguous", "dirichlet", "iid", "partition", "train_test_split"]


def __dir__() -> list[str]:
    return __all__


IndexArray = npt.NDArray[np.int64]
PARTITIONS = ("contiguous", "iid", "dirichlet")


def _check(n: int, workers: int) -> None:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if n < workers:
        raise ValueError(f"cannot split {n} samples over {workers} workers (each needs >= 1)")


def contiguous(n: int, workers: int) -> list[IndexArray]:
    """Consecutive blocks of (almost) equal size, as in the LAQ paper (6000 MNIST images each).

    Examples
    --------
    >>> [s.tolist() for s in contiguous(5, 2)]
    [[0, 1, 2], [3, 4]]
    """
    _check(n, workers)
    return [np.asarray(b, dtype=np.int64) for b in np.array_split(np.arange(n), workers)]


def iid(n: int, workers: int, *, seed: int = 0) -> list[IndexArray]:
    """A seeded random shuffle dealt into equal blocks (each worker sees an IID sample)."""
    _check(n, workers)
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(b).astype(np.int64) for b in np.array_split(perm, workers)]


def dirichlet(
    labels: npt.NDArray[np.int64], workers: int, *, alpha: float = 0.5, seed: int = 0
) -> list[IndexArray]:
    """Label-skewed non-IID split: for every class, its samples are divided among workers in
    proportions drawn from Dirichlet(alpha) (small alpha = very skewed).

    Workers left empty by the draw get one sample moved from the largest worker, so every
    worker has data.
    """
    labels = np.asarray(labels)
    _check(labels.shape[0], workers)
    # inf drew NaN shares (a RuntimeWarning and a split of one sample per worker but one)
    alpha = check_real(alpha, "dirichlet alpha", positive=True)
    if labels.dtype.kind not in "iu":
        raise ValueError("the Dirichlet partition needs integer class labels")
    rng = np.random.default_rng(seed)
    owners = np.empty(labels.shape[0], dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        share = rng.dirichlet(np.full(workers, alpha))
        cuts = (np.cumsum(share)[:-1] * idx.size).astype(np.int64)
        for m, part in enumerate(np.split(idx, cuts)):
            owners[part] = m
    counts = np.bincount(owners, minlength=workers)
    for m in np.flatnonzero(counts == 0).tolist():
        donor = int(np.argmax(counts))
        owners[np.flatnonzero(owners == donor)[0]] = m
        counts[donor] -= 1
        counts[m] += 1
    return [np.flatnonzero(owners == m).astype(np.int64) for m in range(workers)]


def partition(
    kind: str,
    n: int,
    workers: int,
    *,
    labels: npt.NDArray[np.int64] | None = None,
    alpha: float = 0.5,
    seed: int = 0,
) -> list[IndexArray]:
    """Dispatch on ``kind`` (one of :data:`PARTITIONS`)."""
    if kind == "contiguous":
        return contiguous(n, workers)
    if kind == "iid":
        return iid(n, workers, seed=seed)
    if kind == "dirichlet":
        if labels is None:
            raise ValueError("the dirichlet partition needs class labels")
        return dirichlet(labels, workers, alpha=alpha, seed=seed)
    raise ValueError(f"unknown partition {kind!r}; choose one of {', '.join(PARTITIONS)}")


def train_test_split(
    n: int, test_fraction: float, *, seed: int = 0
) -> tuple[IndexArray, IndexArray]:
    """Seeded random split; both parts keep their original order (so a contiguous partition
    of the training part still follows the file order, like the paper's shards)."""
    test_fraction = check_real(test_fraction, "test_fraction")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = round(n * test_fraction)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]).astype(np.int64), np.sort(perm[:n_test]).astype(np.int64)
