"""Quantized downlink by double quantization (AsyLPG; docs/algorithms.md, docs/ddp.md).

Every receiver keeps a *replica* of the sender's state (the aggregate of the uploads). The
sender does not send its state but the innovation of the state against the replica,
quantized with the LAQ innovation quantizer (blockwise radius)::

    payload  = Q_B(target - replica)       # laq_quantize(target, replica, bits, block_size)
    replica += dQ(payload)                 # on the sender and on every receiver, same kernel

The replica is the same bit for bit on every rank, and the quantization error is never lost:
it stays in ``target - replica`` and is part of the next innovation, so it does not
accumulate (``|target - replica| <= tau_B * R_j`` elementwise after each step, per block j).

Both the DDP hook's two-phase exchange (owner j quantizes its chunk) and the simulator's
``--downlink delta:laq:B`` call these two functions. With chunk boundaries on block
boundaries, quantizing chunk by chunk gives exactly the blocks of quantizing the whole
vector, so the simulator needs no chunking.
"""

from __future__ import annotations

from typing import Any

from .laq import LAQPayload, laq_apply, laq_quantize

__all__ = ["delta_apply", "delta_quantize"]


def __dir__() -> list[str]:
    return __all__


def delta_quantize(target: Any, replica: Any, bits: int, block_size: int) -> LAQPayload:
    """Quantize ``target - replica`` (the state's change the receivers have not seen yet).

    Parameters
    ----------
    target : array_like of float32, 1-D
        The sender's exact state (e.g. an owner's chunk of the aggregate).
    replica : array_like of float32, 1-D, same length
        What every receiver holds now; not changed here (see :func:`delta_apply`).
    bits : int
        Bits per coordinate, 1..8.
    block_size : int
        Coordinates per radius (a multiple of 8; see :func:`laqcore.laq_quantize`).

    Returns
    -------
    LAQPayload
        ``err_sq`` is ``||replica + dQ - target||^2``, the replica's error after the step.

    Examples
    --------
    >>> import numpy as np
    >>> target = np.array([1.0, -0.5, 0.25, 0.0, 2.0, 1.0, 0.0, -1.0], np.float32)
    >>> replica = np.zeros(8, np.float32)
    >>> p = delta_quantize(target, replica, 8, 8)
    >>> delta_apply(replica, p)
    >>> bool(np.abs(replica - target).max() <= p.tau * 2.0)
    True
    """
    return laq_quantize(target, replica, bits, block_size=block_size)


def delta_apply(replica: Any, payload: LAQPayload) -> None:
    """``replica += dQ(payload)`` in place (float32; bit-identical on every rank)."""
    laq_apply(replica, payload)
