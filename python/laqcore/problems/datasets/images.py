"""Image data sets: the embedded 8x8 digits and MNIST from a local directory."""

from __future__ import annotations

import math
import os
import warnings
from importlib import resources

import numpy as np

from .dataset import Dataset, DatasetError, are_class_ids
from .idx import read_idx
from .normalize import check_normalize, normalize_columns
from .npz import read_npz

__all__ = ["load_digits", "load_mnist"]


def __dir__() -> list[str]:
    return __all__


def load_digits() -> Dataset:
    """The 8x8 handwritten digits (1797 samples, 64 pixels in 0..16, 10 classes).

    Shipped inside the package (``problems/data/digits.npz``; UCI "Optical Recognition of
    Handwritten Digits", E. Alpaydin and C. Kaynak, CC BY 4.0, see ``data/README.md``).
    Pixels are scaled to [0, 1]. There is no official test split; ``make_problem`` holds
    out a seeded random fraction.

    Examples
    --------
    >>> ds = load_digits()
    >>> ds.X.shape, ds.num_classes
    ((1797, 64), 10)
    """
    ref = resources.files("laqcore.problems").joinpath("data/digits.npz")
    with resources.as_file(ref) as path:
        images, labels = read_npz(str(path), ("images", "labels"), "the embedded digits data")
    return Dataset(
        name="digits",
        X=images.astype(np.float64) / 16.0,
        y=labels.astype(np.int64),
        num_classes=10,
    )


_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load_mnist(data_dir: str | os.PathLike[str], *, normalize: str = "maxabs") -> Dataset:
    """MNIST from a local directory: ``mnist.npz`` (Keras layout: ``x_train``, ``y_train``,
    ``x_test``, ``y_test``) or the four IDX files (raw or ``.gz``).

    Pixels are flattened to 784 features and normalised per ``normalize`` (default
    ``maxabs``: divided by 255, to [0, 1], as in the official LAQ code; ``standard``: each
    column centred and scaled by the training set's statistics; ``none``: raw 0..255).
    ``maxabs`` warns when the pixels are not in 0..255 (e.g. floats already in [0, 1]).
    """
    d = os.fspath(data_dir)
    check_normalize(normalize)
    if not os.path.isdir(d):
        raise DatasetError(
            f"MNIST data directory {d!r} does not exist; expected a directory holding "
            "mnist.npz or the IDX files train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
        )
    npz = os.path.join(d, "mnist.npz")
    if os.path.exists(npz):
        xtr, ytr, xte, yte = read_npz(
            npz, ("x_train", "y_train", "x_test", "y_test"), "mnist.npz (Keras layout)"
        )
    else:
        arrays = {}
        for key, base in _MNIST_FILES.items():
            path = _find_file(d, base)
            arrays[key] = read_idx(path)
        xtr, ytr = arrays["train_images"], arrays["train_labels"]
        xte, yte = arrays["test_images"], arrays["test_labels"]
    for x, y, what in ((xtr, ytr, "training"), (xte, yte, "test")):
        if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DatasetError(
                f"MNIST {what} images of shape {x.shape} do not match labels of shape {y.shape} "
                f"in {d!r}"
            )
        # Real numbers only: a float file may hold NaN/Inf, other dtypes do not convert.
        if x.dtype.kind not in "uif" or y.dtype.kind not in "uif":
            raise DatasetError(
                f"MNIST {what} arrays in {d!r} have dtypes {x.dtype}/{y.dtype}; expected "
                "integer or float pixels and integer labels"
            )
        if x.shape[0] == 0 or x.size == 0:
            raise DatasetError(f"MNIST {what} images in {d!r} are empty (shape {x.shape})")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise DatasetError(f"MNIST {what} images in {d!r} contain NaN or Inf")
        if x.dtype.itemsize > 8 and np.abs(x).max() > np.finfo(np.float64).max:
            raise DatasetError(  # longdouble pixels (e.g. 1e400) that float64 cannot hold
                f"MNIST {what} images in {d!r} hold values beyond the float64 range "
                f"(up to {np.abs(x).max()!s}, dtype {x.dtype})"
            )
        if not are_class_ids(y, 10):
            raise DatasetError(f"MNIST {what} labels in {d!r} are not integers in 0..9")
    if math.prod(xtr.shape[1:]) != math.prod(xte.shape[1:]):
        raise DatasetError(
            f"MNIST training images of shape {xtr.shape[1:]} and test images of shape "
            f"{xte.shape[1:]} in {d!r} have different pixel counts"
        )
    X = xtr.reshape(xtr.shape[0], -1).astype(np.float64)
    X_test = xte.reshape(xte.shape[0], -1).astype(np.float64)
    if normalize == "maxabs":  # the pixels' range, as the official code: 255 for every column
        lo, hi = float(min(X.min(), X_test.min())), float(max(X.max(), X_test.max()))
        if lo < 0 or hi > 255 or (xtr.dtype.kind == "f" and hi <= 1):
            # e.g. a float mnist.npz already scaled to [0, 1]: /255 leaves [0, 0.004]
            warnings.warn(
                f"MNIST pixels in {d!r} lie in [{lo:g}, {hi:g}], not 0..255: --normalize "
                "maxabs divides them by 255 all the same (--normalize none keeps them, "
                "standard rescales them)",
                UserWarning,
                stacklevel=2,
            )
        X /= 255.0
        X_test /= 255.0
    else:
        normalize_columns(X, normalize, X_test)
    return Dataset(
        name="mnist",
        X=X,
        y=ytr.astype(np.int64),
        X_test=X_test,
        y_test=yte.astype(np.int64),
        num_classes=10,
    )


def _find_file(directory: str, base: str) -> str:
    for name in (
        base,
        base + ".gz",
        base.replace("-idx", ".idx"),
        base.replace("-idx", ".idx") + ".gz",
    ):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise DatasetError(
        f"MNIST file {os.path.join(directory, base)!r} (or .gz) not found; expected mnist.npz "
        "or the four IDX files in the data directory"
    )
