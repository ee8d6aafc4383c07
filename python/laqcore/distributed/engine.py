"""Run any laqcore algorithm across processes: one rank per group of workers.

The algorithms are the simulator's (:mod:`laqcore.algorithms`): this module only replaces
the simulator's in-process loop by a distributed one, so there is no second copy of any
algorithm. Per iteration every rank:

1. asks its **server replica** for every worker's message (all workers, in worker order, so
   replicas that draw random numbers in ``message()`` stay in lockstep);
2. steps only its **own workers** (each rank holds the objectives of its own shards only);
3. exchanges the uploads, by one of two exchanges (``exchange``):

   * ``two-phase`` (the default where the algorithm allows it, ``auto``): the DDP hook's
     owner-chunk exchange (:mod:`laqcore.distributed.engine_exchange`): chunk j of every
     upload goes to owner j only, which folds its chunk of the server's state and publishes
     it by one all-gather; every rank then finishes the round with ``server.commit``. The
     bytes a rank receives per round do not grow with the number of ranks;
   * ``all-gather``: :class:`~laqcore.distributed.Transport`: one int64 per rank says
     whether (and how much) it uploads, then every uploading rank's frame reaches every
     rank, which decodes every upload;
4. calls ``server.apply`` with the same payloads in the same order as the simulator (or,
   two-phase, ``server.commit`` of the same state, bit for bit), so every replica (and the
   simulator) computes the same iterate;
5. evaluates ``F(theta) = (1/M) sum_m f_m(theta)``: each rank fills in its workers' terms of
   an M-vector that is all-reduced (every entry has exactly one non-zero contributor, so the
   sum is exact) and summed in worker order exactly like ``Problem.loss``.

Workers are assigned round-robin: worker m lives on rank ``m % nproc``; a rank's upload
frame is one upload bundle (:func:`laqcore.wire.pack_uploads`: header, item table, payload
frames, CRC), and every receiver refuses a bundle that names a worker its sender does not own.
The loop itself is :func:`laqcore.driver.run_rounds`; this module provides its exchange
(bundles through the transport), its loss and evaluation (all-reduces) and checkpoints.

Counted as in the simulator: ``uploads``, ``bits = 8 * sum(payload.nbytes)``, and
``downlink_bits`` as the simulator's default ``delta`` downlink: every worker receives the
other uploaders' frames (:func:`laqcore.downlink.delta_frames`): the algorithm's traffic,
the same for both exchanges. The extra ``wire`` section is what really crossed between
processes: ``exchange`` (which one ran), ``bytes_sent`` and ``bytes_received`` (this rank's,
control included), and the exchange's own counters (:class:`~laqcore.distributed.TrafficStats`
for the all-gather, :class:`~laqcore.distributed.two_phase.ExchangeStats` for two-phase); the
per-step loss all-reduce (monitoring, M float64) is reported separately as ``monitor_bytes``.

Checkpoints (``checkpoint_dir``/``checkpoint_every``) hold each rank's server replica, its
workers' state (random generators included) and the counters, in a format that cannot run
code (``.npz`` read with ``allow_pickle=False`` plus JSON, SHA-256 verified at resume; see
:mod:`laqcore.distributed.checkpoint`); resuming continues exactly like the uninterrupted
run. Every ``replica_check_every`` iterations (and right after a resume) the ranks compare a
digest of their server replicas and all stop with :class:`ReplicaMismatchError` if any differs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.distributed as dist

from .._validate import check_positive_int
from ..downlink import delta_frames, parse_downlink
from ..driver import Progress, Recorder, run_rounds
from ..simulator import make_result
from ..wire import Payload, pack_uploads, unpack_uploads
from .engine_config import EngineConfig
from .engine_exchange import AnnouncedUpload, EngineChunkCodec, check_exchange, resolve_exchange
from .engine_state import RankCheckpoints, check_replicas
from .errors import NonFiniteGradientError, run_collective
from .gather import collective_device
from .transport import Transport, adopt_control, resolve_control
from .two_phase import TwoPhaseExchange

if TYPE_CHECKING:
    from ..algorithms.base import Message, Worker
    from ..problems import LocalObjective

__all__ = ["run_engine"]  # EngineConfig: engine_config (imported here for run_engine)


def __dir__() -> list[str]:
    return __all__


class _NonFinite(Exception):
    """Raised inside a worker's step by :class:`_FiniteObjective` (before any state change)."""


class _FiniteObjective:
    """Wraps a LocalObjective so a NaN/Inf gradient stops the worker's step at once."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @staticmethod
    def _check(g: Any) -> Any:
        arr = g[1] if isinstance(g, tuple) else g
        if not np.all(np.isfinite(arr)):
            raise _NonFinite
        return g

    def grad(self, *a: Any, **k: Any) -> Any:
        return self._check(self._inner.grad(*a, **k))

    def minibatch_grad(self, *a: Any, **k: Any) -> Any:
        return self._check(self._inner.minibatch_grad(*a, **k))

    def value_and_grad(self, *a: Any, **k: Any) -> Any:
        return self._check(self._inner.value_and_grad(*a, **k))


def run_engine(
    rank: int,
    world: int,
    cfg: EngineConfig,
    fault: Callable[[int, int, dict[int, Any]], None] | None = None,
) -> dict[str, Any]:
    """The per-rank body of a distributed run (call on every rank of an initialised group).

    Returns a dict with ``result`` (the simulator's :class:`~laqcore.simulator.RunResult`
    fields, on every rank), ``wire`` (traffic, and the loop's wall time split into
    ``exchange_s``, ``monitor_s`` and ``compute_s``), ``decisions`` (per iteration, the
    sorted list of uploading workers), ``theta`` (final iterate) and ``round_compute_s``
    (per iteration of this run, this rank's wall time outside collectives).

    ``fault(rank, k, workers)`` is called before each iteration's worker steps; tests use it
    to kill a rank or poison a gradient.
    """
    from ..algorithms import get_algorithm
    from ..problems import make_problem

    if cfg.nonfinite not in ("raise", "skip"):
        raise ValueError(f"nonfinite must be 'raise' or 'skip', got {cfg.nonfinite!r}")
    down = parse_downlink(cfg.downlink)
    check_exchange(cfg.exchange, get_algorithm(cfg.algorithm, **cfg.overrides), cfg.downlink)
    check_positive_int(cfg.checkpoint_every, "checkpoint_every", minimum=0)
    check_positive_int(cfg.replica_check_every, "replica_check_every", minimum=0)
    problem = make_problem(**cfg.problem)
    M = problem.num_workers
    if M < world:
        raise ValueError(f"{world} processes need at least as many workers, got {M}")
    algorithm = get_algorithm(cfg.algorithm, **cfg.overrides)
    note = algorithm.full_batch_note([w.n for w in problem.workers])
    if note is not None and rank == 0:
        warnings.warn(note, UserWarning, stacklevel=2)
    # F* from rank 0 only (an L-BFGS solve or a cache read), shared with the others, and
    # rank 0's control phase for the Transport, which every rank takes (adopt_control).
    control = resolve_control(None, collective_device(None).type)
    box: list[Any] = [problem.optimal_value() if rank == 0 and problem.convex else None, control]
    run_collective(rank, "the broadcast of F*", None, dist.broadcast_object_list, box, src=0)
    f_star: float | None = box[0]
    control = adopt_control(control, box[1], "engine")
    smooth = problem.smoothness() if algorithm.needs_smoothness else None
    server = algorithm.make_server(problem.initial_point(), M, smooth)
    owned = [[m for m in range(M) if m % world == r] for r in range(world)]
    mine = owned[rank]
    unit = resolve_exchange(cfg.exchange, algorithm, server)
    bits = down.bits if down.quantized else None
    codec = None if unit is None else EngineChunkCodec(server, owned, unit, bits)
    width = 0 if codec is None else 2 * codec.slots  # (worker, bytes) per slot
    chunked = None if codec is None else TwoPhaseExchange(problem.dim, codec, control_width=width)
    workers = {
        m: algorithm.make_worker(m, cast("LocalObjective", _FiniteObjective(problem.workers[m])), M)
        for m in mine
    }
    # Each rank keeps only its own shards from here on.
    local_objectives = {m: problem.workers[m] for m in mine}
    problem.workers = [None] * M  # type: ignore[list-item]
    transport = Transport(timeout_s=None, control=control)
    qdown = None if codec is None else codec.down  # the owners' exact and the held state
    stats: Any = transport.stats if chunked is None else chunked.stats
    counters = {"monitor_bytes": 0, "nonfinite": 0}
    # Seconds this rank spent inside collectives (the exchange, the monitoring all-reduces);
    # the rest of the loop's wall time is its own compute (for the time model's validation).
    clock = {"exchange_s": 0.0, "monitor_s": 0.0, "mark": 0.0, "comm_at_mark": 0.0}
    #: Per iteration, this rank's compute: the round's wall time outside collectives.
    round_compute: list[float] = []
    # Where the run is, for a peer failure in a monitoring all-reduce (a rank that dies
    # while the others compute the loss fails them there, not in the exchange).
    at = {"round": "before the first iteration"}
    monitor_device = collective_device(None)  # the default group's (CPU for gloo)

    def per_worker(values: dict[int, float | np.ndarray], width: int, what: str) -> np.ndarray:
        """M rows, each filled by its owner rank; all-reduce is exact (one non-zero each).
        The buffer lives where the group's collectives want it (NCCL: the rank's GPU)."""
        buf = torch.zeros((M, width), dtype=torch.float64)
        for m, v in values.items():
            buf[m] = torch.as_tensor(np.atleast_1d(v), dtype=torch.float64)
        t0 = time.perf_counter()
        on_device = buf.to(monitor_device)
        run_collective(
            rank, f"the {what} all-reduce {at['round']}", None, dist.all_reduce, on_device
        )
        clock["monitor_s"] += time.perf_counter() - t0
        counters["monitor_bytes"] += 8 * M * width * 2 * (world - 1)
        return on_device.cpu().numpy()

    def global_loss(theta: np.ndarray) -> float:
        col = per_worker({m: local_objectives[m].loss(theta) for m in mine}, 1, "loss")[:, 0]
        # Same expression as Problem.loss: a Python sum in worker order, then / M.
        return float(sum(float(v) for v in col)) / M

    def evaluate(theta: np.ndarray) -> tuple[float, float]:
        grads = per_worker(
            {m: local_objectives[m].value_and_grad(theta)[1] for m in mine},
            problem.dim,
            "gradient-norm",
        )
        total = np.zeros(problem.dim)
        for m in range(M):
            total += grads[m]
        return float(np.linalg.norm(total / M)), problem.accuracy(theta)

    recorder = Recorder(
        f_star=f_star,
        evaluate=evaluate,
        eval_every=cfg.eval_every,
        record_history=cfg.record_history,
    )
    ckpt = RankCheckpoints(cfg, rank, world, skip=(_FiniteObjective,), downlink=qdown)
    loss0 = global_loss(server.theta)
    k = 0
    if cfg.resume:
        k, loss0 = ckpt.load(server, workers, recorder, counters, stats)
        check_replicas(server, rank, k)  # replicas restored from different files must agree
    else:
        recorder.record(0, loss0, server.theta)
    hist = recorder.history
    loss = hist["loss"][-1] if (cfg.resume and hist["loss"]) else loss0
    if cfg.resume and not cfg.record_history:
        loss = global_loss(server.theta)

    bad: list[int] = []

    def step(m: int, worker: Worker, msg: Message) -> Payload | None:
        try:
            return worker.step(msg)
        except _NonFinite:
            bad.append(m)
            return None

    def exchange_two_phase(k: int, uploads: dict[int, Payload]) -> dict[int, Payload]:
        """This rank's uploads -> every worker's (sizes announced); the state: in ``codec``."""
        at["round"] = f"after iteration {k}"
        assert chunked is not None and codec is not None  # noqa: S101 - two-phase runs only
        t0 = time.perf_counter()
        res = chunked.round(
            uploads or None,
            step=k,
            nonfinite=bool(bad) and cfg.nonfinite == "raise",
            tag=f"iteration {k}",
            control=codec.announce(uploads),
            on_control=codec.check_control,
        )
        clock["exchange_s"] += time.perf_counter() - t0
        if res.nonfinite_ranks:
            raise NonFiniteGradientError(res.nonfinite_ranks, k, where="a worker gradient")
        if res.overflow_owners:  # on every rank: the owners' markers reached all of them
            raise NonFiniteGradientError(res.overflow_owners, k, owners=True)
        counters["nonfinite"] += len(bad)
        bad.clear()
        return {
            m: uploads[m] if m in uploads else AnnouncedUpload(problem.dim, size)
            for m, size in codec.announced.items()
        }

    def exchange(k: int, uploads: dict[int, Payload]) -> dict[int, Payload]:
        """This rank's uploads -> every worker's, through one bundle frame per rank."""
        at["round"] = f"after iteration {k}"
        frame = pack_uploads(sorted(uploads.items())) if uploads else None
        t0 = time.perf_counter()
        res = transport.exchange(
            frame, nonfinite=bool(bad) and cfg.nonfinite == "raise", tag=f"iteration {k}"
        )
        clock["exchange_s"] += time.perf_counter() - t0
        if res.nonfinite_ranks:
            raise NonFiniteGradientError(res.nonfinite_ranks, k, where="a worker gradient")
        counters["nonfinite"] += len(bad)
        bad.clear()
        batch: dict[int, Payload] = {}
        for r in res.uploaders:
            frame = res.frames[r] or b""
            sender = f"rank {r}"
            for m, p in unpack_uploads(
                frame, expected_n=problem.dim, owned=owned[r], sender=sender
            ):
                batch[m] = p
        return batch

    def apply(batch: dict[int, Payload], messages: list[Message]) -> int:
        if codec is not None and batch:
            size = codec.commit(sorted(batch))  # the owners' folded state
            if qdown is not None:
                return M * size  # the simulator's chunked delta:laq:B downlink
        else:
            server.apply(batch)
        # The simulator's default ``delta`` downlink: every worker receives the other
        # uploaders' frames (the replicas make it implicit here; counted the same way).
        return int(delta_frames(batch, M).delivered)

    def after_round(k: int, residual: float | None) -> None:
        now, comm = time.perf_counter(), clock["exchange_s"] + clock["monitor_s"]
        round_compute.append(now - clock["mark"] - (comm - clock["comm_at_mark"]))
        clock["mark"], clock["comm_at_mark"] = now, comm
        if cfg.replica_check_every and k % cfg.replica_check_every == 0:
            check_replicas(server, rank, k)
        if ckpt.path is not None and cfg.checkpoint_every and k % cfg.checkpoint_every == 0:
            ckpt.save(k, loss0, server, workers, recorder, counters, stats)

    # Only the loop's collectives count (not the starting loss's all-reduce, which also
    # waits for the slowest rank's setup).
    clock.update(exchange_s=0.0, monitor_s=0.0, mark=time.perf_counter(), comm_at_mark=0.0)
    outcome = run_rounds(
        server,
        workers,
        recorder,
        loss=global_loss,
        loss0=loss0,
        max_iterations=cfg.max_iterations,
        eps=cfg.eps,
        start=k,
        current_loss=loss,
        exchange=exchange if chunked is None else exchange_two_phase,
        step=step,
        apply=apply,
        before_round=None if fault is None else (lambda k: fault(rank, k, workers)),
        after_round=after_round,
        progress=Progress(algorithm.name, cfg.max_iterations, enabled=cfg.progress and rank == 0),
    )
    result = make_result(
        outcome,
        recorder,
        algorithm=algorithm,
        problem=problem.describe(),
        eps=cfg.eps,
        test_accuracy=problem.accuracy(server.theta),
        train_accuracy=float("nan"),  # needs every shard; no rank holds them all
    )
    wire: dict[str, Any] = dict(stats.as_dict())
    wire["exchange"] = "all-gather" if chunked is None else "two-phase"
    wire["monitor_bytes"] = counters["monitor_bytes"]
    wire["nonfinite_skipped"] = counters["nonfinite"]
    wire["processes"] = world
    # Loop wall time split: inside collectives vs this rank's compute (what is left).
    wire["exchange_s"] = clock["exchange_s"]
    wire["monitor_s"] = clock["monitor_s"]
    wire["compute_s"] = max(outcome.wall_time - clock["exchange_s"] - clock["monitor_s"], 0.0)
    return {
        "result": result.to_dict(history=cfg.record_history),
        "wire": wire,
        "decisions": recorder.decisions,
        "theta": np.array(server.theta),
        "round_compute_s": round_compute,
    }
