"""Two-phase exchange: traffic per rank that does not grow with the number of ranks.

An all-gather of every uploader's frame makes each rank receive ``(N - 1) x frame`` bytes, so
per-rank traffic grows linearly with the number of ranks N. The two-phase exchange splits the
flat vector of length n into N contiguous **chunks**, one **owner** rank per chunk, and moves
each byte to only the rank that needs it (docs/ddp.md, "The two-phase exchange"):

As collectives (NCCL; on gloo two rounds of messages carry the same data, unpadded: below):

0. **Control**: an all-gather of one int64 per rank (``1`` upload, ``0`` skip, ``-1``
   non-finite gradient). Codecs with data-dependent uplink sizes (entropy-coded frames) add
   one int64 per chunk to each rank's control values, codecs with data-dependent
   publications one more (the rank's slot capacity proposal, :mod:`.slots`), and a caller
   may add
   ``control_width`` int64s of its own (the engine's
   :mod:`~laqcore.distributed.engine_exchange` announces its workers' uploads there). If
   nobody uploads, nothing else moves.
1. **Uplink** (one ``all_to_all_single`` with variable split sizes): every uploader sends
   chunk j of its quantized message to owner j; a rank that skips sends nothing. Owner j
   folds the chunks into its part of the exact aggregate.
2. **Downlink** (one all-gather, padded to the largest chunk; publications of data-dependent
   sizes in slots of the largest proposed capacity, with a second all-gather for the tails
   of those that outgrew it, :mod:`.slots`): owner j publishes the
   aggregate's innovation against what every rank already holds (the *replica*), quantized
   again (double quantization, as in AsyLPG: the quantization error is not lost, because
   the next innovation is taken against the replica). Every rank applies every owner's
   publication to its replica in the same way, so the replicas are bit-identical.

On ``cpu`` (gloo) the control ints and the uplink chunks travel together, as one round of
point-to-point messages (to owner j: this rank's control ints, then chunk j of its upload),
and the publications as another (:mod:`.messages`: each round's receives are posted as the
previous one ends), so a round with an upload crosses the link twice instead of three times;
chunks and publications that outgrow the capacity every rank holds alike (twice the largest
seen, for data-dependent sizes) move in one ``all_to_all_single`` with exact sizes. Other
devices (NCCL, whose receives need exact sizes) run the collectives above.

An owner that cannot publish its chunk (its chunk of the aggregate left the float32 range,
or it could not decode an upload) publishes a **failure marker** instead, in the same
all-gather and the same bytes (:func:`failure_marker`): every rank then discards the
round's changes to the codec's state and either returns no output (``overflow_owners``:
the caller treats the step like a non-finite gradient) or raises
:class:`~laqcore.distributed.errors.OwnerFailureError`, so that no rank fails alone while
the others wait in the downlink.

Per step and rank, with every rank uploading, the bytes received are about
``(N - 1)/N x (uplink frame + downlink frame)``: divided by the ``(N - 1)/N`` share that any
bandwidth-optimal collective must receive, the figure does not depend on N.

What is in a chunk and how an owner aggregates is a :class:`ChunkCodec`
(:mod:`laqcore.distributed.exchange_codecs`: LAQ with a replica of the aggregate, and
QSGD/TernGrad re-compressed at the owner). This module only moves bytes and counts
them: ``ExchangeStats`` holds the bytes this rank sent and received, computed from the
sizes of the tensors each collective filled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

from .._validate import check_positive_int
from .errors import OwnerFailureError, run_collective
from .exchange_stats import ExchangeStats, RoundResult
from .gather import HostGather, collective_device
from .messages import MAX_WIDTH, PostedMessages, grown_capacity
from .slicing import chunk_bounds
from .slots import SIZE_HEADER, gather_slotted, propose_capacity

if TYPE_CHECKING:
    from .lazy_downlink import LazyDownlink

__all__ = [
    "ChunkCodec",
    "ExchangeStats",
    "RoundResult",
    "TwoPhaseExchange",
    "chunk_bounds",
    "failure_marker",
    "read_marker",
]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
ByteVector = npt.NDArray[np.uint8]
UPLOAD, SKIP, NONFINITE = 1, 0, -1
_INT64 = 8
_EMPTY: ByteVector = np.empty(0, np.uint8)
#: Why an owner sent a failure marker: its chunk of the aggregate left the float32 range (the
#: caller's non-finite policy applies), or any other error (every rank raises).
OWNER_RANGE, OWNER_FAULT = 1, 2
_MARKER_BYTES = 8
_MARKER_FILL = 0xFF


def failure_marker(code: int) -> ByteVector:
    """The publication of an owner that cannot publish its chunk: ``code`` (``OWNER_RANGE``
    or ``OWNER_FAULT``), then seven ``0xff``. No real publication starts so: wire frames
    start with ``b"LQ"``, and an exact publication holds finite float32 or float64 values
    (its owner checks them), while these bytes read as a NaN in either type. Every
    publication has at least 8 bytes (a frame header, or a chunk of at least 8 values), so
    the marker travels in the bytes of a normal round."""
    out = np.full(_MARKER_BYTES, _MARKER_FILL, np.uint8)
    out[0] = code
    return out


def read_marker(publication: ByteVector) -> int:
    """The code of a failure marker at the start of ``publication``, else 0."""
    if publication.shape[0] < _MARKER_BYTES or publication[0] not in (OWNER_RANGE, OWNER_FAULT):
        return 0
    return int(publication[0]) if bool((publication[1:_MARKER_BYTES] == _MARKER_FILL).all()) else 0


class ChunkCodec(Protocol):
    """What the exchange needs from a compression scheme (see exchange_codecs).

    ``bind`` is called once with the chunk bounds, this rank and the world size. Per round:
    ``start_round``; on uploaders ``split(upload, step)`` (one uint8 frame per chunk, the
    entry of this rank's own chunk empty: it never goes on the wire) and ``own_chunk(upload)``
    (that chunk as the codec's object, or ``None`` if the chunk is empty);
    ``receive(chunks, step)`` on every owner with the uploaders' chunks in rank order (frames,
    and this rank's own chunk as ``own_chunk`` gave it); ``publish(step)`` on every owner
    (returns the downlink bytes); ``apply(j, data)`` for every other owner's publication;
    ``result(out)`` is the averaged vector, identical on every rank (written into ``out``
    when given, else a new array). A codec may defer applying the publications (its own
    and the others') to its state until ``result``, which the exchange always calls last.

    ``receive`` and ``publish`` raise ``OverflowError`` when this owner's chunk of the
    aggregate leaves the range of its float type, ``ValueError`` for anything they cannot
    decode; the exchange then sends a failure marker instead of the publication. After a
    round with any owner's marker, the exchange calls ``discard`` on every rank (instead of
    ``apply`` and ``result``): the codec's state must be as before ``receive``.
    """

    unit: int  # chunk boundaries are multiples of this

    def bind(self, bounds: list[tuple[int, int]], rank: int, world: int) -> None: ...

    def uplink_size(self, j: int) -> int | None: ...

    def downlink_size(self, j: int) -> int | None: ...

    def start_round(self) -> None: ...

    def split(self, upload: Any, step: int) -> list[ByteVector]: ...

    def own_chunk(self, upload: Any) -> Any: ...

    def receive(self, chunks: list[Any], step: int) -> None: ...

    def publish(self, step: int) -> ByteVector: ...

    def apply(self, j: int, data: ByteVector) -> None: ...

    def result(self, out: FloatVector | None = None) -> FloatVector: ...

    def discard(self) -> None: ...


class TwoPhaseExchange:
    """Owner-chunked exchange of one flat vector per round over ``torch.distributed``.

    Parameters
    ----------
    n : int
        Length of the flat vector.
    codec : ChunkCodec
        What moves and how owners aggregate (:mod:`laqcore.distributed.exchange_codecs`).
    unit : int, optional
        Chunk boundaries are multiples of ``unit`` (default ``codec.unit``: whole blocks or
        buckets of the quantizer and whole bytes of its packed codes, so that a chunk of a
        payload is a slice of it).
    process_group : ProcessGroup, optional
        ``None``: the default group.
    device : torch.device or str, optional
        Where the byte buffers live: ``None`` picks ``cuda`` for NCCL, ``cpu`` otherwise.
    control_width : int, optional
        Extra int64s per rank that every round's control all-gather carries (default 0).
    lazy_downlink : LazyDownlink, optional
        Owners defer the downlink while it decides so (:mod:`.lazy_downlink`; its values
        travel with the control); ``None``: publish in every round with an upload.

    Examples
    --------
    >>> ex = TwoPhaseExchange(n, LAQChunkCodec(4, 256, downlink_bits=8))  # doctest: +SKIP
    >>> out = ex.round(payload_or_None, step=k).output                             # doctest: +SKIP
    """

    def __init__(
        self,
        n: int,
        codec: ChunkCodec,
        *,
        unit: int | None = None,
        process_group: Any = None,
        device: torch.device | str | None = None,
        control_width: int = 0,
        lazy_downlink: LazyDownlink | None = None,
    ) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "TwoPhaseExchange needs an initialised torch.distributed process group "
                "(call torch.distributed.init_process_group first)"
            )
        self.group = process_group
        self.rank = int(dist.get_rank(process_group))
        self.world = int(dist.get_world_size(process_group))
        self.n = check_positive_int(n, "n")
        self.bounds = chunk_bounds(self.n, self.world, codec.unit if unit is None else unit)
        self.device = torch.device(collective_device(process_group) if device is None else device)
        self.codec = codec
        codec.bind(self.bounds, self.rank, self.world)
        self.stats = ExchangeStats()
        self._buffers: dict[str, torch.Tensor] = {}
        self._host_buffers: dict[str, ByteVector] = {}
        # Data-dependent uplink sizes travel with the status: one int64 per chunk; for
        # data-dependent publications, one int64 more: this owner's slot capacity proposal.
        self._sized = codec.uplink_size(self.rank) is None
        self._slotted = any(codec.downlink_size(j) is None for j in range(self.world))
        self._last_publication = 0  # bytes of this owner's last publication
        self.control_width = check_positive_int(control_width, "control_width", minimum=0)
        self._gather = HostGather(process_group, self.world, self.device, self._guard)
        self.lazy = lazy_downlink
        # cpu (gloo): control + uplink as one round of messages, the publications as another;
        # other devices (NCCL): the collectives. (Tests set it off to run the collectives on
        # gloo.) The capacities are the chunk and publication sizes the messages carry, the
        # same on every rank: fixed by the codec, or grown from the sizes every rank saw.
        self._host_messages = self.device.type == "cpu"
        mail = (process_group, self.rank, self.world, self._guard, self._gather.ints)
        self._uplink_mail = PostedMessages(*mail)
        self._downlink_mail = PostedMessages(*mail)
        self._uplink_held = False  # the uplink inbox holds chunks not yet consumed
        self._uplink_head = 0  # bytes of the control ints that start each uplink message
        self._downlink_held = False
        fixed_up = [codec.uplink_size(j) for j in range(self.world)]
        self._uplink_capacity = 0 if self._sized else max(int(v or 0) for v in fixed_up)
        fixed_dl = [codec.downlink_size(j) for j in range(self.world)]
        self._downlink_capacity = 0 if self._slotted else max(int(v or 0) for v in fixed_dl)
        # (fixed sizes beyond what a message may carry take the all-to-all in every round)
        self._downlink_capacity = min(self._downlink_capacity, MAX_WIDTH - _INT64)

    # -- collectives ----------------------------------------------------------------------
    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return run_collective(self.rank, what, None, fn, *args, **kwargs)

    def _buffer(self, name: str, size: int) -> torch.Tensor:
        """A uint8 tensor of ``size`` bytes on the exchange's device, reused across rounds
        (the codecs consume what a round received before the round returns)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] != size:
            buf = torch.empty(size, dtype=torch.uint8, device=self.device)
            self._buffers[name] = buf
        return buf

    def _all_gather_ints(self, values: list[int], tag: str) -> list[list[int]]:
        """Every rank's ``values`` (the same length on every rank)."""
        got = self._gather.ints(values, f"control all-gather ({tag})")
        self.stats.control_received += _INT64 * len(values) * (self.world - 1)
        return got

    def _all_to_all(
        self, send: list[ByteVector], recv_sizes: list[int], tag: str
    ) -> list[ByteVector]:
        """Chunk j of ``send`` goes to rank j; returns what each rank sent here."""
        send_sizes = [int(a.shape[0]) for a in send]
        inp = self._buffer("uplink-send", sum(send_sizes))
        if inp.device.type == "cpu":
            np.concatenate(send, out=inp.numpy())
        else:
            inp.copy_(torch.from_numpy(np.concatenate(send)))
        out = self._buffer("uplink-recv", sum(recv_sizes))
        self._guard(
            f"uplink all-to-all ({tag})",
            dist.all_to_all_single,
            out,
            inp,
            recv_sizes,
            send_sizes,
            group=self.group,
        )
        got = out.numpy() if out.device.type == "cpu" else out.cpu().numpy()
        # Rank r's bytes follow those of ranks 0..r-1 (a few Python ints: no numpy calls).
        parts, start = [], 0
        for size in recv_sizes:
            parts.append(got[start : start + size])
            start += size
        return parts

    def _host(self, name: str, size: int) -> ByteVector:
        """A host uint8 array of ``size`` bytes, reused across rounds (what this rank sends)."""
        buf = self._host_buffers.get(name)
        if buf is None or buf.shape[0] != size:
            buf = np.empty(size, np.uint8)
            self._host_buffers[name] = buf
        return buf

    def _gather_rows(self, send: ByteVector, name: str, what: str) -> ByteVector:
        """All-gather of ``send`` (the same size on every rank): one row per rank."""
        whole = self._buffer(name, int(send.shape[0]) * self.world)
        got: ByteVector = self._gather.into(whole, send, what)
        return got

    def _all_gather_bytes(self, data: ByteVector, sizes: list[int], tag: str) -> list[ByteVector]:
        biggest = max(sizes)
        mine = self._host("downlink-send", biggest)
        k = int(data.shape[0])
        mine[:k] = data
        mine[k:] = 0
        got = self._gather_rows(mine, "downlink", f"downlink all-gather ({tag})")
        return [got[j, : sizes[j]] for j in range(self.world)]

    # -- one round ------------------------------------------------------------------------
    def round(
        self,
        upload: Any | None,
        *,
        step: int,
        nonfinite: bool = False,
        abort_on_nonfinite: bool = True,
        tag: str = "round",
        out: FloatVector | None = None,
        control: list[int] | None = None,
        on_control: Callable[[list[int], list[list[int]]], None] | None = None,
    ) -> RoundResult:
        """Run one lockstep round: every rank must call this, in the same order.

        Parameters
        ----------
        upload:
            This rank's message (what the codec's ``split`` takes), or ``None`` to skip.
        step:
            The iteration (seeds the codecs' stochastic rounding).
        nonfinite:
            This rank's gradient is not finite: it does not upload, and every rank learns it.
        abort_on_nonfinite:
            If any rank is non-finite, move nothing and return ``output=None``.
        tag:
            Names the round in errors.
        out:
            float32 array of length ``n`` that receives the averaged vector (then
            ``output`` is ``out``); by default a new array.
        control:
            This rank's ``control_width`` ints for the control all-gather (default zeros).
        on_control:
            Called on every rank with every rank's status and control ints, right after the
            control all-gather and before anything else moves; it may raise (every rank
            sees the same values, so every rank raises the same error).
        """
        w, me, st, codec = self.world, self.rank, self.stats, self.codec
        # Split before any collective: a malformed upload fails here on this rank alone
        # and before the others are waiting in a collective it would never join.
        chunks = None if (nonfinite or upload is None) else codec.split(upload, step)
        own = None if chunks is None else codec.own_chunk(upload)
        status = NONFINITE if nonfinite else (SKIP if chunks is None else UPLOAD)
        extra = [0] * self.control_width if control is None else [int(v) for v in control]
        if len(extra) != self.control_width:
            raise ValueError(
                f"control has {len(extra)} ints, the exchange carries {self.control_width}"
            )
        ints = [status]
        if self._sized:
            ints += [0] * w if chunks is None else [int(c.shape[0]) for c in chunks]
        if self._slotted:
            ints.append(propose_capacity(self._last_publication))
        lazy = [] if self.lazy is None else self.lazy.values(None if chunks is None else upload)
        row = ints + lazy + extra
        if self._host_messages:  # the chunks that fit come along
            gathered, inbox = self._uplink_messages(row, chunks, tag)
        else:
            gathered, inbox = self._all_gather_ints(row, tag), None
        k, lazy_end = len(ints), len(ints) + len(lazy)  # a row: ints, lazy values, extra
        statuses = [g[0] for g in gathered]
        controls = [g[lazy_end:] for g in gathered]
        if on_control is not None:
            on_control(statuses, controls)
        st.rounds += 1
        bad = [r for r, s in enumerate(statuses) if s == NONFINITE]
        uploaders = [r for r, s in enumerate(statuses) if s == UPLOAD]
        if bad and abort_on_nonfinite:
            self._release_uplink(tag)
            return RoundResult(uploaders=[], nonfinite_ranks=bad, control=controls)
        codec.start_round()
        publish = bool(uploaders)
        # What the lazy downlink's decision changes, restored if an owner fails this round.
        lazy_before = None if self.lazy is None else self.lazy.state_dict()
        if self.lazy is not None:  # the same values on every rank: the same decision
            publish = self.lazy.due(uploaders, [g[k:lazy_end] for g in gathered])
        if not uploaders and not publish:
            self._release_uplink(tag)
            return RoundResult([], bad, codec.result(out), controls)
        failure: Exception | None = None  # why this owner cannot publish, if it cannot
        if uploaders:
            st.rounds_with_uploads += 1
            st.uploads += len(uploaders)
            # Phase 1: chunk j of every upload to owner j; an owner's own chunk stays here (it
            # is a slice of the payload this rank encoded: no frame, no copy).
            send = chunks if chunks is not None else [_EMPTY] * w
            recv_sizes = self._uplink_sizes(gathered)
            if inbox is None:
                got = self._all_to_all(send, recv_sizes, tag)
            else:
                got = self._uplink_chunks(inbox, send, gathered, recv_sizes, tag)
            st.uplink_sent += sum(int(send[j].shape[0]) for j in range(w) if j != me)
            st.uplink_received += sum(recv_sizes)
            try:
                codec.receive([own if r == me else got[r] for r in uploaders], step)
            except (OverflowError, ValueError) as err:  # told to every rank in the downlink
                failure = err
        self._release_uplink(tag)  # the codec has consumed the chunks
        if not publish:  # deferred: the replicas stay as they are (lazy downlink)
            if failure is not None:
                # No publication to carry the marker; the lazy downlink publishes whenever
                # the aggregate may leave the float32 range, so only an undecodable upload
                # (a bug: frames carry a CRC) gets here.
                raise failure
            return RoundResult(uploaders, bad, codec.result(out), controls)
        st.downlink_rounds += 1

        # Phase 2: every owner publishes its chunk's change; everyone applies all of them.
        last_publication = self._last_publication
        if failure is None:
            try:
                mine = codec.publish(step)
            except (OverflowError, ValueError) as err:
                failure = err
        if failure is not None:
            mine = failure_marker(
                OWNER_RANGE if isinstance(failure, OverflowError) else OWNER_FAULT
            )
        if self._host_messages:
            pubs = self._publish_messages(mine, tag)
        elif self._slotted:
            capacity = max(g[len(ints) - 1] for g in gathered)
            pubs = self._publish_slotted(mine, capacity, tag)
        else:
            pubs = self._publish_fixed(mine, tag)
        # The same publications on every rank: every rank sees the same markers.
        codes = [read_marker(p) for p in pubs]
        if any(codes):
            self._release_downlink(tag)
            self._last_publication = last_publication
            owners = self._discard_round(codes, failure, lazy_before, tag)
            return RoundResult([], bad, None, controls, overflow_owners=owners)
        if any(p.shape[0] for p in pubs):
            for j in range(w):
                if j != me:
                    codec.apply(j, pubs[j])
        self._release_downlink(tag)
        return RoundResult(uploaders, bad, codec.result(out), controls)

    def _discard_round(
        self,
        codes: list[int],
        failure: Exception | None,
        lazy_before: dict[str, Any] | None,
        tag: str,
    ) -> list[int]:
        """Undo a round in which some owner sent a failure marker (``codes``: each owner's,
        the same on every rank): the codec's and the lazy downlink's state as before it.
        Returns the owners whose chunk left the float32 range; raises
        :class:`OwnerFailureError` on every rank if an owner failed otherwise (``failure``:
        this rank's own error, chained)."""
        self.codec.discard()
        if self.lazy is not None and lazy_before is not None:
            self.lazy.load_state_dict(lazy_before)
        faults = [j for j, c in enumerate(codes) if c == OWNER_FAULT]
        if faults:
            raise OwnerFailureError(faults, f"{tag}, downlink") from failure
        return [j for j, c in enumerate(codes) if c == OWNER_RANGE]

    def _publish_fixed(self, mine: ByteVector, tag: str) -> list[ByteVector]:
        """Publications of sizes the codec fixes: one all-gather padded to the largest."""
        dl = [int(self.codec.downlink_size(j) or 0) for j in range(self.world)]
        return self._gather_padded(mine, dl, tag)

    def _gather_padded(self, mine: ByteVector, dl: list[int], tag: str) -> list[ByteVector]:
        """Every owner's publication (sizes ``dl``, known to all) by one padded all-gather."""
        w, me, st = self.world, self.rank, self.stats
        if max(dl) == 0:
            return [_EMPTY] * w
        pubs = self._all_gather_bytes(mine, dl, tag)
        st.downlink_sent += dl[me] * (w - 1)
        st.downlink_received += max(dl) * (w - 1)
        st.padding_received += sum(max(dl) - dl[j] for j in range(w) if j != me)
        return pubs

    def _publish_slotted(self, mine: ByteVector, capacity: int, tag: str) -> list[ByteVector]:
        """Data-dependent publications (:mod:`laqcore.distributed.slots`): slots of the
        agreed capacity with the sizes in their headers, then the tails of those that did not
        fit; with no capacity proposed yet, an all-gather of the sizes first."""
        w, me, st = self.world, self.rank, self.stats
        k = int(mine.shape[0])
        self._last_publication = k
        if capacity <= 0:
            st.sized_rounds += 1
            dl = [g[0] for g in self._all_gather_ints([k], tag)]
            return self._gather_padded(mine, dl, tag)
        pubs, sizes, over = gather_slotted(
            mine,
            capacity,
            lambda name, size: self._host(f"downlink-{name}", size),
            lambda send, what: self._gather_rows(send, what, f"{what} all-gather ({tag})"),
        )
        st.tail_rounds += 1 if over > 0 else 0
        st.control_received += SIZE_HEADER * (w - 1)
        st.downlink_sent += k * (w - 1)
        st.downlink_received += (capacity + over) * (w - 1)
        st.padding_received += sum(capacity + over - sizes[j] for j in range(w) if j != me)
        return pubs

    # -- the rounds of messages (cpu) -------------------------------------------------------
    def _uplink_messages(
        self, row: list[int], chunks: list[ByteVector] | None, tag: str
    ) -> tuple[list[list[int]], ByteVector]:
        """Control and uplink in one round of messages: to every other rank j this rank's
        control ints, then chunk j of its upload if the chunk fits the uplink capacity.
        Returns every rank's control ints and the inbox (rank r's chunk for this owner, if
        it came along, follows r's ints in row r; read before :meth:`_release_uplink`)."""
        w, me, st = self.world, self.rank, self.stats
        head = _INT64 * len(row)
        header = np.asarray(row, dtype=np.int64).view(np.uint8)
        # the control ints and the capacity fit a message (fixed chunks beyond it: all-to-all)
        cap = self._uplink_capacity = min(self._uplink_capacity, MAX_WIDTH - head)
        messages = []
        for j in range(w):
            chunk = None if chunks is None or j == me else chunks[j]
            fits = chunk is not None and 0 < chunk.shape[0] <= cap
            messages.append(np.concatenate([header, chunk]) if fits else header)
        inbox = self._uplink_mail.send(messages, head + cap, f"control and uplink ({tag})")
        self._uplink_held, self._uplink_head = True, head
        st.control_received += head * (w - 1)
        gathered = [
            [int(v) for v in row] if r == me else inbox[r, :head].view(np.int64).tolist()
            for r in range(w)
        ]
        return gathered, inbox

    def _uplink_chunks(
        self,
        inbox: ByteVector,
        send: list[ByteVector],
        control: list[list[int]],
        recv_sizes: list[int],
        tag: str,
    ) -> list[ByteVector]:
        """The chunks every uploader sent this owner: from the inbox where they fit the
        capacity, the others by one all-to-all with exact sizes (when any chunk of any
        uploader outgrew it: every rank knows every size). Grows the capacity for data-
        dependent sizes."""
        w, me, cap, head = self.world, self.rank, self._uplink_capacity, self._uplink_head
        if self._sized:  # every uploader's chunk sizes are in its control ints
            sizes = [c[1 : 1 + w] for c in control if c[0] == UPLOAD]
        else:
            sizes = [[int(self.codec.uplink_size(j) or 0) for j in range(w)]]
        largest = max(max(s) for s in sizes)
        got = [inbox[r, head : head + size] for r, size in enumerate(recv_sizes)]
        if largest > cap:
            late_send = [c if j != me and c.shape[0] > cap else _EMPTY for j, c in enumerate(send)]
            late_recv = [size if size > cap else 0 for size in recv_sizes]
            late = self._all_to_all(late_send, late_recv, tag)
            got = [late[r] if late_recv[r] else got[r] for r in range(w)]
        if self._sized:
            self._uplink_capacity = grown_capacity(cap, largest, MAX_WIDTH - head)
        return got

    def _publish_messages(self, mine: ByteVector, tag: str) -> list[ByteVector]:
        """Every owner's publication by one round of messages (its size as an int64, then
        the publication if it fits the downlink capacity; the others by one all-to-all with
        exact sizes); read before :meth:`_release_downlink`."""
        w, me, st, cap = self.world, self.rank, self.stats, self._downlink_capacity
        k = int(mine.shape[0])
        self._last_publication = k
        msg = np.empty(_INT64 + (k if k <= cap else 0), np.uint8)
        msg[:_INT64].view(np.int64)[0] = k
        msg[_INT64:] = mine[: msg.shape[0] - _INT64]
        inbox = self._downlink_mail.send([msg] * w, _INT64 + cap, f"downlink ({tag})")
        self._downlink_held = True
        sizes = [k if j == me else int(inbox[j, :_INT64].view(np.int64)[0]) for j in range(w)]
        pubs = [mine if j == me else inbox[j, _INT64 : _INT64 + sizes[j]] for j in range(w)]
        if max(sizes) > cap:
            late = [s if s > cap else 0 for s in sizes]
            frames = self._gather.frames(
                mine.tobytes() if late[me] else b"", late, f"downlink all-to-all ({tag})"
            )
            for j in range(w):
                if late[j] and j != me:
                    pubs[j] = np.frombuffer(frames[j] or b"", np.uint8)
            st.tail_rounds += 1
        if self._slotted:
            self._downlink_capacity = grown_capacity(cap, max(sizes), MAX_WIDTH - _INT64)
        st.control_received += _INT64 * (w - 1)
        st.downlink_sent += k * (w - 1)
        st.downlink_received += sum(sizes[j] for j in range(w) if j != me)
        return pubs

    def _release_uplink(self, tag: str) -> None:
        """The uplink inbox has been read: post the next round's receives."""
        if self._uplink_held:
            self._uplink_held = False
            width = self._uplink_head + self._uplink_capacity
            self._uplink_mail.repost(width, f"uplink ({tag})")

    def _release_downlink(self, tag: str) -> None:
        """The publications have been applied: post the next round's receives."""
        if self._downlink_held:
            self._downlink_held = False
            self._downlink_mail.repost(_INT64 + self._downlink_capacity, f"downlink ({tag})")

    def _uplink_sizes(self, control: list[list[int]]) -> list[int]:
        """Bytes this owner receives from each rank (0 from a rank that does not upload):
        fixed by the codec, or the sizes each uploader sent with its status."""
        me, fixed = self.rank, self.codec.uplink_size(self.rank)
        if fixed is None:
            return [c[1 + me] if c[0] == UPLOAD and r != me else 0 for r, c in enumerate(control)]
        return [fixed if c[0] == UPLOAD and r != me else 0 for r, c in enumerate(control)]
