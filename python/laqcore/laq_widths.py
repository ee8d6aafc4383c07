"""LAQ with a bit width per block: the adaptive-width quantizer of issue 13.3.

The innovation ``v = grad - q_prev`` is cut into blocks of ``block_size`` coordinates; each
block gets a width from a table of four (default ``(0, 2, 3, 4)``; 0 = the block is not sent)
and its own radius, a 3-bit exponent ``R_j = R_max 2^(-e_j/2)`` against the frame's largest
block maximum. The widths minimise the frame's bits subject to
``||dQ - v||^2 <= min(budget, cap ||v||^2)`` by a Lagrangian (rate-distortion) allocation:
blocks whose innovation carries much energy get more bits, quiet blocks few or none. Formula,
arithmetic and body layout: ``cpp/include/laqcore/laq_widths.hpp``; why and what it reaches:
docs/algorithms.md, "A width per block in the library".

In the simulator it is the LAQ family's ``width_block`` option (with ``adaptive_bits = F``:
``budget = F rhs / err_coef``, so the rule's quantization-error term stays below ``F`` times
its iterate-difference term, as for the one-width ``adaptive_bits``).

Frame kind ``PayloadKind.LAQ_WIDTHS``: metadata ``<HHf`` = the width table (four 4-bit
entries, entry k in bits [4k, 4k + 4)), ``block_size`` (uint16, a multiple of 8 in
[8, 32768]), ``R_max`` (float32); body = the bit stream of the header
(table indices, exponents, codes), padded with zero bits to a byte.
"""

from __future__ import annotations

import math
import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from . import _core
from ._typing import FloatVector
from ._validate import (
    as_code_vector,
    as_grad_and_prev,
    check_budget,
    check_positive_int,
    check_real,
    check_width_block,
    check_widths,
)
from .laq_payload import LAQPayload, _check_radius, _frozen
from .wire import PayloadKind, body_array

__all__ = ["DEFAULT_WIDTHS", "ERROR_CAP", "LAQWidthsPayload", "laq_quantize_widths"]


def __dir__() -> list[str]:
    return __all__


#: The width table: a block's 2-bit field picks one of these (0 = not sent). Widths 1 and
#: 5..8 were almost never chosen when offered: a block's own radius already absorbs the
#: innovation's range (docs/algorithms.md, "A width per block in the library").
DEFAULT_WIDTHS: tuple[int, int, int, int] = (0, 2, 3, 4)
#: The allocation's error never exceeds this share of ||v||^2, however large the rule's
#: budget: an upload forced by LAQ's clock (when the budget is huge) still carries at least
#: 70% of its innovation's energy. Chosen on digits among 0.1/0.2/0.3/0.5 (docs/algorithms.md).
ERROR_CAP = 0.3


class LAQWidthsPayload(LAQPayload):
    """One LAQ upload with a width per block (read-only fields).

    Attributes
    ----------
    packed : numpy.ndarray of uint8
        The body: table indices, exponents and codes (``laq_widths.hpp``'s layout).
    widths : tuple of 4 int
        The frame's width table.
    block_widths : numpy.ndarray of int8
        Each block's width (0: not sent).
    radii : numpy.ndarray of float32
        Each block's radius (0 for blocks not sent).
    radius : float
        ``R_max``, the largest block maximum ``max |v_j|`` (float32).
    bits : int
        The widest entry of the table: no block has more bits per coordinate.
    block_size, n, err_sq, innov_sq
        As for :class:`~laqcore.LAQBlockPayload`.

    Examples
    --------
    >>> import numpy as np
    >>> from laqcore.laq_widths import laq_quantize_widths
    >>> g = np.array([1.0, -0.5] * 4 + [0.0] * 8, dtype=np.float32)
    >>> p = laq_quantize_widths(g, None, 8, budget=0.01)
    >>> p.block_widths, p.radii
    (array([4, 0], dtype=int8), array([1., 0.], dtype=float32))
    >>> from laqcore.laq_payload import LAQPayload
    >>> LAQPayload.from_bytes(p.to_bytes()) == p
    True
    """

    KIND: ClassVar[PayloadKind] = PayloadKind.LAQ_WIDTHS
    META: ClassVar[struct.Struct] = struct.Struct("<HHf")

    def __init__(  # noqa: PLR0913 - the payload's fields
        self,
        packed: npt.NDArray[np.uint8],
        radius: float,
        n: int,
        block_size: int,
        widths: Any = DEFAULT_WIDTHS,
        err_sq: float | None = None,
        innov_sq: float | None = None,
    ) -> None:
        n = check_positive_int(n, "n")
        block_size = check_width_block(block_size)
        checked = check_widths(widths)
        r = _check_radius(radius)
        body = _frozen(as_code_vector(packed, "packed"))
        _core.laq_widths.check(body, n, block_size, list(checked), r)
        self._set(body, r, n, block_size, checked, err_sq, innov_sq)

    @classmethod
    def _trusted_widths(  # noqa: PLR0913 - the payload's fields
        cls,
        packed: npt.NDArray[np.uint8],
        radius: float,
        n: int,
        block_size: int,
        widths: tuple[int, int, int, int],
        err_sq: float | None = None,
        innov_sq: float | None = None,
    ) -> LAQWidthsPayload:
        """Fields valid by construction (the quantizer's output, a checked frame);
        ``packed`` read-only."""
        p = cls.__new__(cls)
        p._set(packed, radius, n, block_size, widths, err_sq, innov_sq)
        return p

    def _set(  # noqa: PLR0913 - the payload's fields
        self,
        packed: npt.NDArray[np.uint8],
        radius: float,
        n: int,
        block_size: int,
        widths: tuple[int, int, int, int],
        err_sq: float | None,
        innov_sq: float | None,
    ) -> None:
        """Every field, from checked values (the one place that lists them)."""
        self._packed, self._radius, self._n, self._block_size = packed, float(radius), n, block_size
        self._widths, self._bits = widths, widths[-1]
        self._fields: tuple[npt.NDArray[np.int8], FloatVector] | None = None
        self._err_sq = None if err_sq is None else float(err_sq)
        self._innov_sq = None if innov_sq is None else float(innov_sq)

    # -- fields ------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[int, int, int, int]:
        return self._widths

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def radius(self) -> float:
        return self._radius

    def _decoded_fields(self) -> tuple[npt.NDArray[np.int8], FloatVector]:
        if self._fields is None:
            w, r = _core.laq_widths.fields(
                self._packed, self._n, self._block_size, list(self._widths), self._radius
            )
            w.flags.writeable = False
            r.flags.writeable = False
            self._fields = (w, r)
        return self._fields

    @property
    def block_widths(self) -> npt.NDArray[np.int8]:
        return self._decoded_fields()[0]

    @property
    def radii(self) -> FloatVector:
        return self._decoded_fields()[1]

    @property
    def tau(self) -> float:
        raise ValueError(
            "a LAQ_WIDTHS payload has a width per block (block_widths), not one tau; block j's "
            "error bound is radii[j] / (2**block_widths[j] - 1)"
        )

    def _native_innov_sq(self) -> float:
        return float(
            _core.laq_widths.innov_sq(
                self._packed, self._n, self._block_size, list(self._widths), self._radius
            )
        )

    def __repr__(self) -> str:
        return (
            f"LAQWidthsPayload(n={self.n}, widths={self._widths}, block_size={self._block_size}, "
            f"radius={self._radius!r}, err_sq={self.err_sq!r}, nbytes={self.nbytes})"
        )

    # -- decoding ----------------------------------------------------------------------
    def accumulate_into(self, out: FloatVector, weight: float) -> None:
        """``out += weight * dQ`` in float32 (checked arrays; :func:`laqcore.laq_accumulate`)."""
        _core.laq_widths.accumulate(
            out,
            self._packed,
            self._n,
            self._block_size,
            list(self._widths),
            self._radius,
            weight,
        )

    def dequantize(self) -> FloatVector:
        """``dQ`` (float32, length ``n``)."""
        return _core.laq_widths.dequantize(
            self._packed, self._n, self._block_size, list(self._widths), self._radius
        )

    # -- wire.Payload interface ---------------------------------------------------------
    def _meta_values(self) -> tuple[Any, ...]:
        table = sum(w << (4 * k) for k, w in enumerate(self._widths))
        return (table, self._block_size, self._radius)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self._packed,)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> LAQWidthsPayload:
        table, block, radius = meta
        widths = tuple((table >> (4 * k)) & 0xF for k in range(4))
        try:
            checked = check_widths(widths)
            block = check_width_block(block)
        except ValueError as e:
            raise ValueError(f"corrupt LAQ_WIDTHS frame: {e}") from None
        if not math.isfinite(radius) or radius < 0.0:
            raise ValueError(
                f"corrupt LAQ_WIDTHS frame: R_max must be finite and >= 0, got {radius}"
            )
        packed = body_array(body, 0, len(body), np.uint8, "body")
        _core.laq_widths.check(packed, n, block, list(checked), radius)  # length, padding
        packed.flags.writeable = False
        return cls._trusted_widths(packed, radius, n, block, checked)

    @classmethod
    def _from_coded(
        cls, n: int, meta: tuple[Any, ...], prefix: memoryview, packed: npt.NDArray[Any]
    ) -> LAQWidthsPayload:
        raise ValueError("corrupt ENTROPY frame: LAQ_WIDTHS frames are not entropy coded")


def laq_quantize_widths(
    grad: Any,
    prev: Any,
    block_size: int,
    budget: float,
    *,
    cap: float = ERROR_CAP,
    widths: Any = DEFAULT_WIDTHS,
) -> LAQWidthsPayload:
    """Quantize ``grad - prev`` with a width per block of ``block_size`` coordinates.

    Parameters
    ----------
    grad, prev : array_like of float, 1-D
        As for :func:`laqcore.laq_quantize` (``prev`` may be ``None``: zeros).
    block_size : int
        Coordinates per width block: a multiple of 8 in ``[8, 32768]``.
    budget : float
        The error budget on ``||dQ - v||^2`` (>= 0, ``inf`` allowed); the allocation meets
        ``min(budget, cap ||v||^2)`` with the fewest bits it finds.
    cap : float, default :data:`ERROR_CAP`
        Share of ``||v||^2`` the error may never exceed (finite, >= 0).
    widths : four ints, default :data:`DEFAULT_WIDTHS`
        The width table, ``0 < w1 < w2 < w3 <= 8`` after a leading 0.

    Returns
    -------
    LAQWidthsPayload
        With ``err_sq = ||prev + dQ - grad||^2`` and ``innov_sq = ||dQ||^2``.

    Raises
    ------
    TypeError, ValueError, OverflowError
        As :func:`laqcore.laq_quantize` for the arrays; a bad ``block_size``, ``budget``,
        ``cap`` or ``widths``.
    """
    bs = check_width_block(block_size)
    w = check_widths(widths)
    b = check_budget(budget)
    c = check_real(cap, "cap", minimum=0.0)
    g, p = as_grad_and_prev(grad, prev)
    body, r_max, err_sq, innov_sq = _core.laq_widths.quantize(g, p, bs, list(w), b, c)
    body.flags.writeable = False
    return LAQWidthsPayload._trusted_widths(body, r_max, g.shape[0], bs, w, err_sq, innov_sq)
