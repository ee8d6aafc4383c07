"""What the laqcore DDP hooks do with a non-finite (NaN/Inf) gradient.

Three policies, chosen with ``nonfinite=`` on every hook state:

``"propagate"`` (default)
    Behave like DDP's own all-reduce under mixed precision: if any rank's gradient is not
    finite, *every* rank's averaged gradient becomes NaN, so ``torch.amp.GradScaler`` finds
    the overflow on every rank, skips ``optimizer.step()`` and backs off its scale. The
    hook's state (quantizer memory, aggregate, iterate history, clocks, the iteration that
    keys the compressors' random streams) is left exactly as if the step had not happened;
    ``stats()["nonfinite_steps"]`` counts such steps; give the state the scaler
    (``grad_scaler=``) so that its memory also follows the back-off that comes next
    (:mod:`laqcore.torch._state`, "Loss scaling"). The flag travels in the lockstep
    control exchange, so no payload moves and nobody waits in a collective alone.
``"raise"``
    Every rank raises :class:`~laqcore.distributed.NonFiniteGradientError` naming the ranks
    and the step (use when no scaler is expected to produce overflows: a NaN is a bug).
``"skip"``
    The rank whose gradient is not finite does not upload this iteration; the others go on
    and the hook returns a finite average without that rank's new gradient
    (``stats()["nonfinite_skipped"]`` counts it on that rank). A scaler never sees the
    overflow and never backs off, so a state refuses ``"skip"`` together with a
    ``grad_scaler`` (``ValueError``, whichever is set second); do not use it with a
    GradScaler the state is not given either.

During warm-up the hooks are a plain all-reduce, which propagates NaN/Inf by itself.

With the two-phase exchange, finite gradients whose *sum* leaves the float32 range at an owner
(:mod:`laqcore.distributed.two_phase`, owner failures) drop the step on every rank as well:
``"propagate"`` as above; ``"raise"`` and ``"skip"`` raise
:class:`~laqcore.distributed.NonFiniteGradientError` naming the owner (``"skip"`` has no rank
to leave out, so no finite average to go on with).
"""

from __future__ import annotations

import math

import torch

from .._validate import check_choice

__all__ = ["NONFINITE_POLICIES", "check_nonfinite", "is_finite", "poison"]


def __dir__() -> list[str]:
    return __all__


NONFINITE_POLICIES = ("propagate", "raise", "skip")


def check_nonfinite(policy: object) -> str:
    """Return ``policy`` if it names one of :data:`NONFINITE_POLICIES`, else raise."""
    return check_choice(policy, "nonfinite", NONFINITE_POLICIES)


def is_finite(flat: torch.Tensor) -> bool:
    """Whether every element of ``flat`` is finite, in one pass without a temporary.

    The float32 sum of finite gradients is finite unless it overflows (beyond 3e38); only
    then is the exact elementwise test run.
    """
    if math.isfinite(float(flat.sum())):
        return True
    return bool(torch.isfinite(flat).all())


def poison(buffers: list[torch.Tensor]) -> None:
    """Fill every bucket with NaN: what an all-reduce of a non-finite gradient returns."""
    for b in buffers:
        b.fill_(math.nan)
