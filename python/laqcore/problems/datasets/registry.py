"""Data sets by name: the names the CLI's ``--dataset`` accepts and the loader of each."""

from __future__ import annotations

import os

from .dataset import Dataset
from .images import load_digits, load_mnist
from .libsvm import load_libsvm
from .normalize import check_normalize
from .synthetic import make_classification, make_heterogeneous, make_regression

__all__ = ["available_datasets", "libsvm_path", "load_dataset", "reads_files"]


def __dir__() -> list[str]:
    return __all__


def reads_files(name: str) -> bool:
    """Whether data set ``name`` is read from files (mnist, libsvm:PATH): the ones that
    ``data_dir`` and ``normalize`` apply to; the others are embedded or generated."""
    return name == "mnist" or name.startswith("libsvm:")


def libsvm_path(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """The file of data set ``libsvm:PATH``: ``~`` expanded (a shell leaves it in
    ``libsvm:~/a.svm``), a relative PATH taken under ``data_dir`` when one is given."""
    path = os.path.expanduser(name[len("libsvm:") :])
    if data_dir is not None and path and not os.path.isabs(path):
        path = os.path.join(os.fspath(data_dir), path)
    return path


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
    normalize: str | None = None,
) -> Dataset:
    """Load a dataset by name (see :func:`available_datasets`).

    ``normalize`` (``none``, ``maxabs``, ``standard``; default ``maxabs``) applies to the
    file-based sets (mnist, libsvm:PATH), see :mod:`.normalize`.

    Examples
    --------
    >>> load_dataset("digits").num_features
    64
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    if normalize is not None:
        check_normalize(normalize)
        if not reads_files(name):
            raise ValueError(
                f"--normalize applies to the mnist and libsvm:PATH data sets, not {name!r} "
                "(whose features are generated or fixed)"
            )
    how = "maxabs" if normalize is None else normalize
    if name == "digits":
        return load_digits()
    if name == "mnist":
        if data_dir is None:
            raise ValueError(
                "--dataset mnist needs --data-dir DIR (holding mnist.npz or IDX files)"
            )
        return load_mnist(data_dir, normalize=how)
    if name.startswith("libsvm:"):
        return load_libsvm(libsvm_path(name, data_dir), normalize=how)
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
