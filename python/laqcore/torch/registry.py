"""laqcore's DDP communication hooks by name: :data:`HOOKS` and :func:`make_hook`.

One table for every trainer that picks a hook from a string (a ``--method`` flag, a
benchmark's list)::

    from laqcore.torch import make_hook
    state, hook = make_hook("laq", bits=2)
    ddp_model.register_comm_hook(state, hook)

Names are looked up with the library's one spelling rule
(:func:`laqcore._validate.registry_key`: case, surrounding blanks and ``-``/``_`` do not
matter), as algorithm and compressor names are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import torch
from torch._C._distributed_c10d import GradBucket

from .._registry import Registry
from . import compressor_hooks as c
from ._state import FSDP_ERROR, PYTHON_REDUCER_ERROR, HookState
from .laq_state import LAQState, laq_hook

__all__ = ["HOOKS", "HookFn", "HookEntry", "make_hook", "register_hook"]


def __dir__() -> list[str]:
    return __all__


Future = torch.futures.Future
#: A DDP communication hook: ``hook(state, bucket) -> Future[Tensor]``.
HookFn = Callable[[Any, GradBucket], Future[torch.Tensor]]


class HookEntry(NamedTuple):
    """One row of :data:`HOOKS`: the hook's state class and the hook that runs it."""

    state: type[HookState]
    hook: HookFn


_REGISTRY: Registry[HookEntry] = Registry("DDP hook")
_REGISTRY.add("laq", HookEntry(LAQState, laq_hook))
_REGISTRY.add("qsgd", HookEntry(c.QSGDState, c.qsgd_hook))
_REGISTRY.add("terngrad", HookEntry(c.TernGradState, c.terngrad_hook))
_REGISTRY.add("rotation", HookEntry(c.RotationState, c.rotation_hook))

#: laqcore's hooks by name (read-only): ``"laq"``, ``"qsgd"``, ``"terngrad"``, ``"rotation"``.
HOOKS: Mapping[str, HookEntry] = MappingProxyType(_REGISTRY.entries)


def make_hook(name: str, /, **kwargs: Any) -> tuple[HookState, HookFn]:
    """A new state of hook ``name`` and the hook: ``register_comm_hook(*make_hook(name))``.

    Parameters
    ----------
    name : str
        One of :data:`HOOKS` (any case, ``-`` or ``_``).
    **kwargs
        The state's keywords (``process_group``, ``bits``, ``levels``, ...): see
        :class:`~laqcore.torch.LAQState`, :class:`~laqcore.torch.QSGDState`,
        :class:`~laqcore.torch.TernGradState`, :class:`~laqcore.torch.RotationState`.

    Returns
    -------
    state : HookState
        ``HOOKS[name].state(**kwargs)``, checked like any direct construction.
    hook : callable
        ``HOOKS[name].hook``.

    Raises
    ------
    TypeError
        ``name`` is not a string, or a keyword is not one of the state's.
    ValueError
        ``name`` is not a hook of :data:`HOOKS` (the message lists them), or a keyword's
        value is invalid.

    Examples
    --------
    >>> list(HOOKS)
    ['laq', 'qsgd', 'terngrad', 'rotation']
    >>> make_hook("LAQ", bits=2)[0].block_size
    32
    >>> make_hook("powersgd")
    Traceback (most recent call last):
    ...
    ValueError: unknown DDP hook 'powersgd'; available: laq, qsgd, terngrad, rotation
    """
    entry = _REGISTRY.entries[_REGISTRY.resolve(name)]
    return entry.state(**kwargs), entry.hook


def register_hook(ddp_model: Any, name: str, /, **kwargs: Any) -> HookState:
    """Register hook ``name`` on ``ddp_model`` in the group DDP reduces in; returns the state.

    ``make_hook`` plus ``register_comm_hook`` with ``process_group=ddp_model.process_group``,
    so the hook cannot end up in another group than DDP's (a state built without
    ``process_group`` communicates in the default group: wrong for a DDP over a subgroup).
    A ``process_group`` keyword must be DDP's own group (``None``: the default group, so
    it fits a DDP built without one). For ``"laq"`` on a model with
    attention layers (``nn.MultiheadAttention`` or a module class named ``...Attention``),
    neither ``stale_cap`` nor ``streak_penalty`` given and no error feedback (under which the
    rule skips nothing: ``bits=2``'s default) it warns that transformers want ``bits=2``
    (or ``stale_cap=1``, or for fewer bytes at a larger risk ``streak_penalty=0.75``;
    docs/results_hooks.md, "A small transformer"; docs/ddp.md, "Streak penalty").

    Raises
    ------
    TypeError
        ``ddp_model`` is not a ``DistributedDataParallel``, nor ``torch.compile`` of one
        (an FSDP model is told that the hooks are DDP's), or
        was built under ``torch._dynamo.config.optimize_ddp = "python_reducer"`` (compiled
        autograd), which calls comm hooks per parameter and ignores their result (or a
        keyword is not the state's).
    ValueError
        ``process_group`` is another group than DDP's, or as :func:`make_hook`.

    Examples
    --------
    >>> state = register_hook(ddp_model, "laq", bits=4)  # doctest: +SKIP
    >>> state.stats()["uploads_skipped"]                   # doctest: +SKIP
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    # torch.compile(ddp_model) wraps it; the hook belongs to the DDP module inside.
    ddp_model = getattr(ddp_model, "_orig_mod", ddp_model)
    if _is_fsdp(ddp_model):
        raise TypeError(f"register_hook got a {type(ddp_model).__name__} model: {FSDP_ERROR}")
    if not isinstance(ddp_model, DistributedDataParallel):
        # Trainers (Accelerate, Lightning) wrap the model in DDP only when they run several
        # processes; `accelerate launch --cpu --num_processes 2` runs one, so say how many.
        ranks = (
            f"the process group has {dist.get_world_size()} rank(s)"
            if dist.is_initialized()
            else "no process group is initialized: one process runs"
        )
        raise TypeError(
            "register_hook needs a torch.nn.parallel.DistributedDataParallel model, got "
            f"{type(ddp_model).__name__} ({ranks}; a trainer such as Accelerate or Lightning "
            "wraps the model in DDP only when it runs several processes)"
        )
    if getattr(ddp_model, "_use_python_reducer", False):  # fixed when DDP was built
        raise TypeError(PYTHON_REDUCER_ERROR)
    group = ddp_model.process_group
    given = kwargs.pop("process_group", group)
    if given is None:  # the default group, as for a hook state (and DDP's own None)
        given = dist.group.WORLD
    if given is not group:
        raise ValueError(
            "process_group differs from the group the DDP model reduces in "
            "(ddp_model.process_group): leave it out, register_hook uses DDP's"
        )
    state, hook = make_hook(name, process_group=group, **kwargs)
    if isinstance(state, LAQState) and not {"stale_cap", "streak_penalty"} & kwargs.keys():
        _warn_if_attention(ddp_model.module, state, "error_feedback" in kwargs)
    ddp_model.register_comm_hook(state, hook)
    return state


def _is_fsdp(model: Any) -> bool:
    """Whether ``model`` is wrapped by FSDP (``FullyShardedDataParallel``, or the
    ``fully_shard`` API's ``FSDPModule``, where this torch has them)."""
    try:
        from torch.distributed import fsdp
    except ImportError:  # pragma: no cover - a torch built without distributed
        return False
    kinds = tuple(
        k
        for k in (
            getattr(fsdp, "FullyShardedDataParallel", None),
            getattr(fsdp, "FSDPModule", None),
        )
        if isinstance(k, type)
    )
    return bool(kinds) and isinstance(model, kinds)


def _warn_if_attention(module: Any, state: LAQState, feedback_chosen: bool) -> None:
    """Warn when a model with attention layers gets 4-bit skips that were not measured safe
    on the bench's small transformer: momentum SGD, 2 ranks, ten seeds at lr 0.05 and five
    at 0.02 / 0.01. The default (``error_feedback=0.5`` from 3 bits on, session 40) lost 1.3
    on average (3.0 at worst) at lr 0.05 but 10.2 on one seed at lr 0.01; without the
    feedback (the default until then) 14.0 on average and 37.2 at worst; ``bits=2`` (error
    feedback, no skips) stayed within 3.8 at all three (README, "A small transformer";
    docs/ddp.md, "Compensated skips"). A weight, ``stale_cap`` or ``streak_penalty`` the
    user passed is a choice made knowingly and silences it, as does ``stale_cap <= 1``."""
    cap = state.rule.stale_cap
    paid_back = state.error_feedback > 0.0 and (state.bits <= 2 or feedback_chosen)
    if (cap is not None and cap <= 1.0) or paid_back:
        return
    found = next(
        (
            type(m).__name__
            for m in module.modules()
            if isinstance(m, torch.nn.MultiheadAttention) or type(m).__name__.endswith("Attention")
        ),
        None,
    )
    if found is not None:
        warnings.warn(
            f"laqcore: this model has attention layers ({found}) and LAQState skips uploads "
            f"(bits={state.bits}, error_feedback={state.error_feedback}, stale_cap={cap}); on a "
            "small transformer under momentum SGD that setting lost "
            + (
                "(at 4 bits) 1.3 points on average over ten seeds at lr 0.05 but 10.2 on one "
                "seed at lr 0.01"
                if state.error_feedback > 0.0
                else "1.5 to 37 points (14 on average over ten seeds)"
            )
            + ", where bits=2 (error feedback, no skips, about 1.3x the default's bytes) "
            "stayed within 3.8 points at three step sizes (README, 'A small transformer'): "
            "pass bits=2, or error_feedback=1 or stale_cap=1 (within 4.7 at lr 0.05, 9.6 and "
            "11.0 lost on one seed at lr 0.01), or streak_penalty=0.75, or "
            "error_feedback=0.5 to keep the default without this warning",
            UserWarning,
            stacklevel=3,
        )
