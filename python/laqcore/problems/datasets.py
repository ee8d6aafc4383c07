"""Datasets: the embedded digits data, local MNIST / LIBSVM files, synthetic generators.

Every loader returns a :class:`Dataset`: dense float64 features (one row per sample), integer
class labels (or float targets for regression), and optionally a held-out test set. Features
are scaled to a few units (pixels to [0, 1]) so that the paper's step size alpha = 0.02 is
stable, as in the official LAQ code (``mnist_images / 255``).

Files the user points at are read defensively: a missing, truncated or malformed file raises
``DatasetError`` (a ``ValueError``) that names the file and the format that was expected.
"""

from __future__ import annotations

import gzip
import io
import lzma
import math
import numbers
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Dataset",
    "DatasetError",
    "available_datasets",
    "load_dataset",
    "load_digits",
    "load_libsvm",
    "load_mnist",
    "make_classification",
    "make_heterogeneous",
    "make_regression",
]

#: Largest feature index :func:`load_libsvm` accepts when ``num_features`` is not given: the
#: features are stored densely, so a one-line file naming index 10**9 would otherwise ask
#: for gigabytes. Real LIBSVM data sets stored densely here have at most a few thousand.
MAX_LIBSVM_FEATURES = 2**24
#: Largest dense feature matrix (rows x features x 8 bytes) :func:`load_libsvm` builds.
MAX_LIBSVM_BYTES = 2**32


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


# -- embedded digits ------------------------------------------------------------------------


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
        images, labels = _read_npz(str(path), ("images", "labels"), "the embedded digits data")
    return Dataset(
        name="digits",
        X=images.astype(np.float64) / 16.0,
        y=labels.astype(np.int64),
        num_classes=10,
    )


# -- MNIST ----------------------------------------------------------------------------------

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def load_mnist(data_dir: str | os.PathLike[str]) -> Dataset:
    """MNIST from a local directory: ``mnist.npz`` (Keras layout: ``x_train``, ``y_train``,
    ``x_test``, ``y_test``) or the four IDX files (raw or ``.gz``).

    Pixels are scaled to [0, 1] and flattened to 784 features, as in the official LAQ code.
    """
    d = os.fspath(data_dir)
    if not os.path.isdir(d):
        raise DatasetError(
            f"MNIST data directory {d!r} does not exist; expected a directory holding "
            "mnist.npz or the IDX files train-images-idx3-ubyte[.gz], "
            "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
        )
    npz = os.path.join(d, "mnist.npz")
    if os.path.exists(npz):
        xtr, ytr, xte, yte = _read_npz(
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
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise DatasetError(f"MNIST {what} images in {d!r} contain NaN or Inf")
        if y.size and not (np.all(y >= 0) and np.all(y <= 9) and np.all(y == np.floor(y))):
            raise DatasetError(f"MNIST {what} labels in {d!r} are not integers in 0..9")
    return Dataset(
        name="mnist",
        X=xtr.reshape(xtr.shape[0], -1).astype(np.float64) / 255.0,
        y=ytr.astype(np.int64),
        X_test=xte.reshape(xte.shape[0], -1).astype(np.float64) / 255.0,
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


_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str) -> npt.NDArray[Any]:
    """Read one IDX file (raw or gzip-compressed), validating its header against its size."""
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:  # includes gzip.BadGzipFile
        raise DatasetError(f"cannot read IDX file {path!r}: {err}") from err
    expect = "IDX format (2 zero bytes, type byte, ndim byte, big-endian uint32 dims, data)"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path!r} is not an IDX file: bad magic number; expected {expect}")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path!r}: truncated IDX header; expected {expect}")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    need = 4 + 4 * ndim + count * dtype.itemsize
    if len(raw) != need:
        raise DatasetError(
            f"{path!r}: IDX header promises dims {dims} ({need} bytes) but the file has "
            f"{len(raw)} bytes (truncated or corrupt)"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


# What reading a corrupt archive can raise besides OSError/ValueError/EOFError: a bad zip
# structure (BadZipFile, LargeZipFile), an unknown compression method or zip version
# (NotImplementedError), an encrypted member (RuntimeError), a corrupt compressed stream
# (zlib.error, LZMAError), a .npy header numpy cannot interpret (TypeError).
# Largest .npy member read from an archive (MNIST's x_train is 47 MB as uint8, 376 MB as
# float64).
_MAX_NPZ_MEMBER_BYTES = 2**30
_NPZ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    TypeError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
)


def _read_npz(path: str, keys: tuple[str, ...], what: str) -> list[npt.NDArray[Any]]:
    """The arrays ``keys`` of an ``.npz`` archive; any defect is a :class:`DatasetError`
    naming the file and ``what`` was expected."""
    expect = f"expected {what} with arrays {list(keys)}"
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            members = {k: k + ".npy" if k + ".npy" in names else k for k in keys}
            missing = [k for k, m in members.items() if m not in names]
            if missing:
                raise DatasetError(f"{path!r} lacks array(s) {missing}; {expect}")
            return [_npy_from_bytes(_read_member(zf, m), m) for m in members.values()]
    except DatasetError:
        raise
    except _NPZ_ERRORS as err:
        raise DatasetError(
            f"cannot read {path!r} as an .npz archive ({type(err).__name__}: {err}); {expect}"
        ) from err


def _read_member(zf: zipfile.ZipFile, member: str) -> bytes:
    """The decompressed bytes of one member, refused above ``_MAX_NPZ_MEMBER_BYTES``: a small
    archive's member can expand to many GB. zipfile never returns more than the size the
    header declares (a larger stream fails its CRC), so checking that size bounds the read."""
    size = zf.getinfo(member).file_size
    if size > _MAX_NPZ_MEMBER_BYTES:
        raise ValueError(
            f"member {member!r} declares {size} bytes, above the {_MAX_NPZ_MEMBER_BYTES} "
            "this loader reads"
        )
    return zf.read(member)


def _npy_from_bytes(raw: bytes, member: str) -> npt.NDArray[Any]:
    """Parse one ``.npy`` member, checking the header's shape against the data it holds
    *before* numpy allocates the array (a 100-byte member can declare a 1 TiB shape).
    Raises ``ValueError`` naming the member; the caller adds the archive's name."""
    fp = io.BytesIO(raw)
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"member {member!r}: unsupported .npy format version {version}")
    if dtype.hasobject:
        raise ValueError(f"member {member!r} holds Python objects (pickles are not loaded)")
    need = math.prod(shape) * dtype.itemsize
    if len(raw) - fp.tell() != need:
        raise ValueError(
            f"member {member!r}: .npy header promises shape {shape} of {dtype} ({need} bytes) "
            f"but holds {len(raw) - fp.tell()} data bytes"
        )
    fp.seek(0)
    return np.asarray(np.load(fp, allow_pickle=False))


# -- LIBSVM ---------------------------------------------------------------------------------


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
) -> Dataset:
    """Parse a LIBSVM/SVMlight text file (``label idx:value idx:value ...``, 1-based indices).

    Labels are mapped to class ids ``0..K-1`` in sorted order (so ``-1/+1`` become ``0/1``);
    if there are more than 20 distinct non-integer labels the data is treated as regression.
    Features are stored densely (fine for ijcnn1, covtype, SUSY: d <= 54) and each column is
    scaled by its maximum absolute value so that step sizes behave like on the paper's data.

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

    Raises
    ------
    DatasetError
        Missing or malformed file, an index above the limit (naming the line), or a matrix
        above ``max_bytes``.
    """
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
    # max |X| per column without an |X|-sized temporary (X may be most of max_bytes).
    scale = np.maximum(X.max(axis=0), -X.min(axis=0))
    X /= np.where(scale > 0, scale, 1.0)
    lab = np.asarray(labels)
    uniq = np.unique(lab)
    name = os.path.basename(p)
    if uniq.size <= 20 or np.all(lab == np.round(lab)):
        y = np.searchsorted(uniq, lab).astype(np.int64)
        return Dataset(name=f"libsvm:{name}", X=X, y=y, num_classes=int(uniq.size))
    return Dataset(name=f"libsvm:{name}", X=X, y=lab, num_classes=0)


# -- synthetic ------------------------------------------------------------------------------


def make_classification(
    n: int = 2000, d: int = 20, num_classes: int = 2, *, seed: int = 0
) -> Dataset:
    """Gaussian classes around random centres (a linearly separable-ish toy problem)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, d))
    y = rng.integers(0, num_classes, size=n)
    X = centres[y] + rng.normal(size=(n, d))
    return Dataset(name=f"synthetic-c{num_classes}", X=X / np.sqrt(d), y=y, num_classes=num_classes)


def make_regression(n: int = 2000, d: int = 20, *, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Linear model ``y = X w + noise`` with standard normal features (scaled by 1/sqrt(d))."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    w = rng.normal(size=d)
    y = X @ w + noise * rng.normal(size=n)
    return Dataset(name="synthetic-regression", X=X, y=y, num_classes=0)


def make_heterogeneous(
    workers: int,
    n_per_worker: int = 50,
    d: int = 20,
    *,
    growth: float = 1.3,
    seed: int = 0,
    num_classes: int = 0,
) -> Dataset:
    """LAG's heterogeneous workers: worker m's features are scaled so that its smoothness
    constant L_m grows geometrically, ``L_m ∝ growth**m`` (the LAG paper's synthetic setting,
    where lazy aggregation saves the most because most workers are "smooth").

    Samples are ordered by worker in ``workers`` equal blocks (``Dataset.groups``).
    ``num_classes=0`` gives regression targets (least squares), 2 gives binary labels.
    """
    rng = np.random.default_rng(seed)
    blocks = []
    for m in range(workers):
        blocks.append(rng.normal(size=(n_per_worker, d)) * np.sqrt(growth**m))
    X = np.concatenate(blocks)
    w = rng.normal(size=d) / np.sqrt(d)
    score = X @ w
    if num_classes == 0:
        y: npt.NDArray[Any] = score + 0.1 * rng.normal(size=score.shape)
    else:
        if num_classes != 2:
            raise ValueError(f"num_classes must be 0 (regression) or 2, got {num_classes}")
        y = (score + 0.1 * rng.normal(size=score.shape) > 0).astype(np.int64)
    return Dataset(
        name=f"synthetic-lag-m{workers}",
        X=X,
        y=y,
        num_classes=num_classes,
        groups=workers,
        meta={"growth": growth},
    )


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
