"""Input checks shared by every public function.

The rule (docs/architecture.md, "Conventions (everyone)"): bad input raises a clear
``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape, size or value)
*here*, before any native code runs, with a message that names the argument and says what
was expected. Checks that need a pass over the data (NaN/Inf) are fused into the C++ kernels
instead, so validation never costs an extra sweep over a large gradient.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import tempfile
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from ._typing import FloatVector

__all__ = [
    "as_code_vector",
    "as_float_or_double_vector",
    "as_float_vector",
    "as_out_vector",
    "as_state_vector",
    "check_bits",
    "check_block_size",
    "check_bool",
    "check_choice",
    "check_levels",
    "check_output_dir",
    "check_output_file",
    "check_positive_int",
    "check_real",
    "check_step",
    "check_uint64",
    "registry_key",
    "renamed_keywords",
]

#: Largest seed, stream or step (they key the counter-based RNG as uint64).
UINT64_MAX = 2**64 - 1
#: Largest QSGD level count: a sign bit plus ceil(log2(levels + 1)) level bits fit in 8 bits.
MAX_LEVELS = 127


F = TypeVar("F", bound=Callable[..., Any])


def __dir__() -> list[str]:
    return __all__


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"array of dtype {x.dtype} and shape {x.shape}"
    return f"{type(x).__name__}"


def _float_array(x: Any, name: str, allow_empty: bool) -> npt.NDArray[np.floating[Any]]:
    """The checks shared by the float-vector validators (no conversion yet)."""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(
            f"{name} must be a floating-point array (float32 preferred), got {_describe(x)}"
        )
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array, got shape {arr.shape}; flatten it first (x.ravel())"
        )
    if not arr.flags.c_contiguous:
        raise ValueError(
            f"{name} must be contiguous, got a strided view; pass np.ascontiguousarray({name})"
        )
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    if not arr.flags.aligned:
        # The kernels read through typed pointers, which must be aligned; an unaligned view
        # (np.frombuffer at an odd offset) of an *input* is copied, which aligns it.
        arr = arr.copy()
    return arr


#: Whether numpy's float64 -> float32 cast sets the overflow flag (numpy >= 1.24); before,
#: a finite value past float32's maximum became inf silently, so it is looked for.
_CAST_FLAGS_OVERFLOW = np.lib.NumpyVersion(np.__version__) >= "1.24.0"


def as_float_vector(x: Any, name: str = "x", *, allow_empty: bool = False) -> FloatVector:
    """Return ``x`` as a 1-D C-contiguous float32 array, or raise.

    float32 arrays pass through without a copy; float16/float64 arrays and lists of
    numbers are converted. Integer, boolean, complex, string and object data raise
    ``TypeError`` (a silent cast would hide a bug). Multi-dimensional or strided arrays
    raise ``ValueError``: flatten or copy explicitly so the cost is visible. A finite value
    beyond float32's range raises ``FloatRangeError`` (an ``OverflowError`` and a
    ``ValueError``, as from the kernels).
    """
    arr = _float_array(x, name, allow_empty)
    if arr.dtype != np.float32:
        # A finite float64 value past float32's maximum would become inf here, and the
        # kernel would then call the input "NaN or Inf". The cast's own overflow flag says
        # so at no extra pass (inf and NaN inputs cast exactly and do not set it).
        wide = arr
        try:
            with np.errstate(over="raise"):
                arr = wide.astype(np.float32)
            if not _CAST_FLAGS_OVERFLOW and np.any(~np.isfinite(arr) & np.isfinite(wide)):
                raise FloatingPointError
        except FloatingPointError:
            from . import _core  # the kernels' type for a result beyond float32

            raise _core.FloatRangeError(
                f"{name} has finite values beyond the float32 range (max |{name}| = "
                f"{float(np.max(np.abs(wide))):.3g} > {float(np.finfo(np.float32).max):.3g}); "
                "scale it down"
            ) from None
    return arr


def as_grad_and_prev(grad: Any, prev: Any) -> tuple[FloatVector, FloatVector | None]:
    """A quantizer's ``grad`` and ``prev`` (``None``: zeros) as float32 vectors of one length."""
    g = as_float_vector(grad, "grad")
    if prev is None:
        return g, None
    p = as_float_vector(prev, "prev")
    if p.shape[0] != g.shape[0]:
        raise ValueError(f"prev has length {p.shape[0]} but grad has length {g.shape[0]}")
    return g, p


def as_float_or_double_vector(
    x: Any, name: str = "x", *, allow_empty: bool = False
) -> FloatVector | npt.NDArray[np.float64]:
    """Like :func:`as_float_vector`, but float64 arrays pass through unconverted (for kernels
    that have a float64 version because float32 would lose precision)."""
    arr = _float_array(x, name, allow_empty)
    if arr.dtype != np.float32 and arr.dtype != np.float64:
        arr = arr.astype(np.float32)
    return arr


def as_out_vector(out: Any, n: int, name: str = "out") -> FloatVector:
    """Check an output array written in place: float32, 1-D, contiguous, writeable, length n.

    Never converts: converting would write into a temporary copy and silently lose the result.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy float32 array, got {_describe(out)}")
    if out.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32 (it is written in place), got {out.dtype}")
    if out.ndim != 1:
        raise ValueError(f"{name} must be a 1-D contiguous array, got shape {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(
            f"{name} must be a 1-D contiguous array, got a strided view (strides "
            f"{out.strides}); pass a contiguous array"
        )
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    if not out.flags.aligned:
        raise ValueError(
            f"{name} must be aligned to its dtype (an unaligned view, e.g. np.frombuffer at an "
            "odd offset, cannot be written in place by the kernels)"
        )
    if out.shape[0] != n:
        raise ValueError(f"{name} has length {out.shape[0]}, expected {n}")
    return out


def as_code_vector(codes: Any, name: str = "codes") -> npt.NDArray[np.uint8]:
    """Return ``codes`` if it is a 1-D contiguous uint8 array, else raise.

    Integer codes are never cast: whether the caller meant a view or a conversion is unclear,
    and a wrong guess corrupts the stream.
    """
    if not isinstance(codes, np.ndarray):
        raise TypeError(f"{name} must be a numpy uint8 array, got {_describe(codes)}")
    if codes.dtype != np.uint8:
        raise TypeError(f"{name} must have dtype uint8, got {codes.dtype}")
    if codes.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {codes.shape}")
    if not codes.flags.c_contiguous:
        raise ValueError(f"{name} must be contiguous; pass np.ascontiguousarray({name})")
    return codes


def check_bits(bits: Any, name: str = "bits") -> int:
    """Return ``bits`` as an int in [1, 8], or raise (the message names ``name``)."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [1, 8], got {bits!r}")
    if not 1 <= int(bits) <= 8:
        raise ValueError(f"{name} must be an integer in [1, 8], got {bits}")
    return int(bits)


def check_positive_int(
    value: Any, name: str, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """Return ``value`` as an int in ``[minimum, maximum]`` (no upper bound when ``maximum``
    is None), or raise: the one integer check of the package."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if maximum is not None and not minimum <= v <= maximum:
        raise ValueError(f"{name} must be in [{minimum}, {maximum}], got {v}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return v


def check_uint64(value: Any, name: str, *, maximum: int = UINT64_MAX) -> int:
    """Return ``value`` as an int in ``[0, maximum]`` (seeds, streams, steps), or raise."""
    return check_positive_int(value, name, minimum=0, maximum=maximum)


def check_step(step: Any) -> int | None:
    """A compressor's ``step``: None (use the call counter) or an int in ``[0, 2**64)``."""
    if step is None:
        return None
    value = check_positive_int(step, "step", minimum=0)
    if value > UINT64_MAX:
        raise ValueError(f"step must be < 2**64, got {value}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is True or False (not 0/1 or any other truthy object)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_real(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    positive: bool = False,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as a finite float (``>= minimum``; ``> 0`` if ``positive``;
    ``<= maximum``), or raise.

    ``TypeError`` for anything that is not a real number (bools included), ``ValueError`` for
    NaN, infinities and values out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    if positive and x <= 0.0:
        raise ValueError(f"{name} must be > 0, got {x}")
    if minimum is not None and x < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {x}")
    if maximum is not None and x > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {x}")
    return x


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the strings ``choices``; ``TypeError`` for a
    non-string, ``ValueError`` for another string."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_levels(levels: Any) -> int:
    """QSGD's ``levels`` as an int in [1, 127] (the sign + level code must fit in 8 bits)."""
    if isinstance(levels, bool) or not isinstance(levels, numbers.Integral):
        raise TypeError(f"levels must be an integer in [1, {MAX_LEVELS}], got {levels!r}")
    if not 1 <= int(levels) <= MAX_LEVELS:
        raise ValueError(
            f"levels must be in [1, {MAX_LEVELS}] (1 sign bit + ceil(log2(levels + 1)) level "
            f"bits must fit in 8 bits), got {levels}"
        )
    return int(levels)


def _nearest_existing(path: str) -> str:
    """The closest existing ancestor of ``path`` (itself when it exists)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return probe


def _creation_error(directory: str, kind: str) -> OSError | None:
    """Why nothing can be created in ``directory`` (``None``: it can), found by creating and
    removing a hidden probe of ``kind`` ``"dir"`` or ``"file"``. ``os.access`` alone is not
    enough: as root it grants writing everywhere, e.g. under ``/proc``, where creating fails.
    """
    try:
        if kind == "dir":
            os.rmdir(tempfile.mkdtemp(prefix=".laqcore-probe-", dir=directory))
        else:
            fd, probe = tempfile.mkstemp(prefix=".laqcore-probe-", dir=directory)
            os.close(fd)
            os.remove(probe)
    except OSError as err:
        return err
    return None


def check_output_dir(path: Any, name: str = "--out") -> str:
    """``path`` can be (or already is) a writable directory; checked before any work starts,
    so a long job never fails at the end. Nothing is left behind here (a probe directory is
    created and removed in the nearest existing directory).

    Raises ``ValueError`` naming ``name`` when ``path`` is a file, lies under a file, or
    nothing can be created in its nearest existing directory.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, got {type(path).__name__}")
    p = os.fspath(path)
    if not p:
        raise ValueError(f"{name} must not be empty")
    base = _nearest_existing(p)
    if not os.path.isdir(base):
        what = "is a file" if base == os.path.abspath(p) else f"lies under the file {base!r}"
        raise ValueError(f"{name} {p!r} {what}; expected a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {p!r}: directory {base!r} is not writable")
    err = _creation_error(base, "dir")
    if err is not None:
        raise ValueError(f"{name} {p!r}: cannot create a directory in {base!r} ({err.strerror})")
    return str(p)


def check_output_file(path: Any, name: str) -> str:
    """``path`` can be written as a file (its directory exists and is writable, and it is not
    a directory); checked before any work starts."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, got {type(path).__name__}")
    p = os.fspath(path)
    if not p:
        raise ValueError(f"{name} must not be empty")
    if os.path.isdir(p):
        raise ValueError(f"{name} {p!r} is a directory; expected a file name")
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        raise ValueError(f"{name} {p!r}: directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (
        os.path.exists(p) and not os.access(p, os.W_OK)
    ):
        raise ValueError(f"{name} {p!r} is not writable")
    err = None if os.path.exists(p) else _creation_error(parent, "file")
    if err is not None:
        raise ValueError(f"{name} {p!r}: cannot create a file in {parent!r} ({err.strerror})")
    return str(p)


def as_state_vector(x: Any, n: int, name: str, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """A copy of a vector read from a checkpoint: exactly ``dtype``, 1-D, length ``n``, finite.

    Checkpoints are data from outside: unlike :func:`as_float_vector`, nothing is converted
    (a float64 vector where float32 was saved means another writer), and NaN/Inf, which no
    valid state holds, is refused here rather than surfacing iterations later.
    """
    want = np.dtype(dtype)
    if not isinstance(x, np.ndarray) or x.dtype != want:
        raise TypeError(f"{name} must be a numpy {want} array, got {_describe(x)}")
    if x.ndim != 1 or x.shape[0] != n:
        raise ValueError(f"{name} must hold {n} values, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return np.array(x, dtype=want)


MAX_BLOCK_SIZE = 2**31


def check_block_size(block_size: Any) -> int | None:
    """``None`` (one global radius) or the LAQ radius block length: an integer multiple of 8
    in ``[8, 2**31]`` (so every block starts on a byte of the packed codes)."""
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size must be an integer or None, got {block_size!r}")
    value = int(block_size)
    if not 8 <= value <= MAX_BLOCK_SIZE or value % 8 != 0:
        raise ValueError(f"block_size must be a multiple of 8 in [8, 2**31], got {value}")
    return value


#: Largest width block of LAQ with a width per block (laq_widths.hpp's kMaxWidthBlock: the
#: frame's uint16 field).
MAX_WIDTH_BLOCK = 32768


def check_width_block(block_size: Any, name: str = "block_size") -> int:
    """A width block length: a multiple of 8 in ``[8, 32768]``."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {block_size!r}")
    value = int(block_size)
    if not 8 <= value <= MAX_WIDTH_BLOCK or value % 8 != 0:
        raise ValueError(f"{name} must be a multiple of 8 in [8, {MAX_WIDTH_BLOCK}], got {value}")
    return value


def check_width_options(width_block: Any, adaptive_bits: Any, block_size: Any) -> int | None:
    """``width_block`` checked against the options it goes with (``None``: LAQ's one width).

    A width per block is chosen under the error budget ``adaptive_bits`` (so it needs one),
    and each width block carries its own radius (so it excludes ``block_size``'s radii).
    """
    if width_block is None:
        return None
    value = check_width_block(width_block, "width_block")
    if adaptive_bits is None or block_size is not None:
        raise ValueError(
            "width_block needs adaptive_bits (the error budget F) and no block_size (each "
            "width block has its own radius)"
        )
    return value


def check_widths(widths: Any) -> tuple[int, int, int, int]:
    """A width table: four integers ``0 = w0 < w1 < w2 < w3 <= 8``."""
    try:
        values = tuple(widths)
    except TypeError:
        raise TypeError(f"widths must be a sequence of four integers, got {widths!r}") from None
    if len(values) != 4 or any(
        isinstance(w, bool) or not isinstance(w, (int, np.integer)) for w in values
    ):
        raise TypeError(f"widths must be a sequence of four integers, got {widths!r}")
    w = tuple(int(x) for x in values)
    if w[0] != 0 or not all(a < b for a, b in zip(w, w[1:])) or w[3] > 8:
        raise ValueError(f"widths must be 0 < w1 < w2 < w3 <= 8 after a leading 0, got {w}")
    return w  # type: ignore[return-value]  # four entries, checked


def check_budget(budget: Any) -> float:
    """An error budget: a real number >= 0, ``inf`` allowed (no budget)."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise TypeError(f"budget must be a real number, got {budget!r}")
    b = float(budget)
    if math.isnan(b) or b < 0.0:
        raise ValueError(f"budget must be >= 0 (inf allowed), got {b}")
    return b


def registry_key(name: str) -> str:
    """The one normalisation of registry names (algorithms and compressors alike): case,
    surrounding blanks and the choice of ``-`` or ``_`` do not matter."""
    return name.strip().lower().replace("-", "_")


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """Decorator: accept the old keyword ``old`` of ``renames = {old: new}`` as a deprecated
    alias of ``new``.

    A call with ``old=`` warns (``DeprecationWarning`` naming ``new``) and runs as if it had
    passed ``new=``; a call with both raises ``TypeError`` before the function runs. The
    signature (and hence type checking and the docs) shows only the new names.
    """

    def decorate(fn: F) -> F:
        where = fn.__qualname__.removesuffix(".__init__")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(
                        f"{where}() got both {new}= and its deprecated alias {old}=; "
                        f"pass only {new}="
                    )
                warnings.warn(
                    f"{where}({old}=...) is deprecated: use {new}=... (the same value)",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return cast(F, wrapper)  # the same signature (functools.wraps)

    return decorate
