"""Fuzz the dataset loaders' parsers: IDX files (``read_idx``, raw and gzip), LIBSVM text
(``load_libsvm``) and the MNIST directory loader (``load_mnist``: ``mnist.npz`` or IDX).

Byte 0 of the input picks the parser, the rest is the file's content, written to a
temporary file. A parser must return a well-formed array/``Dataset`` or raise
``DatasetError`` (a ``ValueError``) naming the file, as the loaders document: any other
exception (numpy's bare ``ValueError``, say) is a finding.
"""

from __future__ import annotations

import gzip
import os
import sys
import tempfile
from collections.abc import Callable

import atheris
import numpy as np

with atheris.instrument_imports(include=["laqcore"]):
    from laqcore.problems import datasets

import common

TMP = tempfile.mkdtemp(
    prefix="laqcore-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
)

# load_libsvm stores features densely; its max_bytes bound keeps every matrix a fuzzed file
# can ask for far below the harness's memory limit (run_all.py: -rss_limit_mb=3072).
LIBSVM_MAX_BYTES = 1 << 26


def _write(name: str, content: bytes) -> str:
    path = os.path.join(TMP, name)
    with open(path, "wb") as fh:
        fh.write(content)
    return path


def _load(fn: Callable[[], object], path: str) -> object | None:
    """``fn()``, or ``None`` when it refused the file with a ``DatasetError`` naming it (or
    its directory); any other exception propagates and is reported."""
    try:
        return fn()
    except datasets.DatasetError as err:
        message = str(err)
    where = os.path.dirname(path) if path.endswith("mnist.npz") else path
    assert where in message, f"DatasetError not naming {where!r}: {message}"
    return None


def _check_dataset(ds: object) -> None:
    assert isinstance(ds, datasets.Dataset), type(ds)
    assert ds.X.ndim == 2, ds.X.shape
    assert ds.y.shape == (ds.X.shape[0],), (ds.y.shape, ds.X.shape)
    assert bool(np.isfinite(ds.X).all()), "loader returned NaN/Inf features"


def _fuzz_idx(content: bytes, compressed: bool) -> None:
    if compressed:
        path = _write("data.idx.gz", gzip.compress(content, compresslevel=1))
    else:
        path = _write("data.idx", content)
    out = _load(lambda: datasets.read_idx(path), path)
    if out is not None:
        assert isinstance(out, np.ndarray)
        assert out.dtype.isnative


def _fuzz_libsvm(content: bytes) -> None:
    path = _write("data.libsvm", content)
    ds = _load(lambda: datasets.load_libsvm(path, num_features=64), path)
    if ds is not None:
        _check_dataset(ds)
        assert ds.X.shape[1] == 64, ds.X.shape
    # Default max_features (2**24): the dense-size bound is what keeps memory in check.
    ds = _load(lambda: datasets.load_libsvm(path, max_bytes=LIBSVM_MAX_BYTES), path)
    if ds is not None:
        _check_dataset(ds)
        assert ds.X.nbytes <= LIBSVM_MAX_BYTES, ds.X.shape


def _fuzz_mnist_npz(content: bytes) -> None:
    directory = os.path.join(TMP, "mnist")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "mnist.npz")
    with open(path, "wb") as fh:
        fh.write(content)
    ds = _load(lambda: datasets.load_mnist(directory), path)
    if ds is not None:
        _check_dataset(ds)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, content = data[0] % 4, data[1:]
    if mode == 0:
        _fuzz_idx(content, compressed=False)
    elif mode == 1:
        _fuzz_idx(content, compressed=True)
    elif mode == 2:
        _fuzz_libsvm(content)
    else:
        _fuzz_mnist_npz(content)


def _idx_bytes(arr: np.ndarray, type_byte: int) -> bytes:
    header = bytes([0, 0, type_byte, arr.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in arr.shape
    )
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    images = rng.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    labels = np.array([1, 7, 3], dtype=np.uint8)
    for mode in (0, 1):
        out.append(bytes([mode]) + _idx_bytes(images, 0x08))
        out.append(bytes([mode]) + _idx_bytes(labels, 0x08))
        out.append(bytes([mode]) + _idx_bytes(rng.standard_normal((2, 3)).astype(">f4"), 0x0D))
    out.append(b"\x02" + b"+1 1:0.5 3:-2\n-1 2:1.0 # comment\n+1 1:1 2:2 3:3\n")
    out.append(b"\x02" + b"0.5 1:1\n1.5 2:1\n2.5 1:3 2:4\n")
    npz_path = os.path.join(TMP, "seed.npz")
    np.savez(npz_path, x_train=images, y_train=labels, x_test=images[:2], y_test=labels[:2])
    with open(npz_path, "rb") as fh:
        out.append(b"\x03" + fh.read())
    # Regression inputs (fuzz/README.md, fixed findings 6 and 7): 65 dimensions, a zero-size
    # shape whose product overflows, pixels beyond the float64 range.
    out.append(b"\x00" + bytes([0, 0, 8, 65]) + b"\x00\x00\x00\x01" * 65 + b"\x05")
    out.append(b"\x00" + bytes([0, 0, 8, 3]) + bytes(4) + b"\xff" * 8)
    np.savez(
        npz_path,
        x_train=np.full((3, 4, 4), np.longdouble("1e400")),
        y_train=labels,
        x_test=images[:2],
        y_test=labels[:2],
    )
    with open(npz_path, "rb") as fh:
        out.append(b"\x03" + fh.read())
    return out


if __name__ == "__main__":
    common.main(test_one_input, seeds)
    sys.exit(0)
