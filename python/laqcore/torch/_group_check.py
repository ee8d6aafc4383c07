"""The first-iteration check that a hook's group holds replicas of one model.

A hook state communicates in its own ``process_group`` (the default group unless given),
while DDP reduces in the group it was built with. If the two differ (DDP over a subgroup,
e.g. one data-parallel group of a 2-D layout, and a state left on the default group), the
hook would average the gradients of *different* models: every replica in a group stays
identical, nothing raises, and training silently goes wrong. PyTorch's own hooks share the
trap (their state is the group); a laqcore hook refuses it.

What the hook can see is its buckets' parameters. DDP makes the replicas of its group
identical when it is built and keeps them so, so at the first iteration every rank of the
right group holds the same parameters. :func:`check_replicas_agree` all-gathers one digest
per rank of the parameters (sizes, dtypes and up to :data:`SAMPLES_PER_PARAMETER`
evenly spaced values of each) over the state's group and raises on every rank if they
differ. It also catches replicas that diverged for another reason (a checkpoint loaded on
some ranks after DDP was built; ``DDP(init_sync=False)``, which skips DDP's broadcast, over
replicas initialised with different seeds). It cannot tell two groups apart whose models are
identical (the same seed and no step yet): averaging those is what one DDP over all of
them would do.

The same gather carries two values of the hook state itself, which must also agree: its
iteration and a digest of its settings (class and keywords). A hook ``state_dict`` loaded on
some ranks only (the usual "rank 0 saves and loads" pattern applied to the hook's per-rank
state) otherwise left the others at iteration 0: with the LAQ hook every rank returned a
different average and the DDP replicas drifted apart with no error; with QSGD one rank
all-reduced its warm-up while the other exchanged frames (gloo aborted the process); with
the rotation hook or at 2 bits the ranks waited in different collectives until the
timeout. Cost: one gather of five int64 per rank, once per process.

The gather also settles how the all-gather exchange's statuses cross on gloo (``control``,
:func:`~laqcore.distributed.transport.resolve_control`). Each rank resolves it from its own
process (the ``LAQCORE_TRANSPORT_CONTROL`` variable, its CPU affinity, whether gloo's loop
thread is idle), and ranks that resolve it differently (one pinned, one not) would pair a
round of messages with collectives and wait in both until the group's timeout. Every rank
takes rank 0's choice instead (the choice changes time only, never the frames delivered),
and a rank whose own differed warns once, saying why
(:func:`~laqcore.distributed.transport.adopt_control`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..distributed.gather import HostGather, collective_device
from ..distributed.transport import CONTROLS, adopt_control, resolve_control
from ._layout import Parked

__all__ = [
    "SAMPLES_PER_PARAMETER",
    "ReplicaGroupError",
    "check_replicas_agree",
    "local_control",
    "parameter_digest",
    "parameter_digests",
    "settings_digest",
]


def __dir__() -> list[str]:
    return __all__


#: Values of each parameter that enter its rank's digest (all of a smaller parameter).
SAMPLES_PER_PARAMETER = 16


class ReplicaGroupError(ValueError):
    """The ranks of a hook's process group do not hold replicas of one model."""


def _add_parameter(h: Any, p: torch.Tensor) -> None:
    """Feed one parameter's size, dtype and evenly spaced samples into hash ``h``."""
    flat = p.detach().reshape(-1)
    n = int(flat.numel())
    h.update(f"{n}:{p.dtype};".encode())
    if n:
        k = min(n, SAMPLES_PER_PARAMETER)
        idx = torch.linspace(0, n - 1, k, device=flat.device).round().long()
        # The samples' bytes (a uint8 view: numpy has no bfloat16).
        h.update(flat[idx].contiguous().view(torch.uint8).cpu().numpy().tobytes())


def _signed(h: Any) -> int:
    return int.from_bytes(h.digest(), "little", signed=True)


def parameter_digest(parked: list[Parked]) -> int:
    """A 64-bit digest of the buckets' parameters (their order, sizes, dtypes, samples)."""
    h = hashlib.blake2b(digest_size=8)
    for b in parked:
        for p in b.params:
            _add_parameter(h, p)
    return _signed(h)


def parameter_digests(params: list[torch.Tensor]) -> list[int]:
    """One 64-bit digest per parameter (size, dtype, samples), in the order given."""
    out = []
    for p in params:
        h = hashlib.blake2b(digest_size=8)
        _add_parameter(h, p)
        out.append(_signed(h))
    return out


def settings_digest(text: str) -> int:
    """A 64-bit digest of a hook state's description (its class and settings)."""
    return _signed(hashlib.blake2b(text.encode(), digest_size=8))


def local_control(process_group: Any) -> str | None:
    """How this rank alone would resolve the all-gather exchange's ``control`` in
    ``process_group``: ``"messages"`` or ``"collectives"`` on a cpu (gloo) group, ``None``
    on other devices, where it is always the collectives (an invalid
    ``LAQCORE_TRANSPORT_CONTROL`` raises its ``ValueError`` here, before anything moves)."""
    if collective_device(process_group).type != "cpu":
        return None
    return resolve_control(None, "cpu")


def _by_value(column: Any) -> dict[int, list[int]]:
    """The ranks grouped by their value in ``column``, in rank order."""
    groups: dict[int, list[int]] = {}
    for r, value in enumerate(column):
        groups.setdefault(int(value), []).append(r)
    return groups


def _ranks(groups: dict[int, list[int]]) -> str:
    return "; ".join(", ".join(map(str, ranks)) for ranks in groups.values())


def check_replicas_agree(
    parked: list[Parked],
    process_group: Any,
    iteration: int = 0,
    settings: str = "",
    moved: str | None = None,
    control: str | None = None,
) -> str | None:
    """Raise :class:`ReplicaGroupError` on every rank of ``process_group`` if its ranks'
    hook settings (``settings``: this rank's hook state's class and settings, without its
    iteration), hook iterations or parameter digests differ (module docstring); the message
    lists the ranks that agree. ``moved``: why this rank's state is not its own (a state
    pickled on another rank or number of ranks, e.g. ``"pickled by rank 0 of 2, running on
    rank 1 of 2"``), which is refused on every rank too.

    ``control``: this rank's :func:`local_control`. Returns rank 0's, which every rank's
    exchange then uses (``control`` itself on one rank), and warns on a rank whose own
    differed."""
    world = int(dist.get_world_size(process_group))
    if world == 1:
        if moved is not None:
            raise ReplicaGroupError(_moved_message([0], moved))
        return control
    code = 0 if control is None else 1 + CONTROLS.index(control)
    mine = np.array(
        [parameter_digest(parked), iteration, settings_digest(settings), moved is not None, code],
        dtype=np.int64,
    )
    rows = HostGather(process_group, world, collective_device(process_group)).rows(
        mine, "replica check"
    )
    kinds = _by_value(rows[:, 2])
    if len(kinds) > 1:
        raise ReplicaGroupError(
            "laqcore hook: the ranks of this hook's process group built their hook states "
            f"with different settings (ranks with equal settings: {_ranks(kinds)}; this "
            f"rank's: {settings}): every rank needs the same hook with the same keywords"
        )
    elsewhere = [r for r in range(world) if rows[r, 3]]
    if elsewhere:
        raise ReplicaGroupError(_moved_message(elsewhere, moved))
    steps = _by_value(rows[:, 1])
    if len(steps) > 1:
        at = "; ".join(f"{', '.join(map(str, r))} at iteration {k}" for k, r in steps.items())
        raise ReplicaGroupError(
            "laqcore hook: the ranks of this hook's process group hold hook states of "
            f"different iterations (ranks {at}): a hook state_dict was loaded on some ranks "
            "only. The hook's state is per rank: save state.state_dict() on every rank (one "
            "file per rank) and load each rank's own on every rank, or load none"
        )
    groups = _by_value(rows[:, 0])
    if len(groups) > 1:
        parts = _ranks(groups)
        raise ReplicaGroupError(
            "laqcore hook: the ranks of this hook's process group do not hold the same "
            f"model (ranks with equal parameters: {parts}). Either DDP reduces in another "
            "group than the hook state (build the state with "
            "process_group=ddp_model.process_group, or use "
            "laqcore.torch.register_hook(ddp_model, name)), or the replicas diverged before "
            "this first step (e.g. a checkpoint loaded on some ranks after DDP was built, or "
            "DDP(init_sync=False) over replicas initialised differently: seed every rank "
            "alike or keep init_sync=True)"
        )
    if control is None:
        return None  # not a cpu group: every rank's Transport takes the collectives
    return adopt_control(control, CONTROLS[int(rows[0, 4]) - 1], "hook")


def _moved_message(ranks: list[int], moved: str | None) -> str:
    """The error for hook states pickled on another rank or number of ranks."""
    return (
        f"laqcore hook: the hook state on rank(s) {', '.join(map(str, ranks))} of this hook's "
        "process group was pickled on another rank or with another number of ranks (this "
        f"rank's: {moved or 'its own'}). A hook state is per rank (LAQ's holds this rank's "
        "last upload within the shared aggregate), so another rank's biases the average "
        "with no error (2 gloo ranks both unpickling rank 0's LAQ state: test accuracy 0.56 "
        "against 0.84): unpickle each rank's own state with the same number of ranks, or "
        "start a fresh hook state"
    )
