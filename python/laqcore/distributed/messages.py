"""Rounds of point-to-point messages on gloo, with each round's receives posted ahead.

A round: every rank sends every other rank one message (a uint8 array, possibly a different
one to each) and receives one from each. The exchanges of :mod:`.transport` (statuses and
frames) and :mod:`.two_phase` (statuses and uplink chunks; owners' publications) run their
phases as such rounds on ``cpu`` instead of collectives, because a message can carry the
control ints and the data together (one trip across the link instead of two), and its size
need not be known to the receiver: gloo delivers a message into a larger receive buffer (its
tcp pair checks only that the message is not longer).

Why the receives are posted as the previous round ends: a gloo message whose receive is not
yet posted waits for the receiver's "ready" notice, one more trip across the link (in the
bench trainers, posting ahead took LAQ's 2-rank MLP step from 2.8 to 2.0 ms on loopback:
docs/ddp.md, "Rounds of messages on gloo"). So the caller reads a round's messages, then
calls :meth:`repost` with the next round's width, and only then may a peer's next message
overwrite the buffer.

Each :class:`PostedMessages` carries its own tag, agreed by all ranks in its first round (one
all-gather of one int64, set-up like the process group's own rendezvous: the exchanges'
traffic counters leave it out, so that a run resumed in new objects counts what an
uninterrupted one does): receives posted ahead must never catch the messages of another
exchange of the same group that runs in between.

A receive posted ahead cannot be withdrawn (gloo's receive work has no ``abort`` in torch's
Python API): an exchange dropped mid-run (a hook state replaced, a fallback to DDP's
all-reduce) keeps its last receives and their buffer (``world_size x width`` bytes) until
the process group is destroyed; destroying the group, or the process exiting, with receives
posted is fine: nothing waits for them (every rank of ``run_processes`` destroys its group so
after its last exchange).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from .gather import global_rank

__all__ = ["MAX_WIDTH", "PostedMessages", "grown_capacity"]

# The tags of the messages: this base plus a number every PostedMessages of a group agrees on
# in its first round.
_TAG_BASE = 0x4C41
# The numbers taken so far, per process group.
_TAGS_TAKEN: dict[Any, int] = {}
# The widest receive buffer (bytes per peer) a round may ask for: callers send larger data by
# a collective instead (next to moving that much, its one extra round costs little).
MAX_WIDTH = 1 << 24

ByteVector = npt.NDArray[np.uint8]
# (what, fn, *args): runs one backend call, turning a failure into a PeerFailureError.
Guard = Callable[..., Any]
# (values, what) -> every rank's values: an all-gather of a few ints.
GatherInts = Callable[[list[int], str], list[list[int]]]


def __dir__() -> list[str]:
    return __all__


def grown_capacity(capacity: int, largest: int, limit: int) -> int:
    """The bytes of data the next rounds' messages carry, after a round whose largest data
    (frame, chunk or publication) had ``largest`` bytes: twice the largest seen so far, so
    that data a little larger next time still comes along; at most ``limit`` (what a
    message may carry past its header). Every rank computes it from sizes all ranks saw, so
    it is the same everywhere."""
    return min(max(capacity, 2 * largest), limit)


class PostedMessages:
    """One message from every rank to every other per round, into receives posted ahead.

    Parameters
    ----------
    process_group:
        The group (``None``: the default group).
    rank, world_size:
        This rank's rank in the group, and the group's size.
    guard:
        ``guard(what, fn, *args)`` runs a backend call (failures become
        :class:`~laqcore.distributed.errors.PeerFailureError` naming ``what``).
    gather_ints:
        ``gather_ints(values, what)``: every rank's ``values`` (for the tag, first round only).
    """

    def __init__(
        self,
        process_group: Any,
        rank: int,
        world_size: int,
        guard: Guard,
        gather_ints: GatherInts,
    ) -> None:
        self.group = process_group
        self.rank = rank
        self.world_size = world_size
        self._guard = guard
        self._gather_ints = gather_ints
        self._tag: int | None = None
        self._inbox: torch.Tensor | None = None
        self._width = 0
        # The receives of the next round (None before the first round and after a round that
        # failed or whose messages the caller has not released yet: then send() posts them).
        self._posted: list[Any] | None = None

    @property
    def tag(self) -> int | None:
        """The messages' tag (``None`` until the first round)."""
        return self._tag

    @property
    def posted(self) -> int:
        """How many receives wait for the next round (``world_size - 1`` or 0)."""
        return 0 if self._posted is None else len(self._posted)

    def _agree_tag(self, what: str) -> int:
        """The same tag on every rank: one past the largest number any rank's exchanges of
        this group have taken, so that ranks whose processes built different numbers of them
        (one restarted, say) still agree."""
        # None and the default group's object name the same communicator: one count
        key = dist.group.WORLD if self.group is None else self.group
        got = self._gather_ints([_TAGS_TAKEN.get(key, 0) + 1], f"message tag all-gather ({what})")
        number = max(g[0] for g in got)
        _TAGS_TAKEN[key] = number
        return _TAG_BASE + number

    def _post(self) -> list[Any]:
        """One receive per peer into the inbox (``width`` bytes per row)."""
        w, me, tag = self.world_size, self.rank, self._tag
        assert tag is not None  # (agreed in the first send)
        if self._inbox is None or self._inbox.shape[1] < self._width:
            self._inbox = torch.empty((w, self._width), dtype=torch.uint8)
        inbox = self._inbox
        return [
            dist.irecv(inbox[r], src=global_rank(self.group, r), group=self.group, tag=tag)
            for r in range(w)
            if r != me
        ]

    def send(self, messages: list[ByteVector], width: int, what: str) -> ByteVector:
        """One round: ``messages[r]`` to rank r (this rank's own entry is not sent), each at
        most ``width`` bytes, the receives' width on every rank (the one of the last
        :meth:`repost`, if it posted them). Returns the inbox, one row per rank: row r starts
        with rank r's message (the caller knows its length from what the message says); valid
        until :meth:`repost`, which the caller must call once it has read what it needs."""
        w, me = self.world_size, self.rank
        if len(messages) != w:
            raise ValueError(f"{len(messages)} messages for {w} ranks")
        if self._posted is None:
            self._width = self._check_width(width)
        elif width != self._width:
            raise ValueError(f"width {width} differs from the posted receives' {self._width}")
        for r, m in enumerate(messages):
            if r != me and m.shape[0] > self._width:
                raise ValueError(
                    f"a message of {m.shape[0]} bytes to rank {r} exceeds the receives' "
                    f"{self._width} ({what})"
                )
        if self._tag is None:
            self._tag = self._agree_tag(what)
        tag = self._tag
        posted, self._posted = self._posted, None  # not reused if this round fails

        def post_and_wait() -> None:
            works = self._post() if posted is None else posted
            works += [
                dist.isend(
                    torch.from_numpy(messages[r]),
                    dst=global_rank(self.group, r),
                    group=self.group,
                    tag=tag,
                )
                for r in range(w)
                if r != me
            ]
            for work in works:
                if work is not None:  # (typed Optional: None only for a rank outside the group)
                    work.wait()

        self._guard(f"messages ({what})", post_and_wait)
        assert self._inbox is not None  # (made by the receives)
        got: ByteVector = self._inbox.numpy()
        return got

    @staticmethod
    def _check_width(width: int) -> int:
        if not 0 <= width <= MAX_WIDTH:
            raise ValueError(f"width must be in [0, {MAX_WIDTH}], got {width}")
        return int(width)

    def repost(self, width: int, what: str) -> None:
        """Post the next round's receives, ``width`` bytes per peer (the same on every rank,
        at most :data:`MAX_WIDTH`); the inbox :meth:`send` returned may then change."""
        self._width = self._check_width(width)
        self._posted = self._guard(f"receives after ({what})", self._post)
