from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from laqcore.problems import (
    DatasetError,
    LeastSquaresModel,
    LocalObjective,
    LogisticModel,
    MLPModel,
    Problem,
    SoftmaxModel,
    contiguous,
    dirichlet,
    iid,
    lbfgs,
    load_dataset,
    load_digits,
    load_libsvm,
    load_mnist,
    make_heterogeneous,
    make_problem,
    partition,
    train_test_split,
)
from laqcore.problems.datasets import Dataset
from laqcore.problems.objectives import add_bias


def _objective(kind: str, rng: np.random.Generator, l2: float = 0.01) -> LocalObjective:
    n, d, k = 13, 4, 3
    X = add_bias(rng.normal(size=(n, d)))
    if kind == "softmax":
        return LocalObjective(SoftmaxModel(d, k), X, rng.integers(0, k, n), l2)
    if kind == "logistic":
        return LocalObjective(LogisticModel(d), X, rng.integers(0, 2, n), l2)
    if kind == "ls-class":
        return LocalObjective(LeastSquaresModel(d, k), X, rng.integers(0, k, n), l2)
    if kind == "ls-reg":
        return LocalObjective(LeastSquaresModel(d, 0), X, rng.normal(size=n), l2)
    return LocalObjective(MLPModel(d, k, hidden=5), X, rng.integers(0, k, n), l2)


KINDS = ["softmax", "logistic", "ls-class", "ls-reg", "mlp"]


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_matches_finite_differences(kind, rng):
    f = _objective(kind, rng)
    theta = f.model.initial_point(1) + 0.3 * rng.normal(size=f.dim)
    g = f.grad(theta)
    h = 1e-6
    fd = np.array(
        [(f.loss(theta + h * e) - f.loss(theta - h * e)) / (2 * h) for e in np.eye(f.dim)]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


def test_softmax_formula_by_hand():
    # One sample x = (1, 2), label 0, two classes, theta = 0: p = (1/2, 1/2),
    # loss = log 2, grad wrt W[:, c] = (p_c - [c == 0]) * x_b with x_b = (1, 2, 1).
    f = LocalObjective(SoftmaxModel(2, 2), add_bias(np.array([[1.0, 2.0]])), np.array([0]), 0.0)
    loss, g = f.value_and_grad(np.zeros(6))
    assert loss == pytest.approx(np.log(2))
    np.testing.assert_allclose(g, [-0.5, 0.5, -1.0, 1.0, -0.5, 0.5])


def test_l2_regularises_every_coordinate_including_bias(rng):
    # The official code adds 0.01 * tf.nn.l2_loss(v) for every trainable variable v
    # (kernel and bias): the l2 part of the gradient is l2 * theta on all coordinates.
    f0, f1 = _objective("softmax", rng, l2=0.0), None
    f1 = LocalObjective(f0.model, f0.Xb, f0.y, l2=0.5)
    theta = rng.normal(size=f0.dim)
    np.testing.assert_allclose(f1.grad(theta) - f0.grad(theta), 0.5 * theta, atol=1e-12)
    assert f1.loss(theta) - f0.loss(theta) == pytest.approx(0.25 * theta @ theta)


@pytest.mark.parametrize("kind", KINDS)
def test_full_minibatch_equals_full_gradient(kind, rng):
    f = _objective(kind, rng)
    theta = rng.normal(size=f.dim)
    np.testing.assert_allclose(f.minibatch_grad(theta, np.arange(f.n)), f.grad(theta))
    idx = f.sample(np.random.default_rng(0), 5)
    assert len(np.unique(idx)) == 5
    assert idx.max() < f.n


@pytest.mark.parametrize("kind", ["softmax", "logistic", "ls-class"])
def test_smoothness_bounds_the_gradient_lipschitz_constant(kind, rng):
    f = _objective(kind, rng)
    L = f.smoothness()
    for _ in range(20):
        a, b = rng.normal(size=f.dim), rng.normal(size=f.dim)
        assert np.linalg.norm(f.grad(a) - f.grad(b)) <= L * np.linalg.norm(a - b) * (1 + 1e-9)


def test_mlp_has_no_smoothness_bound(rng):
    with pytest.raises(ValueError, match="no global smoothness"):
        _objective("mlp", rng).smoothness()


def test_empty_shard_rejected():
    with pytest.raises(ValueError, match="at least one sample"):
        LocalObjective(SoftmaxModel(2, 2), np.zeros((0, 3)), np.zeros(0, dtype=np.int64))


# -- Problem --------------------------------------------------------------------------------


def test_digits_problem_shapes_and_global_objective():
    p = make_problem("digits", workers=10)
    assert p.dim == 65 * 10
    assert p.num_workers == 10
    sizes = [b - a for a, b in p.bounds]
    assert sum(sizes) + p.Xb_test.shape[0] == 1797
    assert max(sizes) - min(sizes) <= 1
    theta = np.random.default_rng(0).normal(size=p.dim) * 0.1
    # F is the mean of the local objectives (the official code records loss / M).
    assert p.loss(theta) == pytest.approx(np.mean([w.loss(theta) for w in p.workers]))
    np.testing.assert_allclose(
        p.grad(theta), np.mean([w.grad(theta) for w in p.workers], axis=0), atol=1e-12
    )
    assert p.loss(np.zeros(p.dim)) == pytest.approx(np.log(10))
    assert 0.0 <= p.accuracy(theta) <= 1.0


def test_problem_optimum_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path))
    p = make_problem("synthetic-binary", model="logistic", workers=3)
    fstar = p.optimal_value()
    files = list((tmp_path / "optima").glob("*.json"))
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    assert rec["f_star"] == fstar
    assert rec["grad_norm"] <= 1e-6
    # Every point is worse than F*, and the cache is what a fresh problem reads back.
    rng = np.random.default_rng(1)
    for _ in range(5):
        assert p.loss(rng.normal(size=p.dim) * 0.1) >= fstar
    rec["f_star"] = -123.0
    files[0].write_text(json.dumps(rec))
    assert make_problem("synthetic-binary", model="logistic", workers=3).optimal_value() == -123.0


def test_nonconvex_problem_has_no_optimum():
    p = make_problem("digits", model="mlp", workers=2, hidden=8, max_samples=100)
    assert p.optimal_value() is None
    assert not p.convex
    assert p.dim == 65 * 8 + 9 * 10


def test_lbfgs_on_quadratic():
    A = np.diag(np.linspace(0.1, 10, 30))
    b = np.ones(30)
    x, _f, g, _ = lbfgs(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b), np.zeros(30))
    np.testing.assert_allclose(x, b / np.diag(A), rtol=1e-6)
    assert g <= 1e-6


def test_heterogeneous_workers_smoothness_grows():
    p = make_problem("synthetic-lag", model="least-squares", workers=6)
    L = p.smoothness()
    assert np.all(np.diff(L) > 0)
    assert L[-1] / L[0] > 2
    with pytest.raises(ValueError, match="designated workers"):
        make_problem("synthetic-lag", model="least-squares", workers=6, partition_kind="iid")
    assert make_heterogeneous(3, num_classes=2).y.dtype.kind == "i"


def test_make_problem_bad_arguments():
    with pytest.raises(ValueError, match="unknown model"):
        make_problem("digits", model="svm")
    with pytest.raises(ValueError, match="2 classes"):
        make_problem("digits", model="logistic")
    with pytest.raises(ValueError, match="workers"):
        make_problem("digits", workers=0)
    with pytest.raises(ValueError, match=r"seed must be in \[0, "):  # was numpy's, unnamed
        make_problem("digits", seed=-1)
    with pytest.raises(ValueError, match="max_samples must be >= 1"):
        make_problem("digits", max_samples=0)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(TypeError, match="dataset name"):
        load_dataset(3)
    with pytest.raises(ValueError, match="--data-dir"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="regression"):
        make_problem("synthetic-regression", model="softmax")


@pytest.mark.parametrize(
    ("hidden", "error"), [(0, ValueError), (-1, ValueError), (2.7, TypeError), ("5", TypeError)]
)
def test_mlp_hidden_width_is_checked(hidden, error):
    """hidden=-1 built a problem of dimension -65, hidden=0 a model of output biases only,
    2.7 and "5" were read by int() as 2 and 5."""
    with pytest.raises(error, match="hidden"):
        make_problem("digits", model="mlp", hidden=hidden)
    with pytest.raises(error, match="hidden"):
        MLPModel(64, 10, hidden=hidden)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # l2=inf made every loss inf; l2=True was read as 1.0
        ({"l2": float("inf")}, ValueError, "l2 must be finite"),
        ({"l2": True}, TypeError, "l2 must be a real number"),
        ({"l2": "0.1"}, TypeError, "l2 must be a real number"),
        # inf drew NaN Dirichlet shares: a RuntimeWarning, one sample on all workers but one
        (
            {"partition_kind": "dirichlet", "dirichlet_alpha": float("inf")},
            ValueError,
            "dirichlet alpha must be finite",
        ),
        (
            {"partition_kind": "dirichlet", "dirichlet_alpha": "1"},
            TypeError,
            "dirichlet alpha must be a real number",
        ),
        ({"test_fraction": "0.1"}, TypeError, "test_fraction must be a real number"),
    ],
)
def test_real_settings_of_make_problem_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_problem("digits", **kwargs)


def _hand_built_problem(rng, **changes):
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    args = {"model": SoftmaxModel(5, 3), "X": X, "y": y, "bounds": [(0, 20), (20, 40)]}
    args.update(X_test=X[:5], y_test=y[:5])
    args.update(changes)
    return Problem(**args)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        # each was accepted: the slice past the end was shortened silently, a label of -1
        # trained on the last class, the others failed mid-run (IndexError, numpy's matmul
        # message, ZeroDivisionError)
        ({"bounds": [(0, 20), (20, 50)]}, r"bounds\[1\] = \(20, 50\) must satisfy"),
        ({"bounds": []}, "at least one worker"),
        ({"bounds": [(0, 20), (20, 40.0)]}, r"bounds\[1\] stop must be an integer"),
        # accepted: an overlap counted rows 10..19 in both f_m, a gap (or bounds stopping
        # short) left rows in no f_m but in the training accuracy
        ({"bounds": [(0, 20), (10, 40)]}, r"bounds\[1\] = \(10, 40\) must start at 20, where b"),
        ({"bounds": [(0, 10), (20, 40)]}, r"bounds\[1\] = \(20, 40\) must start at 10"),
        ({"bounds": [(20, 40), (0, 20)]}, r"bounds\[0\] = \(20, 40\) must start at 0, where the"),
        ({"bounds": [(5, 20), (20, 40)]}, r"bounds\[0\] = \(5, 20\) must start at 0"),
        ({"bounds": [(0, 20), (20, 30)]}, "bounds stop at row 30, not at 40: the training rows"),
        ({"y": np.r_[np.zeros(39, np.int64), -1]}, "labels of the softmax model must be"),
        ({"y": np.r_[np.zeros(39, np.int64), 7]}, "labels of the softmax model must be"),
        ({"y": np.full(40, 0.5)}, "labels of the softmax model must be"),
        ({"y": np.zeros(30, np.int64)}, "training labels must be a 1-D array of 40"),
        ({"X": np.zeros((40, 4))}, "training features must be a 2-D array with 5 columns"),
        ({"X_test": np.zeros((5, 3))}, "test features must be a 2-D array with 5 columns"),
        ({"y_test": np.array([0, 1, 2, 3, 0])}, "test labels of the softmax model"),
    ],
)
def test_hand_built_problem_is_checked(rng, changes, match):
    with pytest.raises((TypeError, ValueError), match=match):
        _hand_built_problem(rng, **changes)


def test_hand_built_problem_that_fits_is_accepted(rng):
    p = _hand_built_problem(rng, y=np.zeros(40), X_test=np.zeros((0, 5)), y_test=np.zeros(0))
    assert p.num_workers == 2 and p.dim == 18
    reg = Problem(
        LeastSquaresModel(5, 0),
        np.ones((4, 5)),
        np.array([0.5, -2.0, 1, 3]),
        [(0, 4)],
        np.zeros((0, 5)),
        np.zeros(0),
    )
    assert reg.num_workers == 1


def test_settings_the_problem_would_not_read_are_refused(tmp_path):
    """A Dirichlet concentration without the Dirichlet partition, an MLP width for another
    model, a data directory for embedded data: each used to be ignored silently."""
    with pytest.raises(ValueError, match="--dirichlet-alpha 0.1 applies to --partition dirichlet"):
        make_problem("digits", partition_kind="iid", dirichlet_alpha=0.1)
    with pytest.raises(ValueError, match="--hidden 64 applies to --model mlp only, not 'softmax'"):
        make_problem("digits", hidden=64)
    with pytest.raises(ValueError, match="--data-dir is read by mnist and libsvm:PATH only"):
        make_problem("digits", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="a Dataset object reads no files"):
        make_problem(load_digits(), data_dir=str(tmp_path))
    # where they are read, and the defaults anywhere, are fine
    assert (
        make_problem("digits", model="mlp", hidden=8, max_samples=50).dim
        == 64 * 8 + 8 + 8 * 10 + 10
    )
    assert make_problem("digits", partition_kind="dirichlet", dirichlet_alpha=0.1).num_workers == 10
    make_problem("digits", partition_kind="iid", dirichlet_alpha=0.5, hidden=200)


def test_cli_defaults_are_make_problems():
    import argparse

    from laqcore.experiments.options import add_problem_options
    from laqcore.problems.problem import DEFAULT_DIRICHLET_ALPHA, DEFAULT_HIDDEN

    p = argparse.ArgumentParser()
    add_problem_options(p)
    args = p.parse_args([])
    assert (args.dirichlet_alpha, args.hidden) == (DEFAULT_DIRICHLET_ALPHA, DEFAULT_HIDDEN)


# -- datasets -------------------------------------------------------------------------------


def test_embedded_digits():
    ds = load_digits()
    assert ds.X.shape == (1797, 64)
    assert ds.y.shape == (1797,)
    assert ds.X.min() == 0.0
    assert ds.X.max() == 1.0
    assert np.array_equal(np.unique(ds.y), np.arange(10))


def _write_idx(path, arr, compress=False):
    arr = np.asarray(arr, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(raw)
    return raw


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_loader(tmp_path, rng, compress):
    imgs = rng.integers(0, 256, size=(6, 28, 28))
    labels = np.array([0, 1, 2, 3, 4, 9])
    sfx = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", imgs, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", labels, compress)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", imgs[:2], compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", labels[:2], compress)
    ds = load_mnist(tmp_path)
    assert ds.X.shape == (6, 784)
    assert ds.X_test.shape == (2, 784)
    np.testing.assert_allclose(ds.X[3], imgs[3].ravel() / 255.0)
    assert ds.y.tolist() == labels.tolist()
    # With an official test set, make_problem keeps it (no random split).
    p = make_problem("mnist", data_dir=str(tmp_path), workers=2)
    assert p.Xb_test.shape[0] == 2
    assert sum(b - a for a, b in p.bounds) == 6


def test_mnist_npz_loader(tmp_path, rng):
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        y_train=np.arange(4),
        x_test=np.zeros((1, 28, 28), np.uint8),
        y_test=[7],
    )
    ds = load_mnist(tmp_path)
    assert ds.X.shape == (4, 784)
    assert ds.y_test.tolist() == [7]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("x_test", np.zeros((1, 10, 10), np.uint8), r"\(28, 28\) and test images of shape \(10"),
        ("x_test", np.zeros((1, 100), np.uint8), "different pixel counts"),
        ("x_train", np.zeros((0, 28, 28), np.uint8), r"training images .* empty \(shape \(0,"),
        ("x_test", np.zeros((0, 28, 28), np.uint8), r"test images .* empty"),
        ("x_train", np.zeros((4, 0), np.uint8), r"training images .* empty \(shape \(4, 0\)"),
    ],
)
def test_mnist_npz_shapes_that_do_not_fit(tmp_path, rng, key, value, match):
    """Test images with another pixel count loaded fine and failed after the F* solve
    ("matmul: Input operand 1 has a mismatch in its core dimension 0"); an empty set failed
    with "cannot reshape array of size 0 into shape (0,newaxis)". Both name the file now."""
    arrays = {
        "x_train": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "y_train": np.arange(4),
        "x_test": np.zeros((1, 28, 28), np.uint8),
        "y_test": np.array([7]),
    }
    arrays[key] = value
    arrays["y" + key[1:]] = np.zeros(value.shape[0], np.uint8)
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DatasetError, match=match):
        load_mnist(tmp_path)


def test_mnist_missing_and_corrupt_files(tmp_path, rng):
    with pytest.raises(DatasetError, match="does not exist"):
        load_mnist(tmp_path / "nope")
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    raw = _write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw[:-10])  # truncated
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        _write_idx(tmp_path / name, [1, 2, 3])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28)))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.*truncated"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"GIF89a" + raw[6:])
    with pytest.raises(DatasetError, match="bad magic"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="t10k-labels"):
        load_mnist(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mnist.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"mnist\.npz"):
        load_mnist(bad)
    np.savez(bad / "mnist.npz", x_train=np.zeros((1, 2, 2)))
    with pytest.raises(DatasetError, match="lacks"):
        load_mnist(bad)


def test_libsvm_loader(tmp_path):
    path = tmp_path / "tiny.libsvm"
    path.write_text("+1 1:0.5 3:2\n-1 2:-1.0  # comment\n\n+1 3:1\n")
    ds = load_libsvm(path)
    assert ds.num_classes == 2
    assert ds.y.tolist() == [1, 0, 1]
    # Columns scaled by their max |value|.
    np.testing.assert_allclose(ds.X, [[1.0, 0.0, 1.0], [0.0, -1.0, 0.0], [0.0, 0.0, 0.5]])
    assert load_dataset(f"libsvm:{path}").X.shape == (3, 3)
    assert load_dataset("libsvm:tiny.libsvm", data_dir=str(tmp_path)).X.shape == (3, 3)
    reg = tmp_path / "reg.libsvm"
    reg.write_text("".join(f"{0.1 * i + 0.05} 1:{i}\n" for i in range(30)))
    assert load_libsvm(reg).num_classes == 0


def test_libsvm_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_libsvm(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1:0.5\n1 2-0.5\n")
    with pytest.raises(DatasetError, match=r"line 2.*LIBSVM format"):
        load_libsvm(bad)
    bad.write_text("1 0:0.5\n")
    with pytest.raises(DatasetError, match="index 0: .*0-based .*zero_based=False"):
        load_libsvm(bad)
    bad.write_text("\n\n")
    with pytest.raises(DatasetError, match="no samples"):
        load_libsvm(bad)
    bad.write_text("1 1:nan\n")
    with pytest.raises(DatasetError, match="line 1: feature value 'nan' is not a finite"):
        load_libsvm(bad)
    bad.write_bytes(b"1 1:\xff\xfe\n")
    with pytest.raises(DatasetError, match="cannot read"):
        load_libsvm(bad)


def test_fuzz_finding_libsvm_huge_feature_index(tmp_path):
    """Regression (fuzz/README.md, fixed finding 3): this 14-byte file made load_libsvm
    allocate a dense 1 x 200000000 matrix (1.6 GB; 4.7 GB peak). The index is now checked
    against max_features (or num_features) while parsing, naming the file and line."""
    path = tmp_path / "huge.libsvm"
    path.write_bytes(b"1 200000000:1\n")
    assert path.stat().st_size == 14
    with pytest.raises(
        DatasetError, match=r"huge\.libsvm.*line 1.*200000000.*max_features=16777216"
    ):
        load_libsvm(path)
    with pytest.raises(DatasetError, match=r"line 1.*200000000.*num_features=64"):
        load_libsvm(path, num_features=64)
    # An explicit num_features lifts max_features; the dense size bound still applies.
    with pytest.raises(DatasetError, match=r"1 x 600000000.*max_bytes=4294967296"):
        load_libsvm(path, num_features=600_000_000)


def test_libsvm_limits(tmp_path):
    path = tmp_path / "small.libsvm"
    path.write_text("1 1:2\n-1 3:4\n1 2:1\n")
    assert load_libsvm(path, max_features=3).X.shape == (3, 3)
    with pytest.raises(DatasetError, match=r"line 2.*index 3 exceeds max_features=2"):
        load_libsvm(path, max_features=2)
    with pytest.raises(DatasetError, match=r"line 2.*index 3 exceeds num_features=2"):
        load_libsvm(path, num_features=2)
    assert load_libsvm(path, num_features=5).X.shape == (3, 5)
    # 3 rows x 3 features x 8 bytes = 72 bytes
    assert load_libsvm(path, max_bytes=72).X.nbytes == 72
    with pytest.raises(DatasetError, match=r"3 x 3 .*72 bytes, above max_bytes=71"):
        load_libsvm(path, max_bytes=71)
    # Many short lines naming a large (allowed) index: bounded by max_bytes, not by the file.
    path.write_text("1 16777216:1\n" * 40)
    with pytest.raises(DatasetError, match=r"line 33: a dense 33 x 16777216"):  # while reading
        load_libsvm(path)
    for kwargs, exc in (
        ({"max_features": 0}, ValueError),
        ({"num_features": 0}, ValueError),
        ({"max_bytes": 1.5}, TypeError),
        ({"num_features": "3"}, TypeError),
    ):
        with pytest.raises(exc, match=next(iter(kwargs))):
            load_libsvm(path, **kwargs)


def _mnist_npz_bytes(tmp_path, **arrays) -> bytes:
    path = tmp_path / "src.npz"
    np.savez(path, **arrays)
    return path.read_bytes()


def _good_mnist(rng) -> dict:
    return {
        "x_train": rng.integers(0, 256, (3, 4, 4), dtype=np.uint8),
        "y_train": np.array([1, 7, 3], np.uint8),
        "x_test": np.zeros((2, 4, 4), np.uint8),
        "y_test": np.array([0, 9], np.uint8),
    }


def test_fuzz_finding_mnist_npz_zipfile_errors(tmp_path, rng):
    """Regression (fuzz/README.md, fixed finding 2): a corrupt mnist.npz made load_mnist raise
    zipfile.BadZipFile, or NotImplementedError ("That compression method is not supported"),
    instead of DatasetError. The fuzzer's artifacts were not kept; these are the two defects
    it reported: an unknown compression method, and a member whose data is corrupt."""
    raw = _mnist_npz_bytes(tmp_path, **_good_mnist(rng))
    d = tmp_path / "mnist"
    d.mkdir()
    # Compression method 99 in every local and central directory header.
    bad = bytearray(raw)
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        pos = bad.find(sig)
        while pos >= 0:
            bad[pos + off : pos + off + 2] = (99).to_bytes(2, "little")
            pos = bad.find(sig, pos + 4)
    (d / "mnist.npz").write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match=r"mnist\.npz.*NotImplementedError.*x_train"):
        load_mnist(d)
    # A flipped byte inside the first member's data: the CRC check raises BadZipFile.
    bad = bytearray(raw)
    bad[100] ^= 0xFF
    (d / "mnist.npz").write_bytes(bytes(bad))
    with pytest.raises(DatasetError, match=r"mnist\.npz.*BadZipFile"):
        load_mnist(d)


def test_mnist_npz_header_shape_is_checked_before_allocating(tmp_path, rng):
    """A .npy member whose header declares a 1 TiB shape made numpy raise MemoryError
    (found while fixing finding 2); the shape is now compared with the member's size first."""
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "|u1", "fortran_order": False, "shape": (2**40,)}
    )
    d = tmp_path / "mnist"
    d.mkdir()
    with zipfile.ZipFile(d / "mnist.npz", "w") as zf:
        for key in ("x_train", "y_train", "x_test", "y_test"):
            zf.writestr(key + ".npy", head.getvalue() + bytes(10))
    with pytest.raises(DatasetError, match=r"x_train\.npy.*1099511627776 bytes.*10 data bytes"):
        load_mnist(d)


def test_mnist_rejects_non_finite_and_non_integer_data(tmp_path, rng):
    d = tmp_path / "mnist"
    d.mkdir()
    good = _good_mnist(rng)
    np.savez(d / "mnist.npz", **good)
    assert load_mnist(d).X.shape == (3, 16)
    cases = [
        ({"x_train": np.full((3, 4, 4), np.nan)}, "NaN or Inf"),
        ({"y_train": np.array([1.0, 2.5, 3.0])}, "not integers in 0..9"),
        ({"y_test": np.array([0, 10])}, "not integers in 0..9"),
        ({"x_test": np.array([["a"] * 16] * 2).reshape(2, 4, 4)}, "dtypes"),
    ]
    for change, match in cases:
        np.savez(d / "mnist.npz", **{**good, **change})
        with pytest.raises(DatasetError, match=match):
            load_mnist(d)


@pytest.mark.skipif(
    np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="longdouble is float64"
)
@pytest.mark.parametrize("normalize", ["maxabs", "none"])
def test_mnist_rejects_longdouble_pixels_beyond_float64(tmp_path, rng, normalize):
    """Finite longdouble pixels of 1e400 became Inf in the float64 features: load_mnist
    raised Dataset's "X contains NaN or Inf" (a file of finite values, not named); now a
    DatasetError naming the directory and the overflow."""
    d = tmp_path / "mnist"
    d.mkdir()
    good = _good_mnist(rng)
    np.savez(d / "mnist.npz", **{**good, "x_train": np.full((3, 4, 4), np.longdouble("1e400"))})
    with pytest.raises(DatasetError, match="mnist.*beyond the float64 range"):
        load_mnist(d, normalize=normalize)
    np.savez(d / "mnist.npz", **{**good, "x_train": np.full((3, 4, 4), np.longdouble(200))})
    assert load_mnist(d, normalize=normalize).X.max() > 0


# -- partitions -----------------------------------------------------------------------------


def _is_partition(parts, n):
    allidx = np.concatenate(parts)
    return len(allidx) == n and np.array_equal(np.sort(allidx), np.arange(n))


def test_partitions_cover_every_sample_once(rng):
    labels = rng.integers(0, 5, 200)
    for parts in (contiguous(200, 7), iid(200, 7, seed=3), dirichlet(labels, 7, seed=3)):
        assert len(parts) == 7
        assert _is_partition(parts, 200)
        assert all(len(p) > 0 for p in parts)
    assert [p.tolist() for p in contiguous(5, 2)] == [[0, 1, 2], [3, 4]]
    # Seeded: the same seed gives the same split, another seed another one.
    assert all(np.array_equal(a, b) for a, b in zip(iid(50, 3, seed=1), iid(50, 3, seed=1)))
    assert not all(np.array_equal(a, b) for a, b in zip(iid(50, 3, seed=1), iid(50, 3, seed=2)))


def test_dirichlet_is_label_skewed(rng):
    labels = np.repeat(np.arange(10), 100)
    skewed = dirichlet(labels, 10, alpha=0.05, seed=0)
    flat = dirichlet(labels, 10, alpha=1000.0, seed=0)

    def mean_classes(parts):
        return np.mean([len(np.unique(labels[p])) for p in parts])

    assert mean_classes(skewed) < 5 < mean_classes(flat)


def test_partition_errors(rng):
    with pytest.raises(ValueError, match="cannot split"):
        contiguous(3, 5)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet(np.zeros(10, dtype=np.int64), 2, alpha=0.0)
    with pytest.raises(ValueError, match="unknown partition"):
        partition("random", 10, 2)
    with pytest.raises(ValueError, match="labels"):
        partition("dirichlet", 10, 2)
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_split(10, 1.0)
    tr, te = train_test_split(100, 0.2, seed=0)
    assert len(te) == 20
    assert _is_partition([tr, te], 100)


def test_dirichlet_problem_reorders_rows_by_worker():
    p = make_problem("digits", workers=4, partition_kind="dirichlet", dirichlet_alpha=0.1)
    assert p.bounds[0][0] == 0
    assert p.bounds[-1][1] == p.Xb.shape[0]
    counts = [np.bincount(p.y[a:b], minlength=10) for a, b in p.bounds]
    # With alpha = 0.1 each worker is dominated by a few classes.
    assert np.mean([c.max() / c.sum() for c in counts]) > 0.3


def test_mnist_npz_member_size_is_bounded(tmp_path, monkeypatch, rng):
    """A member is read only up to a bound (a small compressed member can expand to GBs);
    zipfile never yields more than the declared size, which is what is checked."""
    from laqcore import _npy

    d = tmp_path / "mnist"
    d.mkdir()
    np.savez(d / "mnist.npz", **_good_mnist(rng))
    monkeypatch.setattr(_npy, "MAX_NPZ_MEMBER_BYTES", 100)
    with pytest.raises(DatasetError, match=r"x_train\.npy.*declares 176 bytes, above the 100"):
        load_mnist(d)


def test_libsvm_normalize_option(tmp_path):
    from laqcore.problems import make_problem
    from laqcore.problems.datasets import load_libsvm

    path = tmp_path / "tiny.svm"
    path.write_text("1 1:2 2:-4\n0 1:6 2:2\n1 1:4\n0 2:1\n")
    raw = load_libsvm(path, normalize="none").X
    np.testing.assert_array_equal(raw, [[2, -4], [6, 2], [4, 0], [0, 1]])
    np.testing.assert_allclose(load_libsvm(path).X, raw / [6.0, 4.0])
    std = load_libsvm(path, normalize="standard").X
    np.testing.assert_allclose(std.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std.std(axis=0), 1.0)
    with pytest.raises(ValueError, match="normalize must be one of"):
        load_libsvm(path, normalize="minmax")
    prob = make_problem(f"libsvm:{path}", workers=2, model="logistic", normalize="standard")
    assert prob.describe()["normalize"] == "standard"
    assert make_problem(f"libsvm:{path}", workers=2, model="logistic").normalize == "maxabs"
    with pytest.raises(ValueError, match="applies to the mnist and libsvm"):
        make_problem("digits", workers=2, normalize="none")


def _hand_built(rng, **fields) -> Dataset:
    X = rng.normal(size=(40, 3))
    base = {"name": "mine", "X": X, "y": np.arange(40) % 2, "num_classes": 2, **fields}
    return Dataset(**base)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        # silently wrong: label -1 indexed the last class, NaN features gave F* = nan
        ({"y": np.arange(40) % 2 - 1}, r"y must hold class ids 0\.\.1 .* \[-1, 0\]"),
        ({"X": np.full((40, 3), np.nan)}, "X contains NaN or Inf"),
        # IndexErrors inside make_problem or the model
        ({"y": np.arange(30) % 2}, r"one label per row of X \(40\), got shape \(30,\)"),
        ({"y": np.arange(40) % 2 + 5}, r"class ids 0\.\.1"),
        ({"y": np.arange(40) % 2 + 0.5}, r"class ids 0\.\.1"),
        ({"X": np.zeros(40)}, r"X must be a 2-D numeric array .* float64 array of shape \(40,\)"),
        ({"X": np.zeros((40, 3), object)}, "got object array"),
        ({"X_test": np.zeros((2, 3))}, "both X_test and y_test"),
        ({"X_test": np.zeros((2, 4)), "y_test": np.zeros(2, int)}, "X_test has 4 features"),
        ({"num_classes": -1}, "num_classes must be an int >= 0"),
        ({"y": np.full(40, np.nan), "num_classes": 0}, "y must hold finite numbers"),
    ],
)
def test_hand_built_dataset_is_checked(rng, fields, match):
    with pytest.raises(ValueError, match=rf"Dataset 'mine': .*{match}"):
        _hand_built(rng, **fields)


def test_hand_built_dataset_that_fits_is_accepted(rng):
    p = make_problem(_hand_built(rng, X=rng.integers(0, 5, (40, 3))), workers=2)
    assert p.num_workers == 2
    reg = _hand_built(rng, y=rng.normal(size=40), num_classes=0)
    assert make_problem(reg, model="least-squares", workers=2).num_workers == 2


def test_synthetic_lag_with_too_many_workers_is_a_value_error():
    """1.3**m overflowed: an OverflowError traceback from --dataset synthetic-lag -M 3000."""
    with pytest.raises(ValueError, match=r"3000 workers: .* overflows float64 for m = 2999"):
        make_heterogeneous(3000)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_optimum_of_an_overflowing_loss_is_refused(rng, tmp_path, monkeypatch):
    """Features near 1e308 overflowed the gradient at the first point: L-BFGS stopped there
    and F* = F(theta0), so every run 'reached' the tolerance at iteration 0 (F - F* = 0)."""
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path))
    X = rng.normal(size=(40, 3)) * 1e307
    p = make_problem(Dataset(name="huge", X=X, y=np.arange(40) % 2, num_classes=2), workers=2)
    with pytest.raises(ValueError, match=r"F\* of huge.* cannot be computed .* overflows"):
        p.optimal_value()
    # a cache entry written before the check (grad_norm inf) is solved again, not trusted
    q = make_problem(_hand_built(rng), workers=2)
    path = tmp_path / "optima" / f"{q.fingerprint()}.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"f_star": 0.69, "grad_norm": Infinity}')
    assert q.optimal_value() < 0.69


def test_single_class_file_is_not_called_a_regression_set(tmp_path):
    path = tmp_path / "one.svm"
    path.write_text("1 1:0.5\n1 2:1\n1 1:0.3\n")
    with pytest.raises(ValueError, match=r"needs class labels; libsvm:one\.svm has 1 class"):
        make_problem(f"libsvm:{path}", workers=1)


def test_standard_normalisation_that_overflows_is_refused(tmp_path):
    """Finite values above ~1e154 overflowed the column statistics: the features became
    NaN without a word (F* = nan; `laqcore problem` printed "f_star": NaN)."""
    path = tmp_path / "big.svm"
    path.write_text("1 1:1e200 2:1\n-1 1:1.5e308 2:3\n1 1:1e308 2:2\n")
    assert np.isfinite(load_libsvm(path, normalize="maxabs").X).all()
    with pytest.raises(ValueError, match="normalize='standard': the column means or standard"):
        load_libsvm(path, normalize="standard")


def test_max_samples_keeps_every_designated_workers_block():
    """--max-samples kept the first rows, i.e. the first workers' blocks of synthetic-lag
    only, spread over all workers: the designed per-worker L_m were silently lost."""
    kw = {"model": "least-squares", "workers": 10}
    full = make_problem("synthetic-lag", **kw)
    cut = make_problem("synthetic-lag", max_samples=100, **kw)
    assert [b - a for a, b in cut.bounds] == [10] * 10
    for (a, b), (fa, _) in zip(cut.bounds, full.bounds):
        np.testing.assert_array_equal(cut.Xb[a:b], full.Xb[fa : fa + 10])
    with pytest.raises(ValueError, match="max_samples=5 leaves no sample"):
        make_problem("synthetic-lag", max_samples=5, **kw)


def test_mnist_pixels_outside_0_255_warn_under_maxabs(tmp_path, rng):
    """A float mnist.npz already scaled to [0, 1] was divided by 255 again, without a word:
    features in [0, 0.004], on which the paper's step size barely moves."""
    arrays = {
        "x_train": rng.random((4, 28, 28)).astype(np.float32),
        "y_train": np.arange(4),
        "x_test": rng.random((1, 28, 28)).astype(np.float32),
        "y_test": np.array([7]),
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.warns(UserWarning, match=r"lie in \[.*\], not 0\.\.255"):
        assert load_mnist(tmp_path).X.max() < 1 / 255
    np.testing.assert_array_equal(
        load_mnist(tmp_path, normalize="none").X[0], arrays["x_train"][0].ravel()
    )  # no warning: the user chose to keep them


def test_libsvm_path_expands_the_home_directory(tmp_path, monkeypatch, capsys):
    """A shell leaves '~' in 'libsvm:~/a.svm' (it is not at the start of the word): the CLI
    said "no such file '~/a.svm'" for a file that exists."""
    from laqcore import cli

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "a.svm").write_text("1 1:0.5\n-1 2:1\n1 1:1\n-1 2:0.5\n")
    assert load_dataset("libsvm:~/a.svm").X.shape == (4, 2)
    assert cli.main(["problem", "--dataset", "libsvm:~/a.svm", "--workers", "1"]) == 0
    assert '"problem": "libsvm:a.svm/softmax/M1/contiguous"' in capsys.readouterr().out


def test_test_fraction_of_a_data_set_with_its_own_test_set_is_refused(rng):
    ds = _hand_built(rng, X_test=np.zeros((2, 3)), y_test=np.array([0, 1]))
    assert make_problem(ds, workers=2).Xb_test.shape[0] == 2  # the default: fine
    with pytest.raises(ValueError, match="--test-fraction 0.5: mine has its own test set"):
        make_problem(ds, workers=2, test_fraction=0.5)


def test_data_dir_with_an_absolute_libsvm_path_is_refused(tmp_path):
    """An absolute libsvm:PATH ignored --data-dir without a word."""
    path = tmp_path / "a.svm"
    path.write_text("1 1:0.5\n-1 2:1\n")
    with pytest.raises(ValueError, match="--data-dir is read for a relative libsvm:PATH only"):
        make_problem(f"libsvm:{path}", data_dir=str(tmp_path), workers=1)
    assert make_problem("libsvm:a.svm", data_dir=str(tmp_path), workers=1).num_workers == 1


def test_dataset_check_needs_no_copy_of_the_features(rng):
    import tracemalloc

    X = rng.normal(size=(20_000, 100))
    tracemalloc.start()
    try:
        Dataset(name="big", X=X, y=np.zeros(20_000, np.int64), num_classes=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes // 20, peak
