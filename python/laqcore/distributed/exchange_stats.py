"""What a :class:`~laqcore.distributed.two_phase.TwoPhaseExchange` reports: the bytes it
moved on this rank (:class:`ExchangeStats`) and the outcome of one round
(:class:`RoundResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["ExchangeStats", "RoundResult"]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]


@dataclass
class ExchangeStats:
    """Cumulative bytes of one :class:`~laqcore.distributed.two_phase.TwoPhaseExchange` on
    this rank.

    ``*_received`` counts the bytes other ranks wrote into this rank's receive buffers
    (tensor sizes; this rank's own slot of a collective is not counted); ``*_sent`` counts
    this rank's bytes that other ranks receive (its uplink chunks once, its downlink
    publication once per receiver). ``padding_received`` is the part of
    ``downlink_received`` that pads publications to the largest one (or to the slots'
    capacity); the slots' 4-byte lengths count as ``control_received``.
    """

    rounds: int = 0
    rounds_with_uploads: int = 0
    uploads: int = 0
    control_received: int = 0
    uplink_sent: int = 0
    uplink_received: int = 0
    downlink_sent: int = 0
    downlink_received: int = 0
    padding_received: int = 0
    #: Rounds whose data-dependent publications needed the sizes all-gathered first (no
    #: slot capacity proposed yet), and rounds where one outgrew its slot (a tails
    #: all-gather): the rounds with a second downlink collective (:mod:`.slots`).
    sized_rounds: int = 0
    tail_rounds: int = 0
    #: Rounds with a downlink (every round with an upload, unless a lazy downlink,
    #: :mod:`.lazy_downlink`, deferred some).
    downlink_rounds: int = 0

    @property
    def bytes_received(self) -> int:
        return self.control_received + self.uplink_received + self.downlink_received

    @property
    def bytes_sent(self) -> int:
        return self.uplink_sent + self.downlink_sent

    def as_dict(self) -> dict[str, int]:
        d = asdict(self)
        d.update(bytes_received=self.bytes_received, bytes_sent=self.bytes_sent)
        return d


@dataclass
class RoundResult:
    """One round: who uploaded, who reported a non-finite gradient, the averaged vector
    (``None`` when the round was aborted for a non-finite gradient or discarded because an
    owner's chunk of the aggregate left the float32 range)."""

    uploaders: list[int]
    nonfinite_ranks: list[int] = field(default_factory=list)
    output: FloatVector | None = None
    #: Per rank, the ``control_width`` ints it passed to :meth:`TwoPhaseExchange.round`.
    control: list[list[int]] = field(default_factory=list)
    #: Owners whose chunk of the aggregate left the float32 range (the round was discarded).
    overflow_owners: list[int] = field(default_factory=list)
