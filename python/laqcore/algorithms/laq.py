"""LAQ: Lazily Aggregated Quantized gradients (Sun, Chen, Giannakis, Yang, NeurIPS 2019).

Worker m quantizes its gradient innovation ``g_m - q_prev_m`` to ``b`` bits (radius = its
max-norm) and uploads it only if (official code, docs/algorithms.md "Lazy upload rule")::

    ||dQ_m||^2 >= (1/(alpha^2 M^2)) sum_{d=1..D} xi_d ||theta^{k+1-d} - theta^{k-d}||^2
                  + 3 (||eps_m||^2 + ||eps_hat_m||^2)          or  t_m >= t_bar

otherwise the server reuses the last quantized gradient it has from m. Defaults: alpha=0.02,
b=4, D=10, xi_d = 0.8/D (warm-up 0.8/k), t_bar=100.
"""

from __future__ import annotations

from .lazy_common import InnovationAlgorithm

__all__ = ["LAQ"]


def __dir__() -> list[str]:
    return __all__


class LAQ(InnovationAlgorithm):
    """Deterministic LAQ (full local gradients)."""

    name = "laq"
    upload_mode = "rule"
