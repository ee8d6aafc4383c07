"""Data sets by name: the names the CLI's ``--dataset`` accepts and the loader of each."""

from __future__ import annotations

import os

from .dataset import Dataset
from .images import load_digits, load_mnist
from .libsvm import load_libsvm
from .synthetic import make_classification, make_heterogeneous, make_regression

__all__ = ["available_datasets", "load_dataset"]


def __dir__() -> list[str]:
    return __all__


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (``libsvm:PATH`` takes a file path)."""
    return [
        "digits",
        "mnist",
        "libsvm:PATH",
        "synthetic",
        "synthetic-binary",
        "synthetic-regression",
        "synthetic-lag",
        "synthetic-lag-binary",
    ]


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    workers: int = 10,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name (see :func:`available_datasets`).

    Examples
    --------
    >>> load_dataset("digits").num_features
    64
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    if name == "digits":
        return load_digits()
    if name == "mnist":
        if data_dir is None:
            raise ValueError(
                "--dataset mnist needs --data-dir DIR (holding mnist.npz or IDX files)"
            )
        return load_mnist(data_dir)
    if name.startswith("libsvm:"):
        path = name[len("libsvm:") :]
        if data_dir is not None and not os.path.isabs(path):
            path = os.path.join(os.fspath(data_dir), path)
        return load_libsvm(path)
    if name == "synthetic":
        return make_classification(num_classes=10, seed=seed)
    if name == "synthetic-binary":
        return make_classification(num_classes=2, seed=seed)
    if name == "synthetic-regression":
        return make_regression(seed=seed)
    if name == "synthetic-lag":
        return make_heterogeneous(workers, seed=seed)
    if name == "synthetic-lag-binary":
        return make_heterogeneous(workers, seed=seed, num_classes=2)
    raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
