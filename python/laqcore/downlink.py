"""What the server sends back down, and how many bytes that costs (``--downlink``).

Two families of modes (docs/algorithms.md, "Downlink"):

``model`` (the papers' parameter server)
    theta goes to every worker every iteration: ``model`` = float64 (what the simulator's
    messages carry, with their algorithm-specific scalars), ``model:f32`` = float32,
    ``model:laq:B`` = theta quantized on the LAQ grid with ``B`` bits (radius ``max|theta|``);
    the workers then evaluate their gradients at the quantized point.
``delta`` (what the distributed engine does)
    every worker keeps a replica of the server state and receives only what changed it, so
    **nothing moves down in an iteration in which nobody uploaded**. ``delta`` = the
    uploaders' frames, exactly (each worker receives the other uploaders' frames: the engine's
    exchange); ``delta:f32`` = the float32 sum of the round's change, one vector;
    ``delta:laq:B`` = the model step re-quantized with the LAQ quantizer against what the
    workers hold (double quantization, as in AsyLPG): the server keeps the workers' copy
    ``s_hat`` of its step, sends ``Q(step - s_hat)`` and moves its own model by the new
    ``s_hat`` too, so server and replicas agree exactly and the quantization error never
    accumulates (the next innovation carries the residual).

``delta:laq:B`` **over owner chunks** (``downlink_chunks=N`` in the simulator; the engine's
two-phase exchange): :class:`ChunkedStateDownlink`. The vector is split into N chunks as the
engine splits it; each chunk's owner folds the uploads into the exact chunk of the server's
*state* (the lazy aggregate, or the round's sum: ``Server.fold``) and publishes it
re-quantized against the copy ``S_hat`` every replica holds, with one radius per chunk:
``S_hat_j += Q(S_j - S_hat_j)``; every replica then finishes the round from ``S_hat``
(``Server.commit``), so the model, the lazy rule's iterate history and the next messages are
computed from what the workers really hold. The residual stays in ``S - S_hat`` and goes with
the next publication. This quantizes the state, as the DDP hook does (its aggregate
replica), not the model step of the unchunked ``delta:laq:B``, so the two differ.

:func:`requantize` is the pure downlink quantizer (shared with the DDP exchange);
:class:`Downlink` applies a mode inside the simulator's loop and returns each round's
downlink sizes: ``broadcast`` (bytes one broadcast must carry) and ``delivered`` (bytes the
workers receive in all, which is what ``downlink_bits`` counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._typing import F64, FloatVector
from ._validate import check_bits
from .laq import LAQPayload, laq_apply, laq_dequantize, laq_quantize

if TYPE_CHECKING:
    from .algorithms.base import Message, Server
    from .wire import Payload

__all__ = [
    "MODES",
    "ChunkedStateDownlink",
    "Downlink",
    "DownlinkMode",
    "RoundDown",
    "delta_frames",
    "parse_downlink",
    "requantize",
]


def __dir__() -> list[str]:
    return __all__


#: Accepted spellings of ``--downlink`` (``B`` = bits per coordinate, 1..8).
MODES = ("model", "model:f32", "model:laq:B", "delta", "delta:f32", "delta:laq:B")


@dataclass(frozen=True)
class DownlinkMode:
    """A parsed ``--downlink`` value: ``kind`` in {model, delta}, ``encoding`` in
    {f64, f32, laq, frames}, ``bits`` for ``laq``."""

    kind: str
    encoding: str
    bits: int = 0

    @property
    def name(self) -> str:
        if self.encoding == "laq":
            return f"{self.kind}:laq:{self.bits}"
        default = "f64" if self.kind == "model" else "frames"
        return self.kind if self.encoding == default else f"{self.kind}:{self.encoding}"

    @property
    def quantized(self) -> bool:
        return self.encoding == "laq"


def parse_downlink(text: str | DownlinkMode) -> DownlinkMode:
    """Parse ``model``, ``model:f32``, ``model:laq:4``, ``delta``, ``delta:f32``,
    ``delta:laq:4`` (see :data:`MODES`); raise ``ValueError`` otherwise. A
    :class:`DownlinkMode` is checked the same way, through its name."""
    if isinstance(text, DownlinkMode):
        return parse_downlink(text.name)
    if not isinstance(text, str):
        raise TypeError(f"downlink mode must be a str or a DownlinkMode, got {type(text).__name__}")
    parts = text.strip().lower().split(":")
    kind = parts[0]
    if kind not in ("model", "delta"):
        raise ValueError(f"unknown downlink mode {text!r}; one of {', '.join(MODES)}")
    if len(parts) == 1:
        return DownlinkMode(kind, "f64" if kind == "model" else "frames")
    if len(parts) == 2 and parts[1] in ("f32", "f64" if kind == "model" else "frames"):
        return DownlinkMode(kind, parts[1])
    if len(parts) == 3 and parts[1] == "laq" and parts[2].isdigit():
        return DownlinkMode(kind, "laq", check_bits(int(parts[2])))
    raise ValueError(f"unknown downlink mode {text!r}; one of {', '.join(MODES)} (B = 1..8)")


def requantize(
    target: Any, held: Any, bits: int, block_size: int | None = None
) -> tuple[LAQPayload, FloatVector]:
    """Downlink double quantization: encode ``target`` against what the receivers ``held``.

    Returns the LAQ payload of ``Q(target - held)`` (``bits`` bits per coordinate, radius
    ``R = max|target - held|``, or one radius per block of ``block_size`` coordinates) and
    the receivers' new copy ``held + dQ`` (float32, a new array). Every coordinate of the new
    copy is within ``R / (2**bits - 1)`` of ``target`` (its block's R; plus float32
    rounding), whatever ``held`` was: the error of one round is corrected by the next one
    instead of adding up. The DDP hooks' two-phase exchange calls this on each owner's chunk
    (:mod:`laqcore.distributed.exchange_codecs`); with chunk boundaries on block
    boundaries that is exactly this function on the whole vector.

    Examples
    --------
    >>> import numpy as np
    >>> p, new = requantize(np.array([1.0, 0.5]), np.zeros(2, np.float32), 2)
    >>> new.tolist(), p.radius
    ([1.0, 0.3333333432674408], 1.0)
    """
    base = np.array(held, dtype=np.float32, copy=True)
    payload = laq_quantize(np.asarray(target, dtype=np.float32), base, bits, block_size)
    laq_apply(base, payload)
    return payload, base


@dataclass(frozen=True)
class RoundDown:
    """One round's downlink: bytes a single broadcast carries, and bytes delivered in all."""

    broadcast: int
    delivered: int


def delta_frames(uploads: dict[int, Payload], num_workers: int) -> RoundDown:
    """The exact ``delta`` downlink of one round: every worker receives the frames of the
    *other* uploaders (what the engine's exchange delivers); one broadcast carries them all."""
    total = sum(p.nbytes for p in uploads.values())
    return RoundDown(total, num_workers * total - total)


class Downlink:
    """Applies one :class:`DownlinkMode` inside the simulator's iteration loop.

    Per iteration the loop calls :meth:`message` for every worker (it may replace the point
    the worker sees) and, after ``server.apply``, :meth:`finish_round` (which may move the
    server's model to what the workers hold) for the round's sizes.
    """

    def __init__(self, mode: DownlinkMode, server: Server, num_workers: int) -> None:
        from .algorithms.base import SumServer
        from .algorithms.lazy_common import LazyServer

        if mode.quantized and not isinstance(server, (SumServer, LazyServer)):
            raise ValueError(
                f"--downlink {mode.name} needs a server whose model is theta -= step "
                f"(GD, QGD, LAG-WK, LAQ and the compressed-SGD methods); "
                f"{type(server).__name__} keeps other model copies"
            )
        self.mode = mode
        self.server = server
        # With no upload a lazy server repeats its last step (the aggregate did not change),
        # so the replicas repeat the step they hold; a summing server does not move.
        self._replays = isinstance(server, LazyServer)
        self.num_workers = num_workers
        self.dim = server.dim
        self._theta_prev: F64 = server.theta.copy()
        self._step_held: FloatVector = np.zeros(self.dim, dtype=np.float32)
        self._model_q: tuple[int, F64, int] | None = None
        self._msg_bytes = 0

    def message(self, m: int, msg: Message) -> Message:
        """The message worker ``m`` really receives (model:laq replaces ``theta``)."""
        self._msg_bytes = msg.nbytes
        if self.mode.kind == "model" and self.mode.quantized:
            if self._model_q is None or self._model_q[0] != self.server.k:
                p = laq_quantize(self.server.theta.astype(np.float32), None, self.mode.bits)
                self._model_q = (self.server.k, laq_dequantize(p).astype(np.float64), p.nbytes)
            msg.theta = self._model_q[1]
        return msg

    def start_round(self) -> None:
        """Call before ``server.apply``: remembers the model the step starts from."""
        self._theta_prev = self.server.theta.copy()

    def finish_round(self, uploads: dict[int, Payload]) -> RoundDown:
        """Call after ``server.apply(uploads)``; returns the round's downlink sizes."""
        mode, M = self.mode, self.num_workers
        if mode.kind == "model":
            extra = self._msg_bytes - 8 * self.dim  # the message's own scalars (rhs, k...)
            if mode.encoding == "f64":
                size = self._msg_bytes
            elif mode.encoding == "f32":
                size = extra + 4 * self.dim
            else:
                assert self._model_q is not None
                size = extra + self._model_q[2]
            return RoundDown(size, M * size)
        if not uploads:
            if mode.quantized:
                replay = self._step_held.astype(np.float64) if self._replays else 0.0
                self.server.theta = self._theta_prev + replay
            return RoundDown(0, 0)
        if mode.encoding == "frames":
            return delta_frames(uploads, M)
        if mode.encoding == "f32":
            size = 4 * self.dim
            return RoundDown(size, M * size)
        step = self.server.theta - self._theta_prev
        payload, self._step_held = requantize(step, self._step_held, mode.bits)
        self.server.theta = self._theta_prev + self._step_held.astype(np.float64)
        return RoundDown(payload.nbytes, M * payload.nbytes)


class ChunkedStateDownlink:
    """``delta:laq:B`` over owner chunks (module docstring): the owners' exact state and the
    replicas' copy ``held``, for a ``chunkable`` server.

    Parameters
    ----------
    server : Server
        The (replica) server; its ``fold`` and ``commit`` run the round.
    bits : int
        Bits per coordinate of the publications (global radius per chunk).
    bounds : list of (int, int)
        The chunks, as the engine splits the vector
        (:func:`laqcore.distributed.slicing.chunk_bounds`).
    """

    def __init__(self, server: Server, bits: int, bounds: list[tuple[int, int]]) -> None:
        if not type(server).chunkable:
            raise ValueError(
                f"a chunked downlink needs a server that folds chunks of its uploads; "
                f"{type(server).__name__} does not"
            )
        if not bounds or bounds[0][0] != 0 or bounds[-1][1] != server.dim:
            raise ValueError(f"chunks must cover 0..{server.dim}, got {bounds}")
        self.server = server
        self.bits = check_bits(bits)
        self.bounds = [(int(s), int(e)) for s, e in bounds]
        self.exact = np.array(server.fold({}, 0, server.dim))
        self.held: FloatVector = np.zeros(server.dim, np.float32)

    def fold(self, uploads: dict[int, Payload], s: int, e: int) -> None:
        """The owner of ``[s, e)``: fold the uploads (payloads of those coordinates)."""
        base = self.exact[s:e] if type(self.server).state_persists else None
        self.exact[s:e] = self.server.fold(uploads, s, e, base)

    def publish(self, s: int, e: int) -> LAQPayload:
        """The owner of ``[s, e)``: its publication; applies it to its own copy."""
        payload, self.held[s:e] = requantize(self.exact[s:e], self.held[s:e], self.bits)
        return payload

    def receive(self, s: int, e: int, payload: LAQPayload) -> None:
        """Every other rank: apply the owner of ``[s, e)``'s publication."""
        laq_apply(self.held[s:e], payload)

    def commit(self, uploaders: list[int]) -> None:
        """Finish the round from the replicas' copy of the state."""
        self.server.commit(uploaders, self.held.astype(self.exact.dtype))

    def round(self, uploads: dict[int, Payload], num_workers: int) -> RoundDown:
        """The simulator's round (one process owns every chunk): the sizes of the
        publications (one broadcast each), every worker receiving all of them."""
        if not uploads:  # nothing moves; the replicas step from the state they hold
            self.server.apply({})
            return RoundDown(0, 0)
        self.fold(uploads, 0, self.server.dim)  # coordinate-wise: the same as chunk by chunk
        size = sum(self.publish(s, e).nbytes for s, e in self.bounds if e > s)
        self.commit(sorted(uploads))
        return RoundDown(size, num_workers * size)

    def state_dict(self) -> dict[str, Any]:
        return {"exact": self.exact.copy(), "held": self.held.copy()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        exact, held = np.asarray(sd["exact"]), np.asarray(sd["held"])
        if exact.shape != self.exact.shape or held.shape != self.held.shape:
            raise ValueError("downlink state of another model size")
        self.exact[:], self.held[:] = exact, held
