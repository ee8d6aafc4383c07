"""Objectives, datasets and partitions for the simulator and the distributed engine.

Examples
--------
>>> from laqcore.problems import make_problem
>>> p = make_problem("digits", model="softmax", workers=10)
>>> p.num_workers, p.dim
(10, 650)
"""

from __future__ import annotations

from .datasets import (
    Dataset,
    DatasetError,
    available_datasets,
    load_dataset,
    load_digits,
    load_libsvm,
    load_mnist,
    make_classification,
    make_heterogeneous,
    make_regression,
)
from .objectives import (
    MODELS,
    LeastSquaresModel,
    LocalObjective,
    LogisticModel,
    MLPModel,
    Model,
    SoftmaxModel,
)
from .optimum import cache_dir, lbfgs
from .partition import PARTITIONS, contiguous, dirichlet, iid, partition, train_test_split
from .problem import Problem, make_problem

__all__ = [
    "MODELS",
    "PARTITIONS",
    "Dataset",
    "DatasetError",
    "LeastSquaresModel",
    "LocalObjective",
    "LogisticModel",
    "MLPModel",
    "Model",
    "Problem",
    "SoftmaxModel",
    "available_datasets",
    "cache_dir",
    "contiguous",
    "dirichlet",
    "iid",
    "lbfgs",
    "load_dataset",
    "load_digits",
    "load_libsvm",
    "load_mnist",
    "make_classification",
    "make_heterogeneous",
    "make_problem",
    "make_regression",
    "partition",
    "train_test_split",
]


def __dir__() -> list[str]:
    return __all__
