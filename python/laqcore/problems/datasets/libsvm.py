"""A defensive parser of LIBSVM/SVMlight text files (raw, gzip-, bzip2- or xz-compressed)."""

from __future__ import annotations

import lzma
import math
import os
import zlib
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from ..._validate import check_positive_int
from .compressed import OPENERS, compression
from .dataset import Dataset, DatasetError
from .normalize import check_normalize, normalize_columns

__all__ = ["MAX_LIBSVM_BYTES", "MAX_LIBSVM_FEATURES", "MAX_LIBSVM_LINE", "load_libsvm"]


def __dir__() -> list[str]:
    return __all__


#: Largest feature index :func:`load_libsvm` accepts when ``num_features`` is not given: the
#: features are stored densely, so a one-line file naming index 10**9 would otherwise ask
#: for gigabytes. Real LIBSVM data sets stored densely here have at most a few thousand.
MAX_LIBSVM_FEATURES = 2**24
#: Largest dense feature matrix (rows x features x 8 bytes) :func:`load_libsvm` builds.
MAX_LIBSVM_BYTES = 2**32


#: Longest line (characters) :func:`load_libsvm` reads: a file without line breaks
#: (``/dev/zero``) is refused after this many characters instead of read whole.
MAX_LIBSVM_LINE = 2**24
_EXPECT = "LIBSVM format: one sample per line, 'label index:value ...' with 1-based indices"
# What a corrupt or truncated (compressed) stream or a non-text file raises while it is read.
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError, UnicodeDecodeError)
_FLUSH = 2**16  # entries collected in Python lists before they move to compact arrays


def _open_text(path: str) -> TextIO:
    """``path`` as UTF-8 text, decompressed when it is gzip, bzip2 or xz (by content).

    UTF-8, not ASCII, and a leading byte-order mark skipped: files whose comments hold
    accents, or that a Windows editor saved with a BOM, were refused ("'ascii' codec can't
    decode byte 0xef in position 0"). The data itself must still be ASCII (``add_line``)."""
    kind = compression(path)
    opener: Any = open if kind is None else OPENERS[kind]
    return opener(path, "rt", encoding="utf-8-sig")  # type: ignore[no-any-return]


def _lines(fh: TextIO, path: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, each read with a bound (a stream without newlines is not read whole)."""
    lineno = 0
    while True:
        line = fh.readline(MAX_LIBSVM_LINE + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LIBSVM_LINE:
            raise DatasetError(
                f"{path!r} line {lineno}: longer than {MAX_LIBSVM_LINE} characters; "
                f"expected {_EXPECT}"
            )
        yield lineno, line


class _Parsed:
    """The samples parsed so far, in compact arrays, with the dense size checked per line:
    a file (or a gzip bomb) is refused once its matrix would exceed ``max_bytes``, not after
    it has been read whole."""

    def __init__(self, path: str, limit: int, limit_name: str, fixed: bool, max_bytes: int):
        self.path, self.limit, self.limit_name = path, limit, limit_name
        self.fixed, self.max_bytes = fixed, max_bytes
        self.count = 0
        self.max_col = -1
        self.labels: list[float] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.chunks: list[tuple[npt.NDArray[Any], ...]] = []

    def width(self) -> int:
        return self.limit if self.fixed else max(self.max_col + 1, 1)

    def add_line(self, lineno: int, line: str) -> None:
        text = line.split("#", 1)[0]
        body = text.split()
        if not body:
            return
        try:
            if not text.isascii():  # float() reads other scripts' digits: "\u0661" is 1.0
                raise ValueError("a non-ASCII character outside a comment")
            if "_" in text:  # int() and float() would read "1_0" as 10
                raise ValueError("'_' in a number")
            label = float(body[0])
            if not math.isfinite(label):  # "nan", "inf" and "1e400" all parse as floats
                raise ValueError(f"label {body[0]!r} is not a finite number")
            self.labels.append(label)
            seen: set[int] = set()  # a repeated index would silently keep its last value
            # SVMlight's query id (ranking data) names no feature: checked, then skipped.
            start = 1
            if len(body) > 1 and body[1].startswith("qid:"):
                int(body[1][4:])
                start = 2
            for tok in body[start:]:
                idx, colon, val = tok.partition(":")
                if not colon:
                    raise ValueError(f"{tok!r} is not index:value")
                j = int(idx)
                if j == 0:  # the likely cause, not a corrupt file: say how to convert
                    raise ValueError(
                        "feature index 0: indices start at 1, and this file looks 0-based "
                        "(scikit-learn's dump_svmlight_file writes 0-based indices unless "
                        "given zero_based=False): add 1 to every index"
                    )
                if j < 1:
                    raise ValueError(f"feature index {j} < 1")
                if j in seen:
                    raise ValueError(f"feature index {j} appears twice")
                seen.add(j)
                if j > self.limit:
                    hint = "" if self.fixed else " (pass num_features to allow it)"
                    raise ValueError(
                        f"feature index {j} exceeds {self.limit_name}={self.limit}{hint}"
                    )
                v = float(val)
                if not math.isfinite(v):
                    raise ValueError(f"feature value {val!r} is not a finite number")
                self.rows.append(self.count)
                self.cols.append(j - 1)
                self.vals.append(v)
                self.max_col = max(self.max_col, j - 1)
        except ValueError as err:
            raise DatasetError(f"{self.path!r} line {lineno}: {err}; expected {_EXPECT}") from err
        self.count += 1
        need = self.count * self.width() * 8
        if need > self.max_bytes:
            raise DatasetError(
                f"{self.path!r} line {lineno}: a dense {self.count} x {self.width()} float64 "
                f"feature matrix takes {need} bytes, above max_bytes={self.max_bytes}"
            )
        if len(self.vals) >= _FLUSH or len(self.labels) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        self.chunks.append(
            (
                np.asarray(self.labels, dtype=np.float64),
                np.asarray(self.rows, dtype=np.int64),
                np.asarray(self.cols, dtype=np.int32),
                np.asarray(self.vals, dtype=np.float64),
            )
        )
        self.labels, self.rows, self.cols, self.vals = [], [], [], []

    def arrays(self) -> tuple[npt.NDArray[Any], ...]:
        """Labels, row indices, column indices and values of every sample read."""
        self._flush()
        return tuple(np.concatenate([c[i] for c in self.chunks]) for i in range(4))


def load_libsvm(
    path: str | os.PathLike[str],
    *,
    num_features: int | None = None,
    max_features: int = MAX_LIBSVM_FEATURES,
    max_bytes: int = MAX_LIBSVM_BYTES,
    normalize: str = "maxabs",
) -> Dataset:
    """Parse a LIBSVM/SVMlight text file (``label idx:value idx:value ...``, 1-based indices).

    The file may be gzip-, bzip2- or xz-compressed (recognised by its first bytes, whatever
    its name: the LIBSVM site serves ``.bz2`` files). Text after ``#`` is a comment; an
    SVMlight query id (``label qid:N idx:value ...``) is skipped. The text is UTF-8 (a leading
    byte-order mark is skipped), ASCII outside comments.

    Labels are mapped to class ids ``0..K-1`` in sorted order (so ``-1/+1`` become ``0/1``);
    if there are more than 20 distinct non-integer labels the data is treated as regression.
    Features are stored densely (fine for ijcnn1, covtype, SUSY: d <= 54) and normalised per
    ``normalize`` (:mod:`.normalize`; default ``maxabs``: each column divided by its maximum
    absolute value, so that step sizes behave like on the paper's data).

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
    normalize : {"maxabs", "standard", "none"}

    The file is read line by line (at most ``MAX_LIBSVM_LINE`` characters each) and the dense
    size is checked after every line, so neither ``/dev/zero`` nor a compressed bomb is read
    whole.

    Raises
    ------
    DatasetError
        Naming the file: missing, unreadable or truncated (also a cut compressed stream),
        malformed (also a ``_`` inside a number, which Python reads: ``1_0`` is 10), a
        NaN/Inf/overflowing label or value, an index above the limit or repeated within a
        line (naming the line), or a matrix above ``max_bytes``. Indices need not be sorted.
    """
    check_normalize(normalize)
    p = os.fspath(path)
    limit_name = "num_features" if num_features is not None else "max_features"
    limit = check_positive_int(
        num_features if num_features is not None else max_features, limit_name
    )
    max_bytes = check_positive_int(max_bytes, "max_bytes")
    try:
        with _open_text(p) as fh:
            parsed = _Parsed(p, limit, limit_name, num_features is not None, max_bytes)
            for lineno, line in _lines(fh, p):
                parsed.add_line(lineno, line)
    except FileNotFoundError as err:
        raise DatasetError(f"LIBSVM file {p!r} not found ({_EXPECT})") from err
    except DatasetError:
        raise
    except _READ_ERRORS as err:
        raise DatasetError(
            f"cannot read LIBSVM file {p!r}: {type(err).__name__}: {err} ({_EXPECT})"
        ) from err
    lab, rows, cols, values = parsed.arrays()
    if lab.size == 0:
        raise DatasetError(f"LIBSVM file {p!r} holds no samples ({_EXPECT})")
    d = parsed.width()
    X = np.zeros((lab.size, d))
    X[rows, cols] = values
    normalize_columns(X, normalize)
    uniq = np.unique(lab)
    name = os.path.basename(p)
    if uniq.size <= 20 or np.all(lab == np.round(lab)):
        y = np.searchsorted(uniq, lab).astype(np.int64)
        return Dataset(name=f"libsvm:{name}", X=X, y=y, num_classes=int(uniq.size))
    return Dataset(name=f"libsvm:{name}", X=X, y=lab, num_classes=0)
