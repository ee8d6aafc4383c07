"""The exchange step of the laqcore DDP hooks: this rank's payload in, the average out.

This is the hooks' one seam to the network. An exchange object has one method,
:meth:`GradientExchange.average`, that takes this rank's payload (or ``None`` to skip) and
returns the averaged flat gradient, identical on every rank, together with what the hook
needs to keep its own state honest: this rank's payload as it went on the wire (every rank
applies the same values: the other ranks decode the frame, the sender applies the payload it
encoded, the codings being lossless, tested against numpy references and fuzzed; decoding
its own frame again cost a full decode per step), which ranks uploaded, which reported a
non-finite gradient, and the bytes this rank received.

The implementations here use :class:`laqcore.distributed.Transport` (every rank's status,
then only the uploaders' frames; on gloo both in one round of messages when the frames fit):
every rank receives every uploader's frame.

* :class:`LAQAllGather`: adds each uploader's decoded innovation, in rank order, to the
  hook's :class:`~laqcore.lazy_state.LazyAggregate` (``sum_m q_prev_m``, float32, stable
  order); the average is ``aggregate / world_size``.
* :class:`CompressorAllGather`: decodes each uploader's frame with a stateless compressor and
  returns their mean.

Another exchange (say a two-phase exchange whose traffic does not grow with the number of
ranks) plugs in by implementing the same method and the checkpoint pair.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..distributed.exchange_codecs import laq_frame
from ..distributed.transport import Transport
from ..entropy import entropy_frame
from ..laq import LAQPayload
from ..lazy_state import LazyAggregate
from ..wire import Payload
from ._checkpoint import counters, load_counters

__all__ = ["Averaged", "CompressorAllGather", "GradientExchange", "LAQAllGather"]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]


@dataclass
class Averaged:
    """What one exchange gave this rank.

    Attributes
    ----------
    mean : numpy.ndarray of float32 or None
        The averaged flat gradient (stable order), identical on every rank; ``None`` when a
        rank reported a non-finite gradient and the exchange was aborted (nothing moved).
    own : Payload or None
        This rank's upload as it went on the wire (the payload it encoded; ``None`` if it
        did not upload).
    uploaders, nonfinite_ranks : list of int
        Ranks whose payload was applied, and ranks that reported a non-finite gradient.
    bytes_received : int
        Bytes this rank received in this exchange (control, frames and padding).
    overflow_owners : list of int
        Two-phase exchange: owners whose chunk of the sum of the (finite) uploads left the
        float32 range; the exchange discarded the round (``mean`` is ``None``).
    frame_bytes : int or None
        All-gather exchange: the size of the frame this rank sent (entropy-coded or not),
        also in a round aborted on another rank's non-finite gradient, where the frame may
        already have travelled with the statuses; ``None``: the upload's ``nbytes`` (the
        two-phase exchange codes chunks of it), or nothing sent in an aborted round.
    """

    mean: FloatVector | None
    own: Payload | None = None
    uploaders: list[int] = field(default_factory=list)
    nonfinite_ranks: list[int] = field(default_factory=list)
    bytes_received: int = 0
    overflow_owners: list[int] = field(default_factory=list)
    frame_bytes: int | None = None


class GradientExchange(Protocol):
    """The seam: what a hook needs from an exchange."""

    def average(
        self,
        payload: Payload | None,
        *,
        nonfinite: bool,
        abort_on_nonfinite: bool,
        tag: str,
        out: FloatVector | None = None,
    ) -> Averaged:
        """Exchange this rank's payload (``None``: skip); every rank calls it in lockstep.

        ``out`` (float32, length n), when given, receives the average (``mean`` is then
        ``out``): the hooks pass their flat gradient buffer, free once the payload is made.
        """
        ...

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a checkpoint (plain values and numpy arrays)."""
        ...

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (validated: raises on this rank if corrupt)."""
        ...


class _AllGather:
    """Frames of every uploader to every rank through :class:`Transport`."""

    def __init__(self, process_group: Any, n: int, control: str | None = None) -> None:
        # control: how the statuses cross, as the hook's group agreed (None: resolved here).
        self.transport = Transport(process_group, control=control)
        self.n = n

    def _encode(self, payload: Payload) -> bytes:
        """This rank's wire frame (the subclass may code it)."""
        return payload.to_bytes()

    def _frames(
        self, frame: bytes | None, nonfinite: bool, abort: bool, tag: str
    ) -> tuple[list[bytes | None], list[int], int, bool]:
        res = self.transport.exchange(frame, nonfinite=nonfinite, abort_on_nonfinite=abort, tag=tag)
        return res.frames, res.nonfinite_ranks, res.bytes_received, res.frame_sent

    def average(
        self,
        payload: Payload | None,
        *,
        nonfinite: bool,
        abort_on_nonfinite: bool,
        tag: str,
        out: FloatVector | None = None,
    ) -> Averaged:
        mine = None if payload is None or nonfinite else self._encode(payload)
        frames, bad, received, left = self._frames(mine, nonfinite, abort_on_nonfinite, tag)
        # What left this rank: its frame, also in a round aborted on another rank's
        # non-finite gradient, where it may have travelled with the statuses.
        sent = len(mine) if left and mine is not None else None
        if bad and abort_on_nonfinite:
            return Averaged(None, nonfinite_ranks=bad, bytes_received=received, frame_bytes=sent)
        mean = self._begin(out)
        own: Payload | None = None
        uploaders = []
        # Same frames, same order on every rank: bit-identical results. This rank's own
        # upload is the payload it encoded, not its frame decoded again (the module
        # docstring), as the two-phase exchange keeps its own chunk: a full decode per step,
        # about as long as decoding the other rank's frame (3.0-3.5 ms on the 5.3M-parameter
        # bench model). It is not what makes the all-gather slower than the two-phase
        # exchange on that model (docs/ddp.md, "Two ranks").
        me = self.transport.rank
        for r, frame in enumerate(frames):
            if frame is None:
                continue
            got = payload if r == me and payload is not None else self._decode(frame)
            self._add(got, mean)
            uploaders.append(r)
            if r == me:
                own = got
        self._finish(mean, len(uploaders))
        return Averaged(mean, own, uploaders, bad, received, frame_bytes=sent)

    # The subclass's part: the buffer the average goes to, one uploader's frame decoded,
    # its payload added, the division at the end.
    def _begin(self, out: FloatVector | None) -> FloatVector:
        raise NotImplementedError

    def _decode(self, frame: bytes) -> Payload:
        raise NotImplementedError

    def _add(self, got: Payload, mean: FloatVector) -> None:
        raise NotImplementedError

    def _finish(self, mean: FloatVector, uploads: int) -> None:
        raise NotImplementedError

    # The all-gathers keep no state of their own (LAQ's aggregate is the hook's).
    def state_dict(self) -> dict[str, Any]:
        # wire_bytes, ... of the whole run (not "stats": a two-phase checkpoint's counters)
        return {"transport": counters(self.transport.stats)}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        where = "state_dict['exchange']['transport']"
        load_counters(self.transport.stats, sd.get("transport"), where)


class LAQAllGather(_AllGather):
    """LAQ exchange: every uploader's decoded innovation is added to ``server``.

    ``server`` is the hook's :class:`~laqcore.lazy_state.LazyAggregate`; the exchange keeps
    no state of its own. ``entropy``: frames travel entropy-coded
    (:func:`laqcore.entropy.entropy_frame`; lossless, so only the bytes change).
    """

    def __init__(
        self,
        process_group: Any,
        server: LazyAggregate,
        *,
        entropy: bool = False,
        control: str | None = None,
    ) -> None:
        super().__init__(process_group, server.n, control)
        self.server = server
        self.entropy = entropy
        self._mean: FloatVector = np.empty(server.n, dtype=np.float32)

    def _encode(self, payload: Payload) -> bytes:
        return entropy_frame(payload) if self.entropy else payload.to_bytes()

    def _begin(self, out: FloatVector | None) -> FloatVector:
        return self._mean if out is None else out

    def _decode(self, frame: bytes) -> Payload:
        # A LAQ frame, entropy-coded or not (every rank of a group codes alike; the replica
        # check refuses mixed settings), as the two-phase exchange's owners decode theirs.
        return laq_frame(frame, self.n)

    def _add(self, got: Payload, mean: FloatVector) -> None:
        self.server.add(typing.cast(LAQPayload, got))

    def _finish(self, mean: FloatVector, uploads: int) -> None:
        np.divide(self.server.aggregate, np.float32(self.transport.world_size), out=mean)


class CompressorAllGather(_AllGather):
    """Stateless-compressor exchange: the mean of the uploaders' decoded gradients."""

    def __init__(
        self, process_group: Any, n: int, compressor: Any, control: str | None = None
    ) -> None:
        super().__init__(process_group, n, control)
        self.compressor = compressor
        self._sum: FloatVector = np.empty(n, dtype=np.float32)

    def _begin(self, out: FloatVector | None) -> FloatVector:
        total = self._sum if out is None else out
        total.fill(0.0)
        return total

    def _decode(self, frame: bytes) -> Payload:
        got: Payload = self.compressor.from_bytes(frame, expected_n=self.n)
        return got

    def _add(self, got: Payload, total: FloatVector) -> None:
        total += self.compressor.decompress(got)

    def _finish(self, total: FloatVector, uploads: int) -> None:
        # Mean over the ranks that contributed (all of them unless a non-finite one skipped).
        total /= np.float32(max(uploads, 1))
