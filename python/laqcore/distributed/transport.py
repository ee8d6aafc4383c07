"""Lockstep exchange of variable-size payload frames over ``torch.distributed``.

Lazy aggregation (LAG/LAQ) only saves bandwidth if a rank that skips really sends nothing.
An all-reduce of a zero vector moves as many bytes as a real upload, so the exchange is
split in two phases:

1. **Control** - every rank learns every rank's int64 status: the size of the frame the rank
   wants to upload, ``0`` for "skip", or ``-1`` for "my gradient is not finite". Every rank
   then knows the same upload set and the same sizes, so the second phase is decided in
   lockstep and nobody waits in a collective that a peer never joins.
2. **Payload** - only the uploaders' frames move.

On ``cpu`` (gloo) each rank sends every other rank one message, its status followed by its
frame when the frame fits a *capacity* every rank holds alike (twice the largest frame any
round has carried so far, computed from the statuses all ranks saw, at most 16 MiB; gloo
receives a message into a larger buffer), so in most rounds the whole exchange is one round
of messages, one network round trip instead of two, with each round's receives posted as
the previous round ends (:mod:`.messages`; posted with the sends, the one round measured the
same as two collectives on a 2-vCPU machine: docs/results_hooks.md, "The all-gather
exchange's profile"; posted ahead, LAQ's MLP step fell from 2.3-2.4 to 1.7-1.8 ms: docs/ddp.md,
"Rounds of messages on gloo"). Frames that do
not fit (the first ones, a frame that doubled) then move in one ``all_to_all_single`` with
uneven splits, exactly their sizes. A rank pinned to one CPU all-gathers the statuses
instead and sends every frame by that all-to-all (``control``, :func:`resolve_control`: in
trainers on a 2-vCPU VM the two collectives were the faster way for pinned ranks). On other
devices (NCCL, whose receives need exact sizes) the statuses are all-gathered and the frames
move by:

* every rank uploads and the frames are (nearly) the same size: one padded all-gather
  (one round trip instead of W broadcasts); the padding is counted as traffic;
* otherwise: one broadcast per uploader, of exactly that uploader's frame size.

Traffic accounting (``TrafficStats``) counts what crosses the wire, for *all* ranks together:
a buffer of S bytes that has to reach W - 1 other ranks costs ``S * (W - 1)`` bytes whatever
tree or ring the backend uses, because each receiver must get every byte once. Control
int64s and padding are included. ``payload_bytes`` counts each uploaded frame once (the
uplink view that the simulator and the papers use), so the two views can be compared.

Failures of a peer (killed process, hang past the process-group timeout) surface as
:class:`~laqcore.distributed.errors.PeerFailureError` naming this rank and the operation.
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..runtime import _cpu_count
from .errors import run_collective
from .gather import HostGather, collective_device, global_rank
from .gloo_threads import gloo_loop_is_idle
from .messages import MAX_WIDTH, PostedMessages, grown_capacity

__all__ = ["ExchangeResult", "TrafficStats", "Transport", "adopt_control", "resolve_control"]

STATUS_SKIP = 0
STATUS_NONFINITE = -1
# An int64 per rank in the control all-gather.
_CONTROL_ITEM_BYTES = 8
# Largest frame the messages carry (bytes): each rank keeps world_size inboxes of this size.
_MAX_CAPACITY = MAX_WIDTH - _CONTROL_ITEM_BYTES


#: How the control phase crosses on ``cpu`` (gloo): ``Transport(control=...)``, else this
#: environment variable, else ``"auto"`` (:func:`resolve_control`).
CONTROL_ENV = "LAQCORE_TRANSPORT_CONTROL"
CONTROLS = ("auto", "messages", "collectives")


def __dir__() -> list[str]:
    return __all__


def resolve_control(control: str | None, device_type: str) -> str:
    """``"messages"`` or ``"collectives"``: how the control phase of a :class:`Transport`
    crosses.

    ``control`` (``None``: the ``LAQCORE_TRANSPORT_CONTROL`` environment variable, else
    ``"auto"``) is ``"messages"`` (gloo only: one round of point-to-point messages carrying
    the statuses and the frames that fit), ``"collectives"`` (the control all-gather, then
    the frames by one collective) or ``"auto"``: collectives on other devices than ``cpu``
    and on ``cpu`` when this process may run on one CPU only (a launcher that pins one rank
    per core) unless gloo's loop thread is under ``SCHED_IDLE``
    (:func:`~laqcore.distributed.gloo_threads.idle_gloo_loop`), messages otherwise. Why: in
    trainers on a 2-vCPU VM the collectives took pinned ranks to the target loss 1.03-1.41x
    faster than the messages (1.3x with the defaults on the CNN),
    whose round met the slow mode of gloo's spinning loop thread more often, while unpinned
    ranks were as fast or faster with the messages; with the loop thread idle, pinned ranks
    too were faster with the messages (CNN 2.77x all-reduce's speed against 2.49x at 100
    Mbit/s; docs/ddp.md, "Rounds of messages on gloo", "Pinned ranks", "gloo's loop
    thread"). Ranks may resolve it differently (one pinned, one not): the hooks and
    ``laqcore launch`` then take rank 0's (:func:`adopt_control`)."""
    chosen = os.environ.get(CONTROL_ENV, "auto") if control is None else control
    where = f"the {CONTROL_ENV} environment variable" if control is None else "control"
    if chosen not in CONTROLS:
        raise ValueError(f"{where} must be one of {', '.join(CONTROLS)}; got {chosen!r}")
    if device_type != "cpu":
        if chosen == "messages":
            raise ValueError(
                f'{where} = "messages" needs a cpu (gloo) group: on {device_type} the '
                "statuses cross by collectives"
            )
        return "collectives"
    if chosen == "auto":
        return "collectives" if _cpu_count() == 1 and not gloo_loop_is_idle() else "messages"
    return chosen


def adopt_control(mine: str, chosen: str, who: str) -> str:
    """``chosen``, the ``control`` rank 0 resolved, which every rank of a group takes; warns
    (naming ``who``: ``"hook"``, ``"engine"``) on a rank whose own resolution ``mine``
    differs, saying why it did.

    Each rank resolves ``control`` from its own process (:func:`resolve_control`), and ranks
    that resolve it differently would pair a round of messages with collectives and wait in
    both until the group's timeout; the choice changes time only, so one rank's serves all.
    The hooks agree on it in their first-iteration check, ``laqcore launch`` by its first
    broadcast."""
    if mine == chosen:
        return chosen
    env = os.environ.get(CONTROL_ENV)
    why = (
        f"{CONTROL_ENV}={env}"
        if env not in (None, "auto")
        else f"auto, with this process allowed on {_cpu_count()} CPU(s) and gloo's loop "
        f"thread {'idle' if gloo_loop_is_idle() else 'not idle'}"
    )
    warnings.warn(
        f"laqcore {who}: this rank resolved the gloo exchange's control phase to {mine!r} "
        f"({why}) but rank 0 to {chosen!r}; every rank takes rank 0's, which changes time "
        "only. Pin every rank or none, call laqcore.distributed.idle_gloo_loop() on every "
        f'rank or none, or set {CONTROL_ENV} alike (docs/ddp.md, "Pinned ranks")',
        stacklevel=3,
    )
    return chosen


@dataclass
class TrafficStats:
    """Cumulative traffic of one :class:`Transport` (identical on every rank).

    Attributes
    ----------
    rounds:
        Number of :meth:`Transport.exchange` calls.
    uploads, skips, nonfinite:
        Per-rank upload decisions summed over rounds (``uploads + skips + nonfinite`` equals
        ``rounds * world_size``).
    payload_bytes:
        Sum of the uploaded frames' sizes, each counted once (uplink bytes).
    wire_bytes:
        Bytes delivered to receivers over all ranks: control + payload + padding, each
        buffer multiplied by the number of ranks that must receive it.
    control_bytes, padding_bytes:
        The parts of ``wire_bytes`` spent on the control all-gather and on padding.
    bytes_sent, bytes_received:
        This rank's share (the only fields that differ between ranks): the bytes of its own
        buffers that other ranks received, and the bytes other ranks' buffers delivered to it
        (control and padding included), as :class:`~laqcore.distributed.two_phase.ExchangeStats`
        counts them.
    """

    rounds: int = 0
    uploads: int = 0
    skips: int = 0
    nonfinite: int = 0
    payload_bytes: int = 0
    wire_bytes: int = 0
    control_bytes: int = 0
    padding_bytes: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class ExchangeResult:
    """What one lockstep exchange delivered to this rank.

    ``frames[r]`` is rank r's frame (bytes) or ``None`` if rank r skipped or reported a
    non-finite gradient; ``nonfinite_ranks`` lists the latter, in rank order.
    """

    frames: list[bytes | None]
    nonfinite_ranks: list[int] = field(default_factory=list)
    #: Bytes this round delivered to this rank (control included), as
    #: :attr:`TrafficStats.bytes_received` counts them.
    bytes_received: int = 0
    #: Whether this rank's frame reached the other ranks: in a round aborted on a non-finite
    #: gradient too, where the frames that fit travelled with the statuses.
    frame_sent: bool = False

    @property
    def uploaders(self) -> list[int]:
        return [r for r, f in enumerate(self.frames) if f is not None]


class Transport:
    """Exchange variable-size byte frames among the ranks of a process group.

    Parameters
    ----------
    process_group:
        The group to communicate in; ``None`` means the default (WORLD) group, which must
        already be initialised.
    device:
        Where the byte buffers live. ``None`` picks ``cuda`` for an NCCL group (NCCL only
        moves device memory) and ``cpu`` otherwise.
    pad_tolerance:
        On ``cpu`` (gloo) the frames travel by one all-to-all with uneven splits, exactly
        their sizes. On other devices (NCCL), when every rank uploads, a single padded
        all-gather is used if the padding it adds is at most this fraction of the real
        bytes; otherwise one broadcast per uploader.
    timeout_s:
        Only reported in error messages: the timeout the group was created with.
    control:
        How the statuses cross: ``"messages"`` (``cpu`` only: one round of point-to-point
        messages that carries the frames that fit as well), ``"collectives"`` (the control
        all-gather, then the frames) or ``"auto"``; ``None`` reads the
        ``LAQCORE_TRANSPORT_CONTROL`` environment variable (default ``"auto"``):
        :func:`resolve_control`. The choice changes time, not the frames delivered; the
        traffic counted differs only in a round aborted on a non-finite gradient, where the
        messages carried the frames that fit and the collectives move none.

    Examples
    --------
    >>> t = Transport()                                    # doctest: +SKIP
    >>> res = t.exchange(frame if upload else None)        # doctest: +SKIP
    >>> for rank in res.uploaders: decode(res.frames[rank])  # doctest: +SKIP
    """

    def __init__(
        self,
        process_group: Any = None,
        *,
        device: torch.device | str | None = None,
        pad_tolerance: float = 0.125,
        timeout_s: float | None = None,
        control: str | None = None,
    ) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "Transport needs an initialised torch.distributed process group "
                "(call torch.distributed.init_process_group first)"
            )
        if not 0.0 <= float(pad_tolerance):
            raise ValueError(f"pad_tolerance must be >= 0, got {pad_tolerance}")
        self.group = process_group
        self.rank = dist.get_rank(process_group)
        self.world_size = dist.get_world_size(process_group)
        self.device = torch.device(collective_device(process_group) if device is None else device)
        self.pad_tolerance = float(pad_tolerance)
        self.timeout_s = timeout_s
        self.stats = TrafficStats()
        self._gather = HostGather(process_group, self.world_size, self.device, self._guard)
        # The control phase with control "messages" (cpu only): statuses and frames travel
        # as one message per pair of ranks, into inboxes of ``_capacity`` bytes past the
        # status (0 until a frame was seen: the first upload round takes phase 2);
        # otherwise the control all-gather. Phase 2 on cpu: an all-to-all with uneven
        # splits, exact sizes; other devices: a padded all-gather or broadcasts. (Tests
        # turn both off to run the other devices' path on gloo.)
        self.control = resolve_control(control, self.device.type)
        self._host_messages = self.control == "messages"
        self._exact_payload = self.device.type == "cpu"
        self._capacity = 0
        self._max_capacity = _MAX_CAPACITY
        self._mail = PostedMessages(
            process_group, self.rank, self.world_size, self._guard, self._gather.ints
        )

    # -- helpers ------------------------------------------------------------------------
    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one collective; turn a backend failure into a PeerFailureError."""
        return run_collective(self.rank, what, self.timeout_s, fn, *args, **kwargs)

    def _bytes_tensor(self, frame: bytes, size: int) -> torch.Tensor:
        buf = torch.zeros(size, dtype=torch.uint8)
        if frame:
            buf[: len(frame)] = torch.frombuffer(bytearray(frame), dtype=torch.uint8)
        return buf.to(self.device)

    # -- the exchange -------------------------------------------------------------------
    def exchange(
        self,
        frame: bytes | None,
        *,
        nonfinite: bool = False,
        abort_on_nonfinite: bool = True,
        tag: str = "exchange",
    ) -> ExchangeResult:
        """Lockstep exchange: every rank must call this, in the same order.

        Parameters
        ----------
        frame:
            This rank's upload (non-empty bytes) or ``None`` to skip.
        nonfinite:
            Report that this rank's gradient is not finite (``frame`` is ignored). Every
            rank receives the same ``nonfinite_ranks``, so they can all raise the same error.
        abort_on_nonfinite:
            If any rank reported ``nonfinite``, deliver no frame (the caller is about to
            raise; on ``cpu`` the frames that fit travelled with the statuses and are
            counted as traffic, nothing more moves). ``False``: the other ranks' frames are
            still exchanged (the caller skips the bad rank and carries on).
        tag:
            Names the exchange (e.g. ``"step 7 bucket 2"``) in error messages.
        """
        w = self.world_size
        if nonfinite:
            status = STATUS_NONFINITE
        elif frame is None:
            status = STATUS_SKIP
        else:
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise TypeError(f"frame must be bytes or None, got {type(frame).__name__}")
            if len(frame) == 0:
                raise ValueError("frame must not be empty; pass None to skip the upload")
            status = len(frame)
        # What this rank sends, if it uploads.
        data = bytes(frame) if frame is not None and status > 0 else b""

        received_before = self.stats.bytes_received
        # Phase 1: everyone learns everyone's status (on cpu, with the frames that fit).
        frames: list[bytes | None] = [None] * w
        if self._host_messages:
            sizes = self._messages(status, data, frames, tag)
        else:
            sizes = [g[0] for g in self._gather.ints([status], f"control all-gather ({tag})")]
        st = self.stats
        st.rounds += 1
        self._count_control()
        bad = [r for r, s in enumerate(sizes) if s == STATUS_NONFINITE]
        if any(s < STATUS_NONFINITE for s in sizes):
            raise RuntimeError(f"rank {self.rank}: corrupt control message {sizes} ({tag})")
        st.nonfinite += len(bad)
        uploaders = [r for r, s in enumerate(sizes) if s > 0]
        inline = [r for r in uploaders if frames[r] is not None]
        if inline:  # they travelled with the statuses, whatever comes next
            self._count_payload(sizes, inline)
        if bad and abort_on_nonfinite:
            sent = self.rank in inline
            return ExchangeResult([None] * w, bad, st.bytes_received - received_before, sent)

        st.uploads += len(uploaders)
        st.skips += w - len(uploaders) - len(bad)
        st.payload_bytes += sum(sizes[r] for r in uploaders)
        late = [r for r in uploaders if frames[r] is None]
        if late:
            self._payload_round(data, sizes, late, frames, tag)
        return ExchangeResult(frames, bad, st.bytes_received - received_before, status > 0)

    def _messages(
        self, status: int, data: bytes, frames: list[bytes | None], tag: str
    ) -> list[int]:
        """Phase 1 on ``cpu``: one message from every rank to every other, its int64 status
        followed by its frame when the frame fits the capacity every rank holds (the same
        value everywhere: it grows from the sizes all ranks saw). Fills ``frames`` with the
        frames that came along (this rank's own included) and returns the statuses; the
        frames that did not fit move in phase 2."""
        w, me, cap = self.world_size, self.rank, self._capacity
        fits = 0 < status <= cap
        msg = np.empty(_CONTROL_ITEM_BYTES + (status if fits else 0), dtype=np.uint8)
        msg[:_CONTROL_ITEM_BYTES].view(np.int64)[0] = status
        if fits:
            msg[_CONTROL_ITEM_BYTES:] = np.frombuffer(data, dtype=np.uint8)
            frames[me] = data
        rows = self._mail.send([msg] * w, _CONTROL_ITEM_BYTES + cap, f"statuses and frames ({tag})")
        sizes = [status] * w
        for r in range(w):
            if r == me:
                continue
            size = int(rows[r, :_CONTROL_ITEM_BYTES].view(np.int64)[0])
            sizes[r] = size
            if 0 < size <= cap:
                frames[r] = rows[r, _CONTROL_ITEM_BYTES : _CONTROL_ITEM_BYTES + size].tobytes()
        if max(sizes) > 0:
            self._capacity = grown_capacity(self._capacity, max(sizes), self._max_capacity)
        self._mail.repost(_CONTROL_ITEM_BYTES + self._capacity, tag)
        return sizes

    def _count_control(self) -> None:
        """Traffic of one int64 from every rank to every other."""
        w, st = self.world_size, self.stats
        st.control_bytes += _CONTROL_ITEM_BYTES * w * (w - 1)
        st.wire_bytes += _CONTROL_ITEM_BYTES * w * (w - 1)
        st.bytes_sent += _CONTROL_ITEM_BYTES * (w - 1)
        st.bytes_received += _CONTROL_ITEM_BYTES * (w - 1)

    def _count_payload(self, sizes: list[int], ranks: list[int]) -> None:
        """Traffic of the frames of ``ranks`` (each to the ``w - 1`` other ranks)."""
        w, st = self.world_size, self.stats
        for r in ranks:
            st.wire_bytes += sizes[r] * (w - 1)
            if r == self.rank:
                st.bytes_sent += sizes[r] * (w - 1)
            else:
                st.bytes_received += sizes[r]

    def _payload_round(
        self, data: bytes, sizes: list[int], late: list[int], frames: list[bytes | None], tag: str
    ) -> None:
        """Phase 2: the frames of ``late`` (uploaders whose frames did not come with the
        statuses) into ``frames``."""
        w, st, me = self.world_size, self.stats, self.rank
        if self._exact_payload:  # gloo: one all-to-all with uneven splits, exact sizes
            exact = [sizes[r] if r in late else 0 for r in range(w)]
            mine = data if me in late else b""
            got = self._gather.frames(mine, exact, f"payload all-to-all ({tag})")
            self._count_payload(sizes, late)
            for r in late:
                frames[r] = got[r]
            return
        real = sum(sizes[r] for r in late)
        biggest = max(sizes[r] for r in late)
        padded = biggest * w
        if len(late) == w and padded - real <= self.pad_tolerance * real:
            mine_buf = np.zeros(biggest, dtype=np.uint8)
            mine_buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
            rows = self._gather.rows(mine_buf, f"payload all-gather ({tag})")
            st.wire_bytes += padded * (w - 1)
            st.padding_bytes += (padded - real) * (w - 1)
            st.bytes_sent += biggest * (w - 1)
            st.bytes_received += biggest * (w - 1)
            for r in range(w):
                frames[r] = rows[r, : sizes[r]].tobytes()
            return
        for r in late:
            buf = self._bytes_tensor(data if r == me else b"", sizes[r])
            self._guard(
                f"payload broadcast from rank {r} ({tag})",
                dist.broadcast,
                buf,
                src=global_rank(self.group, r),
                group=self.group,
            )
            self._count_payload(sizes, [r])
            frames[r] = data if r == me else buf.cpu().numpy().tobytes()

    def barrier(self, tag: str = "barrier") -> None:
        """A barrier that fails with :class:`PeerFailureError` instead of hanging."""
        kwargs: dict[str, Any] = {}
        if self.timeout_s is not None and str(dist.get_backend(self.group)).lower() == "gloo":
            # monitored_barrier names the rank that failed to arrive (gloo only).
            kwargs["timeout"] = datetime.timedelta(seconds=self.timeout_s)
            self._guard(tag, dist.monitored_barrier, group=self.group, **kwargs)
        else:
            self._guard(tag, dist.barrier, group=self.group)
