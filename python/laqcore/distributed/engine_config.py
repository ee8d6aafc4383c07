"""The engine's run configuration: :class:`EngineConfig` (plain values, no torch).

Its own module so that what describes a run (the ``launch`` subcommand builds it, the
checkpoints compare its fingerprint) does not import the engine, and the engine's modules
that take a configuration (:mod:`.engine_state`) do not import the engine either.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

__all__ = ["EngineConfig"]


def __dir__() -> list[str]:
    return __all__


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
        Write ``rank<r>.ckpt`` there every ``checkpoint_every`` iterations (0: never).
    resume : bool
        Start from the checkpoints in ``checkpoint_dir`` (refused, naming the file, if one
        is corrupt or was written by another configuration, world size or rank).
    replica_check_every : int
        Compare the server replicas' state digests every this many iterations (0: never).
    record_history : bool
        Keep the per-iteration curves.
    exchange : {"auto", "two-phase", "all-gather"}
        How the uploads move (module docstring); ``auto`` is ``two-phase`` where the
        algorithm allows it (:func:`laqcore.distributed.engine_exchange.upload_unit`).
    downlink : {"delta", "delta:laq:B"}
        ``delta``: the owners publish the server state exactly (or, all-gather, every upload
        reaches every rank). ``delta:laq:B`` (two-phase only): re-quantized to B bits against
        the replicas' copy, chunk by chunk; the simulator's ``downlink="delta:laq:B",
        downlink_chunks=N`` gives the same run.
    progress : bool
        Rank 0 shows the simulator's progress line on stderr (``laqcore launch`` without
        ``--quiet``); runs shorter than a second show nothing.
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
    replica_check_every: int = 100
    record_history: bool = True
    exchange: str = "auto"
    downlink: str = "delta"
    progress: bool = False

    #: The settings that define the trajectory: a checkpoint resumes only under the same.
    TRAJECTORY: ClassVar[tuple[str, ...]] = (
        "problem",
        "algorithm",
        "overrides",
        "eps",
        "exchange",
        "downlink",
    )

    def trajectory(self) -> str:
        """The :attr:`TRAJECTORY` settings as canonical JSON (checkpoints record it, so a
        refused resume can say which setting differs)."""
        keep = {k: v for k, v in asdict(self).items() if k in self.TRAJECTORY}
        return json.dumps(keep, sort_keys=True, default=str)

    def fingerprint(self) -> str:
        """Hash of what defines the trajectory (checkpoints must match it)."""
        return hashlib.sha256(self.trajectory().encode()).hexdigest()[:16]
