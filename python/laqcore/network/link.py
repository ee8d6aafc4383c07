"""Links: bandwidth each way, latency, topology, broadcast or unicast downlink.

Presets (``--network``), fixed by issue 16:

============  ============  ==============  =========  ===========================
preset        uplink        downlink        latency    meant as
============  ============  ==============  =========  ===========================
datacenter    10 Gbit/s     10 Gbit/s       0.05 ms    one rack, 10 GbE
cluster-1g    1 Gbit/s      1 Gbit/s        0.2 ms     a commodity 1 GbE cluster
edge          5 Mbit/s      50 Mbit/s       20 ms      a mobile / federated link
============  ============  ==============  =========  ===========================

"uplink" is the direction worker -> server (or node -> others), "downlink" the reverse;
the latency is one way, paid once per message phase (see :mod:`laqcore.network.topology`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["BROADCAST_TOPOLOGIES", "PRESETS", "TOPOLOGIES", "Link", "make_link"]


def __dir__() -> list[str]:
    return __all__


#: name -> (uplink bit/s, downlink bit/s, one-way latency s)
PRESETS: dict[str, tuple[float, float, float]] = {
    "datacenter": (10e9, 10e9, 0.05e-3),
    "cluster-1g": (1e9, 1e9, 0.2e-3),
    "edge": (5e6, 50e6, 20e-3),
}

#: ``ps``: parameter server; ``allreduce``: ring all-reduce; ``allgather``: the distributed
#: engine's ``--exchange all-gather`` (control all-gather, then the uploaders' frames);
#: ``two-phase``: gather at one aggregator node, then the aggregator sends the downlink to
#: the others; ``chunked``: the DDP hook's owner-chunk exchange (all-to-all of chunks,
#: all-gather of the owners' published aggregate change), also the engine's default
#: ``--exchange two-phase`` (docs/algorithms.md says which ``--downlink`` matches it).
TOPOLOGIES = ("ps", "allreduce", "allgather", "two-phase", "chunked")
#: The topologies whose downlink a broadcast medium changes (a server sends it).
BROADCAST_TOPOLOGIES = ("ps", "two-phase")


@dataclass(frozen=True)
class Link:
    """A network for the time model.

    Attributes
    ----------
    uplink_bps, downlink_bps : float
        Bits per second, worker -> server and server -> worker (a node's send and receive
        rate for the peer-to-peer topologies).
    latency_s : float
        One-way latency of a message, seconds.
    topology : str
        One of :data:`TOPOLOGIES`.
    broadcast : bool
        Whether one downlink transmission reaches every worker (a broadcast medium, e.g. a
        cell) or the server sends each worker its own copy (unicast; default).
    name : str
        The preset's name, or ``"custom"``.
    """

    uplink_bps: float
    downlink_bps: float
    latency_s: float
    topology: str = "ps"
    broadcast: bool = False
    name: str = "custom"

    def __post_init__(self) -> None:
        for attr in ("uplink_bps", "downlink_bps"):
            v = getattr(self, attr)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{attr} must be a finite number > 0, got {v!r}")
        lat = self.latency_s
        if not (isinstance(lat, (int, float)) and math.isfinite(lat) and lat >= 0):
            raise ValueError(f"latency_s must be a finite number >= 0, got {lat!r}")
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"topology must be one of {TOPOLOGIES}, got {self.topology!r}")
        if self.broadcast and self.topology not in BROADCAST_TOPOLOGIES:
            # The peer-to-peer collectives have no server downlink to broadcast: ignored.
            raise ValueError(
                f"broadcast applies to the {' and '.join(BROADCAST_TOPOLOGIES)} topologies (a "
                f"server's downlink), not {self.topology!r}"
            )

    def with_(self, **changes: Any) -> Link:
        """A copy with some fields changed (``name`` becomes ``custom`` unless given)."""
        changes.setdefault("name", "custom")
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uplink_mbps": self.uplink_bps / 1e6,
            "downlink_mbps": self.downlink_bps / 1e6,
            "latency_ms": self.latency_s * 1e3,
            "topology": self.topology,
            "downlink_delivery": "broadcast" if self.broadcast else "unicast",
        }


def make_link(
    network: str | None = "edge",
    *,
    uplink_mbps: float | None = None,
    downlink_mbps: float | None = None,
    latency_ms: float | None = None,
    topology: str = "ps",
    broadcast: bool = False,
) -> Link:
    """A :class:`Link` from a preset name, with explicit values overriding its fields.

    ``network=None`` needs all three of ``uplink_mbps``, ``downlink_mbps``, ``latency_ms``.
    """
    if network is None:
        if None in (uplink_mbps, downlink_mbps, latency_ms):
            raise ValueError(
                "without --network give all of --uplink-mbps, --downlink-mbps, --latency-ms"
            )
        up, down, lat, name = 0.0, 0.0, 0.0, "custom"
    else:
        if network not in PRESETS:
            raise ValueError(f"unknown --network {network!r}; one of {', '.join(PRESETS)}")
        up, down, lat = PRESETS[network]
        name = network
    if uplink_mbps is not None:
        up, name = uplink_mbps * 1e6, "custom"
    if downlink_mbps is not None:
        down, name = downlink_mbps * 1e6, "custom"
    if latency_ms is not None:
        lat, name = latency_ms * 1e-3, "custom"
    return Link(up, down, lat, topology=topology, broadcast=broadcast, name=name)
