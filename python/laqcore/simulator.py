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
measured compute of every round (charged as a stratified median, robust to a loaded machine:
:mod:`laqcore.network.trace`), so the wall-clock time under any link follows from
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
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validate import check_bool, check_positive_int, check_real
from .distributed.engine_exchange import owner_chunks
from .downlink import ChunkedStateDownlink, Downlink, DownlinkMode, parse_downlink
from .driver import Outcome, Progress, Recorder, run_rounds
from .entropy import entropy_decode, entropy_encode, is_codable
from .network import Link, TrafficTrace, round_times
from .serialization import json_safe
from .wire import Payload

if TYPE_CHECKING:
    from .algorithms import Algorithm
    from .algorithms.base import Message, Worker
    from .problems import Problem

__all__ = ["Progress", "RunResult", "make_result", "simulate"]


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
    written to results.json). ``test_accuracy`` / ``train_accuracy`` (and the
    ``test_accuracy`` history) are :meth:`laqcore.problems.Problem.accuracy`: the fraction
    classified right, but for a regression problem (a ``least-squares`` model on targets)
    the *negative* mean squared error, and NaN without test samples (``test_fraction=0``).
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
        _check_link(link)
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


def _check_link(link: Any) -> None:
    if not isinstance(link, Link):  # a str failed with "no attribute 'latency_s'"
        raise TypeError(
            f"link must be a laqcore.network.Link (laqcore.network.make_link('edge')), got "
            f"{type(link).__name__} {link!r:.40}"
        )


def make_result(
    outcome: Outcome,
    recorder: Recorder,
    *,
    algorithm: Algorithm,
    problem: dict[str, Any],
    eps: float,
    test_accuracy: float,
    train_accuracy: float,
    **extra: Any,
) -> RunResult:
    """The :class:`RunResult` of a run of the round driver (simulator and engine alike);
    ``extra``: the simulator's additional fields (trace, downlink mode, ...)."""
    t = recorder.totals
    up, down = int(t["bits"]), int(t["downlink_bits"])
    return RunResult(
        algorithm=algorithm.name,
        seed=algorithm.params.seed,
        params=asdict(algorithm.params),
        problem=problem,
        iterations=outcome.iterations,
        uploads=int(t["uploads"]),
        bits=up,
        downlink_bits=down,
        final_loss=outcome.loss,
        final_residual=recorder.residual(outcome.loss),
        test_accuracy=test_accuracy,
        train_accuracy=train_accuracy,
        reached_tolerance=outcome.reached_tolerance,
        diverged=outcome.diverged,
        wall_time=outcome.wall_time,
        f_star=recorder.f_star,
        eps=float(eps),
        history=recorder.history,
        uplink_bits=up,
        total_bits=up + down,
        **extra,
    )


def _check_sides(problem: Any, algorithm: Any) -> None:
    """A Problem and an Algorithm *instance*, or a TypeError that says how to make them."""
    from .algorithms import Algorithm
    from .problems import Problem

    if not isinstance(problem, Problem):
        raise TypeError(
            f"problem must be a laqcore Problem (laqcore.make_problem('digits', ...)), got "
            f"{type(problem).__name__} {problem!r:.40}"
        )
    if isinstance(algorithm, type) and issubclass(algorithm, Algorithm):
        raise TypeError(
            f"algorithm must be an instance: {algorithm.__name__}() or "
            f"laqcore.get_algorithm({algorithm.name!r}), not the class"
        )
    if not isinstance(algorithm, Algorithm):
        raise TypeError(
            "algorithm must be an Algorithm (laqcore.get_algorithm(name, ...)), got "
            f"{type(algorithm).__name__} {algorithm!r:.40}"
        )


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
    downlink_chunks: int = 0,
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
        Known optimal value; by default ``problem.optimal_value()`` (cached solve). A value
        above the starting loss ``F(theta^0)`` cannot be the optimum: ``ValueError``.
    eval_every : int
        Period of the (more expensive) full-gradient norm and test-accuracy evaluations.
    progress : bool
        Show a progress line on stderr for runs longer than a second.
    record_history : bool
        Keep the per-iteration lists (needed for plots).
    entropy_coding : bool
        Send every codable upload (LAQ, QSGD, TernGrad, sign payloads) as an entropy-coded
        frame (:mod:`laqcore.entropy`): its coded size is counted on the uplink (the
        ``delta`` downlink still counts the frames it relays uncoded, as ``laqcore launch``
        sends them, so ``downlink_bits`` and the modelled time do not shrink), and the server receives
        the payload decoded from those bytes, identical to the uncoded one, so iterates and
        upload decisions are exactly those of the run without it. The coding time is
        charged to the uploader's step, the decoding time to the server's update. An
        algorithm whose uploads have no code stream (``entropy_codable`` False: GD, top-k,
        ...) is refused with a ``ValueError`` before the run.
    downlink : str or DownlinkMode
        What moves down (:mod:`laqcore.downlink`): ``delta`` (default, the engine's exchange),
        ``delta:f32``, ``delta:laq:B``, ``model``, ``model:f32``, ``model:laq:B``.
    link : Link, optional
        Time model to apply to the recorded traffic (:meth:`RunResult.apply_link`).
    compute_s : float, optional
        Compute seconds per iteration for the time model (default: measured in the run).
    downlink_chunks : int, optional
        With ``delta:laq:B`` and N in ``1..M`` (default 0: no chunks): model the engine's
        two-phase exchange over this many processes
        (:class:`laqcore.downlink.ChunkedStateDownlink`: the vector split into owner chunks
        as the engine splits it, the server's state re-quantized chunk by chunk). The
        engine's ``downlink="delta:laq:B"`` with N processes then gives exactly this run.
    """
    _check_sides(problem, algorithm)
    check_positive_int(max_iterations, "max_iterations")
    eps = check_real(eps, "eps", minimum=0.0)
    check_positive_int(eval_every, "eval_every")
    given_f_star = f_star is not None
    if f_star is not None:
        f_star = check_real(f_star, "f_star")
    if link is not None:  # applied after the whole run: checked before it
        _check_link(link)
    if compute_s is not None:  # before the run, not when the link is applied after it
        compute_s = check_real(compute_s, "compute_s", minimum=0.0)
        if link is None:
            raise ValueError("compute_s is the time model's compute per iteration: give a link")
    for flag, value in (
        ("entropy_coding", entropy_coding),
        ("progress", progress),
        ("record_history", record_history),
    ):
        check_bool(value, flag)  # a truthy string such as "no" would switch it on
    if entropy_coding:  # else the result said "entropy-coded" of a run that coded nothing
        from .algorithms import check_entropy_codable, uploads_width_frames

        widths = "width_block" if uploads_width_frames(algorithm) else None
        check_entropy_codable([type(algorithm)], "entropy_coding", widths)
    M = problem.num_workers
    # The engine's N processes host >= 1 worker each; a huge N hung in the chunk split.
    check_positive_int(downlink_chunks, "downlink_chunks", minimum=0, maximum=M)
    note = algorithm.full_batch_note([w.n for w in problem.workers])
    if note is not None:
        warnings.warn(note, UserWarning, stacklevel=2)
    smooth = problem.smoothness() if algorithm.needs_smoothness else None
    server = algorithm.make_server(problem.initial_point(), M, smooth)
    workers = {m: algorithm.make_worker(m, problem.workers[m], M) for m in range(M)}
    down = Downlink(parse_downlink(downlink), server, M)
    chunked = None
    if downlink_chunks:
        if not down.mode.quantized or down.mode.kind != "delta":
            raise ValueError(f"downlink_chunks needs a delta:laq:B downlink, got {down.mode.name}")
        bounds = owner_chunks(algorithm, server, downlink_chunks)
        chunked = ChunkedStateDownlink(server, down.mode.bits, bounds)
    # After the sides and the downlink are built: a downlink the algorithm cannot take is
    # refused before the (cached, but possibly long) solve for F*.
    if f_star is None and problem.convex:
        f_star = problem.optimal_value()
    trace = TrafficTrace(M)

    def evaluate(theta: np.ndarray) -> tuple[float, float]:
        return float(np.linalg.norm(problem.grad(theta))), problem.accuracy(theta)

    recorder = Recorder(
        f_star=f_star, evaluate=evaluate, eval_every=eval_every, record_history=record_history
    )
    loss0 = problem.loss(server.theta)
    if given_f_star and f_star is not None and loss0 < f_star - 1e-12 * max(1.0, abs(f_star)):
        # Below the optimal value is impossible: every iterate would count as converged
        # (the run "reached" eps at iteration 0 without a word).
        raise ValueError(
            f"f_star = {f_star!r} is above the loss at the starting point, F(theta^0) = "
            f"{loss0!r}, so it is not the optimal value (leave it None to have it solved for)"
        )
    recorder.record(0, loss0, server.theta)
    on_wire: dict[int, Payload] = {}  # what was sent: the batch, or its entropy-coded frames
    clock = [0.0, 0.0]  # start of the round's worker side; its summed raw step seconds
    steps: list[tuple[float, bool]] = []  # the round's worker steps: (seconds, uploaded)
    shared = [0.0]  # the round's other worker-side seconds (building the messages)
    decoding = [0.0]  # the round's entropy decoding (server side)
    index = {m: i for i, m in enumerate(sorted(workers))}  # worker -> its place in steps
    oracle = problem.batched_oracle

    def before_round(k: int) -> None:
        steps.clear()
        clock[0], clock[1] = time.perf_counter(), 0.0

    def timed_step(m: int, worker: Worker, msg: Message) -> Payload | None:
        """One worker step, timed on its own (a batched gradient is charged what one
        worker's gradient costs alone, not the batched evaluation it triggered)."""
        seconds, requests = (oracle.seconds, oracle.requests) if oracle is not None else (0, 0)
        t0 = time.perf_counter()
        payload = worker.step(msg)
        raw = time.perf_counter() - t0
        clock[1] += raw
        if oracle is not None:
            raw -= oracle.seconds - seconds
            served = oracle.requests - requests
            if served:
                raw += served * oracle.single_grad_seconds(server.theta)
        steps.append((raw, payload is not None))
        return payload

    def exchange(k: int, uploads: dict[int, Payload]) -> dict[int, Payload]:
        """In one process nothing moves; with entropy coding the server gets what the coded
        frames decode to (identical payloads), and the coded sizes are what is counted."""
        shared[0] = time.perf_counter() - clock[0] - clock[1]  # the messages
        on_wire.clear()
        decoding[0] = 0.0
        batch: dict[int, Payload] = {}
        for m, payload in uploads.items():
            wire_payload: Payload = payload
            if entropy_coding and is_codable(payload):
                # Coding is the uploader's work, decoding the server's: both are charged.
                t0 = time.perf_counter()
                wire_payload = entropy_encode(payload)
                t1 = time.perf_counter()
                payload = entropy_decode(wire_payload.to_bytes(), expected_n=payload.n)
                decoding[0] += time.perf_counter() - t1
                seconds, uploaded = steps[index[m]]
                steps[index[m]] = (seconds + t1 - t0, uploaded)
            batch[m] = payload
            on_wire[m] = wire_payload
        return batch

    def apply(batch: dict[int, Payload], messages: list[Message]) -> int:
        t1 = time.perf_counter()
        if chunked is not None:
            sent = chunked.round(batch, M)
        else:
            down.start_round()
            server.apply(batch)
            sent = down.finish_round(batch)
        trace.record_compute(steps, shared[0], time.perf_counter() - t1 + decoding[0])
        trace.record(on_wire, sent.broadcast, sent.delivered)
        return int(sent.delivered)

    outcome = run_rounds(
        server,
        workers,
        recorder,
        loss=problem.loss,
        loss0=loss0,
        max_iterations=max_iterations,
        eps=eps,
        exchange=exchange,
        message=down.message,
        apply=apply,
        uplink_nbytes=lambda batch: sum(on_wire[m].nbytes for m in batch),
        step=timed_step,
        before_round=before_round,
        progress=Progress(algorithm.name, max_iterations, enabled=progress),
    )
    result = make_result(
        outcome,
        recorder,
        algorithm=algorithm,
        problem=problem.describe(),
        eps=eps,
        test_accuracy=problem.accuracy(server.theta),
        train_accuracy=problem.accuracy(server.theta, test=False),
        downlink=down.mode.name,
        trace=trace,
        entropy_coding=bool(entropy_coding),
    )
    return result if link is None else result.apply_link(link, compute_s=compute_s)
