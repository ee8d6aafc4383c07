"""The LAQ innovation quantizer (Sun et al., NeurIPS 2019; docs/algorithms.md "LAQ innovation
quantizer").

A worker keeps ``q_prev``, the last quantized gradient it uploaded. For a new gradient ``g`` it
quantizes the *innovation* ``v = g - q_prev`` to ``b`` bits per coordinate on a uniform grid of
``2**b`` points spanning ``[-R, R]``, ``R = max|v|``::

    tau = 1 / (2**b - 1)
    c_i = floor((v_i + R) / (2 tau R) + 1/2)        # integer code in 0 .. 2**b - 1
    dQ_i = 2 tau R c_i - R                          # dequantized innovation

and uploads the packed codes plus ``R``. The receiver reconstructs ``dQ`` from them alone. The
exact floating-point arithmetic (float32 innovation, float32 radius, codes in double, dQ from a
shared table so sender and receiver agree bit for bit, the rule's sums of squares in scaled
float32 lanes) is documented at the top of ``cpp/include/laqcore/laq.hpp``.

Blockwise radius (``block_size``): one radius per block of ``block_size`` coordinates (the
last block may be shorter), each block quantized exactly as above on its own grid. Large
entries then cost resolution only in their own block, which is what lets 2- and 4-bit
innovations train; ``block_size=None`` (the default) is the paper's global radius.
``err_sq`` and ``innov_sq`` are the same sums over all coordinates either way, each element
reconstructed on its block's grid, so the lazy upload rule uses them unchanged.

Wire format: see :mod:`laqcore.laq_payload` (``PayloadKind.LAQ`` and ``LAQ_BLOCK``). An upload
costs ``b*n`` bits of codes + 32 bits per radius + the frame's fixed 24 bytes (header,
metadata, CRC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _core
from ._typing import FloatVector
from ._validate import (
    as_float_vector,
    as_grad_and_prev,
    as_out_vector,
    check_bits,
    check_block_size,
    check_positive_int,
    check_real,
    check_step,
)
from .laq_payload import LAQBlockPayload, LAQPayload
from .laq_widths import ERROR_CAP, LAQWidthsPayload, laq_quantize_widths
from .wire import Payload

__all__ = [
    "InnovationQuantizer",
    "LAQBlockPayload",
    "LAQCompressor",
    "LAQPayload",
    "laq_accumulate",
    "laq_accumulate_all",
    "laq_apply",
    "laq_apply_average",
    "laq_dequantize",
    "laq_quantize",
]


def __dir__() -> list[str]:
    return __all__


def _check_payload(payload: Any) -> LAQPayload:
    if not isinstance(payload, LAQPayload):
        raise TypeError(f"payload must be a LAQPayload, got {type(payload).__name__}")
    return payload


def laq_quantize(grad: Any, prev: Any, bits: int, block_size: int | None = None) -> LAQPayload:
    """Quantize the innovation ``grad - prev`` to ``bits`` bits per coordinate.

    Global radius: one native pass computes the radius (and rejects NaN/Inf), a second
    writes the codes already packed and sums the two norms the LAQ upload rule needs.
    Blockwise (``block_size`` given): each block's radius is computed and the block encoded
    while it is in cache, one read of the input.

    Parameters
    ----------
    grad : array_like of float, 1-D
        The new gradient ``g`` (float32 native; float64 converted).
    prev : array_like of float, 1-D, or None
        ``q_prev``, the last uploaded quantized gradient, same length; ``None`` means zero.
    bits : int
        Bits per coordinate, 1..8.
    block_size : int or None, default None
        Coordinates per radius (a multiple of 8 in ``[8, 2**31]``; the last block may be
        shorter). ``None``: one radius for the whole vector (the paper's quantizer).

    Returns
    -------
    LAQPayload
        A :class:`LAQBlockPayload` when ``block_size`` is given. With
        ``err_sq = ||prev + dQ - grad||^2`` and ``innov_sq = ||dQ||^2``.

    Raises
    ------
    TypeError
        Non-float arrays, or ``bits`` / ``block_size`` not an integer.
    ValueError
        Empty, multi-dimensional, strided or mismatched arrays; NaN/Inf; ``bits`` outside
        1..8; a bad ``block_size``.
    OverflowError
        An innovation or a reconstruction ``prev + dQ`` that overflows float32 (the kernels'
        ``FloatRangeError``, a ``ValueError`` too).

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> g = np.array([0.5, -1.0, 0.25, 1.0], dtype=np.float32)
    >>> p = laqcore.laq_quantize(g, np.zeros(4, dtype=np.float32), 2)
    >>> p.radius, laqcore.unpack_bits(p.packed, 2, 4)
    (1.0, array([2, 0, 2, 3], dtype=uint8))
    >>> laqcore.laq_dequantize(p)
    array([ 0.33333334, -1.        ,  0.33333334,  1.        ], dtype=float32)
    """
    bits = check_bits(bits)
    bs = check_block_size(block_size)
    g, p = as_grad_and_prev(grad, prev)
    # The kernel's fresh outputs, read-only: valid by construction (no re-validation).
    if bs is not None:
        packed, radii, err_sq, innov_sq = _core.laq.quantize_blocks(g, p, bits, bs)
        packed.flags.writeable = False
        radii.flags.writeable = False
        return LAQBlockPayload._trusted(packed, radii, bits, g.shape[0], bs, err_sq, innov_sq)
    packed, radius, err_sq, innov_sq = _core.laq.quantize(g, p, bits)
    packed.flags.writeable = False
    one = np.array([radius], dtype=np.float32)  # the kernel's float32 radius: exact
    one.flags.writeable = False
    return LAQPayload._trusted(packed, one, bits, g.shape[0], None, err_sq, innov_sq)


def _accumulate(out: FloatVector, p: LAQPayload, weight: float) -> None:
    """``out += weight * dQ`` with the kernel of the payload's kind (checks done)."""
    if isinstance(p, LAQWidthsPayload):
        p.accumulate_into(out, weight)
    elif isinstance(p, LAQBlockPayload):
        _core.laq.accumulate_blocks(out, p.packed, p.n, p.bits, p.block_size, p.radii, weight)
    else:
        _core.laq.accumulate(out, p.packed, p.n, p.bits, p.radius, weight)


def laq_dequantize(payload: LAQPayload) -> FloatVector:
    """Decode a payload into its dequantized innovation ``dQ`` (float32, length ``n``).

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> p = laqcore.laq_quantize(np.array([3.0, -3.0], dtype=np.float32), None, 1)
    >>> laqcore.laq_dequantize(p)
    array([ 3., -3.], dtype=float32)
    """
    p = _check_payload(payload)
    if isinstance(p, LAQWidthsPayload):
        return p.dequantize()
    if isinstance(p, LAQBlockPayload):
        return _core.laq.dequantize_blocks(p.packed, p.n, p.bits, p.block_size, p.radii)
    return _core.laq.dequantize(p.packed, p.n, p.bits, p.radius)


def laq_apply(prev: FloatVector, payload: LAQPayload) -> None:
    """Worker side: ``prev += dQ`` in place, decoding straight from the packed codes.

    The result is bit-identical to the reconstruction the quantizer assumed when it computed
    ``payload.err_sq`` (one float32 addition per element).

    Parameters
    ----------
    prev : numpy.ndarray of float32, 1-D, length ``payload.n``
        Updated in place; never converted (a wrong dtype raises ``TypeError``).

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> q = np.zeros(2, dtype=np.float32)
    >>> laqcore.laq_apply(q, laqcore.laq_quantize(np.array([1.0, -1.0], np.float32), q, 4))
    >>> q
    array([ 1., -1.], dtype=float32)
    """
    p = _check_payload(payload)
    out = as_out_vector(prev, p.n, "prev")
    _accumulate(out, p, 1.0)


def laq_apply_average(
    prev: FloatVector, payload: LAQPayload, divisor: float, out: FloatVector
) -> None:
    """``prev += dQ`` in place, then ``out = prev / divisor``, in one pass over ``prev``.

    Bit-identical to :func:`laq_apply` followed by ``np.divide(prev, np.float32(divisor),
    out=out)`` (one float32 addition, then one float32 division per element), but each range
    is divided right after its codes were added, while it is still in cache: the two-phase
    exchange applies a publication to its replica of the aggregate and writes the average
    ``replica / N`` in one pass instead of two (docs/ddp.md, "Fused passes").

    Parameters
    ----------
    prev : numpy.ndarray of float32, 1-D, length ``payload.n``
        Updated in place; never converted (a wrong dtype raises ``TypeError``).
    payload : LAQPayload
        The innovation to apply (global or blockwise radius).
    divisor : float
        Nonzero, finite in float32 (rounded to float32 first, as ``np.float32(divisor)``).
    out : numpy.ndarray of float32, 1-D, length ``payload.n``
        Receives ``prev / divisor``; must not share memory with ``prev``.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> from laqcore.laq import laq_apply_average
    >>> q, avg = np.zeros(2, dtype=np.float32), np.empty(2, dtype=np.float32)
    >>> p = laqcore.laq_quantize(np.array([1.0, -1.0], np.float32), q, 4)
    >>> laq_apply_average(q, p, 2, avg)
    >>> q, avg
    (array([ 1., -1.], dtype=float32), array([ 0.5, -0.5], dtype=float32))
    """
    p = _check_payload(payload)
    dst = as_out_vector(prev, p.n, "prev")
    avg = as_out_vector(out, p.n, "out")
    d = check_real(divisor, "divisor")
    if d == 0.0 or abs(d) > float(np.finfo(np.float32).max):
        raise ValueError(f"divisor must be nonzero and finite in float32, got {divisor!r}")
    if np.may_share_memory(dst, avg):
        raise ValueError("out must not share memory with prev")
    if isinstance(p, LAQWidthsPayload):  # no fused kernel: the same two float32 operations
        p.accumulate_into(dst, 1.0)
        np.divide(dst, np.float32(d), out=avg)
    elif isinstance(p, LAQBlockPayload):
        _core.laq.accumulate_divide_blocks(
            dst, avg, p.packed, p.n, p.bits, p.block_size, p.radii, d
        )
    else:
        _core.laq.accumulate_divide(dst, avg, p.packed, p.n, p.bits, p.radius, d)


def laq_accumulate(aggregate: FloatVector, payload: LAQPayload, weight: float = 1.0) -> None:
    """Server side: ``aggregate += weight * dQ`` in place, without materialising the codes.

    The weight is rounded to float32 and multiplied into the 2**bits dequantized values once,
    so each element costs one table lookup and one float32 addition; ``weight=1`` gives exactly
    :func:`laq_apply`.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> agg = np.ones(2, dtype=np.float32)
    >>> p = laqcore.laq_quantize(np.array([1.0, -1.0], np.float32), None, 4)
    >>> laqcore.laq_accumulate(agg, p, weight=0.5)
    >>> agg
    array([1.5, 0.5], dtype=float32)
    """
    p = _check_payload(payload)
    out = as_out_vector(aggregate, p.n, "aggregate")
    w = check_real(weight, "weight")
    if abs(w) > float(np.finfo(np.float32).max):
        raise ValueError(f"weight must be finite in float32, got {weight!r}")
    _accumulate(out, p, w)


def laq_accumulate_all(aggregate: FloatVector, payloads: Sequence[LAQPayload]) -> None:
    """``aggregate += dQ_0 + dQ_1 + ...`` in place, the payloads added in order, in one pass.

    Bit-identical to ``for p in payloads: laq_apply(aggregate, p)`` (per element the float32
    additions happen in the same order), but each range of ``aggregate`` is read and written
    once, however many payloads: a two-phase owner adds every uploader's chunk this way
    (docs/ddp.md, "Fused passes"). Every payload is checked before anything is written.

    Parameters
    ----------
    aggregate : numpy.ndarray of float32, 1-D
        Updated in place; never converted (a wrong dtype raises ``TypeError``).
    payloads : sequence of LAQPayload
        Of ``len(aggregate)`` coordinates each, all with the same ``bits`` and the same radius
        kind (all global, or all blockwise with one ``block_size``); may be empty.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> from laqcore.laq import laq_accumulate_all
    >>> agg = np.zeros(2, dtype=np.float32)
    >>> p = laqcore.laq_quantize(np.array([1.0, -1.0], np.float32), None, 4)
    >>> laq_accumulate_all(agg, [p, p])
    >>> agg
    array([ 2., -2.], dtype=float32)
    """
    if not isinstance(payloads, (list, tuple)):
        raise TypeError(f"payloads must be a list or tuple, got {type(payloads).__name__}")
    ps = [_check_payload(p) for p in payloads]
    if not ps:  # nothing to add; the aggregate is still checked
        size = int(aggregate.size) if isinstance(aggregate, np.ndarray) else -1
        as_out_vector(aggregate, size, "aggregate")
        return
    first = ps[0]
    out = as_out_vector(aggregate, first.n, "aggregate")
    kind = (type(first), first.bits, first.block_size, first.n)
    for i, p in enumerate(ps[1:], 1):
        if (type(p), p.bits, p.block_size, p.n) != kind:
            raise ValueError(
                f"payloads[{i}] has n={p.n}, bits={p.bits}, block_size={p.block_size}; "
                f"payloads[0] has n={first.n}, bits={first.bits}, "
                f"block_size={first.block_size} (or another kind)"
            )
    if isinstance(first, LAQWidthsPayload):  # no fused kernel: in order, one at a time
        for p in ps:
            _accumulate(out, p, 1.0)
        return
    packed = [p.packed for p in ps]
    if isinstance(first, LAQBlockPayload):
        radii = [p.radii for p in ps]
        _core.laq.accumulate_all_blocks(out, packed, first.n, first.bits, first.block_size, radii)
    else:
        one = np.array([p.radius for p in ps], dtype=np.float32)  # float32 radii: exact
        _core.laq.accumulate_all(out, packed, first.n, first.bits, one)


class LAQCompressor:
    """The LAQ quantizer behind the stateless compressor protocol (``name = "laq"``).

    ``compress(x)`` quantizes ``x`` as an innovation against zero (``q_prev = 0``), so each
    call is independent; the stateful, lazily-aggregated use is :class:`InnovationQuantizer`.
    The quantizer is deterministic, so ``step`` is accepted for the protocol and ignored.

    Parameters
    ----------
    bits : int, default 4
        Bits per coordinate, 1..8 (the LAQ paper's MNIST default is 4).

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> c = laqcore.LAQCompressor(bits=8)
    >>> x = np.linspace(-1, 1, 5, dtype=np.float32)
    >>> payload = c.compress(x)
    >>> err = np.abs(c.decompress(c.from_bytes(payload.to_bytes())) - x).max()
    >>> bool(err <= 1.001 / 255)  # half of the 2/255 step, and float32 rounding
    True
    """

    name: str = "laq"

    def __init__(self, bits: int = 4) -> None:
        self.bits = check_bits(bits)

    def __repr__(self) -> str:
        return f"LAQCompressor(bits={self.bits})"

    def compress(self, x: Any, *, step: int | None = None) -> LAQPayload:
        """Quantize ``x`` (innovation against zero)."""
        check_step(step)
        return laq_quantize(x, None, self.bits)

    def decompress(self, payload: Payload) -> FloatVector:
        """The dequantized vector of a payload made by :meth:`compress` (``TypeError`` for
        another compressor's payload)."""
        return laq_dequantize(_check_payload(payload))

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> LAQPayload:
        """Decode a frame; raises ``ValueError`` for truncated, corrupt or foreign frames, or
        one whose length is not ``expected_n`` (when given; see :mod:`laqcore.wire`)."""
        return LAQPayload.from_bytes(buf, expected_n=expected_n)


class InnovationQuantizer:
    """One worker's LAQ quantizer state: ``q_prev`` and the error of its last upload.

    Usage per iteration: ``payload = iq.propose(grad)`` (no state change), decide with the
    upload rule (:mod:`laqcore.lazy`) using ``payload.innov_sq``, ``payload.err_sq`` and
    ``iq.err_hat_sq``, and, if uploading, ``iq.commit(payload)``, which applies ``dQ`` to
    ``q_prev`` and records ``err_hat_sq = payload.err_sq``. Only the most recent proposal can
    be committed, and only once: a stale or repeated commit would desynchronise ``q_prev``
    from the server's copy.

    Parameters
    ----------
    n : int
        Gradient length.
    bits : int
        Bits per coordinate, 1..8.
    block_size : int or None, default None
        Radius block length (see :func:`laq_quantize`); ``None``: one global radius.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> iq = laqcore.InnovationQuantizer(3, bits=4)
    >>> p = iq.propose(np.array([1.0, 0.5, -1.0], dtype=np.float32))
    >>> iq.commit(p)
    >>> iq.q_prev  # the grid has 16 points in [-1, 1]: 0.5 rounds to 7/15
    array([ 1.        ,  0.46666667, -1.        ], dtype=float32)
    >>> iq.err_hat_sq == p.err_sq
    True
    """

    def __init__(self, n: int, bits: int, block_size: int | None = None) -> None:
        self.n = check_positive_int(n, "n")
        self.bits = check_bits(bits)
        self.block_size = check_block_size(block_size)
        self._q_prev: FloatVector = np.zeros(self.n, dtype=np.float32)
        self.err_hat_sq: float = 0.0
        self._pending: LAQPayload | None = None

    @property
    def q_prev(self) -> FloatVector:
        """Read-only view of the last uploaded quantized gradient (initially zero)."""
        view = self._q_prev.view()
        view.flags.writeable = False
        return view

    def propose(self, grad: Any, bits: int | None = None) -> LAQPayload:
        """Quantize ``grad - q_prev`` without changing any state, with ``bits`` bits per
        coordinate (default: this quantizer's ``bits``; the frame records the width, so
        uploads of different widths decode alike)."""
        g = as_float_vector(grad, "grad")
        if g.shape[0] != self.n:
            raise ValueError(f"grad has length {g.shape[0]}, expected {self.n}")
        b = self.bits if bits is None else check_bits(bits)
        payload = laq_quantize(g, self._q_prev, b, self.block_size)
        self._pending = payload
        return payload

    def propose_widths(
        self, grad: Any, block_size: int, budget: float, cap: float = ERROR_CAP
    ) -> LAQPayload:
        """Like :meth:`propose`, with a width per block of ``block_size`` coordinates meeting
        the error budget (:func:`laqcore.laq_widths.laq_quantize_widths`)."""
        g = as_float_vector(grad, "grad")
        if g.shape[0] != self.n:
            raise ValueError(f"grad has length {g.shape[0]}, expected {self.n}")
        payload = laq_quantize_widths(g, self._q_prev, block_size, budget, cap=cap)
        self._pending = payload
        return payload

    def commit(self, payload: LAQPayload) -> None:
        """Upload ``payload``: ``q_prev += dQ`` and ``err_hat_sq = payload.err_sq``."""
        p = _check_payload(payload)
        if p is not self._pending:
            raise ValueError(
                "commit() takes the payload returned by the latest propose(), once; this one "
                "is stale, already committed or from another quantizer"
            )
        if p.err_sq is None:  # pragma: no cover - laq_quantize always sets it
            raise RuntimeError("internal error: proposed payload without err_sq")
        _accumulate(self._q_prev, p, 1.0)
        self.err_hat_sq = p.err_sq
        self._pending = None

    def reset(self) -> None:
        """Back to the initial state (``q_prev = 0``, ``err_hat_sq = 0``)."""
        self._q_prev.fill(0.0)
        self.err_hat_sq = 0.0
        self._pending = None
