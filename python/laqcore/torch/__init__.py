"""PyTorch integration (optional: needs ``laqcore[torch]``): DDP communication hooks.

::

    from laqcore.torch import LAQState, laq_hook
    state = LAQState(lr=0.1)
    ddp_model.register_comm_hook(state, laq_hook)

``QSGDState``/``qsgd_hook`` and ``TernGradState``/``terngrad_hook`` work the same way.
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without torch
    raise ImportError("laqcore.torch needs PyTorch: pip install 'laqcore[torch]'") from err

from .hooks import LAQState, QSGDState, TernGradState, laq_hook, qsgd_hook, terngrad_hook

__all__ = ["LAQState", "QSGDState", "TernGradState", "laq_hook", "qsgd_hook", "terngrad_hook"]


def __dir__() -> list[str]:
    return __all__
