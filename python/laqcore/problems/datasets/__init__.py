"""Datasets: the embedded digits data, local MNIST / LIBSVM files, synthetic generators.

Every loader returns a :class:`Dataset`: dense float64 features (one row per sample), integer
class labels (or float targets for regression), and optionally a held-out test set. Features
are scaled to a few units (pixels to [0, 1]) so that the paper's step size alpha = 0.02 is
stable, as in the official LAQ code (``mnist_images / 255``).

Files the user points at are read defensively: a missing, truncated or malformed file raises
``DatasetError`` (a ``ValueError``) that names the file and the format that was expected.

One concern per module: :mod:`~.dataset` (the :class:`Dataset` record and the error type),
the parsers of untrusted files (:mod:`~.idx`, :mod:`~.npz`, :mod:`~.libsvm`, with
:mod:`~.compressed` telling their compression by content), the loaders
(:mod:`~.images`: embedded digits, MNIST), the generators (:mod:`~.synthetic`) and the
names (:mod:`~.registry`).
"""

from __future__ import annotations

from .dataset import Dataset, DatasetError
from .idx import read_idx
from .images import load_digits, load_mnist
from .libsvm import MAX_LIBSVM_BYTES, MAX_LIBSVM_FEATURES, load_libsvm
from .registry import available_datasets, load_dataset, reads_files
from .synthetic import make_classification, make_heterogeneous, make_regression

__all__ = [
    "Dataset",
    "DatasetError",
    "load_dataset",
    "available_datasets",
    "reads_files",
    "load_digits",
    "load_mnist",
    "read_idx",
    "load_libsvm",
    "MAX_LIBSVM_FEATURES",
    "MAX_LIBSVM_BYTES",
    "make_classification",
    "make_regression",
    "make_heterogeneous",
]


def __dir__() -> list[str]:
    return __all__
