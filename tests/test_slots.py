"""Fixed-size slots for variable-size publications (laqcore.distributed.slots), one process:
the slots of several ranks stacked as an all-gather would deliver them."""

from __future__ import annotations

import numpy as np
import pytest

from laqcore.distributed.slots import (
    MARGIN_DIVISOR,
    SIZE_HEADER,
    fill_slot,
    join_slot,
    propose_capacity,
    read_slots,
)


def test_proposal_is_last_size_plus_the_margin() -> None:
    for last in (0, 1, 49, 50, 16_000, 10**9):
        assert propose_capacity(last) == last + last // MARGIN_DIVISOR
    assert MARGIN_DIVISOR == 50  # 2%: docs/ddp.md prices the padding with it


@pytest.mark.parametrize("capacity", [1, 7, 64])
def test_slots_and_tails_rebuild_every_publication(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    sizes = [0, 1, capacity - 1, capacity, capacity + 1, 3 * capacity + 5]
    pubs = [rng.integers(0, 256, k, dtype=np.uint8) for k in sizes]
    rows = np.full((len(pubs), SIZE_HEADER + capacity), 0xAB, np.uint8)  # stale bytes
    tails = [fill_slot(p, capacity, rows[i]) for i, p in enumerate(pubs)]
    assert tails == [max(k - capacity, 0) for k in sizes]
    assert read_slots(rows, capacity) == sizes
    for i, k in enumerate(sizes):  # the padding after a short publication is zero
        assert not rows[i, SIZE_HEADER + min(k, capacity) :].any()
    longest = max(tails)
    tail_rows = np.zeros((len(pubs), longest), np.uint8)
    for i, p in enumerate(pubs):
        tail_rows[i, : tails[i]] = p[capacity:]
    for i, p in enumerate(pubs):
        assert np.array_equal(join_slot(rows[i], tail_rows[i], sizes[i], capacity), p)
    # With no tail round (nothing overflowed), fitting publications need no tail row.
    assert np.array_equal(join_slot(rows[3], np.empty(0, np.uint8), capacity, capacity), pubs[3])


def test_bad_slots_are_refused() -> None:
    data = np.arange(10, dtype=np.uint8)
    with pytest.raises(ValueError, match="slot has 9 bytes"):
        fill_slot(data, 4, np.zeros(9, np.uint8))
    with pytest.raises(ValueError, match="expected rows of 8"):
        read_slots(np.zeros((2, 9), np.uint8), 4)
    row = np.zeros(SIZE_HEADER + 4, np.uint8)
    fill_slot(data, 4, row)
    with pytest.raises(ValueError, match="lacks 2"):
        join_slot(row, np.zeros(4, np.uint8), 10, 4)
