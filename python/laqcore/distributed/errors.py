"""Errors raised by the multi-process engine and the DDP hooks.

They carry the rank and step so that a failure in a 64-process job says *where* it happened,
not only that some collective failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "NonFiniteGradientError",
    "OwnerFailureError",
    "PeerFailureError",
    "ReplicaMismatchError",
    "run_collective",
]


def __dir__() -> list[str]:
    return __all__


class PeerFailureError(RuntimeError):
    """A collective failed because another rank died, hung or was unreachable.

    Raised on the surviving ranks instead of the backend's bare ``RuntimeError`` so that the
    message names this rank, the operation and the timeout that was in force.
    """

    def __init__(self, rank: int, what: str, timeout_s: float | None, cause: BaseException):
        self.rank = rank
        self.what = what
        self.timeout_s = timeout_s
        limit = "the process group's" if timeout_s is None else f"{timeout_s:g} s"
        super().__init__(
            f"rank {rank}: {what} failed: a peer rank died or stopped answering, or stopped "
            f"calling it (ranks with different numbers of batches need DDP's join()) "
            f"(collective timeout: {limit}). Backend said: {type(cause).__name__}: {cause}"
        )


def run_collective(
    rank: int, what: str, timeout_s: float | None, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Run the collective ``fn(*args, **kwargs)``; a backend failure (a peer that died or
    stopped answering) becomes a :class:`PeerFailureError` naming this rank and ``what``."""
    try:
        return fn(*args, **kwargs)
    except PeerFailureError:
        raise
    # torch.distributed.DistError and its kinds subclass RuntimeError; naming DistError
    # itself raised AttributeError here under torch 2.1, which has none, hiding the failure.
    except RuntimeError as err:
        raise PeerFailureError(rank, what, timeout_s, err) from err


class NonFiniteGradientError(ValueError):
    """A rank produced a gradient containing NaN or Inf.

    Every rank raises it with the same message, because the non-finite flag travels in the
    lockstep control exchange; so no rank is left waiting in a collective the failing rank
    never joins. ``owners=True``: the ranks are owners of the two-phase exchange whose chunk
    of the sum of finite gradients left the float32 range (their failure marker reached
    every rank in the downlink).
    """

    #: The advice of the launch engine's error (its ``nonfinite`` setting).
    ENGINE_HINT = "set nonfinite='skip' to skip such uploads and count them instead"

    def __init__(
        self,
        ranks: list[int],
        step: int,
        where: str = "gradient",
        *,
        owners: bool = False,
        hint: str = ENGINE_HINT,
    ):
        self.ranks = list(ranks)
        self.step = step
        who = ", ".join(str(r) for r in self.ranks)
        if owners:
            super().__init__(
                f"the sum over the ranks of their finite gradients left the float32 range at "
                f"rank {who} (owner of a chunk of the two-phase exchange) at step {step}; "
                "every rank dropped the step (scale the loss down)"
            )
            return
        super().__init__(f"{where} contains NaN or Inf on rank {who} at step {step} ({hint})")


class OwnerFailureError(RuntimeError):
    """An owner of the two-phase exchange could not aggregate or publish its chunk for a reason
    other than the float32 range (an upload it could not decode, a bug).

    The owner says so in the publication it sends anyway, so every rank raises this error,
    with the same message, after the same collectives (the owner's has the cause chained);
    the round's state changes are discarded first.
    """

    def __init__(self, owners: list[int], what: str):
        self.owners = list(owners)
        who = ", ".join(str(r) for r in self.owners)
        super().__init__(
            f"{what}: owner rank {who} of the two-phase exchange could not aggregate or "
            f"publish its chunk, so every rank discarded the round (the cause is chained to "
            f"the error on rank {who})"
        )


class ReplicaMismatchError(RuntimeError):
    """The ranks' server replicas hold different states (a corrupted checkpoint or frame, a
    bug): raised on every rank, which all see the same gathered digests."""

    def __init__(self, groups: list[list[int]], step: int):
        self.groups = [list(g) for g in groups]
        self.step = step
        parts = "; ".join("ranks " + ", ".join(str(r) for r in g) for g in self.groups)
        super().__init__(
            f"server replicas differ after iteration {step}: {len(self.groups)} distinct "
            f"states ({parts})"
        )
