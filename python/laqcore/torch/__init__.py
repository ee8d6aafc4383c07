"""PyTorch integration (optional: needs ``laqcore[torch]``): DDP communication hooks.

::

    from laqcore.torch import LAQState, laq_hook
    state = LAQState()
    ddp_model.register_comm_hook(state, laq_hook)

``QSGDState``/``qsgd_hook``, ``TernGradState``/``terngrad_hook`` and
``RotationState``/``rotation_hook`` work the same way; ``make_hook(name, **kwargs)`` returns
a new state and its hook by name (``HOOKS`` lists them); ``register_hook(ddp_model, name,
**kwargs)`` registers one in the group DDP reduces in and returns its state.

Modules (one concern each): ``laq_state`` (LAQ's hook state and rule driver),
``compressor_hooks`` (QSGD, TernGrad, rotation), ``registry`` (the hooks by name), ``_state``
(the per-iteration driver shared by all),
``_layout`` (bucket parking, the flat stable-order layout, input checks), ``_exchange`` (the
exchange seam), ``_rule`` (LAQ's upload test in observed quantities), ``_nonfinite`` (the
NaN/Inf policies for mixed precision).
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only without torch
    raise ImportError("laqcore.torch needs PyTorch: pip install 'laqcore[torch]'") from err

from .compressor_hooks import (
    QSGDState,
    RotationState,
    TernGradState,
    qsgd_hook,
    rotation_hook,
    terngrad_hook,
)
from .laq_state import LAQState, laq_hook
from .registry import HOOKS, make_hook, register_hook

__all__ = [
    "HOOKS",
    "LAQState",
    "QSGDState",
    "RotationState",
    "TernGradState",
    "laq_hook",
    "make_hook",
    "register_hook",
    "qsgd_hook",
    "rotation_hook",
    "terngrad_hook",
]


def __dir__() -> list[str]:
    return __all__
