"""Quantized GD (QGD): LAQ's innovation quantizer, uploading every iteration.

Each worker sends ``dQ_m = Q(g_m - q_prev_m)`` (b bits per coordinate + the radius) every
iteration and the server steps with ``sum_m q_prev_m``. Equals LAQ with the lazy rule
switched off (``xi = 0`` and an upload forced every iteration), which the tests check; both
are :class:`~.lazy_common.InnovationAlgorithm` and differ only in ``upload_mode``.
The official code's comment "alg=2: rQGD" leaves open whether its QGD used a randomized
quantizer; this one is the deterministic LAQ grid, so QGD vs LAQ isolates the lazy skipping.
"""

from __future__ import annotations

from .lazy_common import InnovationAlgorithm

__all__ = ["QGD"]


def __dir__() -> list[str]:
    return __all__


class QGD(InnovationAlgorithm):
    """Quantized gradient descent (b-bit innovations, no skipping)."""

    name = "qgd"
    upload_mode = "always"
