"""The round driver: the one loop every runner of an algorithm uses.

Per iteration ``k`` (:func:`run_rounds`)::

    messages = [server.message(m) for m in range(M)]        # all of them, in worker order
    uploads  = {m: workers[m].step(messages[m]) ...}          # the workers this runner holds
    batch    = exchange(k, uploads)                           # every worker's upload of k
    server.apply(batch); loss = loss_fn(server.theta)
    recorder.record(k + 1, loss, theta)                       # counters, history, evaluation
    stop at F - F* <= eps, at max_iterations, when the server is done, or on divergence

and the caller turns the :class:`Outcome` and the recorder into a
:class:`~laqcore.simulator.RunResult` (:func:`laqcore.simulator.make_result`). The simulator
(:mod:`laqcore.simulator`) holds every worker and exchanges with :func:`identity_exchange`;
the multi-process engine (:mod:`laqcore.distributed.engine`) holds its own workers and
exchanges through the transport; ``tests/driver_cases.py`` drives algorithms by hand with it.

The exchange seam
-----------------
``exchange(k, uploads) -> batch`` receives this runner's uploads of iteration ``k`` (worker id
-> :class:`~laqcore.wire.Payload`; workers that skipped are absent) and returns every
worker's upload of that iteration, the same mapping on every runner. It may raise to abort
the run (a peer's fault); it must not change the payloads. Anything that moves bytes (framing,
two-phase protocols, compression of the downlink) lives behind it.

Accounting
----------
:class:`Recorder` keeps cumulative counters (``uploads``, ``bits`` = 8 * sum of
``payload.nbytes`` uplink, ``downlink_bits`` = 8 * sum of ``Message.nbytes``), and on every
record appends each counter's current total to the history series of the same name. A new
per-iteration quantity (e.g. a simulated wall-clock) is a new name in ``COUNTERS`` plus calls
to :meth:`Recorder.add`; it then appears in the history like the others.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar

from ._typing import F64
from .wire import Payload, check_payload_type

if TYPE_CHECKING:
    from .algorithms.base import Message, Server, Worker

__all__ = [
    "HISTORY_KEYS",
    "Exchange",
    "Outcome",
    "Progress",
    "Recorder",
    "has_diverged",
    "identity_exchange",
    "new_history",
    "run_rounds",
]


def __dir__() -> list[str]:
    return __all__


#: ``exchange(k, this runner's uploads) -> every worker's uploads`` (see the module docstring).
Exchange = Callable[[int, dict[int, Payload]], dict[int, Payload]]
#: ``step(m, worker, message) -> payload or None`` (the default calls ``worker.step``).
StepFn = Callable[[int, "Worker", "Message"], "Payload | None"]


#: The per-iteration series of ``RunResult.history`` (the evaluation ones every ``eval_every``).
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
    starting loss (at least 1)."""
    return not math.isfinite(loss) or abs(loss) > 1e6 * max(abs(loss0), 1.0)


def identity_exchange(k: int, uploads: dict[int, Payload]) -> dict[int, Payload]:
    """The simulator's exchange: one runner holds every worker, nothing moves."""
    return uploads


def _step(m: int, worker: Worker, msg: Message) -> Payload | None:
    return worker.step(msg)


class Recorder:
    """Counters, history and upload decisions of one run (see the module docstring).

    Parameters
    ----------
    f_star : float or None
        Optimal value (residual ``F - F*``); ``None`` for nonconvex problems.
    evaluate : callable ``theta -> (grad_norm, test_accuracy)``
        The periodic evaluation (collective in the engine: called on every rank together).
    eval_every : int
        Evaluation period in iterations.
    record_history : bool
        Keep the per-iteration series (the counters and decisions are always kept).
    """

    COUNTERS: ClassVar[tuple[str, ...]] = ("uploads", "bits", "downlink_bits")

    def __init__(
        self,
        *,
        f_star: float | None,
        evaluate: Callable[[F64], tuple[float, float]],
        eval_every: int,
        record_history: bool = True,
    ) -> None:
        self.f_star = f_star
        self.evaluate = evaluate
        self.eval_every = eval_every
        self.record_history = record_history
        self.totals: dict[str, int | float] = dict.fromkeys(self.COUNTERS, 0)
        self.history = new_history()
        for name in self.COUNTERS:
            self.history.setdefault(name, [])
        #: Per iteration, the sorted ids of the workers whose uploads were applied.
        self.decisions: list[list[int]] = []

    def residual(self, loss: float) -> float | None:
        return None if self.f_star is None else loss - self.f_star

    def add(self, name: str, amount: float) -> None:
        """Add to a cumulative counter of ``COUNTERS``."""
        self.totals[name] += amount

    def count_round(
        self, batch: Mapping[int, Payload], uplink_bytes: int, downlink_bytes: int
    ) -> None:
        """One iteration's traffic: the applied uploads, the bytes up and down."""
        self.add("uploads", len(batch))
        self.add("bits", 8 * uplink_bytes)
        self.add("downlink_bits", 8 * downlink_bytes)
        self.decisions.append(sorted(batch))

    def record(self, k: int, loss: float, theta: F64) -> None:
        """Append iteration ``k``'s loss and counters (and evaluate every ``eval_every``)."""
        if not self.record_history:
            return
        r = self.residual(loss)
        self.history["loss"].append(loss)
        self.history["residual"].append(float("nan") if r is None else r)
        for name in self.COUNTERS:
            self.history[name].append(self.totals[name])
        if k % self.eval_every == 0:
            self._evaluate(k, theta)

    def _evaluate(self, k: int, theta: F64) -> None:
        grad_norm, accuracy = self.evaluate(theta)
        self.history["eval_iteration"].append(k)
        self.history["grad_norm"].append(grad_norm)
        self.history["test_accuracy"].append(accuracy)

    def finish(self, k: int, theta: F64) -> None:
        """Evaluate the final iterate unless iteration ``k`` was just evaluated."""
        evals = self.history["eval_iteration"]
        if self.record_history and (not evals or evals[-1] != k):
            self._evaluate(k, theta)

    def state(self) -> dict[str, Any]:
        """Plain-value snapshot (totals, history, decisions) for checkpoints."""
        return {
            "totals": dict(self.totals),
            "history": {k: list(v) for k, v in self.history.items()},
            "decisions": [list(d) for d in self.decisions],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state` (``ValueError`` for a snapshot of other counters)."""
        if set(state["totals"]) != set(self.COUNTERS) or set(state["history"]) != set(self.history):
            raise ValueError("recorder state holds other counters or series than this recorder")
        self.totals = dict(state["totals"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.decisions = [[int(m) for m in d] for d in state["decisions"]]


@dataclass
class Outcome:
    """How :func:`run_rounds` ended."""

    iterations: int
    loss: float
    reached_tolerance: bool
    diverged: bool
    wall_time: float


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


def run_rounds(
    server: Server,
    workers: Mapping[int, Worker],
    recorder: Recorder,
    *,
    loss: Callable[[F64], float],
    loss0: float,
    max_iterations: int,
    eps: float,
    start: int = 0,
    current_loss: float | None = None,
    exchange: Exchange = identity_exchange,
    step: StepFn = _step,
    message: Callable[[int, Message], Message] | None = None,
    apply: Callable[[dict[int, Payload], list[Message]], int] | None = None,
    uplink_nbytes: Callable[[dict[int, Payload]], int] | None = None,
    before_round: Callable[[int], None] | None = None,
    after_round: Callable[[int, float | None], None] | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Run iterations ``start, start + 1, ...`` until a stop rule fires.

    Parameters
    ----------
    server, workers
        The algorithm's server (replica) and the workers this runner steps (id -> worker).
    recorder
        Receives the traffic and the per-iteration record (iteration 0 is the caller's).
    loss, loss0
        ``theta -> F(theta)`` and ``F(theta^0)`` (the divergence reference).
    max_iterations, eps
        Budget and tolerance (``F - F* <= eps``, only with an ``f_star``).
    start, current_loss
        Resume point: iteration number and the loss there (default ``loss0``).
    exchange
        See the module docstring (default: :func:`identity_exchange`).
    step
        ``(m, worker, message) -> payload or None``; the engine wraps it to catch faults.
    message
        ``(m, server message) -> the message worker m receives`` (a downlink model).
    apply
        ``(batch, messages) -> downlink bytes of the round``, applying the batch to the
        server; default ``server.apply(batch)`` and the messages' ``nbytes``.
    uplink_nbytes
        ``batch -> uplink bytes of the round``; default the payloads' ``nbytes`` (an exchange
        that sends other bytes, e.g. entropy-coded frames, reports its own).
    before_round, after_round
        Called with ``k`` before an iteration's messages, and with ``(k, residual)`` after
        iteration ``k`` is recorded (checkpoints, timers).
    progress
        The run's progress line: updated after every iteration and closed at the end.
    """
    num_workers = server.num_workers
    k = start
    current = loss0 if current_loss is None else current_loss
    r0 = recorder.residual(current)
    reached = r0 is not None and r0 <= eps
    diverged = False
    started = time.perf_counter()
    while not reached and k < max_iterations and not server.done:
        if before_round is not None:
            before_round(k)
        # Every message, in worker order: replicas that draw random numbers in message()
        # stay in lockstep, and the downlink is counted for every worker.
        messages = [server.message(m) for m in range(num_workers)]
        if message is not None:
            messages = [message(m, msg) for m, msg in enumerate(messages)]
        uploads: dict[int, Payload] = {}
        for m in sorted(workers):
            payload = step(m, workers[m], messages[m])
            if payload is not None:
                uploads[m] = check_payload_type(payload, f"worker {m}'s step")
        batch = dict(sorted(exchange(k, uploads).items()))
        up = (
            sum(p.nbytes for p in batch.values()) if uplink_nbytes is None else uplink_nbytes(batch)
        )
        if apply is None:
            server.apply(batch)
            down = sum(msg.nbytes for msg in messages)
        else:
            down = apply(batch, messages)
        recorder.count_round(batch, up, down)
        k += 1
        current = loss(server.theta)
        recorder.record(k, current, server.theta)
        if has_diverged(current, loss0):
            diverged = True
            break
        r = recorder.residual(current)
        reached = r is not None and r <= eps
        if after_round is not None:
            after_round(k, r)
        if progress is not None:
            progress.update(k, r)
    wall = time.perf_counter() - started
    if progress is not None:
        progress.close(k, recorder.residual(current))
    recorder.finish(k, server.theta)
    return Outcome(k, current, reached, diverged, wall)
