"""Chunks of a payload without re-encoding: the payload of coordinates ``[s, e)``.

The two-phase exchange sends chunk j of each upload to the rank that owns it. For the
packed payloads whose scales cover aligned groups of coordinates, a chunk that starts on a
group boundary and on a byte of the packed stream is a slice of the arrays:

* blockwise LAQ (:meth:`~laqcore.LAQBlockPayload.slice_blocks`): the radii of the chunk's
  blocks and the bytes of its codes (``s`` a multiple of ``block_size``, itself a multiple
  of 8); global-radius LAQ: the radius and the chunk's codes;
* QSGD: the scales of the chunk's buckets and its codes (``s`` a multiple of ``bucket_size``
  and of ``8 / gcd(code_bits, 8)``);
* TernGrad and scaled sign (one scale): the scale and the chunk's codes;
* dense float32 (GD, LAG): the chunk's values (any ``s``).

Decoding the slice gives exactly the corresponding part of decoding the whole payload (every
decoder is elementwise given its group's scale).
"""

from __future__ import annotations

import math
from typing import Any

from .._validate import check_positive_int
from ..compressors.base import ScaledCodesPayload
from ..compressors.dense import DensePayload
from ..compressors.qsgd import QSGDPayload
from ..laq_payload import LAQBlockPayload, LAQPayload
from ..laq_widths import LAQWidthsPayload
from ..wire import Payload

__all__ = ["chunk_bounds", "slice_payload", "slice_unit"]


def __dir__() -> list[str]:
    return __all__


def _byte_unit(bits: int) -> int:
    """Smallest number of codes of ``bits`` bits that fills whole bytes."""
    return 8 // math.gcd(bits, 8)


def slice_unit(payload: Payload) -> int:
    """Chunk starts must be multiples of this for :func:`slice_payload` (``TypeError`` for a
    payload kind that cannot be sliced)."""
    if isinstance(payload, LAQWidthsPayload):  # variable-width blocks: no fixed byte layout
        raise TypeError("LAQWidthsPayload (width_block) cannot be split into chunks")
    if isinstance(payload, LAQBlockPayload):
        return payload.block_size  # a multiple of 8: every block starts on a byte
    if isinstance(payload, LAQPayload):
        return _byte_unit(payload.bits)
    if isinstance(payload, QSGDPayload):
        return math.lcm(payload.bucket_size, _byte_unit(payload.code_bits))
    if isinstance(payload, ScaledCodesPayload):
        return _byte_unit(payload.CODE_BITS)
    if isinstance(payload, DensePayload):
        return 1
    raise TypeError(f"{type(payload).__name__} cannot be split into chunks")


def _bytes(packed: Any, s: int, e: int, bits: int) -> Any:
    return packed[s * bits // 8 : -(-e * bits // 8)]


def slice_payload(payload: Payload, s: int, e: int) -> Payload:
    """The payload of coordinates ``[s, e)`` of ``payload`` (``0 <= s < e <= n``, ``s`` a
    multiple of :func:`slice_unit`, ``e`` one too or ``n``)."""
    n = int(getattr(payload, "n", 0))
    unit = slice_unit(payload)
    if not (0 <= s < e <= n) or s % unit or (e % unit and e != n):
        raise ValueError(f"cannot slice [{s}, {e}) of a payload of {n} coordinates (unit {unit})")
    if isinstance(payload, LAQBlockPayload):
        bs = payload.block_size
        return payload.slice_blocks(s // bs, -(-e // bs))
    if isinstance(payload, LAQPayload):  # global radius: the same radius for every chunk
        return LAQPayload(
            _bytes(payload.packed, s, e, payload.bits), payload.radius, payload.bits, e - s
        )
    if isinstance(payload, QSGDPayload):
        bs = payload.bucket_size
        return QSGDPayload(
            e - s,
            payload.levels,
            payload.norm,
            bs,
            payload.scales[s // bs : -(-e // bs)],
            _bytes(payload.packed, s, e, payload.code_bits),
        )
    if isinstance(payload, DensePayload):
        return DensePayload(payload.values[s:e])
    assert isinstance(payload, ScaledCodesPayload)  # noqa: S101 - slice_unit checked the kind
    return type(payload)(e - s, payload._scale, _bytes(payload.packed, s, e, payload.CODE_BITS))


def chunk_bounds(n: int, world: int, unit: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``world`` contiguous chunks whose boundaries are multiples of
    ``unit`` (the last chunk ends at ``n``); chunk sizes differ by at most one unit, and a
    chunk is empty when there are fewer units than chunks.

    Examples
    --------
    >>> chunk_bounds(10, 3, 4)
    [(0, 4), (4, 8), (8, 10)]
    >>> chunk_bounds(6, 3, 4)  # two units for three chunks: one chunk is empty
    [(0, 0), (0, 4), (4, 6)]
    """
    n = check_positive_int(n, "n")
    world = check_positive_int(world, "world")
    unit = check_positive_int(unit, "unit")
    units = -(-n // unit)
    return [
        (min(n, (j * units // world) * unit), min(n, ((j + 1) * units // world) * unit))
        for j in range(world)
    ]
