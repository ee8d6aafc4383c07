"""Error feedback (EF-SGD, Karimireddy et al. 2019; top-k with memory, Stich et al. 2018).

Biased compressors (sign, top-k, rand-k, ...) converge at the SGD rate if what they drop is
remembered and added back next time (docs/algorithms.md "Sign, sparsifiers, error feedback")::

    p_t     = x_t + e_t          compensate   (x_t is what the worker wants to send,
                                               e.g. gamma * g_t for EF-SGD)
    Delta_t = C(p_t)             compress     (the payload that goes on the wire)
    e_{t+1} = p_t - D(Delta_t)   update       (D = decompress: exactly what the receiver sees)

:class:`ErrorFeedback` wraps any compressor and is itself a compressor (same protocol), so
it drops into any algorithm that takes one. **One object holds the memory of one vector**:
the memory's length is fixed by the first call, and a vector of another length raises
``ValueError``. Use one ``ErrorFeedback`` per worker and per tensor (e.g. per DDP bucket).
"""

from __future__ import annotations

from typing import Any

from ._typing import FloatVector
from ._validate import as_float_vector
from .compressors.base import Compressor, check_compressor, decoded
from .wire import Payload, check_payload_type

__all__ = ["ErrorFeedback"]


def __dir__() -> list[str]:
    return __all__


class ErrorFeedback:
    """Error-feedback memory around a compressor.

    Parameters
    ----------
    compressor : Compressor
        Any object following :class:`~laqcore.compressors.Compressor`.

    Attributes
    ----------
    memory : numpy.ndarray of float32 or None
        The residual e (None until the first call).
    name : str
        ``"ef_" + compressor.name``.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> ef = laqcore.ErrorFeedback(laqcore.get_compressor("topk", k=1))
    >>> p = ef.compress(np.array([3.0, 2.0]))      # sends 3.0, remembers 2.0
    >>> ef.memory.tolist()
    [0.0, 2.0]
    >>> ef.decompress(ef.compress(np.array([0.0, 1.0]))).tolist()  # 2 + 1 now wins
    [0.0, 3.0]
    """

    def __init__(self, compressor: Compressor) -> None:
        check_compressor(compressor, "compressor")
        self.compressor = compressor
        self.name = f"ef_{getattr(compressor, 'name', type(compressor).__name__)}"
        self.memory: FloatVector | None = None

    def reset(self) -> None:
        """Forget the residual (the next call starts from e = 0)."""
        self.memory = None

    def compensate(self, x: Any) -> FloatVector:
        """Return ``p = x + e`` (a new float32 array; the memory is not changed)."""
        v = as_float_vector(x, "x")
        if self.memory is None:
            return v.copy()
        if v.shape != self.memory.shape:
            raise ValueError(
                f"x has length {v.shape[0]} but this ErrorFeedback holds the memory of a "
                f"length-{self.memory.shape[0]} vector (use one ErrorFeedback per vector)"
            )
        return v + self.memory

    def update(self, p: Any, payload: Payload) -> None:
        """Set ``e = p - decompress(payload)``, with ``p`` the compensated vector that was sent."""
        pv = as_float_vector(p, "p")
        sent = decoded(self.compressor, payload)
        if sent.shape != pv.shape:
            raise ValueError(
                f"payload decodes to length {sent.shape[0]} but p has length {pv.shape[0]}"
            )
        self.memory = pv - sent

    def compress(self, x: Any, *, step: int | None = None) -> Payload:
        """compensate, compress, update: returns the payload to send."""
        p = self.compensate(x)
        payload = check_payload_type(
            self.compressor.compress(p, step=step), f"{type(self.compressor).__name__}.compress"
        )
        self.update(p, payload)
        return payload

    def decompress(self, payload: Payload) -> FloatVector:
        return self.compressor.decompress(payload)

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> Payload:
        """The wrapped compressor's ``from_bytes`` (``expected_n`` forwarded when given)."""
        if expected_n is None:  # also serves compressors written before expected_n existed
            return self.compressor.from_bytes(buf)
        return self.compressor.from_bytes(buf, expected_n=expected_n)

    def __repr__(self) -> str:
        return f"ErrorFeedback({self.compressor!r})"
