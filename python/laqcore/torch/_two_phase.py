"""The hooks' exchange seam over the two-phase exchange (docs/ddp.md, "The two-phase exchange").

:class:`TwoPhaseAverage` implements :class:`laqcore.torch._exchange.GradientExchange` with
:class:`laqcore.distributed.two_phase.TwoPhaseExchange`: chunk j of every upload goes to the
rank that owns chunk j, each owner publishes its chunk of the average, and every rank
receives about ``(N - 1)/N`` of one uplink frame plus one downlink frame per step, whatever
the number of ranks N (the all-gather exchanges receive ``N - 1`` frames).

* LAQ (:func:`laq_two_phase`): owners keep the exact aggregate of their chunk; every rank
  keeps the replica the owners' double-quantized publications build, and the average is
  ``replica / N`` (:class:`~laqcore.distributed.exchange_codecs.LAQChunkCodec`).
* QSGD / TernGrad (:func:`compressor_two_phase`): owners average their chunk of the decoded
  uploads and re-compress it, unbiased and without error feedback
  (:class:`~laqcore.distributed.exchange_codecs.CompressorChunkCodec`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .._validate import check_choice, check_positive_int
from ..distributed.exchange_codecs import CompressorChunkCodec, LAQChunkCodec
from ..distributed.lazy_downlink import LazyDownlink
from ..distributed.two_phase import ChunkCodec, TwoPhaseExchange
from ..wire import Payload
from ._checkpoint import counters, load_counters
from ._exchange import Averaged

__all__ = [
    "AUTO_ALL_GATHER_MAX_EXTRA",
    "AUTO_ALL_GATHER_MAX_N",
    "EXCHANGES",
    "TwoPhaseAverage",
    "check_exchange",
    "compressor_two_phase",
    "laq_two_phase",
    "resolve_exchange",
]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
#: The hooks' ``exchange`` choices: ``"auto"`` (the default: :func:`resolve_exchange`), the
#: two-phase exchange, and the all-gather of every uploader's frame.
EXCHANGES = ("auto", "two-phase", "all-gather")


def check_exchange(exchange: Any) -> str:
    """``exchange`` if it is one of :data:`EXCHANGES`; ``ValueError`` for another string,
    ``TypeError`` for a non-string."""
    return check_choice(exchange, "exchange", EXCHANGES)


#: ``exchange="auto"`` on 2 ranks: the all-gather up to this many coordinates per message,
#: the two-phase exchange above (:func:`resolve_exchange`).
AUTO_ALL_GATHER_MAX_N = 1 << 20
#: ``exchange="auto"`` from 3 ranks on: the all-gather while the coordinates it brings a rank
#: beyond what the two-phase exchange brings, ``n (N - 1) (N - 2) / N``, are at most this many
#: (128 KB at 4 bits: about what one more round of messages costs at 1 Gbit/s), the two-phase
#: exchange above (:func:`resolve_exchange`).
AUTO_ALL_GATHER_MAX_EXTRA = 1 << 18


def resolve_exchange(
    exchange: str,
    world_size: int,
    n: int,
    *,
    downlink: bool = False,
    pinned: str | None = None,
) -> str:
    """The exchange a hook runs for messages of ``n`` coordinates: ``exchange`` itself unless
    it is ``"auto"``, which is the all-gather on 1 or 2 ranks for ``n`` up to
    :data:`AUTO_ALL_GATHER_MAX_N`, from 3 ranks on while ``n (N - 1) (N - 2) / N`` is at most
    :data:`AUTO_ALL_GATHER_MAX_EXTRA`, and the two-phase exchange otherwise (``downlink``: a
    downlink setting was given, which only the two-phase exchange has: then always that).

    Why: on 2 ranks each rank receives the other's upload either way (the two-phase exchange
    sends half of it and publishes the other half of the aggregate's change), but the
    all-gather does it with fewer collectives (on gloo one round of messages in most steps),
    without the owners' decoding, re-quantizing and publishing, and with an exact aggregate:
    on the bench MLP (85k coordinates) at 1 Gbit/s its step took 3.1 ms against 4.2 and it
    moved 4.8 MB per rank against 6.0. On the 5.3M-coordinate bench model it was the slower
    one over the same link (82.5 against 70.9 ms per step) while the Transport moved frames
    of different sizes by one broadcast after the other; since that was fixed (session 21)
    the two take the same time there (63.2 ms each), but the size limit stays so that the
    default's recorded runs on large models keep their exchange (docs/ddp.md, "Two ranks").
    From 3 ranks on the all-gather brings each rank ``(N - 1) n`` coordinates of frames, the
    two-phase exchange about ``2 (N - 1) n / N`` (uplink chunks and publications) but in two
    rounds of messages and with the owners' re-quantization: for small gradients at few ranks
    the round costs more than the bytes (bench MLP, 85k coordinates, 4 ranks, time to
    all-reduce's loss: 1.17x against 0.82x all-reduce's speed at 1 Gbit/s, three seeds; the
    CNN 0.99x / 1.99x against 0.77x / 1.52x at 1 Gbit/s / 100 Mbit/s; the MLP at 100 Mbit/s
    3.79x against 4.76x), and the extra coordinates bound what the all-gather may cost beyond
    the two-phase exchange, so the traffic per rank stays bounded as N grows (docs/ddp.md,
    "Three ranks and more"). ``pinned``: the exchange of a checkpoint an ``"auto"`` state
    resumed from, kept.
    """
    if exchange != "auto":
        return exchange
    if pinned is not None:
        return pinned
    if world_size <= 2:
        small = n <= AUTO_ALL_GATHER_MAX_N
    else:  # integers: exact for any n
        small = n * (world_size - 1) * (world_size - 2) <= AUTO_ALL_GATHER_MAX_EXTRA * world_size
    return "all-gather" if small and not downlink else "two-phase"


class TwoPhaseAverage:
    """A :class:`~laqcore.torch._exchange.GradientExchange` over a two-phase exchange.

    ``own`` in the result is this rank's payload itself (its chunks travel to the other
    owners, not back), ``bytes_received`` the bytes the collectives wrote into this rank's
    buffers in this exchange (``stats`` of the exchange has the split by phase).
    """

    def __init__(
        self, process_group: Any, n: int, codec: ChunkCodec, lazy: LazyDownlink | None = None
    ) -> None:
        self.codec = codec
        self.exchange = TwoPhaseExchange(n, codec, process_group=process_group, lazy_downlink=lazy)
        self.rounds = 0  # seeds the owners' stochastic re-compression (checkpointed)

    def average(
        self,
        payload: Payload | None,
        *,
        nonfinite: bool,
        abort_on_nonfinite: bool,
        tag: str,
        out: FloatVector | None = None,
    ) -> Averaged:
        before = self.exchange.stats.bytes_received
        res = self.exchange.round(
            payload,
            step=self.rounds,
            nonfinite=nonfinite,
            abort_on_nonfinite=abort_on_nonfinite,
            tag=tag,
            out=out,
        )
        got = self.exchange.stats.bytes_received - before
        if res.output is None:
            return Averaged(
                None,
                nonfinite_ranks=res.nonfinite_ranks,
                bytes_received=got,
                overflow_owners=res.overflow_owners,
            )
        self.rounds += 1
        own = payload if self.exchange.rank in res.uploaders else None
        return Averaged(res.output, own, res.uploaders, res.nonfinite_ranks, got)

    @property
    def aggregate(self) -> FloatVector | None:
        """LAQ: the replica of the aggregate every rank holds (``None`` for compressors)."""
        replica = getattr(self.codec, "replica", None)
        return None if replica is None else np.asarray(replica)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = self.codec.state_dict()  # type: ignore[attr-defined]
        if self.exchange.lazy is not None:
            state["lazy_downlink"] = self.exchange.lazy.state_dict()
        return {"rounds": self.rounds, "stats": counters(self.exchange.stats), **state}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        rounds = check_positive_int(sd["rounds"], "state_dict['exchange']['rounds']", minimum=0)
        self.codec.load_state_dict(sd)  # type: ignore[attr-defined]
        lazy = self.exchange.lazy
        if lazy is not None and "lazy_downlink" in sd:  # else a fresh history
            lazy.load_state_dict(sd["lazy_downlink"])
        # The byte and round counters stats() reports (absent before they were saved).
        load_counters(self.exchange.stats, sd.get("stats"), "state_dict['exchange']['stats']")
        self.rounds = rounds


def laq_two_phase(
    process_group: Any,
    n: int,
    bits: int,
    block_size: int | None,
    downlink_bits: int | None,
    downlink_block_size: int | None = None,
    *,
    entropy: bool = False,
    lazy_downlink: tuple[float, int, float] | None = None,
) -> TwoPhaseAverage:
    """The LAQ hook's two-phase exchange (uploads of ``bits`` bits, blockwise or global);
    ``lazy_downlink``: ``(factor, D, ck)`` of a :class:`LazyDownlink`, or ``None``."""
    codec = LAQChunkCodec(bits, block_size, downlink_bits, downlink_block_size, entropy=entropy)
    lazy = None if lazy_downlink is None else LazyDownlink(codec, *lazy_downlink)
    return TwoPhaseAverage(process_group, n, codec, lazy)


def compressor_two_phase(
    process_group: Any, n: int, name: str, seed: int, kwargs: dict[str, Any]
) -> TwoPhaseAverage:
    """The QSGD/TernGrad hooks' two-phase exchange."""
    return TwoPhaseAverage(process_group, n, CompressorChunkCodec(name, seed, **kwargs))
