"""Variable-size publications in fixed-size all-gather slots, their sizes in the slots.

An all-gather moves one tensor of the same size from every rank, so publications whose sizes
depend on the data (entropy-coded frames) need the sizes first: one more all-gather of one
int64 per rank, a collective whose latency can cost as much as the coding saves on a small
model. Instead, each rank puts its publication in a **slot** of ``SIZE_HEADER + capacity``
bytes that every rank can size in advance: a uint32 (little-endian) with the publication's
length, then its first ``capacity`` bytes, then zero padding. The capacity is agreed on
before the publications exist (the two-phase exchange takes the largest of the ranks'
proposals, which travel with the control values it gathers anyway), each rank proposing its
last publication's size plus a margin (:func:`propose_capacity`). A publication longer than
the capacity sends its **tail** (the bytes beyond it) in a second all-gather, padded to the
longest tail, which every rank can size from the headers of the first: the result is always
exact, and the second collective is needed only in rounds where some publication outgrew its
owner's proposal.

Cost: the slots pad every publication to the capacity (the proposals' margin, about 2%, over
the largest publication; the size all-gather padded to the largest publication), plus a
4-byte header per slot instead of an 8-byte all-gather.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "MARGIN_DIVISOR",
    "SIZE_HEADER",
    "fill_slot",
    "gather_slotted",
    "join_slot",
    "propose_capacity",
    "read_slots",
]


def __dir__() -> list[str]:
    return __all__


ByteVector = npt.NDArray[np.uint8]
#: Bytes of the length field at the start of a slot (uint32, little-endian).
SIZE_HEADER = 4
#: A proposal is the last publication's size plus ``size // MARGIN_DIVISOR`` (2%).
MARGIN_DIVISOR = 50
_MAX_SIZE = (1 << 32) - 1


def propose_capacity(last_size: int) -> int:
    """The capacity a rank proposes: ``last_size + last_size // MARGIN_DIVISOR`` (0 when it
    has published nothing yet, which leaves the choice to the others or, if every rank
    proposes 0, to an exchange of the sizes).

    Examples
    --------
    >>> propose_capacity(16000), propose_capacity(0)
    (16320, 0)
    """
    return int(last_size) + int(last_size) // MARGIN_DIVISOR


def fill_slot(data: ByteVector, capacity: int, slot: ByteVector) -> int:
    """Write ``data``'s slot (header, first ``capacity`` bytes, zero padding) into ``slot``
    (``SIZE_HEADER + capacity`` bytes); returns the length of its tail (bytes beyond the
    capacity, 0 if it fits)."""
    k = int(data.shape[0])
    if k > _MAX_SIZE:
        raise ValueError(f"a publication of {k} bytes does not fit the slot's uint32 length")
    if slot.shape[0] != SIZE_HEADER + capacity:
        raise ValueError(f"slot has {slot.shape[0]} bytes, expected {SIZE_HEADER + capacity}")
    slot[:SIZE_HEADER] = np.array([k], dtype="<u4").view(np.uint8)
    head = min(k, capacity)
    slot[SIZE_HEADER : SIZE_HEADER + head] = data[:head]
    slot[SIZE_HEADER + head :] = 0
    return k - head


def read_slots(slots: ByteVector, capacity: int) -> list[int]:
    """The publication lengths in the headers of gathered slots (one row per rank);
    ``ValueError`` unless the rows are slots of this capacity."""
    if slots.ndim != 2 or slots.shape[1] != SIZE_HEADER + capacity:
        raise ValueError(f"slots of shape {slots.shape}, expected rows of {SIZE_HEADER + capacity}")
    return [int(v) for v in np.ascontiguousarray(slots[:, :SIZE_HEADER]).view("<u4")[:, 0]]


def join_slot(slot: ByteVector, tail: ByteVector, size: int, capacity: int) -> ByteVector:
    """One publication of ``size`` bytes from its slot row and its tail row (the second
    all-gather's row, or an empty array when no publication overflowed)."""
    head = min(size, capacity)
    body = slot[SIZE_HEADER : SIZE_HEADER + head]
    if size <= capacity:
        return body
    if tail.shape[0] < size - capacity:
        raise ValueError(f"a publication of {size} bytes lacks {size - capacity - tail.shape[0]}")
    return np.concatenate([body, tail[: size - capacity]])


def gather_slotted(
    mine: ByteVector,
    capacity: int,
    host: Callable[[str, int], ByteVector],
    gather_rows: Callable[[ByteVector, str], ByteVector],
) -> tuple[list[ByteVector], list[int], int]:
    """Every rank's publication, this rank's being ``mine``, for an agreed ``capacity >= 1``.

    ``host(name, size)`` gives a reusable send buffer of ``size`` bytes; ``gather_rows(send,
    what)`` all-gathers it (``what``: ``"downlink"`` or ``"tails"``) and returns one row per
    rank. Returns the publications (rank order), their sizes, and the tail length every rank
    received per rank (0 when every publication fit: then one collective only).
    """
    slot = host("slot", SIZE_HEADER + capacity)
    tail = fill_slot(mine, capacity, slot)
    rows = gather_rows(slot, "downlink")
    sizes = read_slots(rows, capacity)
    over = max(max(sizes) - capacity, 0)
    tails: ByteVector = np.empty((rows.shape[0], 0), np.uint8)
    if over > 0:  # every rank read the same lengths: all of them join this collective
        send = host("tail", over)
        send[:tail] = mine[capacity:]
        send[tail:] = 0
        tails = gather_rows(send, "tails")
    pubs = [join_slot(rows[j], tails[j], sizes[j], capacity) for j in range(rows.shape[0])]
    return pubs, sizes, over
