"""Link and time model: wall-clock time to accuracy from the payload sizes a run recorded.

>>> from laqcore.network import make_link
>>> make_link("edge").describe()["uplink_mbps"]
5.0

See :mod:`.link` (presets and options), :mod:`.topology` (the formulas) and :mod:`.trace`
(what the simulator records).
"""

from __future__ import annotations

from .link import PRESETS, TOPOLOGIES, Link, make_link
from .topology import round_times, time_to_iteration
from .trace import TrafficTrace

__all__ = [
    "PRESETS",
    "TOPOLOGIES",
    "Link",
    "TrafficTrace",
    "make_link",
    "round_times",
    "time_to_iteration",
]


def __dir__() -> list[str]:
    return __all__
