"""Multi-process engine over ``torch.distributed`` (optional: needs ``laqcore[torch]``).

* :class:`Transport` - lockstep upload decision, then only the uploaders' packed frames move.
* :func:`run_processes` - start N local ranks with a hard deadline (``laqcore launch`` uses it).
* :class:`PeerFailureError`, :class:`NonFiniteGradientError` - the faults this layer reports.
"""

from __future__ import annotations

try:
    import torch.distributed as _dist
except ImportError as err:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "laqcore.distributed needs PyTorch: pip install 'laqcore[torch]'"
    ) from err

from .errors import NonFiniteGradientError, PeerFailureError
from .launch import LaunchError, RankOutcome, free_port, run_processes
from .transport import ExchangeResult, TrafficStats, Transport

if not _dist.is_available():  # pragma: no cover - torch built without distributed
    raise ImportError("laqcore.distributed needs a PyTorch build with torch.distributed")

__all__ = [
    "ExchangeResult",
    "LaunchError",
    "NonFiniteGradientError",
    "PeerFailureError",
    "RankOutcome",
    "TrafficStats",
    "Transport",
    "free_port",
    "run_processes",
]


def __dir__() -> list[str]:
    return __all__
