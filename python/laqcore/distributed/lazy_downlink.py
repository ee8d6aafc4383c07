"""Owner-side laziness for the two-phase LAQ exchange: defer small publications.

With the two-phase exchange (:mod:`laqcore.distributed.two_phase`) every owner publishes its
chunk's aggregate innovation whenever any rank uploaded, so the downlink moves in almost every
step once there are a few ranks (a round in which all N ranks skip gets rarer as N grows).
:class:`LazyDownlink` lets the owners defer the whole downlink while the replica every rank
holds is provably close to the exact aggregate, and decides it identically on every rank from
the control all-gather the exchange runs anyway (no extra collective; docs/ddp.md, "Lazy
downlink").

Notation: ``S_j`` owner j's exact chunk of the aggregate ``sum_m Q_m``, ``S_hat_j`` the
replica's chunk (bit-identical on every rank), N ranks. Before round k each rank adds ``2 + N``
float32s to its control values (two to an int64):

* ``r_j = ||S_j - S_hat_j||``, the owner's exact residual (what earlier deferrals and the
  downlink quantization left);
* ``a_j = ||S_hat_j||^2``, the replica's chunk (so ``sum_j a_j / N^2 = ||g^{k-1}||^2``, the
  squared norm of the average the previous round returned);
* ``u_{m,j} = ||dQ_{m,j}||`` for every chunk j of its quantized innovation if it uploads
  (zeros if not).

After this round's uplink ``||S_j' - S_hat_j|| <= B_j = r_j + sum_{m uploads} u_{m,j}``
(triangle inequality), and every rank pushes ``sum_j a_j / N^2`` into a history of the
averaged gradients' squared norms (weights ``xi_d = ck / D``, the lazy rule's). The round
publishes iff::

    sum_j B_j^2 / N^2  >  factor * sum_d xi_d ||g^{k-d}||^2

i.e. iff the bound on the error of the average (``(S - S_hat) / N``) exceeds ``factor``
times the lazy upload rule's first term. A deferred round moves no downlink and leaves the
replica as it was; the owners keep ``S_j`` exactly, so the next publication (an innovation
against the replica) carries everything deferred: nothing is lost. The first round has an
empty history and publishes whenever anything was uploaded; a non-finite bound publishes,
and so does a round after which an owner's chunk might leave the float32 range
(``sqrt(a_j) + B_j`` above half the float32 maximum), so that the owner can report it in its
publication (:mod:`laqcore.distributed.two_phase`).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch

from .._validate import check_positive_int, check_real
from ..laq_payload import LAQPayload
from ..lazy import IterateHistory
from .exchange_codecs import LAQChunkCodec
from .slicing import slice_payload

__all__ = ["LazyDownlink"]


def __dir__() -> list[str]:
    return __all__


#: Half the float32 maximum: the float32 sums that build a chunk round by at most a few
#: units in the last place, so a chunk whose exact norm bound is below it stays finite.
_SAFE_NORM = float(np.finfo(np.float32).max) / 2


def _pack(values: list[float]) -> list[int]:
    """``values`` as float32s, two to an int64 (what travels in the control)."""
    x = np.zeros(len(values) + len(values) % 2, np.float32)
    x[: len(values)] = values
    got: list[int] = x.view(np.int64).tolist()
    return got


def _unpack(ints: list[int], k: int) -> list[float]:
    """The ``k`` float32s (as floats) that :func:`_pack` put in ``ints``."""
    got: list[float] = np.asarray(ints, np.int64).view(np.float32)[:k].tolist()
    return got


def _norm(x: Any) -> float:
    """``||x||`` in float64 by torch's reduction (no BLAS thread pool)."""
    return float(torch.linalg.vector_norm(torch.from_numpy(x), dtype=torch.float64))


def _chunk_norm(upload: LAQPayload, s: int, e: int) -> float:
    """``||dQ[s:e]||`` of a quantized innovation, from its codes and radii (no decoding)."""
    return math.sqrt(cast(LAQPayload, slice_payload(upload, s, e)).innov_sq) if e > s else 0.0


class LazyDownlink:
    """The owners' publish-or-defer decision of a two-phase LAQ exchange (module docstring).

    Parameters
    ----------
    codec : LAQChunkCodec
        The exchange's codec (its exact chunk ``owned`` and ``replica`` are read, never
        written).
    factor : float
        Weight ``c > 0`` of the rule's first term in the threshold: the average's error from
        deferred publications stays within ``c sum_d xi_d ||g^{k-d}||^2`` (docs/ddp.md, "Lazy
        downlink").
    D : int
        Depth of the history of averaged gradients' squared norms.
    ck : float
        Weight of that history, ``xi_d = ck / D`` (``ck / k`` while ``k <= D``).
    """

    def __init__(self, codec: LAQChunkCodec, factor: float, D: int, ck: float) -> None:
        self.codec = codec
        self.factor = check_real(factor, "lazy_downlink", positive=True)
        self.history = IterateHistory(D, None, ck)
        self.rounds = 0  # rounds decided so far (the first has no previous average)
        self.deferred = 0  # rounds with uploads whose downlink was deferred

    def values(self, upload: LAQPayload | None) -> list[int]:
        """This rank's control values for the next round (``upload``: its payload, if any)."""
        c = self.codec
        s, e = c.bounds[c.rank]
        held = c.replica[s:e]
        resid = _norm(c.owned - held) if e > s else 0.0
        held_sq = _norm(held) ** 2 if e > s else 0.0
        norms = [0.0] * c.world
        if upload is not None:
            norms = [_chunk_norm(upload, a, b) for a, b in c.bounds]
        return _pack([resid, held_sq, *norms])

    def due(self, uploaders: list[int], values: list[list[int]]) -> bool:
        """Whether this round publishes, from every rank's :meth:`values` (the same on every
        rank); records the previous round's average in the history."""
        w = len(values)
        rows = [_unpack(v, 2 + w) for v in values]
        held_sq = math.fsum(row[1] for row in rows) / (w * w)
        if self.rounds > 0 and math.isfinite(held_sq):
            self.history.push(held_sq)  # ||g^{k-1}||^2: the average the last round returned
        self.rounds += 1
        bounds = [rows[j][0] + math.fsum(rows[m][2 + j] for m in uploaders) for j in range(w)]
        error_sq = math.fsum(b * b for b in bounds) / (w * w)
        if error_sq == 0.0:
            return False  # nothing deferred, nothing uploaded: nothing to publish
        publish = not error_sq <= self.factor * self.history.weighted_sum()
        # ||S_j'|| <= ||S_hat_j|| + B_j bounds every coordinate (and every partial sum) of an
        # owner's chunk after this round's uploads. Where it may leave the float32 range the
        # round publishes: an owner that overflows then says so in its publication (the
        # exchange drops the round on every rank), where a deferred round has no publication
        # to say it in and would leave its exact chunk infinite.
        publish = publish or any(
            not math.sqrt(rows[j][1]) + bounds[j] < _SAFE_NORM for j in range(w)
        )
        self.deferred += 0 if publish or not uploaders else 1
        return publish

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.state(), "rounds": self.rounds, "deferred": self.deferred}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (``ValueError`` for another depth or corrupt values)."""
        history = IterateHistory.from_state(sd["history"])
        if history.D != self.history.D:
            raise ValueError(
                f"lazy downlink state has D = {history.D}, this exchange D = {self.history.D}"
            )
        rounds = check_positive_int(sd["rounds"], "lazy downlink 'rounds'", minimum=0)
        deferred = check_positive_int(sd["deferred"], "lazy downlink 'deferred'", minimum=0)
        self.history, self.rounds, self.deferred = history, rounds, deferred
