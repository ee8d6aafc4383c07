"""A distributed problem: a model, a dataset split over M workers, a test set, and F*.

:func:`make_problem` builds one from names (what the CLI does). The training rows are
re-ordered by worker so each shard is a contiguous slice of one matrix: the global loss is
then one matrix product over all the data with per-sample weights ``1 / (M n_m)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from .._typing import F64
from .._validate import check_positive_int, check_real, check_uint64
from .batched import BatchedOracle, supports_batched
from .datasets import Dataset, load_dataset, reads_files
from .datasets.dataset import are_class_ids
from .datasets.registry import libsvm_path
from .objectives import (
    MODELS,
    LeastSquaresModel,
    LocalObjective,
    LogisticModel,
    MLPModel,
    Model,
    SoftmaxModel,
    add_bias,
)
from .partition import partition, train_test_split

__all__ = [
    "DEFAULT_DIRICHLET_ALPHA",
    "DEFAULT_HIDDEN",
    "DEFAULT_TEST_FRACTION",
    "Problem",
    "check_settings_used",
    "check_test_fraction_used",
    "make_problem",
]


def __dir__() -> list[str]:
    return __all__


def _class_count(model: Model) -> int | None:
    """How many class labels a built-in classification model reads (None: regression
    targets, or a model of the caller's own whose labels are its business)."""
    if isinstance(model, LogisticModel):
        return 2
    if isinstance(model, LeastSquaresModel):
        return None if model.regression else model.num_outputs
    if isinstance(model, (SoftmaxModel, MLPModel)):
        return model.num_outputs
    return None


def _check_part(model: Model, X: Any, y: Any, what: str) -> tuple[F64, npt.NDArray[Any]]:
    """``X`` as a 2-D float64 array of the model's width and ``y`` as labels it can read
    (of the same length), or ValueError/TypeError naming ``what``."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != model.num_features:
        raise ValueError(
            f"{what} features must be a 2-D array with {model.num_features} columns (the "
            f"model's num_features), got shape {X.shape}"
        )
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{what} labels must be a 1-D array of {X.shape[0]} values, got {y.shape}")
    if y.dtype.kind not in "iuf":
        raise TypeError(f"{what} labels must be numbers, got dtype {y.dtype}")
    classes = _class_count(model)
    if classes is not None:
        # -1 indexed the last class and 7 of 3 classes failed mid-run with an IndexError
        if not are_class_ids(y, classes):
            raise ValueError(
                f"{what} labels of the {model.name} model must be integers in "
                f"0..{classes - 1}, got values in [{y.min()}, {y.max()}]"
            )
        # Whole-number float labels pass the check above, but the models index with them
        # (an IndexError in the softmax) and accuracy() took float labels for regression
        # targets (a negative MSE reported as accuracy): class ids are integers from here.
        y = y.astype(np.int64, copy=False)
    elif y.size and not np.isfinite(y).all():
        raise ValueError(f"{what} targets must be finite")
    return X, y


def _check_bounds(bounds: Any, n: int) -> list[tuple[int, int]]:
    """``bounds`` as (start, stop) int pairs that cut ``0..n`` into consecutive non-empty
    ranges, worker by worker. An overlap counted the shared rows in two workers' f_m, a gap
    left rows in no f_m (yet in the training accuracy), both without a word."""
    try:
        pairs = [(start, stop) for start, stop in bounds]
    except (TypeError, ValueError):
        raise TypeError(
            f"bounds must be a list of (start, stop) pairs, got {bounds!r:.60}"
        ) from None
    if not pairs:
        raise ValueError("bounds must give at least one worker's (start, stop)")
    out: list[tuple[int, int]] = []
    for m, (start, stop) in enumerate(pairs):
        a = check_positive_int(start, f"bounds[{m}] start", minimum=0)
        b = check_positive_int(stop, f"bounds[{m}] stop", minimum=0)
        if not a < b <= n:  # a slice past the end was silently shortened
            raise ValueError(
                f"bounds[{m}] = ({a}, {b}) must satisfy start < stop <= {n} (the training rows)"
            )
        expected = out[-1][1] if out else 0
        if a != expected:
            where = f"bounds[{m - 1}] stops" if out else "the training rows start"
            raise ValueError(
                f"bounds[{m}] = ({a}, {b}) must start at {expected}, where {where} (each "
                "worker's rows follow the previous worker's: no overlap, no gap)"
            )
        out.append((a, b))
    if out[-1][1] != n:
        raise ValueError(
            f"bounds stop at row {out[-1][1]}, not at {n}: the training rows from there on "
            "would belong to no worker"
        )
    return out


class Problem:
    """``M`` local objectives over one model, plus held-out data.

    Parameters
    ----------
    model : Model
    X, y : training data (rows already ordered by worker)
    bounds : list of (start, stop)
        Worker m owns rows ``start:stop`` (integers, ``start < stop``): the ranges cut the
        training rows into consecutive pieces, worker 0's starting at 0, each next one at
        the previous one's stop, the last one stopping at ``len(X)`` (what
        :func:`make_problem` builds). Overlapping, gapped or out-of-order ranges are a
        ``ValueError`` naming the first bad pair.
    X_test, y_test : held-out data (may be empty)
        Features of both sets must have the model's ``num_features`` columns; labels of the
        built-in classification models must be integers in ``0..classes-1`` (checked here,
        a ``ValueError`` naming the set).
    l2 : float
        L2 weight: each f_m carries ``(l2/2) ||theta||^2``.
    name : str
        Used in results and cache keys.
    """

    def __init__(
        self,
        model: Model,
        X: F64,
        y: npt.NDArray[Any],
        bounds: list[tuple[int, int]],
        X_test: F64,
        y_test: npt.NDArray[Any],
        *,
        l2: float = 0.01,
        name: str = "",
        seed: int = 0,
    ) -> None:
        # l2=inf made every loss inf, l2=True passed as 1.0
        l2 = check_real(l2, "l2", minimum=0.0)
        self.model = model
        self.l2 = l2
        self.name = name
        self.seed = seed
        #: Feature normalisation of a file-based data set (None: generated or fixed data).
        self.normalize: str | None = None
        X, y = _check_part(model, X, y, "training")
        X_test, y_test = _check_part(model, X_test, y_test, "test")
        bounds = _check_bounds(bounds, X.shape[0])
        self.Xb = add_bias(X)
        self.y = y
        self.bounds = bounds
        self.Xb_test = add_bias(X_test)
        self.y_test = y_test
        self.workers = [LocalObjective(model, self.Xb[a:b], y[a:b], l2=self.l2) for a, b in bounds]
        self._t = model.targets(y)
        self._fstar: float | None = None
        self._oracle: BatchedOracle | None = None

    # -- shape -------------------------------------------------------------------------
    @property
    def num_workers(self) -> int:
        return len(self.workers)

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def convex(self) -> bool:
        return self.model.convex

    def initial_point(self) -> F64:
        return self.model.initial_point(self.seed)

    # -- global objective F = (1/M) sum_m f_m ---------------------------------------------
    # Evaluated shard by shard rather than as one product over all rows: besides matching the
    # definition term by term, small products stay below OpenBLAS's threading threshold, and
    # on a loaded machine a threaded product over all rows was measured 50x slower.
    def loss(self, theta: F64) -> float:
        if self._oracle is not None:
            return self._oracle.mean_loss(theta)
        return float(sum(w.loss(theta) for w in self.workers)) / self.num_workers

    def value_and_grad(self, theta: F64) -> tuple[float, F64]:
        if self._oracle is not None:
            return self._oracle.mean_value_and_grad(theta)
        total, grad = 0.0, np.zeros_like(theta)
        for w in self.workers:
            f, g = w.value_and_grad(theta)
            total += f
            grad += g
        return total / self.num_workers, grad / self.num_workers

    def grad(self, theta: F64) -> F64:
        return self.value_and_grad(theta)[1]

    @property
    def batched_oracle(self) -> BatchedOracle | None:
        """The batched evaluator when :meth:`use_batched` is on, else None."""
        return self._oracle

    def use_batched(self, on: bool = True) -> bool:
        """Evaluate every shard's loss and gradient in one batched product
        (:class:`~laqcore.problems.batched.BatchedOracle`; equal to the per-worker values
        up to rounding). Returns whether batching is on (only softmax problems batch)."""
        self._oracle = BatchedOracle(self) if on and supports_batched(self) else None
        for m, w in enumerate(self.workers):
            w.batched = None if self._oracle is None else (self._oracle, m)
        return self._oracle is not None

    def accuracy(self, theta: F64, *, test: bool = True) -> float:
        """Classification accuracy on the test set (train set with ``test=False``); for
        regression, the negative mean squared error. NaN if the set is empty."""
        Xb, y = (self.Xb_test, self.y_test) if test else (self.Xb, self.y)
        if Xb.shape[0] == 0:
            return float("nan")
        pred = self.model.predict(theta, Xb)
        if getattr(self.model, "regression", False) or self.y.dtype.kind == "f":
            return -float(np.mean((pred - y) ** 2))
        return float(np.mean(pred == y))

    def smoothness(self) -> F64:
        """Per-worker smoothness bounds L_m (ValueError for models without one)."""
        return np.array([w.smoothness() for w in self.workers])

    # -- optimum -----------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hash of everything that defines F: data as held by workers, model, l2."""
        h = hashlib.sha256()
        h.update(
            json.dumps([type(self.model).__name__, self.model.dim, self.l2, self.bounds]).encode()
        )
        for a in (self.Xb, self._t):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:24]

    def optimal_value(self, *, use_cache: bool = True) -> float | None:
        """F* from a high-accuracy L-BFGS solve (:func:`laqcore.problems.optimum.lbfgs`),
        cached on disk under :func:`laqcore.problems.optimum.cache_dir` keyed by
        :meth:`fingerprint` (see :func:`~laqcore.problems.optimum.cached_optimum`). None for
        nonconvex models."""
        if not self.convex:
            return None
        if self._fstar is not None:
            return self._fstar
        from .optimum import cached_optimum

        self._fstar = cached_optimum(self, use_cache=use_cache)
        return self._fstar

    def describe(self) -> dict[str, Any]:
        return {
            "problem": self.name,
            "model": self.model.name,
            "dim": self.dim,
            "workers": self.num_workers,
            "samples_per_worker": [b - a for a, b in self.bounds],
            "test_samples": int(self.Xb_test.shape[0]),
            "l2": self.l2,
            "normalize": self.normalize,
        }


#: make_problem's (and the CLI's) default Dirichlet concentration and MLP width.
DEFAULT_DIRICHLET_ALPHA = 0.5
DEFAULT_HIDDEN = 200
#: make_problem's (and the CLI's) held-out fraction of a data set without a test set.
DEFAULT_TEST_FRACTION = 0.2


def check_test_fraction_used(name: str, has_test_set: bool, test_fraction: float) -> None:
    """A data set with its own test set holds nothing out: another fraction is refused."""
    if has_test_set and test_fraction != DEFAULT_TEST_FRACTION:
        raise ValueError(
            f"--test-fraction {test_fraction}: {name} has its own test set, so no fraction "
            "of the training data is held out"
        )


def check_settings_used(
    dataset: str | None,
    model: str,
    partition_kind: str,
    *,
    dirichlet_alpha: float = DEFAULT_DIRICHLET_ALPHA,
    hidden: int = DEFAULT_HIDDEN,
    data_dir: str | os.PathLike[str] | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
) -> None:
    """Refuse a setting the problem would not read (``ValueError``, in the CLI's flag names):
    a Dirichlet concentration without the Dirichlet partition, an MLP width for another
    model, a data directory for a data set that reads no files, a held-out fraction for a
    data set with its own test set (mnist). Each would otherwise be ignored, and the run
    would silently not be the one asked for. Passing the default value changes nothing
    either way and is accepted. ``dataset`` None: a Dataset object (no files read; its test
    set is checked once it is known, :func:`check_test_fraction_used`)."""
    if dataset == "mnist":
        check_test_fraction_used("mnist", True, test_fraction)
    if partition_kind != "dirichlet" and dirichlet_alpha != DEFAULT_DIRICHLET_ALPHA:
        raise ValueError(
            f"--dirichlet-alpha {dirichlet_alpha} applies to --partition dirichlet only, "
            f"not {partition_kind!r}"
        )
    if model != "mlp" and hidden != DEFAULT_HIDDEN:
        raise ValueError(f"--hidden {hidden} applies to --model mlp only, not {model!r}")
    if data_dir is not None and (dataset is None or not reads_files(dataset)):
        what = "a Dataset object" if dataset is None else f"dataset {dataset!r}"
        raise ValueError(f"--data-dir is read by mnist and libsvm:PATH only; {what} reads no files")
    if (
        data_dir is not None
        and dataset is not None
        and dataset.startswith("libsvm:")
        and os.path.isabs(libsvm_path(dataset))
    ):
        raise ValueError(
            f"--data-dir is read for a relative libsvm:PATH only; {dataset!r} names its file "
            "in full"
        )


def make_problem(
    dataset: str | Dataset = "digits",
    *,
    model: str = "softmax",
    workers: int = 10,
    partition_kind: str = "contiguous",
    dirichlet_alpha: float = DEFAULT_DIRICHLET_ALPHA,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    l2: float = 0.01,
    hidden: int = DEFAULT_HIDDEN,
    seed: int = 0,
    data_dir: str | None = None,
    max_samples: int | None = None,
    normalize: str | None = None,
) -> Problem:
    """Build a problem from names.

    Parameters
    ----------
    dataset : str or Dataset
        See :func:`laqcore.problems.available_datasets`.
    model : {"softmax", "logistic", "least-squares", "mlp"}
    workers : int
        Number of workers M.
    partition_kind : {"contiguous", "iid", "dirichlet"}
    test_fraction : float
        Held-out fraction when the dataset has no official test set.
    seed : int
        Seeds the split, the random partitions and the MLP's initial weights.
    max_samples : int, optional
        Keep only the first ``max_samples`` training rows (quick experiments); of a data set
        with designated workers (``Dataset.groups``), the first ``max_samples // groups``
        rows of every worker's block.
    normalize : {"maxabs", "standard", "none"}, optional
        Feature normalisation of mnist / libsvm:PATH (default maxabs); recorded in
        :meth:`Problem.describe`.

    Examples
    --------
    >>> p = make_problem("digits", workers=10)
    >>> p.dim, p.num_workers
    (650, 10)
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    check_settings_used(
        dataset if isinstance(dataset, str) else None,
        model,
        partition_kind,
        dirichlet_alpha=dirichlet_alpha,
        hidden=hidden,
        data_dir=data_dir,
        test_fraction=test_fraction,
    )
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    check_uint64(seed, "seed")  # numpy's own message names no parameter
    if max_samples is not None:
        check_positive_int(max_samples, "max_samples")
    if model == "mlp":  # before the data set is loaded
        check_positive_int(hidden, "hidden")
    ds = (
        dataset
        if isinstance(dataset, Dataset)
        else load_dataset(
            dataset, data_dir=data_dir, workers=workers, seed=seed, normalize=normalize
        )
    )
    X, y = ds.X, ds.y
    check_test_fraction_used(ds.name, ds.X_test is not None, test_fraction)
    if ds.X_test is not None and ds.y_test is not None:
        X_test, y_test = ds.X_test, ds.y_test
    elif ds.groups is not None:
        # Designed per-worker blocks: hold out the same fraction inside every block so
        # the blocks (and their smoothness constants) survive the split.
        n_blk = X.shape[0] // ds.groups
        tr, te = train_test_split(n_blk, test_fraction, seed=seed)
        offs = np.arange(ds.groups)[:, None] * n_blk
        tr_all, te_all = (tr[None, :] + offs).ravel(), (te[None, :] + offs).ravel()
        X, y, X_test, y_test = X[tr_all], y[tr_all], X[te_all], y[te_all]
    else:
        tr, te = train_test_split(X.shape[0], test_fraction, seed=seed)
        X, y, X_test, y_test = X[tr], y[tr], X[te], y[te]
    if max_samples is not None and ds.groups is not None:
        # The first rows would be the first workers' blocks only, losing the design (the
        # per-worker L_m): keep the first max_samples // groups rows of every block.
        per, n_blk = max_samples // ds.groups, X.shape[0] // ds.groups
        if per < 1:
            raise ValueError(
                f"max_samples={max_samples} leaves no sample for some of the {ds.groups} "
                f"designated workers of {ds.name} (it keeps max_samples // {ds.groups} each)"
            )
        keep = (np.arange(ds.groups)[:, None] * n_blk + np.arange(min(per, n_blk))).ravel()
        X, y = X[keep], y[keep]
    elif max_samples is not None:
        X, y = X[:max_samples], y[:max_samples]
    if ds.groups is not None and (partition_kind != "contiguous" or workers != ds.groups):
        raise ValueError(
            f"dataset {ds.name} assigns samples to {ds.groups} designated workers; use "
            f"--partition contiguous with {ds.groups} workers"
        )
    if model == "logistic" and ds.num_classes != 2:
        raise ValueError(
            f"the logistic model needs 2 classes, dataset {ds.name} has {ds.num_classes}"
        )
    if model in ("softmax", "mlp") and ds.num_classes < 2:
        what = "is a regression set" if ds.num_classes == 0 else "has 1 class (one label value)"
        raise ValueError(f"the {model} model needs class labels; {ds.name} {what}")
    parts = partition(
        partition_kind,
        X.shape[0],
        workers,
        labels=y if ds.num_classes else None,
        alpha=dirichlet_alpha,
        seed=seed,
    )
    order = np.concatenate(parts)
    bounds, start = [], 0
    for p in parts:
        bounds.append((start, start + len(p)))
        start += len(p)
    d, k = ds.num_features, ds.num_classes
    mdl: Model
    if model == "mlp":
        mdl = MODELS["mlp"](d, k, hidden=hidden)  # type: ignore[call-arg]
    else:
        mdl = MODELS[model](d, k)
    name = f"{ds.name}/{model}/M{workers}/{partition_kind}"
    prob = Problem(mdl, X[order], y[order], bounds, X_test, y_test, l2=l2, name=name, seed=seed)
    if isinstance(dataset, str) and reads_files(dataset):
        prob.normalize = "maxabs" if normalize is None else normalize
    return prob
