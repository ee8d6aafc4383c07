"""Deterministic many-worker simulator.

Runs one algorithm's server and M workers in one process, iteration by iteration, through
the same step interface the distributed engine uses (:mod:`laqcore.algorithms.base`), and
accounts per iteration for the loss ``F = (1/M) sum_m f_m``, the residual ``F - F*``,
uploads (communication rounds), uplink bits (``8 * payload.nbytes`` of every real payload)
and downlink bits (what the ``downlink`` mode moves to the workers, :mod:`laqcore.downlink`;
default ``delta``: the other uploaders' frames, nothing when nobody uploaded); every ``eval_every`` iterations also the full
gradient norm ``||grad F||`` and the test accuracy. It stops at ``F - F* <= eps`` (convex
problems), at ``max_iterations``, when an algorithm ends on its own (one-shot averaging) or
when the loss diverges (NaN/Inf or 1e6 times the initial loss).

Every run records its per-iteration traffic (:class:`laqcore.network.TrafficTrace`) and the
measured compute time, so the wall-clock time under any link follows from
:func:`laqcore.network.round_times`; given a ``link``, the result carries
``time_to_tolerance`` and the ``time`` history (seconds under that link).

Examples
--------
>>> from laqcore.problems import make_problem
>>> from laqcore.algorithms import get_algorithm
>>> res = simulate(make_problem("digits", workers=4), get_algorithm("laq"), max_iterations=20)
>>> res.iterations, res.uploads <= 4 * 20
(20, True)
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .downlink import Downlink, DownlinkMode, parse_downlink
from .entropy import entropy_decode, entropy_encode, is_codable
from .network import Link, TrafficTrace, round_times
from .serialization import json_safe
from .wire import Payload

if TYPE_CHECKING:
    from .algorithms import Algorithm
    from .problems import Problem

__all__ = ["Progress", "RunResult", "simulate"]


def __dir__() -> list[str]:
    return __all__


@dataclass
class RunResult:
    """Outcome and per-iteration history of one simulated run.

    ``iterations`` is the number of iterations performed; when ``reached_tolerance`` it is
    the first iteration whose residual is ``<= eps`` (and ``uploads``/``bits`` are counted up
    to it). ``history`` holds per-iteration lists (index 0 = the starting point) and the
    ``eval_*`` lists sampled every ``eval_every`` iterations.

    ``bits`` = ``uplink_bits`` (payload frames, headers and CRC included), ``downlink_bits``
    per the ``downlink`` mode, ``total_bits`` their sum. ``time_s`` / ``time_to_tolerance``:
    modelled seconds of the whole run / to the tolerance under ``network`` (``None`` without
    a link, or when the tolerance was not reached). ``trace`` is the recorded traffic (not
    written to results.json).
    """

    algorithm: str
    seed: int
    params: dict[str, Any]
    problem: dict[str, Any]
    iterations: int
    uploads: int
    bits: int
    downlink_bits: int
    final_loss: float
    final_residual: float | None
    test_accuracy: float
    train_accuracy: float
    reached_tolerance: bool
    diverged: bool
    wall_time: float
    f_star: float | None
    eps: float
    history: dict[str, list[float]] = field(default_factory=dict)
    uplink_bits: int = 0
    total_bits: int = 0
    downlink: str = "delta"
    network: dict[str, Any] | None = None
    time_s: float | None = None
    time_to_tolerance: float | None = None
    compute_s: float | None = None
    trace: TrafficTrace | None = field(default=None, repr=False, compare=False)
    entropy_coding: bool = False

    def _plain(self, skip: tuple[str, ...]) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        safe: dict[str, Any] = json_safe(copy.deepcopy(out))
        return safe

    def summary(self) -> dict[str, Any]:
        """The ``runs`` entry of ``results.json`` (no history)."""
        return self._plain(("history", "problem", "trace"))

    def to_dict(self, *, history: bool = True) -> dict[str, Any]:
        return self._plain(("trace",) if history else ("history", "trace"))

    def apply_link(self, link: Link, *, compute_s: float | None = None) -> RunResult:
        """Set ``network``, ``time_s``, ``time_to_tolerance`` and the ``time`` history
        from the recorded trace under ``link``; returns self."""
        if self.trace is None:
            raise ValueError("this result has no traffic trace (run it with the simulator)")
        times = round_times(self.trace, link, compute_s=compute_s)
        elapsed = np.concatenate(([0.0], np.cumsum(times)))
        self.network = link.describe()
        self.compute_s = (
            compute_s
            if compute_s is not None
            else self.trace.worker_step_s + self.trace.server_step_s
        )
        self.time_s = float(elapsed[self.iterations])
        self.time_to_tolerance = self.time_s if self.reached_tolerance else None
        if self.history.get("loss"):
            self.history["time"] = [float(v) for v in elapsed[: len(self.history["loss"])]]
        return self


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


#: The per-iteration series of ``RunResult.history`` (the evaluation ones every ``eval_every``),
#: shared with the multi-process engine so both write the same results.json.
HISTORY_KEYS = (
    "loss",
    "residual",
    "uploads",
    "bits",
    "downlink_bits",
    "eval_iteration",
    "grad_norm",
    "test_accuracy",
)


def new_history() -> dict[str, list[float]]:
    """An empty history with every series of :data:`HISTORY_KEYS`."""
    return {k: [] for k in HISTORY_KEYS}


def has_diverged(loss: float, loss0: float) -> bool:
    """Stop rule for a run that blew up: a non-finite loss, or one a million times the
    starting loss (at least 1). Shared with the distributed engine, whose runs must stop
    exactly where the simulator's do."""
    return not math.isfinite(loss) or abs(loss) > 1e6 * max(abs(loss0), 1.0)


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
    entropy_coding: bool = False,
    downlink: str | DownlinkMode = "delta",
    link: Link | None = None,
    compute_s: float | None = None,
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
    entropy_coding : bool
        Send every codable upload (LAQ, QSGD, TernGrad, sign payloads) as an entropy-coded
        frame (:mod:`laqcore.entropy`): its coded size is counted, and the server receives
        the payload decoded from those bytes, identical to the uncoded one, so iterates and
        upload decisions are exactly those of the run without it.
    downlink : str or DownlinkMode
        What moves down (:mod:`laqcore.downlink`): ``delta`` (default, the engine's exchange),
        ``delta:f32``, ``delta:laq:B``, ``model``, ``model:f32``, ``model:laq:B``.
    link : Link, optional
        Time model to apply to the recorded traffic (:meth:`RunResult.apply_link`).
    compute_s : float, optional
        Compute seconds per iteration for the time model (default: measured in the run).
    """
    if (
        isinstance(max_iterations, bool)
        or not isinstance(max_iterations, int)
        or max_iterations < 1
    ):
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if not (isinstance(eps, (int, float)) and eps >= 0):
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    if isinstance(eval_every, bool) or not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be an integer >= 1, got {eval_every!r}")
    if not isinstance(entropy_coding, bool):
        raise TypeError(f"entropy_coding must be True or False, got {entropy_coding!r}")
    M = problem.num_workers
    if f_star is None and problem.convex:
        f_star = problem.optimal_value()
    x0 = problem.initial_point()
    smooth = problem.smoothness() if algorithm.needs_smoothness else None
    server = algorithm.make_server(x0, M, smooth)
    workers = [algorithm.make_worker(m, problem.workers[m], M) for m in range(M)]
    down = Downlink(parse_downlink(downlink) if isinstance(downlink, str) else downlink, server, M)
    trace = TrafficTrace(M)

    def residual_of(loss: float) -> float | None:
        return None if f_star is None else loss - f_star

    hist = new_history()
    loss0 = problem.loss(server.theta)
    uploads = up_bytes = down_bytes = 0

    def record(k: int, loss: float) -> None:
        if not record_history:
            return
        r = residual_of(loss)
        hist["loss"].append(loss)
        hist["residual"].append(float("nan") if r is None else r)
        hist["uploads"].append(uploads)
        hist["bits"].append(8 * up_bytes)
        hist["downlink_bits"].append(8 * down_bytes)
        if k % eval_every == 0:
            evaluate(k)

    def evaluate(k: int) -> None:
        hist["eval_iteration"].append(k)
        hist["grad_norm"].append(float(np.linalg.norm(problem.grad(server.theta))))
        hist["test_accuracy"].append(problem.accuracy(server.theta))

    record(0, loss0)
    bar = Progress(algorithm.name, max_iterations, enabled=progress)
    start = time.perf_counter()
    loss, k, reached, diverged = loss0, 0, False, False
    r0 = residual_of(loss0)
    if r0 is not None and r0 <= eps:
        reached = True
    while not reached and k < max_iterations and not server.done:
        batch: dict[int, Payload] = {}
        on_wire: dict[int, Payload] = {}  # what was sent: batch, or its entropy-coded frames
        t0 = time.perf_counter()
        for m, w in enumerate(workers):
            payload = w.step(down.message(m, server.message(m)))
            if payload is not None:
                uploads += 1
                wire_payload: Payload = payload
                if entropy_coding and is_codable(payload):
                    wire_payload = entropy_encode(payload)
                    payload = entropy_decode(wire_payload.to_bytes(), expected_n=payload.n)
                up_bytes += wire_payload.nbytes
                batch[m] = payload
                on_wire[m] = wire_payload
        t1 = time.perf_counter()
        down.start_round()
        server.apply(batch)
        sent = down.finish_round(batch)
        trace.worker_seconds += t1 - t0
        trace.worker_steps += M
        trace.server_seconds += time.perf_counter() - t1
        trace.server_steps += 1
        trace.record(on_wire, sent.broadcast, sent.delivered)
        down_bytes += sent.delivered
        k += 1
        loss = problem.loss(server.theta)
        if has_diverged(loss, loss0):
            diverged = True
            record(k, loss)
            break
        record(k, loss)
        r = residual_of(loss)
        if r is not None and r <= eps:
            reached = True
        bar.update(k, r)
    wall = time.perf_counter() - start
    bar.close(k, residual_of(loss))
    if record_history and (not hist["eval_iteration"] or hist["eval_iteration"][-1] != k):
        evaluate(k)
    params = asdict(algorithm.params)
    result = RunResult(
        algorithm=algorithm.name,
        seed=algorithm.params.seed,
        params=params,
        problem=problem.describe(),
        iterations=k,
        uploads=uploads,
        bits=8 * up_bytes,
        downlink_bits=8 * down_bytes,
        final_loss=loss,
        final_residual=residual_of(loss),
        test_accuracy=problem.accuracy(server.theta),
        train_accuracy=problem.accuracy(server.theta, test=False),
        reached_tolerance=reached,
        diverged=diverged,
        wall_time=wall,
        f_star=f_star,
        eps=float(eps),
        history=hist,
        uplink_bits=8 * up_bytes,
        total_bits=8 * (up_bytes + down_bytes),
        downlink=down.mode.name,
        trace=trace,
        entropy_coding=bool(entropy_coding),
    )
    return result if link is None else result.apply_link(link, compute_s=compute_s)
