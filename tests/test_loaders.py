"""Loaders of untrusted files stream with bounds checked as they go, and every defect is one
``DatasetError`` naming the file (issue 14, item 13)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import struct
import tracemalloc

import numpy as np
import pytest

from laqcore.problems.datasets import DatasetError, load_libsvm, read_idx


def _idx_header(dims: tuple[int, ...], type_byte: int = 0x08) -> bytes:
    return bytes([0, 0, type_byte, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _peak_bytes_of_refusal(fn, *args, **kwargs) -> int:
    """Peak Python memory of a call that must raise DatasetError."""
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError):
            fn(*args, **kwargs)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_gz_idx_streams_and_matches_raw(tmp_path, rng):
    data = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    raw = _idx_header(data.shape) + data.tobytes()
    (tmp_path / "a.idx").write_bytes(raw)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx")), data)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx.gz")), data)
    # gzip without the suffix (a saved download) was "not an IDX file: bad magic number"
    (tmp_path / "train-images-idx3-ubyte").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(str(tmp_path / "train-images-idx3-ubyte")), data)


def test_gz_idx_header_checked_before_the_body_is_decompressed(tmp_path):
    # 2 KiB on disk: a header declaring 4 GiB, then 64 MiB of zeros.
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(_idx_header((2**16, 2**8, 2**8)))
        zeros = bytes(2**20)
        for _ in range(64):
            fh.write(zeros)
    with pytest.raises(DatasetError, match=r"bomb-idx3-ubyte\.gz.*declares.*above"):
        read_idx(str(path))
    peak = _peak_bytes_of_refusal(read_idx, str(path))
    assert peak < 4 * 2**20, peak


def test_gz_idx_body_read_in_bounded_chunks(tmp_path):
    # Header within the limit (32 MiB) but the stream ends early: memory follows the stream.
    path = tmp_path / "short.idx.gz"
    path.write_bytes(gzip.compress(_idx_header((2**15, 2**10)) + bytes(1000)))
    with pytest.raises(DatasetError, match=r"short\.idx\.gz.*holds 1000"):
        read_idx(str(path))
    peak = _peak_bytes_of_refusal(read_idx, str(path))
    assert peak < 4 * 2**20, peak


@pytest.mark.parametrize("cut", ["truncated", "corrupt"])
def test_bad_gz_stream_is_a_dataset_error(tmp_path, rng, cut):
    data = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    blob = bytearray(gzip.compress(_idx_header(data.shape) + data.tobytes()))
    if cut == "truncated":
        blob = blob[: len(blob) // 2]
    else:
        blob[len(blob) // 2 : len(blob) // 2 + 16] = bytes(16)
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(DatasetError, match=r"bad\.idx\.gz"):
        read_idx(str(path))


def test_idx_trailing_bytes_refused(tmp_path):
    path = tmp_path / "t.idx"
    path.write_bytes(_idx_header((2, 2)) + bytes(5))
    with pytest.raises(DatasetError, match=r"t\.idx.*more than 4"):
        read_idx(str(path))


def test_idx_declared_size_limit(tmp_path):
    path = tmp_path / "s.idx"
    path.write_bytes(_idx_header((10, 10)) + bytes(100))
    assert read_idx(str(path), max_bytes=100).shape == (10, 10)
    with pytest.raises(DatasetError, match="above the 99 bytes"):
        read_idx(str(path), max_bytes=99)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_libsvm_dev_zero_is_refused_not_read_whole():
    with pytest.raises(DatasetError, match=r"/dev/zero.*line 1: longer than"):
        load_libsvm("/dev/zero")


def test_libsvm_gzip_bomb_refused_while_reading(tmp_path):
    path = tmp_path / "bomb.svm.gz"
    line = b"1 1:1 2:1\n"
    with gzip.open(path, "wb") as fh:
        block = line * 100_000
        for _ in range(20):  # 2e6 samples, 20 MB of text, ~20 KB on disk
            fh.write(block)
    with pytest.raises(DatasetError, match=r"bomb\.svm\.gz' line \d+: a dense .* max_bytes="):
        load_libsvm(str(path), max_bytes=2**20)
    peak = _peak_bytes_of_refusal(load_libsvm, str(path), max_bytes=2**20)
    assert peak < 16 * 2**20, peak


def test_libsvm_truncated_gz_is_a_dataset_error(tmp_path):
    blob = gzip.compress(b"1 1:0.5 2:1\n-1 1:0.25\n" * 1000)
    path = tmp_path / "cut.svm.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=r"cut\.svm\.gz"):
        load_libsvm(str(path))


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1e400", "NaN"])
def test_libsvm_non_finite_labels_refused(tmp_path, bad):
    path = tmp_path / "labels.svm"
    path.write_text(f"1 1:0.5\n{bad} 1:0.25\n")
    with pytest.raises(DatasetError, match=rf"labels\.svm.*line 2: label '{bad}' is not a finite"):
        load_libsvm(str(path))


def test_libsvm_nan_regression_target_refused(tmp_path):
    lines = [f"{0.37 * i + 0.1} 1:{i}" for i in range(30)]  # > 20 non-integer labels
    path = tmp_path / "reg.svm"
    path.write_text("\n".join(lines) + "\n")
    assert load_libsvm(str(path)).num_classes == 0  # a regression data set...
    path.write_text("\n".join([*lines, "nan 1:3"]) + "\n")
    with pytest.raises(DatasetError, match=r"reg\.svm.*line 31: label 'nan'"):
        load_libsvm(str(path))  # ...whose NaN target is refused


@pytest.mark.parametrize("bad", ["nan", "inf", "1e400"])
def test_libsvm_non_finite_values_refused(tmp_path, bad):
    path = tmp_path / "v.svm"
    path.write_text(f"1 1:0.5 3:{bad}\n")
    with pytest.raises(DatasetError, match=rf"v\.svm.*line 1: feature value '{bad}'"):
        load_libsvm(str(path))


def test_libsvm_repeated_feature_index_refused(tmp_path):
    """A repeated index used to keep its last value silently; unsorted indices stay valid."""
    path = tmp_path / "d.svm"
    path.write_text("1 2:0.5 1:0.25\n-1 1:1 3:0.5 1:0.7\n")
    with pytest.raises(DatasetError, match=r"d\.svm.*line 2: feature index 1 appears twice"):
        load_libsvm(str(path))
    path.write_text("1 2:0.5 1:0.25\n-1 3:0.5 1:0.7\n")
    got = load_libsvm(str(path), normalize="none").X
    np.testing.assert_array_equal(got, [[0.25, 0.5, 0.0], [0.7, 0.0, 0.5]])


def test_libsvm_parses_across_flushes(tmp_path, rng):
    """More samples than one compact-array chunk: the same matrix as a direct build."""
    n = 70_000
    cols = rng.integers(1, 4, size=n)
    vals = rng.integers(1, 9, size=n)
    labels = rng.integers(0, 2, size=n)
    text = "".join(f"{y} {c}:{v}\n" for y, c, v in zip(labels, cols, vals))
    path = tmp_path / "many.svm"
    path.write_text(text)
    ds = load_libsvm(str(path))
    X = np.zeros((n, 3))
    X[np.arange(n), cols - 1] = vals
    X /= X.max(axis=0)
    np.testing.assert_array_equal(ds.X, X)
    np.testing.assert_array_equal(ds.y, labels)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
@pytest.mark.parametrize("name", ["d.svm", "d.svm.gz", "d.svm.bz2"])
def test_libsvm_compressed_files_recognised_by_content(tmp_path, compress, name):
    """A bzip2 file (as the LIBSVM site serves them), an xz file or a gzip file without the
    .gz suffix failed with "UnicodeDecodeError: 'ascii' codec can't decode byte"; the
    format is now read from the first bytes, whatever the name."""
    text = b"+1 1:0.5 2:1\n-1 1:0.25\n"
    (tmp_path / "raw.svm").write_bytes(text)
    want = load_libsvm(str(tmp_path / "raw.svm"))
    path = tmp_path / name
    path.write_bytes(compress(text))
    got = load_libsvm(str(path))
    np.testing.assert_array_equal(got.X, want.X)
    np.testing.assert_array_equal(got.y, want.y)
    path.write_bytes(compress(text * 1000)[:-40])  # cut stream
    with pytest.raises(DatasetError, match=rf"cannot read LIBSVM file .*{name}"):
        load_libsvm(str(path))


def test_libsvm_utf8_comments_and_a_byte_order_mark(tmp_path):
    """Files read as ASCII refused accents in a comment and the BOM a Windows editor writes
    ("'ascii' codec can't decode byte 0xef in position 0"); the data stays ASCII."""
    text = "+1 1:0.5 2:1 # été\n-1 1:0.25\n"
    (tmp_path / "plain.svm").write_text(text.replace(" # été", ""), encoding="ascii")
    want = load_libsvm(str(tmp_path / "plain.svm"))
    for name, data in [("c.svm", "# données \u2013 v2\n" + text), ("bom.svm", "\ufeff" + text)]:
        (tmp_path / name).write_text(data, encoding="utf-8")
        got = load_libsvm(str(tmp_path / name))
        np.testing.assert_array_equal(got.X, want.X)
        np.testing.assert_array_equal(got.y, want.y)
    (tmp_path / "digits.svm").write_text("1 1:\u0661\n", encoding="utf-8")  # Arabic-Indic 1
    with pytest.raises(DatasetError, match="line 1: a non-ASCII character outside a comment"):
        load_libsvm(str(tmp_path / "digits.svm"))


def test_libsvm_bz2_bomb_refused_while_reading(tmp_path):
    path = tmp_path / "bomb.svm.bz2"
    with bz2.open(path, "wb") as fh:
        block = b"1 1:1 2:1\n" * 100_000
        for _ in range(20):
            fh.write(block)
    peak = _peak_bytes_of_refusal(load_libsvm, str(path), max_bytes=2**20)
    assert peak < 16 * 2**20, peak


def test_libsvm_svmlight_qid_is_skipped(tmp_path):
    """SVMlight's 'label qid:N index:value ...' was refused with "invalid literal for int()
    with base 10: 'qid'"; the query id is checked and skipped."""
    path = tmp_path / "rank.svm"
    path.write_text("2 qid:1 1:0.5 3:1\n1 qid:1 2:1\n0 qid:2 1:1 # comment\n")
    ds = load_libsvm(str(path), normalize="none")
    np.testing.assert_array_equal(ds.X, [[0.5, 0, 1], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(ds.y, [2, 1, 0])
    path.write_text("1 qid:x 1:0.5\n")
    with pytest.raises(DatasetError, match=r"rank\.svm' line 1: invalid literal"):
        load_libsvm(str(path))
    path.write_text("1 1:0.5 qid:1\n")  # only right after the label
    with pytest.raises(DatasetError, match="line 1: invalid literal .* 'qid'"):
        load_libsvm(str(path))


@pytest.mark.parametrize("line", ["1 1_0:0.5", "1 1:1_0", "1_0 1:1"])
def test_libsvm_underscore_in_a_number_refused(tmp_path, line):
    """int() and float() read '1_0' as 10: index 1_0 silently became feature 10."""
    path = tmp_path / "u.svm"
    path.write_text(f"1 1:1 # an_underscore in a comment is fine\n{line}\n")
    with pytest.raises(DatasetError, match=r"u\.svm' line 2: '_' in a number"):
        load_libsvm(str(path))


def test_libsvm_token_without_colon_named(tmp_path):
    """The message was "not enough values to unpack (expected 2, got 1)"."""
    path = tmp_path / "t.svm"
    path.write_text("1 1 : 0.5\n")
    with pytest.raises(DatasetError, match=r"line 1: '1' is not index:value"):
        load_libsvm(str(path))


@pytest.mark.parametrize(
    "dims", [(1,) * 65, (1,) * 255, (0, 2**32 - 1, 2**32 - 1, 2**32 - 1)], ids=str
)
def test_idx_dims_no_array_can_have(tmp_path, dims):
    """65+ dimensions, or a zero-size shape whose other dims overflow, escaped as numpy's
    bare ValueError ("maximum supported dimension for an ndarray is currently 64", "array is
    too big") without the file's name; now a DatasetError naming it."""
    path = tmp_path / "dims.idx"
    path.write_bytes(_idx_header(dims) + bytes(0 if 0 in dims else 1))
    with pytest.raises(DatasetError, match=r"dims\.idx.*declares dims"):
        read_idx(str(path))
