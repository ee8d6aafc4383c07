"""A defensive parser of LIBSVM/SVMlight text files (raw or gzip-compressed)."""

from __future__ import annotations

import gzip
import numbers
import os
from typing import Any

import numpy as np

from .dataset import Dataset, DatasetError
from .normalize import check_normalize, normalize_columns

__all__ = ["MAX_LIBSVM_BYTES", "MAX_LIBSVM_FEATURES", "load_libsvm"]


def __dir__() -> list[str]:
    return __all__


#: Largest feature index :func:`load_libsvm` accepts when ``num_features`` is not given: the
#: features are stored densely, so a one-line file naming index 10**9 would otherwise ask
#: for gigabytes. Real LIBSVM data sets stored densely here have at most a few thousand.
MAX_LIBSVM_FEATURES = 2**24
#: Largest dense feature matrix (rows x features x 8 bytes) :func:`load_libsvm` builds.
MAX_LIBSVM_BYTES = 2**32


def _check_limit(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {int(value)}")
    return int(value)


def load_libsvm(
    path: str | os.PathLike[str],
    *,
    num_features: int | None = None,
    max_features: int = MAX_LIBSVM_FEATURES,
    max_bytes: int = MAX_LIBSVM_BYTES,
    normalize: str = "maxabs",
) -> Dataset:
    """Parse a LIBSVM/SVMlight text file (``label idx:value idx:value ...``, 1-based indices).

    Labels are mapped to class ids ``0..K-1`` in sorted order (so ``-1/+1`` become ``0/1``);
    if there are more than 20 distinct non-integer labels the data is treated as regression.
    Features are stored densely (fine for ijcnn1, covtype, SUSY: d <= 54) and normalised per
    ``normalize`` (:mod:`.normalize`; default ``maxabs``: each column divided by its maximum
    absolute value, so that step sizes behave like on the paper's data).

    Parameters
    ----------
    num_features : int, optional
        The number of features d; an index above it is an error. Default: the largest index
        in the file, which must then be at most ``max_features``.
    max_features : int
        Largest feature index accepted without ``num_features`` (default
        ``MAX_LIBSVM_FEATURES = 2**24``), so a tiny file naming a huge index is refused
        instead of allocating gigabytes.
    max_bytes : int
        Largest dense feature matrix (``rows * d * 8`` bytes) to build (default
        ``MAX_LIBSVM_BYTES = 2**32``); checked before it is allocated.
    normalize : {"maxabs", "standard", "none"}

    Raises
    ------
    DatasetError
        Missing or malformed file, an index above the limit (naming the line), or a matrix
        above ``max_bytes``.
    """
    check_normalize(normalize)
    p = os.fspath(path)
    limit_name = "num_features" if num_features is not None else "max_features"
    limit = _check_limit(num_features if num_features is not None else max_features, limit_name)
    max_bytes = _check_limit(max_bytes, "max_bytes")
    expect = "LIBSVM format: one sample per line, 'label index:value ...' with 1-based indices"
    try:
        opener = gzip.open if p.endswith(".gz") else open
        with opener(p, "rt", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError as err:
        raise DatasetError(f"LIBSVM file {p!r} not found ({expect})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read LIBSVM file {p!r}: {err} ({expect})") from err
    labels: list[float] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for lineno, line in enumerate(lines, 1):
        body = line.split("#", 1)[0].split()
        if not body:
            continue
        try:
            labels.append(float(body[0]))
            for tok in body[1:]:
                idx, val = tok.split(":", 1)
                j = int(idx)
                if j < 1:
                    raise ValueError(f"feature index {j} < 1")
                if j > limit:  # the handler below adds the file and line
                    hint = "" if num_features is not None else " (pass num_features to allow it)"
                    raise ValueError(f"feature index {j} exceeds {limit_name}={limit}{hint}")
                rows.append(len(labels) - 1)
                cols.append(j - 1)
                vals.append(float(val))
        except ValueError as err:
            raise DatasetError(f"{p!r} line {lineno}: {err}; expected {expect}") from err
    if not labels:
        raise DatasetError(f"LIBSVM file {p!r} holds no samples ({expect})")
    # Every index was checked against `limit` while parsing.
    d = max(max(cols, default=-1) + 1, 1) if num_features is None else limit
    if len(labels) * d * 8 > max_bytes:
        raise DatasetError(
            f"{p!r}: a dense {len(labels)} x {d} float64 feature matrix takes "
            f"{len(labels) * d * 8} bytes, above max_bytes={max_bytes}"
        )
    values = np.asarray(vals, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise DatasetError(f"{p!r} contains NaN or Inf feature values")
    X = np.zeros((len(labels), d))
    X[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = values
    normalize_columns(X, normalize)
    lab = np.asarray(labels)
    uniq = np.unique(lab)
    name = os.path.basename(p)
    if uniq.size <= 20 or np.all(lab == np.round(lab)):
        y = np.searchsorted(uniq, lab).astype(np.int64)
        return Dataset(name=f"libsvm:{name}", X=X, y=y, num_classes=int(uniq.size))
    return Dataset(name=f"libsvm:{name}", X=X, y=lab, num_classes=0)
