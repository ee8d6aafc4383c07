"""Per-iteration time = compute + communication, from the recorded payload sizes.

Notation: ``L`` one-way latency, ``U``/``D`` uplink/downlink bit rates, ``N`` nodes, ``B =
min(U, D)``; sizes in bytes, times 8 for bits. Every iteration costs:

``ps`` (parameter server, one node per worker)
    up:   ``L + 8 * (sum of the uploads) / U`` - the server receives the uploaders serially
    over its link; a round with no upload still costs ``L`` (the skip notice);
    down: ``L + 8 * S_down / D`` with ``S_down`` = the bytes of one broadcast (``broadcast``
    links) or the bytes delivered to all workers (unicast).
``allreduce`` (ring)
    ``2 (N - 1) (L + 8 S / (N B))`` with ``S`` the largest upload of the round (the
    reduced vector; a compressed payload is assumed summable at its size, which favours the
    compressors); a round without upload costs the flag exchange ``(N - 1) L``.
``allgather`` (the engine's ``--exchange all-gather``, :mod:`laqcore.distributed.transport`)
    control: ring all-gather of one int64, ``(N - 1) (L + 64 / B)``; payload: if every node
    uploads, one padded ring all-gather ``(N - 1) (L + 8 F_max / B)``, else one broadcast
    per uploading node, ``ceil(log2 N) (L + 8 F_n / B)`` each (gloo's broadcast is a binomial
    tree: in each of its ``ceil(log2 N)`` rounds every node that holds the frame sends it
    whole to one more node). A node's frame ``F_n`` = its uploading workers' payloads + 4 +
    8 per payload.
``two-phase`` (gather at an aggregator node, then it sends the downlink)
    ``L + 8 (sum of the uploads) / D + L + 8 S_down / U`` with ``S_down`` the broadcast size
    (``broadcast``) or ``N - 1`` copies of it (unicast).
``chunked`` (the owner-chunk exchange of the DDP hook and of the engine's ``--exchange two-phase``)
    control: ring all-gather of one int64, ``(N - 1) (L + 64 / B)``; nothing else when
    nobody uploads. Else uplink: one all-to-all in which node n sends chunk j of its frame
    ``F_n`` (its uploading workers' payloads) to owner j, ``L + max_n max(8 (N - 1) F_n / (N
    U), 8 (sum_{u != n} F_u) / (N D))``; downlink: one ring all-gather of the owners'
    chunks of the published aggregate change, ``(N - 1) (L + 8 S_down / (N B))`` with
    ``S_down`` the broadcast size of the run's downlink mode (``--downlink delta:laq:B``: the
    re-quantized aggregate innovation, as the hook publishes it).

Compute: one worker's measured step time times the workers per node (``ceil(M / N)``),
plus the server update, or a given per-iteration compute time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .link import Link
    from .trace import TrafficTrace

__all__ = ["round_times", "time_to_iteration"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


def round_times(
    trace: TrafficTrace,
    link: Link,
    *,
    compute_s: float | None = None,
    nodes: int | None = None,
) -> F64:
    """Seconds of every iteration of ``trace`` under ``link`` (array of ``trace.iterations``).

    Parameters
    ----------
    compute_s : float, optional
        Compute time per iteration; default: measured (see the module docstring).
    nodes : int, optional
        Nodes the workers run on (round-robin, worker m on node m % N, like the engine);
        default one per worker. The ``ps`` topology always has one node per worker.
    """
    M = trace.num_workers
    N = M if nodes is None or link.topology == "ps" else int(nodes)
    if not 1 <= N <= M:
        raise ValueError(f"nodes must be in 1..{M} (the number of workers), got {nodes}")
    if compute_s is None:
        compute = trace.worker_step_s * math.ceil(M / N) + trace.server_step_s
    else:
        if not (math.isfinite(compute_s) and compute_s >= 0):
            raise ValueError(f"compute_s must be a finite number >= 0, got {compute_s!r}")
        compute = float(compute_s)
    L, U, D = link.latency_s, link.uplink_bps, link.downlink_bps
    B = min(U, D)
    cnt = trace.series("up_count").astype(np.float64)
    up = 8.0 * trace.series("up_bytes").astype(np.float64)
    down = 8.0 * trace.series("down_broadcast" if link.broadcast else "down_delivered").astype(
        np.float64
    )
    if link.topology == "ps":
        comm = (L + up / U) + (L + down / D)
    elif link.topology == "two-phase":
        bcast = 8.0 * trace.series("down_broadcast").astype(np.float64)
        send = bcast if link.broadcast else (N - 1) * bcast
        comm = (L + up / D) + (L + send / U)
    elif N == 1:
        comm = np.zeros_like(cnt)
    elif link.topology == "allreduce":
        size = 8.0 * trace.series("up_max").astype(np.float64)
        comm = np.where(cnt > 0, 2 * (N - 1) * (L + size / (N * B)), (N - 1) * L)
    elif link.topology == "chunked":
        comm = _chunked(trace, N, L, U, D, B)
    else:
        comm = _allgather(trace, N, L, B)
    return np.asarray(compute + comm, dtype=np.float64)


def _node_bytes(trace: TrafficTrace, N: int) -> F64:
    """``(iterations, N)``: the upload bytes of each node's workers (worker m on node
    m % N; each upload counted at the iteration's mean upload size)."""
    flags = trace.uploader_flags()
    cnt = trace.series("up_count")
    mean = np.where(cnt > 0, trace.series("up_bytes") / np.maximum(cnt, 1), 0.0)
    per_node = np.zeros((flags.shape[0], N))
    for n in range(N):
        per_node[:, n] = flags[:, n::N].sum(axis=1)
    out: F64 = per_node * mean[:, None]
    return out


def _chunked(trace: TrafficTrace, N: int, L: float, U: float, D: float, B: float) -> F64:
    frames = 8.0 * _node_bytes(trace, N)
    total = frames.sum(axis=1, keepdims=True)
    send = (N - 1) * frames / (N * U)
    recv = (total - frames) / (N * D)
    uplink = L + np.maximum(send, recv).max(axis=1)
    bcast = 8.0 * trace.series("down_broadcast").astype(np.float64)
    downlink = (N - 1) * (L + bcast / (N * B))
    control = (N - 1) * (L + 64.0 / B)
    out: F64 = control + np.where(trace.series("up_count") > 0, uplink + downlink, 0.0)
    return out


def _allgather(trace: TrafficTrace, N: int, L: float, B: float) -> F64:
    flags = trace.uploader_flags()
    per_node = np.zeros((flags.shape[0], N))
    for n in range(N):
        per_node[:, n] = flags[:, n::N].sum(axis=1)
    frames = np.where(per_node > 0, _node_bytes(trace, N) + 4 + 8 * per_node, 0.0)
    control = (N - 1) * (L + 64.0 / B)
    everyone = (per_node > 0).all(axis=1)
    gather = (N - 1) * (L + 8.0 * frames.max(axis=1) / B)
    rounds = math.ceil(math.log2(N))
    bcasts = (rounds * (frames > 0) * (L + 8.0 * frames / B)).sum(axis=1)
    out: F64 = control + np.where(everyone, gather, bcasts)
    return out


def time_to_iteration(times: F64, iteration: int) -> float:
    """Elapsed seconds after ``iteration`` iterations (``times`` from :func:`round_times`)."""
    if not 0 <= iteration <= times.shape[0]:
        raise ValueError(f"iteration must be in 0..{times.shape[0]}, got {iteration}")
    return float(times[:iteration].sum())
