"""Pieces shared by the lazily aggregated methods (LAG, LAQ, SLAQ, QGD, random selection).

* :class:`LazyServer`: a :class:`~laqcore.lazy_state.LazyAggregate` (the running aggregate
  ``sum_m (last upload of m)`` and the history of squared iterate differences) behind the
  server interface; its messages carry the upload rule's right-hand side
  ``(1/(alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2``.
* :class:`InnovationWorker`: the LAQ worker, a :class:`~laqcore.lazy_state.LazyUploader`
  (innovation quantizer + upload test + clock) behind the worker interface.
* :class:`InnovationAlgorithm`: an algorithm made of those two (LAQ, QGD, SLAQ, random
  selection, all in :mod:`laqcore.algorithms.laq`), which differ only in when the worker
  uploads.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._typing import F64
from ..laq import LAQPayload, laq_accumulate
from ..lazy import IterateHistory, UploadRule
from ..lazy_state import LazyAggregate, LazyUploader
from ..wire import Payload
from .base import (
    Algorithm,
    Batch,
    Message,
    Params,
    Server,
    StateVector,
    Worker,
    WorkerSite,
    theta_message_nbytes,
)
from .param_sets import COMMON_PARAMS, LAQ_QUANTIZER_PARAMS, LAQ_RULE_PARAMS

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = [
    "InnovationAlgorithm",
    "InnovationWorker",
    "LazyServer",
    "QuantizedLazyServer",
    "laq_rule",
]


def __dir__() -> list[str]:
    return __all__


class LazyServer(Server):
    """Server of the lazy methods: ``theta -= alpha * aggregate`` where uploads *add* their
    innovation to ``aggregate``; skipped workers' old contributions stay in it. The state is
    one :class:`~laqcore.lazy_state.LazyAggregate` (``self.lazy``); subclasses define
    :meth:`add` (LAQ payloads, or dense innovations)."""

    #: dtype of the aggregate: float32 for LAQ payloads, float64 for dense innovations.
    aggregate_dtype: ClassVar[type[np.floating[Any]]] = np.float64

    def __init__(
        self, params: Params, x0: F64, num_workers: int, history: IterateHistory | None = None
    ) -> None:
        super().__init__(params, x0, num_workers)
        history = params.history() if history is None else history
        self.lazy = LazyAggregate(self.dim, history, dtype=self.aggregate_dtype)
        self.lazy.observe(self.theta)  # theta^0: the first step's difference is taken from it
        self._rhs, self._rhs_for = 0.0, -1

    @property
    def aggregate(self) -> npt.NDArray[np.floating[Any]]:
        """Read-only view of ``sum_m`` (last upload of m)."""
        return self.lazy.aggregate

    def rhs(self) -> float:
        """The rule's right-hand side for the current iteration (computed once per k)."""
        if self._rhs_for != self.k:
            self._rhs = self.lazy.rhs(self.params.alpha, self.num_workers)
            self._rhs_for = self.k
        return self._rhs

    def message(self, m: int) -> Message:
        # + 8 bytes: the rule's right-hand side travels with the model.
        return Message(
            self.k, self.theta, rhs=self.rhs(), nbytes=theta_message_nbytes(self.dim) + 8
        )

    chunkable = True
    state_persists = True

    def add(self, m: int, payload: Payload) -> None:
        raise NotImplementedError  # abstract: the dense / quantized servers below override it

    def add_into(self, out: npt.NDArray[np.floating[Any]], m: int, payload: Payload) -> None:
        """Add worker m's upload to ``out`` (a chunk of the aggregate: :meth:`fold`)."""
        raise NotImplementedError  # abstract: the dense / quantized servers below override it

    def fold(self, uploads: Batch, s: int, e: int, base: StateVector | None = None) -> StateVector:
        """The chunk ``[s, e)`` of the aggregate (or of ``base``) after these uploads (a new
        array of the aggregate's dtype)."""
        start = self.lazy.aggregate[s:e] if base is None else base
        out = np.array(start, dtype=self.lazy.aggregate.dtype)
        for m in sorted(uploads):
            self.add_into(out, m, uploads[m])
        return out

    def commit(self, uploaders: list[int], state: StateVector) -> None:
        self.lazy.assign(state)
        self._advance()

    def apply(self, uploads: dict[int, Payload]) -> None:
        for m in sorted(uploads):
            self.add(m, uploads[m])
        self._advance()

    def _advance(self) -> None:
        """The model step from the (updated) aggregate."""
        new = self.theta - self.params.alpha * self.lazy.aggregate
        # float64 iterates: near convergence the steps are far below float32 resolution.
        try:
            self.lazy.observe(new)
        except OverflowError:
            pass  # a finite step whose squared length overflows float64 (alpha = 1e300)
        except ValueError:
            if np.isfinite(new).all():
                raise
            # A step that overflowed (a huge alpha): the run diverged, which the driver reads
            # from the loss of this iterate, as for the other algorithms; not an input error.
        self._move(new)


class QuantizedLazyServer(LazyServer):
    """Aggregate of LAQ payloads, kept in float32 and updated by the native
    ``laq_accumulate`` straight from the packed codes (no decoded temporary)."""

    aggregate_dtype = np.float32

    @staticmethod
    def _laq(m: int, payload: Payload) -> LAQPayload:
        if not isinstance(payload, LAQPayload):
            raise TypeError(f"worker {m} sent a {type(payload).__name__}, expected LAQPayload")
        return payload

    def add(self, m: int, payload: Payload) -> None:
        self.lazy.add(self._laq(m, payload))

    def add_into(self, out: npt.NDArray[np.floating[Any]], m: int, payload: Payload) -> None:
        laq_accumulate(out, self._laq(m, payload))


def laq_rule(params: Params, *, slaq: bool = False) -> UploadRule | None:
    """The official LAQ (or SLAQ) upload rule with these parameters' D, ck, xi, t_bar and
    err_coef; ``None`` (no lazy test: upload every iteration) when ``t_bar = 0``."""
    if params.t_bar == 0:
        return None
    base = UploadRule.slaq(params.D) if slaq else UploadRule.laq()
    return dataclasses.replace(
        base,
        D=params.D,
        ck=params.ck,
        xi=params.xi,
        t_bar=params.t_bar,
        err_coef=params.err_coef,
    )


class InnovationWorker(Worker):
    """LAQ worker: a :class:`~laqcore.lazy_state.LazyUploader` fed with its gradients.

    ``mode``: ``"rule"`` (LAQ/SLAQ: the lazy test, forced after ``t_bar`` skips; ``t_bar = 0``
    uploads every iteration), ``"always"`` (QGD) or ``"requested"`` (upload exactly when the
    server's message asks: random worker selection).
    """

    def __init__(
        self,
        site: WorkerSite,
        *,
        stochastic: bool = False,
        slaq: bool = False,
        mode: str = "rule",
    ) -> None:
        super().__init__(site)
        rule = laq_rule(self.params, slaq=slaq) if mode == "rule" else None
        self.uploader = LazyUploader(
            self.f.dim,
            self.params.bits,
            rule,
            block_size=self.params.block_size,
            adaptive_bits=self.params.adaptive_bits,
            width_block=self.params.width_block,
        )
        self.stochastic = stochastic
        self.mode = mode

    def step(self, msg: Message) -> Payload | None:
        if self.mode == "requested" and not msg.request:
            self.uploader.skip()
            return None  # not selected: no gradient computed at all
        return self.uploader.step(self.gradient(msg.theta, self.stochastic), msg.rhs)


class InnovationAlgorithm(Algorithm):
    """Template of the LAQ family: a :class:`QuantizedLazyServer` and
    :class:`InnovationWorker` s that upload per ``upload_mode`` (see InnovationWorker).

    One definition serves LAQ (``"rule"``), QGD (``"always"``), random selection
    (``"requested"``) and SLAQ (``slaq``: stochastic gradients, SLAQ's trigger and an
    iterate history of ``D - 1`` terms), so that QGD stays exactly LAQ with the lazy test
    switched off, as the tests check.
    """

    upload_mode: ClassVar[str] = "rule"
    slaq: ClassVar[bool] = False
    USES: ClassVar[frozenset[str]] = COMMON_PARAMS | LAQ_RULE_PARAMS | LAQ_QUANTIZER_PARAMS
    entropy_codable = True
    server_type: ClassVar[type[Server]] = QuantizedLazyServer

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        if self.slaq:
            history = self.params.history(num_terms=max(self.params.D - 1, 1))
            return QuantizedLazyServer(self.params, x0, num_workers, history)
        return super().make_server(x0, num_workers, smoothness)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return InnovationWorker(
            self.site(m, objective, num_workers),
            stochastic=self.stochastic,
            slaq=self.slaq,
            mode=self.upload_mode,
        )
