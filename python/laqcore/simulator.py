"""Deterministic many-worker simulator.

Runs one algorithm's server and M workers in one process, iteration by iteration, through
the same step interface the distributed engine uses (:mod:`laqcore.algorithms.base`), and
accounts per iteration for the loss ``F = (1/M) sum_m f_m``, the residual ``F - F*``,
uploads (communication rounds), uplink bits (``8 * payload.nbytes`` of every real payload)
and downlink bits (``8 * Message.nbytes``); every ``eval_every`` iterations also the full
gradient norm ``||grad F||`` and the test accuracy. It stops at ``F - F* <= eps`` (convex
problems), at ``max_iterations``, when an algorithm ends on its own (one-shot averaging) or
when the loss diverges (NaN/Inf or 1e6 times the initial loss).

Examples
--------
>>> from laqcore.problems import make_problem
>>> from laqcore.algorithms import get_algorithm
>>> res = simulate(make_problem("digits", workers=4), get_algorithm("laq"), max_iterations=20)
>>> res.iterations, res.uploads <= 4 * 20
(20, True)
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, TYPE_CHECKING

import numpy as np

from ._validate import check_positive_int, check_real
from .driver import Recorder, RunResult, run_rounds

if TYPE_CHECKING:
    from .algorithms import Algorithm
    from .problems import Problem

__all__ = ["Progress", "RunResult", "simulate"]


def __dir__() -> list[str]:
    return __all__


class Progress:
    """A one-line progress indicator on stderr, no dependencies.

    On a terminal it redraws one line at most 5 times a second; otherwise (logs, CI) it
    prints a line every ``10`` seconds. Runs shorter than one second print nothing.
    """

    def __init__(
        self, label: str, total: int, *, enabled: bool = True, stream: IO[str] | None = None
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last = self.start
        self.shown = False

    def update(self, k: int, residual: float | None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.start < 1.0 or now - self.last < (0.2 if self.tty else 10.0):
            return
        self.last = now
        self._write(k, residual)

    def _write(self, k: int, residual: float | None) -> None:
        width = 24
        done = int(width * min(k / max(self.total, 1), 1.0))
        bar = "#" * done + "." * (width - done)
        res = "" if residual is None or not math.isfinite(residual) else f" F-F*={residual:.2e}"
        line = f"{self.label:>14} [{bar}] {k}/{self.total}{res} {time.perf_counter() - self.start:.0f}s"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()
        self.shown = True

    def close(self, k: int, residual: float | None) -> None:
        if self.enabled and self.shown:
            self._write(k, residual)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()


def simulate(
    problem: Problem,
    algorithm: Algorithm,
    *,
    max_iterations: int = 5000,
    eps: float = 1e-6,
    f_star: float | None = None,
    eval_every: int = 10,
    progress: bool = False,
    record_history: bool = True,
) -> RunResult:
    """Run ``algorithm`` on ``problem`` with M simulated workers.

    Parameters
    ----------
    problem : Problem
    algorithm : Algorithm
        From :func:`laqcore.algorithms.get_algorithm`.
    max_iterations : int
    eps : float
        Stop once ``F - F* <= eps`` (ignored for nonconvex problems: no F*).
    f_star : float, optional
        Known optimal value; by default ``problem.optimal_value()`` (cached solve).
    eval_every : int
        Period of the (more expensive) full-gradient norm and test-accuracy evaluations.
    progress : bool
        Show a progress line on stderr for runs longer than a second.
    record_history : bool
        Keep the per-iteration lists (needed for plots).
    """
    check_positive_int(max_iterations, "max_iterations")
    eps = check_real(eps, "eps", minimum=0.0)
    check_positive_int(eval_every, "eval_every")
    M = problem.num_workers
    if f_star is None and problem.convex:
        f_star = problem.optimal_value()
    smooth = problem.smoothness() if algorithm.needs_smoothness else None
    server = algorithm.make_server(problem.initial_point(), M, smooth)
    workers = {m: algorithm.make_worker(m, problem.workers[m], M) for m in range(M)}

    def evaluate(theta: np.ndarray) -> tuple[float, float]:
        return float(np.linalg.norm(problem.grad(theta))), problem.accuracy(theta)

    recorder = Recorder(
        f_star=f_star, evaluate=evaluate, eval_every=eval_every, record_history=record_history
    )
    loss0 = problem.loss(server.theta)
    recorder.record(0, loss0, server.theta)
    bar = Progress(algorithm.name, max_iterations, enabled=progress)
    outcome = run_rounds(
        server,
        workers,
        recorder,
        loss=problem.loss,
        loss0=loss0,
        max_iterations=max_iterations,
        eps=eps,
        after_round=bar.update,
    )
    bar.close(outcome.iterations, recorder.residual(outcome.loss))
    return outcome.result(
        recorder,
        algorithm=algorithm,
        problem=problem.describe(),
        eps=eps,
        test_accuracy=problem.accuracy(server.theta),
        train_accuracy=problem.accuracy(server.theta, test=False),
    )
