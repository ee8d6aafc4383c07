"""Pieces shared by the lazily aggregated methods (LAG, LAQ, SLAQ, QGD, random selection).

* :class:`LazyServer`: keeps the running aggregate ``sum_m (last upload of m)`` and the history
  of squared iterate differences; its messages carry the upload rule's right-hand side
  ``(1/(alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2``.
* :class:`InnovationWorker`: the LAQ worker (innovation quantizer + upload test + clock).
* :class:`InnovationAlgorithm`: an algorithm made of those two (LAQ, QGD, random selection),
  which differ only in when the worker uploads (``upload_mode``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt

from ..laq import InnovationQuantizer, LAQPayload, laq_accumulate
from ..lazy import IterateHistory, UploadRule
from ..wire import Payload
from .base import Algorithm, Message, Params, Server, Worker, theta_message_nbytes

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


F64 = npt.NDArray[np.float64]


class LazyServer(Server):
    """Server of the lazy methods: ``theta -= alpha * aggregate`` where uploads *add* their
    innovation to ``aggregate`` (float64); skipped workers' old contributions stay in it."""

    def __init__(
        self, params: Params, x0: F64, num_workers: int, history: IterateHistory | None = None
    ) -> None:
        super().__init__(params, x0, num_workers)
        self.history = params.history() if history is None else history
        self.aggregate = self._new_aggregate()
        self._rhs, self._rhs_for = 0.0, -1

    def _new_aggregate(self) -> npt.NDArray[np.floating]:
        return np.zeros(self.dim)

    def rhs(self) -> float:
        """The rule's right-hand side for the current iteration (computed once per k)."""
        if self._rhs_for != self.k:
            self._rhs = self.history.rhs(self.params.alpha, self.num_workers)
            self._rhs_for = self.k
        return self._rhs

    def message(self, m: int) -> Message:
        # + 8 bytes: the rule's right-hand side travels with the model.
        return Message(
            self.k, self.theta, rhs=self.rhs(), nbytes=theta_message_nbytes(self.dim) + 8
        )

    def add(self, m: int, payload: Payload) -> None:
        raise NotImplementedError  # abstract: the dense / quantized servers below override it

    def apply(self, uploads: dict[int, Payload]) -> None:
        for m in sorted(uploads):
            self.add(m, uploads[m])
        new = self.theta - self.params.alpha * self.aggregate
        diff = new - self.theta
        # float64 difference: near convergence the steps are far below float32 resolution
        # of theta itself, so a float32 kernel on the iterates would lose them.
        # Not history.push_iterates: its deterministic blocked sum rounds differently from
        # this dot product, which would move the rule's threshold and change recorded runs.
        self.history.push(float(diff @ diff))
        self._move(new)


class QuantizedLazyServer(LazyServer):
    """Aggregate of LAQ payloads, kept in float32 and updated by the native
    ``laq_accumulate`` straight from the packed codes (no decoded temporary)."""

    def _new_aggregate(self) -> npt.NDArray[np.floating]:
        return np.zeros(self.dim, dtype=np.float32)

    def add(self, m: int, payload: Payload) -> None:
        if not isinstance(payload, LAQPayload):
            raise TypeError(f"worker {m} sent a {type(payload).__name__}, expected LAQPayload")
        laq_accumulate(self.aggregate, payload)


def laq_rule(params: Params, *, slaq: bool = False) -> UploadRule:
    """The official LAQ (or SLAQ) upload rule with these parameters' D, ck, xi, t_bar."""
    base = UploadRule.slaq(params.D) if slaq else UploadRule.laq()
    return dataclasses.replace(
        base,
        D=params.D,
        ck=params.ck,
        xi=params.xi,
        t_bar=params.t_bar if params.t_bar > 0 else None,
    )


class InnovationWorker(Worker):
    """LAQ worker: quantize ``g - q_prev`` and upload it iff the rule says so.

    ``mode``: ``"rule"`` (LAQ/SLAQ: the lazy test, forced after ``t_bar`` skips; ``t_bar = 0``
    uploads every iteration), ``"always"`` (QGD) or ``"requested"`` (upload exactly when the
    server's message asks: random worker selection).
    """

    def __init__(
        self,
        m: int,
        objective: LocalObjective,
        params: Params,
        num_workers: int,
        *,
        stochastic: bool = False,
        slaq: bool = False,
        mode: str = "rule",
    ) -> None:
        super().__init__(m, objective, params, num_workers)
        self.iq = InnovationQuantizer(objective.dim, params.bits, params.block_size)
        self.rule = laq_rule(params, slaq=slaq)
        # The rule's constants, validated once by UploadRule; the per-iteration test below is
        # UploadRule.should_upload without its per-call argument checks (all values here come
        # from the quantizer and the server, already finite and >= 0), which cost more than
        # the quantizer kernel itself on small models.
        self._err_coef = self.rule.err_scale * self.rule.err_coef
        self._t_bar = self.rule.t_bar
        self.stochastic = stochastic
        self.mode = mode
        self.clock = 0  # iterations since the last upload (t_m)

    def _wants(self, payload: LAQPayload, msg: Message) -> bool:
        if self.mode == "always" or (self.mode == "rule" and self.params.t_bar == 0):
            return True
        if self.mode == "requested":
            return msg.request
        assert payload.err_sq is not None  # set by propose()
        if self._t_bar is not None and self.clock >= self._t_bar:
            return True
        threshold = msg.rhs + self._err_coef * (payload.err_sq + self.iq.err_hat_sq)
        return payload.innov_sq >= threshold + self.rule.additive

    def step(self, msg: Message) -> Payload | None:
        if self.mode == "requested" and not msg.request:
            self.clock += 1
            return None  # not selected: no gradient computed at all
        payload = self.iq.propose(self.gradient(msg.theta, self.stochastic))
        if self._wants(payload, msg):
            self.iq.commit(payload)
            self.clock = 0
            return payload
        self.clock += 1
        return None


class InnovationAlgorithm(Algorithm):
    """Template of the deterministic LAQ family: a :class:`QuantizedLazyServer` and
    :class:`InnovationWorker` s that upload per ``upload_mode`` (see InnovationWorker).

    One definition serves LAQ (``"rule"``) and QGD (``"always"``), so that QGD stays exactly
    LAQ with the lazy test switched off, as the tests check.
    """

    upload_mode: ClassVar[str] = "rule"

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return QuantizedLazyServer(self.params, x0, num_workers)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return InnovationWorker(m, objective, self.params, num_workers, mode=self.upload_mode)
