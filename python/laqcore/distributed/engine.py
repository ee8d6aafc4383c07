"""Run any laqcore algorithm across processes: one rank per group of workers.

The algorithms are the simulator's (:mod:`laqcore.algorithms`): this module only replaces
the simulator's in-process loop by a distributed one, so there is no second copy of any
algorithm. Per iteration every rank:

1. asks its **server replica** for every worker's message (all workers, in worker order, so
   replicas that draw random numbers in ``message()`` stay in lockstep);
2. steps only its **own workers** (each rank holds the objectives of its own shards only);
3. exchanges the uploads with :class:`~laqcore.distributed.Transport`: one int64 per rank
   says whether (and how much) it uploads, then only uploading ranks send their frames;
4. decodes every upload and calls ``server.apply`` with the same payloads in the same order
   as the simulator, so every replica (and the simulator) computes the same iterate;
5. evaluates ``F(theta) = (1/M) sum_m f_m(theta)``: each rank fills in its workers' terms of
   an M-vector that is all-reduced (every entry has exactly one non-zero contributor, so the
   sum is exact) and summed in worker order exactly like ``Problem.loss``.

Workers are assigned round-robin: worker m lives on rank ``m % nproc``; a rank's upload
frame concatenates its uploading workers' payload frames (4 bytes count + 8 bytes per item).

Counted as in the simulator: ``uploads``, ``bits = 8 * sum(payload.nbytes)``, and
``downlink_bits`` as the simulator's default ``delta`` downlink: every worker receives the
other uploaders' frames (:func:`laqcore.downlink.delta_frames`). The
extra ``wire`` section is what really crossed between processes (control, payload frames,
container headers, padding), from :class:`~laqcore.distributed.TrafficStats`; the per-step
loss all-reduce (monitoring, M float64) is reported separately as ``monitor_bytes``.

Checkpoints (``checkpoint_dir``/``checkpoint_every``) hold each rank's server replica, its
workers' state (random generators included) and the counters; resuming continues exactly
like the uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.distributed as dist

from ..downlink import delta_frames
from ..wire import Payload, payload_from_bytes
from .errors import NonFiniteGradientError
from .transport import Transport

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = ["EngineConfig", "run_engine"]


def __dir__() -> list[str]:
    return __all__


_COUNT = struct.Struct("<I")
_ITEM = struct.Struct("<II")


@dataclass
class EngineConfig:
    """Everything a distributed run needs; plain values, so it pickles to every rank.

    Attributes
    ----------
    problem : dict
        Keyword arguments of :func:`laqcore.problems.make_problem`.
    algorithm : str
        Name in :func:`laqcore.algorithms.available_algorithms`.
    overrides : dict
        Hyper-parameters (``seed`` included) passed to ``get_algorithm``.
    max_iterations, eps, eval_every
        As for :func:`laqcore.simulator.simulate`.
    nonfinite : {"raise", "skip"}
        A worker whose gradient has NaN/Inf: every rank raises
        :class:`NonFiniteGradientError` naming the rank, worker and iteration; or the
        worker skips that iteration (counted in ``wire.nonfinite``).
    checkpoint_dir, checkpoint_every
        Write ``rank<r>.pkl`` there every ``checkpoint_every`` iterations (0: never).
    resume : bool
        Start from the checkpoints in ``checkpoint_dir``.
    record_history : bool
        Keep the per-iteration curves.
    """

    problem: dict[str, Any]
    algorithm: str
    overrides: dict[str, Any] = field(default_factory=dict)
    max_iterations: int = 5000
    eps: float = 1e-6
    eval_every: int = 10
    nonfinite: str = "raise"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    resume: bool = False
    record_history: bool = True

    def fingerprint(self) -> str:
        """Hash of what defines the trajectory (checkpoints must match it)."""
        keep = {
            k: v
            for k, v in asdict(self).items()
            if k in ("problem", "algorithm", "overrides", "eps")
        }
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]


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


def _pack(items: list[tuple[int, bytes]]) -> bytes:
    parts = [_COUNT.pack(len(items))]
    for m, frame in items:
        parts.append(_ITEM.pack(m, len(frame)))
        parts.append(frame)
    return b"".join(parts)


def _unpack(buf: bytes, rank: int, dim: int) -> list[tuple[int, Payload]]:
    """Split rank ``rank``'s upload container; every upload encodes a ``dim``-vector, so a
    frame declaring another length is refused before it is decoded (wire docstring)."""
    view = memoryview(buf)
    (count,) = _COUNT.unpack_from(view, 0)
    pos, out = _COUNT.size, []
    for _ in range(count):
        m, size = _ITEM.unpack_from(view, pos)
        pos += _ITEM.size
        if pos + size > len(view):
            raise ValueError(f"truncated upload container from rank {rank}")
        out.append((int(m), payload_from_bytes(view[pos : pos + size], expected_n=dim)))
        pos += size
    if pos != len(view):
        raise ValueError(f"upload container from rank {rank} has {len(view) - pos} extra bytes")
    return out


def _state_of(obj: Any) -> dict[str, Any]:
    """An algorithm object's state without its (large, reconstructible) local objective."""
    return {k: v for k, v in obj.__dict__.items() if k != "f"}


def run_engine(
    rank: int,
    world: int,
    cfg: EngineConfig,
    fault: Callable[[int, int, dict[int, Any]], None] | None = None,
) -> dict[str, Any]:
    """The per-rank body of a distributed run (call on every rank of an initialised group).

    Returns a dict with ``result`` (the simulator's :class:`~laqcore.simulator.RunResult`
    fields, on every rank), ``wire`` (traffic), ``decisions`` (per iteration, the sorted
    list of uploading workers) and ``theta`` (final iterate).

    ``fault(rank, k, workers)`` is called before each iteration's worker steps; tests use it
    to kill a rank or poison a gradient.
    """
    from ..algorithms import get_algorithm
    from ..problems import make_problem
    from ..simulator import RunResult, has_diverged, new_history

    if cfg.nonfinite not in ("raise", "skip"):
        raise ValueError(f"nonfinite must be 'raise' or 'skip', got {cfg.nonfinite!r}")
    problem = make_problem(**cfg.problem)
    M = problem.num_workers
    if M < world:
        raise ValueError(f"{world} processes need at least as many workers, got {M}")
    algorithm = get_algorithm(cfg.algorithm, **cfg.overrides)
    # F* from rank 0 only (an L-BFGS solve or a cache read), shared with the others.
    box: list[Any] = [problem.optimal_value() if rank == 0 and problem.convex else None]
    dist.broadcast_object_list(box, src=0)
    f_star: float | None = box[0]
    smooth = problem.smoothness() if algorithm.needs_smoothness else None
    server = algorithm.make_server(problem.initial_point(), M, smooth)
    mine = [m for m in range(M) if m % world == rank]
    workers = {
        m: algorithm.make_worker(m, cast("LocalObjective", _FiniteObjective(problem.workers[m])), M)
        for m in mine
    }
    # Each rank keeps only its own shards from here on.
    local_objectives = {m: problem.workers[m] for m in mine}
    problem.workers = [None] * M  # type: ignore[list-item]
    transport = Transport(timeout_s=None)

    hist = new_history()
    counters = {
        "k": 0,
        "uploads": 0,
        "up_bytes": 0,
        "down_bytes": 0,
        "monitor_bytes": 0,
        "nonfinite": 0,
    }
    decisions: list[list[int]] = []

    def per_worker(values: dict[int, float | np.ndarray], width: int) -> np.ndarray:
        """M rows, each filled by its owner rank; all-reduce is exact (one non-zero each)."""
        buf = torch.zeros((M, width), dtype=torch.float64)
        for m, v in values.items():
            buf[m] = torch.as_tensor(np.atleast_1d(v), dtype=torch.float64)
        dist.all_reduce(buf)
        counters["monitor_bytes"] += 8 * M * width * 2 * (world - 1)
        return buf.numpy()

    def global_loss(theta: np.ndarray) -> float:
        col = per_worker({m: local_objectives[m].loss(theta) for m in mine}, 1)[:, 0]
        # Same expression as Problem.loss: a Python sum in worker order, then / M.
        return float(sum(float(v) for v in col)) / M

    def residual_of(loss: float) -> float | None:
        return None if f_star is None else loss - f_star

    def evaluate(k: int) -> None:
        grads = per_worker(
            {m: local_objectives[m].value_and_grad(server.theta)[1] for m in mine},
            problem.dim,
        )
        total = np.zeros(problem.dim)
        for m in range(M):
            total += grads[m]
        hist["eval_iteration"].append(k)
        hist["grad_norm"].append(float(np.linalg.norm(total / M)))
        hist["test_accuracy"].append(problem.accuracy(server.theta))

    def record(k: int, loss: float) -> None:
        if not cfg.record_history:
            return
        r = residual_of(loss)
        hist["loss"].append(loss)
        hist["residual"].append(float("nan") if r is None else r)
        hist["uploads"].append(counters["uploads"])
        hist["bits"].append(8 * counters["up_bytes"])
        hist["downlink_bits"].append(8 * counters["down_bytes"])
        if k % cfg.eval_every == 0:
            evaluate(k)

    ckpt_path = (
        None if cfg.checkpoint_dir is None else os.path.join(cfg.checkpoint_dir, f"rank{rank}.pkl")
    )

    def save() -> None:
        assert ckpt_path is not None  # noqa: S101 - only called when configured
        blob = {
            "fingerprint": cfg.fingerprint(),
            "world": world,
            "counters": dict(counters),
            "server": _state_of(server),
            "workers": {m: _state_of(w) for m, w in workers.items()},
            "hist": hist,
            "decisions": decisions,
            "wire": asdict(transport.stats),
            "loss0": loss0,
        }
        tmp = ckpt_path + ".tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(blob, fh)
        os.replace(tmp, ckpt_path)  # atomic: a crash mid-write keeps the previous checkpoint

    loss0 = global_loss(server.theta)
    if cfg.resume:
        if ckpt_path is None:
            raise ValueError("resume needs checkpoint_dir")
        with open(ckpt_path, "rb") as fh:
            blob = pickle.load(fh)
        if blob["fingerprint"] != cfg.fingerprint() or blob["world"] != world:
            raise ValueError(
                f"checkpoint {ckpt_path} was written by another configuration or world size "
                f"({blob['world']} processes)"
            )
        server.__dict__.update(blob["server"])
        for m, st in blob["workers"].items():
            workers[m].__dict__.update(st)
        counters.update(blob["counters"])
        hist, decisions, loss0 = blob["hist"], blob["decisions"], blob["loss0"]
        for name, v in blob["wire"].items():
            setattr(transport.stats, name, v)
    else:
        record(0, loss0)
    if cfg.checkpoint_dir is not None:
        os.makedirs(cfg.checkpoint_dir, exist_ok=True)

    k = counters["k"]
    loss = hist["loss"][-1] if (cfg.resume and hist["loss"]) else loss0
    if cfg.resume and not cfg.record_history:
        loss = global_loss(server.theta)
    reached = (r0 := residual_of(loss)) is not None and r0 <= cfg.eps
    diverged = False
    start = time.perf_counter()
    while not reached and k < cfg.max_iterations and not server.done:
        if fault is not None:
            fault(rank, k, workers)
        # Step 1: every message, in worker order (replicas must consume the same randomness).
        msgs = [server.message(m) for m in range(M)]
        # Step 2: only this rank's workers.
        items: list[tuple[int, bytes]] = []
        bad: list[int] = []
        for m in mine:
            try:
                payload = workers[m].step(msgs[m])
            except _NonFinite:
                bad.append(m)
                continue
            if payload is not None:
                items.append((m, payload.to_bytes()))
        # Step 3: lockstep exchange of the uploading ranks' containers.
        res = transport.exchange(
            _pack(items) if items else None,
            nonfinite=bool(bad) and cfg.nonfinite == "raise",
            tag=f"iteration {k}",
        )
        if res.nonfinite_ranks:
            raise NonFiniteGradientError(res.nonfinite_ranks, k, where="a worker gradient")
        counters["nonfinite"] += len(bad)
        # Step 4: the same uploads, in worker order, on every replica.
        batch: dict[int, Payload] = {}
        for r in res.uploaders:
            for m, p in _unpack(res.frames[r] or b"", r, problem.dim):
                batch[m] = p
        batch = dict(sorted(batch.items()))
        counters["uploads"] += len(batch)
        counters["up_bytes"] += sum(p.nbytes for p in batch.values())
        counters["down_bytes"] += delta_frames(batch, M).delivered
        decisions.append(sorted(batch))
        server.apply(batch)
        k += 1
        counters["k"] = k
        # Step 5
        loss = global_loss(server.theta)
        if has_diverged(loss, loss0):
            diverged = True
            record(k, loss)
            break
        record(k, loss)
        resid = residual_of(loss)
        if resid is not None and resid <= cfg.eps:
            reached = True
        if ckpt_path is not None and cfg.checkpoint_every and k % cfg.checkpoint_every == 0:
            save()
    wall = time.perf_counter() - start
    if cfg.record_history and (not hist["eval_iteration"] or hist["eval_iteration"][-1] != k):
        evaluate(k)
    result = RunResult(
        algorithm=algorithm.name,
        seed=algorithm.params.seed,
        params=asdict(algorithm.params),
        problem=problem.describe(),
        iterations=k,
        uploads=counters["uploads"],
        bits=8 * counters["up_bytes"],
        downlink_bits=8 * counters["down_bytes"],
        final_loss=loss,
        final_residual=residual_of(loss),
        test_accuracy=problem.accuracy(server.theta),
        train_accuracy=float("nan"),  # needs every shard; no rank holds them all
        reached_tolerance=reached,
        diverged=diverged,
        wall_time=wall,
        f_star=f_star,
        eps=float(cfg.eps),
        history=hist,
    )
    wire: dict[str, Any] = dict(transport.stats.as_dict())
    wire["monitor_bytes"] = counters["monitor_bytes"]
    wire["nonfinite_skipped"] = counters["nonfinite"]
    wire["processes"] = world
    return {
        "result": result.to_dict(history=cfg.record_history),
        "wire": wire,
        "decisions": decisions,
        "theta": np.array(server.theta),
    }
