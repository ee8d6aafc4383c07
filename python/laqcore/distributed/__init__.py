"""Multi-process engine over ``torch.distributed`` (optional: needs ``laqcore[torch]``).

* :class:`Transport` - lockstep upload decision, then only the uploaders' packed frames move.
* :func:`run_engine` / :class:`EngineConfig` - any laqcore algorithm, one rank per worker group.
* :func:`run_processes` - start N local ranks with a hard deadline (``laqcore launch`` uses it).
* :func:`idle_gloo_loop` - gloo's TCP loop thread under ``SCHED_IDLE`` (its spin no longer delays exchanges).
* :class:`PeerFailureError`, :class:`NonFiniteGradientError`, :class:`OwnerFailureError` - the faults this layer reports.

Attributes are imported on first access, so ``laqcore.distributed.cli`` (the ``launch``
subcommand) can be imported, and ``laqcore --help`` works, without PyTorch installed.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "EngineConfig",
    "ExchangeResult",
    "LaunchError",
    "NonFiniteGradientError",
    "OwnerFailureError",
    "PeerFailureError",
    "RankOutcome",
    "ReplicaMismatchError",
    "TrafficStats",
    "Transport",
    "free_port",
    "idle_gloo_loop",
    "run_engine",
    "run_processes",
]

_WHERE = {
    "EngineConfig": "engine_config",
    "run_engine": "engine",
    "ExchangeResult": "transport",
    "TrafficStats": "transport",
    "Transport": "transport",
    "LaunchError": "launch",
    "RankOutcome": "launch",
    "free_port": "launch",
    "run_processes": "launch",
    "idle_gloo_loop": "gloo_threads",
    "NonFiniteGradientError": "errors",
    "OwnerFailureError": "errors",
    "PeerFailureError": "errors",
    "ReplicaMismatchError": "errors",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'laqcore.distributed' has no attribute {name!r}")
    try:
        import torch.distributed  # noqa: F401
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError(
            f"laqcore.distributed.{name} needs PyTorch: pip install 'laqcore[torch]'"
        ) from err
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
