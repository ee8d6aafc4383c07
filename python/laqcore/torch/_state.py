"""What every laqcore DDP hook state shares: the per-iteration driver, warm-up, the
non-finite policy, statistics and the checkpoint envelope.

Per iteration (:meth:`HookState._run`, called by the hook for every bucket):

1. buckets before the last are parked (:class:`~laqcore.torch._layout.BucketLayout`);
2. at the last bucket the buckets are checked (dense, real, same parameters as before) and,
   at the first iteration of this process, that every rank of the group holds the same
   parameters (:mod:`laqcore.torch._group_check`: DDP in another group than the state's)
   and hook states of the same settings and iteration (a checkpoint loaded on some ranks);
3. during the first ``warmup_steps`` iterations they are plain all-reduced (averaged);
4. afterwards the flat gradient is gathered in the stable order and handed to the
   subclass's :meth:`HookState._step`, which compresses it, runs the exchange seam
   (:mod:`laqcore.torch._exchange`) and returns the average, or ``None`` when a rank's
   gradient was not finite under ``nonfinite="propagate"`` (then every bucket is NaN and
   the state is left as if the step had not happened);
5. the average is scattered back into the buckets and every parked future completes.

Loss scaling. Under ``torch.amp.GradScaler`` the buckets hold ``s x`` the gradient, and the
scaler halves ``s`` after every overflow (and doubles it after ``growth_interval`` clean
steps). A hook whose state persists across steps (quantizer memory, aggregate, the rule's
history, error-feedback residuals) would otherwise keep it in the units of the scale at which
it was recorded: after a back-off every stale contribution is worth twice its value, the
returned average is too large, the larger step overflows again and the scale falls further.
With ``grad_scaler`` attached the driver divides the gathered gradient by the scale used in
this backward pass and multiplies the average by it on the way back, so the state lives in
unscaled units whatever the scaler does. GradScaler's scales are powers of two, so both
operations are exact: at a constant scale the decisions and bytes are bit-identical to a run
without the scaler attached.
"""

from __future__ import annotations

import math
import time
import typing
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch._C._distributed_c10d import GradBucket

from .._validate import check_bool, check_positive_int
from ..distributed.errors import NonFiniteGradientError
from ..distributed.exchange_stats import ExchangeStats
from ..distributed.transport import TrafficStats
from ..distributed.two_phase import TwoPhaseExchange
from ._checkpoint import load_counters, to_numpy, to_torch
from ._exchange import Averaged, GradientExchange
from ._fallback import ALLREDUCE, LinkProbe
from ._group_check import check_replicas_agree, local_control, parameter_digests
from ._layout import BucketLayout, Parked
from ._nonfinite import check_nonfinite, is_finite, poison

__all__ = ["FSDP_ERROR", "PYTHON_REDUCER_ERROR", "HookState", "run_hook"]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
#: The key of ``state_dict(all_ranks=True)``: the list of every rank's state, by rank.
_ALL_RANKS = "all_ranks"
# The advice of NonFiniteGradientError under nonfinite="raise".
_RAISE_HINT = (
    "nonfinite='skip' leaves such a rank's upload out and counts it; the default "
    "'propagate' drops the step on every rank with NaN buckets, which a GradScaler needs "
    "('skip' is refused with one)"
)
#: Warned once per process at the first iteration in a group of one rank (``{}``: the class):
#: nothing is sent, but the gradient is still compressed, so the run is not the no-hook one.
ONE_RANK_WARNING = (
    "{} runs in a group of one rank: nothing is communicated, but the hook still compresses "
    "the gradient (quantization error; LAQ also skips uploads), so training differs from the "
    "same run without a hook; register it only when the group has more than one rank"
)
Future = torch.futures.Future
P = TypeVar("P")
_COUNTERS = (
    "warmup_steps_done",
    "warmup_bytes",
    "steps",
    "uploads",
    "uploads_skipped",
    "nonfinite_skipped",
    "nonfinite_steps",
    "bytes_sent",
    "bytes_received",
    "bytes_dense",
)


def _refuse_skip_with_scaler(policy: str, scaler: Any) -> None:
    """``nonfinite="skip"`` hides an overflow from the scaler, which then never backs off:
    every later step overflows too and is skipped, and the model stops training without an
    error (an outside trainer: 200 of 200 steps skipped, no upload, the loss at its initial
    value). Refused, whichever of the two is set second."""
    if policy == "skip" and scaler is not None:
        raise ValueError(
            'nonfinite="skip" cannot be combined with a grad_scaler: the skipping rank hides '
            "the overflow from the scaler, which then never backs off, so every later step "
            'overflows and is skipped; use nonfinite="propagate" (the default) with a GradScaler'
        )


class HookState:
    """Base of the hook states (group, warm-up, fault policy, layout, counters).

    Parameters
    ----------
    process_group:
        The group to communicate in (``None``: the default group).
    warmup_steps:
        Iterations of plain all-reduce before compression starts (>= 0).
    nonfinite:
        ``"propagate"`` (default), ``"raise"`` or ``"skip"``: see
        :mod:`laqcore.torch._nonfinite`.
    """

    #: Settings fixed once the state is built (:meth:`_seal`): the quantizer, the exchange
    #: and the values derived from them (``block_size="auto"`` from ``bits``, ...) are made
    #: from these, so a later assignment would be ignored or half applied; it raises instead.
    _SETTINGS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        process_group: Any,
        warmup_steps: int,
        nonfinite: str,
        grad_scaler: Any = None,
        fallback: bool = False,
    ) -> None:
        self.process_group = process_group
        self.warmup_steps = warmup_steps  # validated by the properties below
        self.nonfinite = nonfinite
        self.grad_scaler = grad_scaler
        # Whether the state's vectors are in unscaled units (a scaler was attached when they
        # were recorded; None: nothing recorded yet). Set by the first iteration, or by a
        # loaded checkpoint, and checked against the attached scaler at every iteration.
        self._unscaled: bool | None = None
        self._scale = 1.0  # the loss scale of the iteration in progress
        self._warned_nonfinite = False
        # An unpickled state's (rank, world size) when it was pickled, until its first step
        # checks it (:meth:`_moved_text`); None for a state built or loaded here.
        self._pickled_at: tuple[int, int] | None = None
        # Whether this process checked that the group holds replicas of one model
        # (:mod:`laqcore.torch._group_check`; at its first iteration, again after unpickling).
        self._replicas_checked = False
        # How the all-gather exchange's statuses cross on gloo, as the group agreed at that
        # check (rank 0's resolution; on one rank its own); None until then and off cpu.
        self._transport_control: str | None = None
        self.iteration = 0
        self.layout = BucketLayout()
        self._exchanger: GradientExchange | None = None
        # From a loaded checkpoint: parameter sizes to check at the first compressed step,
        # and the exchange's state until the exchange exists.
        self._expected_numels: list[int] | None = None
        # ... and a digest of each parameter in the saving run's stable order, to take that
        # order at the first iteration (:meth:`_adopt_saved_order`).
        self._expected_digests: list[int] | None = None
        self._exchange_state: dict[str, Any] | None = None
        # exchange="auto" loaded from a checkpoint: the checkpoint's exchange (load_state_dict).
        self._pinned_exchange: str | None = None
        self._counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        # fallback=True: DDP's all-reduce where compression does not pay (:mod:`._fallback`).
        self.fallback = check_bool(fallback, "fallback")
        self._probe = LinkProbe() if fallback else None
        if fallback:
            self._counters["allreduce_steps"] = 0

    # -- plumbing -----------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        fixed = name in type(self)._SETTINGS or name == "fallback"
        sealed = self.__dict__.get("_sealed", False)
        cls = type(self).__name__
        if fixed and sealed:
            raise AttributeError(
                f"{cls}.{name} is fixed once the state is built (its quantizer, exchange and "
                "the settings derived from it are made from it, so a new value would be "
                f"ignored): build a new {cls}({name}=...) and register that one instead"
            )
        elsewhere = self._keyword_elsewhere(name) if sealed else None
        if elsewhere is not None:
            # A constructor keyword that is no attribute of the state: the assignment
            # (state.stale_cap = 1, state.levels = 3) would add one that nothing reads.
            raise AttributeError(f"{cls}.{name} is not read from the state: {elsewhere}")
        object.__setattr__(self, name, value)

    def _keyword_elsewhere(self, name: str) -> str | None:
        """Where a constructor keyword ``name`` that is not an attribute of the state lives
        (what to do instead of assigning it), or ``None`` for any other name."""
        return None

    def _seal(self) -> None:
        """End of construction: from now on the :attr:`_SETTINGS` are read-only."""
        self._sealed = True

    def _repr_settings(self) -> dict[str, Any]:
        """The settings :meth:`__repr__` shows (subclasses add theirs)."""
        names = (*type(self)._SETTINGS, "warmup_steps", "nonfinite", "fallback")
        return {k: getattr(self, k, None) for k in names}  # None: a pickle from before k

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._repr_settings().items())
        return f"{type(self).__name__}({shown}) at iteration {self.iteration}"

    def _settings_text(self) -> str:
        """The class and settings, which every rank of the group must share (dicts sorted,
        so the order of the keywords in the call does not matter)."""

        def show(v: Any) -> str:
            return repr(sorted(v.items())) if isinstance(v, dict) else repr(v)

        shown = ", ".join(f"{k}={show(v)}" for k, v in self._repr_settings().items())
        return f"{type(self).__name__}({shown})"

    @property
    def process_group(self) -> Any:
        """The group the hook communicates in (``None``: the default group). Assignable
        until the first step (a pickled state comes back without it: give it DDP's group
        again); fixed afterwards, when the exchange has been built in it."""
        return self._process_group

    @process_group.setter
    def process_group(self, group: Any) -> None:
        if self.__dict__.get("_replicas_checked") or self.__dict__.get("_exchanger") is not None:
            raise AttributeError(
                f"{type(self).__name__}.process_group is fixed once the hook has run (its "
                "exchange is built in it): build a new state in the new group instead"
            )
        self._process_group = group

    @property
    def warmup_steps(self) -> int:
        """Iterations of plain all-reduce before compression starts (read at every step)."""
        return self._warmup_steps

    @warmup_steps.setter
    def warmup_steps(self, steps: int) -> None:
        self._warmup_steps = check_positive_int(steps, "warmup_steps", minimum=0)

    @property
    def nonfinite(self) -> str:
        """The NaN/Inf policy (:mod:`laqcore.torch._nonfinite`; read at every step)."""
        return self._nonfinite

    @nonfinite.setter
    def nonfinite(self, policy: str) -> None:
        policy = check_nonfinite(policy)
        _refuse_skip_with_scaler(policy, getattr(self, "_grad_scaler", None))
        self._nonfinite = policy

    @property
    def grad_scaler(self) -> Any:
        """The ``torch.amp.GradScaler`` whose scale the buckets carry, or ``None``.

        Attach it (``grad_scaler=`` or ``state.grad_scaler = scaler``) whenever the trainer
        uses one: the state then lives in unscaled units, so a back-off after an overflow does
        not leave every stale contribution at twice its value (module docstring, "Loss
        scaling"). Anything with a ``get_scale()`` method returning the current scale works.
        """
        return self._grad_scaler

    @grad_scaler.setter
    def grad_scaler(self, scaler: Any) -> None:
        if scaler is not None and not callable(getattr(scaler, "get_scale", None)):
            raise TypeError(
                "grad_scaler must be a torch.amp.GradScaler (or have a get_scale() method), "
                f"got {type(scaler).__name__}"
            )
        _refuse_skip_with_scaler(getattr(self, "_nonfinite", "propagate"), scaler)
        self._grad_scaler = scaler

    def _loss_scale(self) -> float:
        """The scale the buckets of this iteration carry (1 without a scaler)."""
        if self._grad_scaler is None:
            return 1.0
        scale = float(self._grad_scaler.get_scale())
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"grad_scaler.get_scale() returned {scale}; expected a scale > 0")
        return scale

    def _check_units(self) -> None:
        """The state's vectors must be in the units the attached scaler implies."""
        attached = self._grad_scaler is not None
        if self._unscaled is not None and self._unscaled != attached:
            raise ValueError(
                "this hook state was recorded with a grad_scaler attached (in earlier steps, "
                "in the checkpoint it was loaded from, or when it was pickled; its vectors are "
                "in unscaled units): attach the trainer's GradScaler again "
                "(state.grad_scaler = scaler)"
                if self._unscaled
                else "this hook state was recorded without a grad_scaler (in earlier steps or "
                "in the checkpoint it was loaded from; its vectors carry that run's loss "
                "scale); attaching one now would mix units: attach it before the first step, "
                "or start a fresh state"
            )
        self._unscaled = attached

    @property
    def world_size(self) -> int:
        return int(dist.get_world_size(self.process_group))

    @property
    def rank(self) -> int:
        return int(dist.get_rank(self.process_group))

    @property
    def numel(self) -> int:
        """Number of gradient elements in one iteration's message (0 before the first)."""
        return self.layout.numel

    def _make_exchange(self, n: int) -> GradientExchange:
        raise NotImplementedError  # abstract: each hook state picks its exchange

    @property
    def exchanger(self) -> GradientExchange:
        if self._exchanger is None:
            ex = self._make_exchange(self.numel)
            if self._exchange_state is not None:
                ex.load_state_dict(self._exchange_state)
            self._exchanger = ex
        return self._exchanger

    @property
    def fallback_decision(self) -> str | None:
        """With ``fallback=True``: ``"probe-compress"`` / ``"probe-allreduce"`` while timing,
        then ``"compress"`` or ``"allreduce"``; ``None`` without the option."""
        return None if self._probe is None else self._probe.mode

    @property
    def probe_times(self) -> dict[str, float]:
        """What each mode added to an iteration after its last bucket (s, medians averaged
        over the ranks) as the decision compared them: ``{"compress": ...,
        "allreduce": ...}``; partial or empty before it."""
        return {} if self._probe is None else dict(self._probe.times)

    # -- the per-iteration driver ---------------------------------------------------------
    def _run(self, bucket: GradBucket) -> Future[torch.Tensor]:
        probe = self._probe  # None without fallback (and in states pickled before it)
        if probe is not None:
            if bucket.index() == 0:  # DDP sends buckets in index order: nothing sent yet
                probe.next_iteration(self.process_group)
            if probe.all_reduce:
                return self._ddp_all_reduce(bucket, probe)
        fut, parked = self.layout.park(bucket)
        if parked is None:
            return fut
        # The probe, while it times this iteration (compressed: past the warm-up).
        probing = probe is not None and probe.probing and self.iteration >= self.warmup_steps
        timed = probe if probing else None
        dropped_before = self._counters["nonfinite_steps"]
        start = time.perf_counter()
        try:
            # Scale and units first: an error there leaves the state untouched.
            self._scale = self._loss_scale()
            self._check_units()
            self.layout.learn(parked)
            if self._expected_digests is not None:  # the first iteration after a load
                self._adopt_saved_order()
            # Once per process, before anything is averaged: the same model, and hook states
            # of the same settings and iteration, on every rank of the group.
            if not self._replicas_checked:
                self._transport_control = check_replicas_agree(
                    parked,
                    self.process_group,
                    self.iteration,
                    self._settings_text(),
                    self._moved_text(),
                    local_control(self.process_group),
                )
                self._replicas_checked = True
                self._pickled_at = None  # on its own rank: a pickle of it records this one
                if self.world_size == 1:
                    warnings.warn(ONE_RANK_WARNING.format(type(self).__name__), stacklevel=2)
            if self.iteration < self.warmup_steps:
                self._warmup(parked)
            else:
                self._compressed(parked)
        except BaseException as err:
            for b in parked[:-1]:
                b.future.set_exception(err)  # type: ignore[arg-type]  # torch stub says Tensor
            raise
        # A step a non-finite gradient dropped (on every rank alike) moved no payload: not a
        # compressed iteration's time (a probe timed only such steps under fp16 overflows).
        if timed is not None and self._counters["nonfinite_steps"] == dropped_before:
            timed.compressed(time.perf_counter() - start, self.process_group)
        for b in parked:
            b.future.set_result(b.buffer)
        return fut

    def _ddp_all_reduce(self, bucket: GradBucket, probe: LinkProbe) -> Future[torch.Tensor]:
        """DDP's own all-reduce of one bucket (asynchronous, averaged: PyTorch's default
        hook), while the probe times it or after it chose it."""
        world, last, timed = self.world_size, bucket.is_last(), probe.probing
        start = time.perf_counter()
        buffer = bucket.buffer()
        after = _divide_before_sum(buffer, world)
        work = dist.all_reduce(buffer, group=self.process_group, async_op=True)

        def average(f: Future[list[torch.Tensor]]) -> torch.Tensor:
            if last and timed:  # the all-reduce's time after the backward pass
                probe.all_reduced(time.perf_counter() - start)
            return f.value()[0].div_(world) if after else f.value()[0]

        if last:
            self._counters["allreduce_steps"] += 1
        return work.get_future().then(average)  # type: ignore[no-any-return]

    def _warmup(self, parked: list[Parked]) -> None:
        w = self.world_size
        for b in parked:
            after = _divide_before_sum(b.buffer, w)
            dist.all_reduce(b.buffer, group=self.process_group)
            if after:
                b.buffer.div_(w)
        self._counters["warmup_bytes"] += self.layout.dense_bytes
        # The all-reduce spread any NaN/Inf to every rank: a dropped step (the scaler skips
        # it), which neither counts as warm-up nor feeds the state.
        if not all(is_finite(b.buffer) for b in parked):
            self._dropped_step()
            return
        self._counters["warmup_steps_done"] += 1
        self.iteration += 1
        self._after_warmup_step(parked)

    def _compressed(self, parked: list[Parked]) -> None:
        self._check_layout()
        out = self._step(self._gather(parked).numpy())
        if out is None:  # a rank was not finite, policy "propagate": as all-reduce does
            self._dropped_step()
            poison([b.buffer for b in parked])
            return
        self.iteration += 1
        self.layout.scatter(parked, torch.from_numpy(out), scale=self._scale)

    def _gather(self, parked: list[Parked], out: torch.Tensor | None = None) -> torch.Tensor:
        """The flat float32 CPU gradient in the state's units (the unscaled gradient), into
        ``out`` or the layout's reused buffer (LAQ's error feedback adds its term here)."""
        flat = self.layout.gather(parked, out=out)
        if self._scale != 1.0:
            flat.div_(self._scale)
        return flat

    def _origin(self) -> tuple[int, int] | None:
        """(rank, world size) of this state in its group, where a process group runs."""
        try:
            if dist.is_initialized():
                return (self.rank, self.world_size)
        except (RuntimeError, ValueError):  # a group destroyed or never joined
            pass
        return None

    def _moved_text(self) -> str | None:
        """Why this unpickled state is not this rank's own, or ``None`` if it is (or it
        holds nothing of a rank: pickled before its first step, or outside a group)."""
        origin = self._pickled_at
        here = self._origin()
        if origin is None or here is None or tuple(origin) == here:
            return None
        return f"pickled by rank {origin[0]} of {origin[1]}, running on rank {here[0]} of {here[1]}"

    def _dropped_step(self) -> None:
        """A non-finite gradient dropped this iteration on every rank ("propagate")."""
        self._counters["nonfinite_steps"] += 1
        if self._grad_scaler is None and not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(
                f"laqcore hook: a non-finite gradient dropped iteration {self.iteration}. If a "
                "torch.amp.GradScaler produced it, the scaler now halves its scale while this "
                "hook's state stays in the old scale's units, so stale contributions return "
                "at twice their value: attach the scaler (grad_scaler=scaler, or "
                "state.grad_scaler = scaler) and the state follows the scale. Without a "
                "scaler every bucket comes back NaN and the optimizer applies it "
                "unless the trainer skips that step (or pass nonfinite='raise' to stop, "
                "'skip' to leave the rank out); this warning is given once, "
                "stats()['nonfinite_steps'] counts every dropped step",
                RuntimeWarning,
                stacklevel=2,
            )

    def _after_warmup_step(self, parked: list[Parked]) -> None:
        """Hook for subclasses that track state during warm-up (buckets hold the average)."""

    def _step(self, grad: FloatVector) -> FloatVector | None:
        raise NotImplementedError  # abstract: each hook state defines its compressed step

    @staticmethod
    def _propose(make: Callable[[FloatVector], P], grad: FloatVector) -> P | None:
        """``make(grad)`` (the compressor or quantizer), or ``None`` if ``grad`` is not finite.

        laqcore's kernels reject NaN/Inf with ``ValueError`` in the pass they make over the
        gradient anyway, so a finite gradient costs no extra pass; only after such an error
        is the gradient tested (a finite one re-raises the error). A finite gradient the
        compressor cannot represent (``OverflowError``, the kernels' ``FloatRangeError``:
        LAQ's innovation ``grad - q_prev`` or its reconstruction ``q_prev + dQ`` near the
        float32 maximum, QSGD's L2 norm of a bucket, the rotation's sums) is not finite once
        compressed, so it also gives ``None``, with a warning: the exchange then tells every
        rank, where raising here, on this rank alone, would leave the others waiting in the
        step's collectives.
        """
        try:
            return make(grad)
        except OverflowError as err:  # first: the kernels' overflow is a ValueError too
            warnings.warn(
                f"laqcore hook: {err}; this step is treated as a non-finite gradient",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        except ValueError:
            if is_finite(torch.from_numpy(grad)):
                raise
            return None  # NaN/Inf: the non-finite policy decides

    def _exchange(self, payload: Any, bad: bool, out: FloatVector | None = None) -> Averaged:
        """The seam, with the fault policy applied and the counters kept. ``out``: where the
        average goes (the flat gradient buffer, once the payload no longer needs it)."""
        res = self.exchanger.average(
            None if bad else payload,
            nonfinite=bad,
            abort_on_nonfinite=self.nonfinite != "skip",
            tag=f"step {self.iteration}",
            out=out,
        )
        c = self._counters
        c["bytes_received"] += res.bytes_received
        if res.nonfinite_ranks and self.nonfinite == "raise":
            raise NonFiniteGradientError(res.nonfinite_ranks, self.iteration, hint=_RAISE_HINT)
        # "skip" has no rank to leave out (each gradient is finite, their sum is not): no
        # finite average exists, so it raises like "raise"; "propagate" drops the step.
        if res.overflow_owners and self.nonfinite != "propagate":
            raise NonFiniteGradientError(res.overflow_owners, self.iteration, owners=True)
        if res.mean is None:
            # A dropped step: nothing counts but a frame that had already left (all-gather)
            c["bytes_sent"] += res.frame_bytes or 0
            return res
        c["steps"] += 1
        c["bytes_dense"] += self.layout.dense_bytes
        if bad:
            c["nonfinite_skipped"] += 1
        elif payload is None:
            c["uploads_skipped"] += 1
        else:
            c["uploads"] += 1
            c["bytes_sent"] += int(payload.nbytes if res.frame_bytes is None else res.frame_bytes)
        return res

    # -- public -------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Communication statistics of this rank so far.

        ``bytes_sent``: the frames this rank uploaded after warm-up (with the all-gather
        exchange the frame as sent, entropy-coded if ``entropy``, also one that had left with
        the statuses before another rank's non-finite gradient dropped the step; with the
        two-phase exchange the upload's frame before it is cut into chunks and coded, so
        the two exchanges' ratios differ for the same uploads: what its chunks cost on the
        wire is in ``sent_uplink``). ``bytes_received``: what
        this rank received in those exchanges (control, frames, padding). ``bytes_dense``:
        what the same iterations would have cost in the buckets' own dtype (a plain
        all-reduce's payload: 2 bytes per element for fp16/bf16 gradients).
        ``compression_ratio = bytes_dense / bytes_sent`` (``inf`` if every compressed step
        skipped its upload, ``nan`` before the first compressed step: there is no ratio yet).
        ``uploads_skipped``: iterations this rank skipped; ``nonfinite_steps``: iterations
        dropped because a rank's gradient was not finite (``nonfinite="propagate"``).
        The two-phase exchange adds ``downlink_sized_rounds`` and ``downlink_tail_rounds``:
        steps whose downlink took a second collective (entropy-coded publications only: on
        gloo the publications larger than the capacity the messages carry, on NCCL the sizes'
        all-gather and the slots' tails, :mod:`laqcore.distributed.slots`), and the
        exchange's part of ``bytes_received`` by phase: ``received_control`` (status, sizes,
        slot capacities and slot lengths), ``received_uplink`` (phase 1: chunks of the other
        uploaders' frames), ``received_downlink`` (phase 2: the other owners' publications,
        padding included) and ``received_padding`` (the part of ``received_downlink`` that
        pads them to a common size: NCCL only, gloo's messages carry exact sizes);
        ``rounds_with_uploads`` (exchanges in which some rank uploaded: the others moved
        nothing), ``downlink_rounds`` (exchanges with a downlink: those with an
        upload, less those a lazy downlink deferred) and ``uploads_all_ranks`` (uploads of
        every rank together). With ``fallback=True``: ``allreduce_steps`` (iterations run with
        DDP's all-reduce: the probe's and those after it chose it) and
        ``probe_allreduce_steps`` (those of them the probe timed).
        """
        c = self._counters
        out: dict[str, float] = {"iteration": self.iteration, **c}
        if c["bytes_sent"]:
            out["compression_ratio"] = c["bytes_dense"] / c["bytes_sent"]
        else:  # all skipped, or nothing compressed yet (warm-up)
            out["compression_ratio"] = math.inf if c["bytes_dense"] else math.nan
        xs, traffic = self._exchange_stats()
        if xs is not None:  # the two-phase exchange
            out["downlink_sized_rounds"] = xs.sized_rounds  # rounds with two collectives
            out["downlink_tail_rounds"] = xs.tail_rounds
            # bytes_received by phase (issue 15.4's accounting; the payload of the
            # downlink is downlink minus padding, control includes the slots' lengths)
            out["sent_uplink"] = xs.uplink_sent  # this rank's coded chunks to other owners
            out["received_control"] = xs.control_received
            out["received_uplink"] = xs.uplink_received
            out["received_downlink"] = xs.downlink_received
            out["received_padding"] = xs.padding_received
            out["rounds_with_uploads"] = xs.rounds_with_uploads
            out["downlink_rounds"] = xs.downlink_rounds
            out["uploads_all_ranks"] = xs.uploads
        if self._probe is not None:  # fallback=True: the all-reduce iterations it timed
            out["probe_allreduce_steps"] = self._probe.allreduce_samples
        if traffic is not None:  # the all-gather exchange's Transport
            out["wire_bytes"] = traffic.wire_bytes
            out["control_bytes"] = traffic.control_bytes
        return out

    def _exchange_stats(self) -> tuple[ExchangeStats | None, TrafficStats | None]:
        """The exchange's counters (two-phase, all-gather): the live exchange's or, until a
        compressed step rebuilds it after a load, the checkpoint's. A resumed run whose
        fallback had chosen DDP's all-reduce never rebuilds it, and its stats() lacked
        these keys for the rest of the run."""
        ex = self._exchanger
        if ex is not None:
            two_phase = getattr(ex, "exchange", None)
            transport = getattr(ex, "transport", None)
            return (
                two_phase.stats if isinstance(two_phase, TwoPhaseExchange) else None,
                None if transport is None else transport.stats,
            )
        saved = self._exchange_state or {}  # the loaded checkpoint's (None: a fresh state)
        xs = traffic = None
        if saved.get("stats") is not None:
            xs = ExchangeStats()
            load_counters(xs, saved["stats"], "state_dict['exchange']['stats']")
        if saved.get("transport") is not None:
            traffic = TrafficStats()
            load_counters(traffic, saved["transport"], "state_dict['exchange']['transport']")
        return xs, traffic

    def state_dict(self, *, all_ranks: bool = False) -> dict[str, Any]:
        """Everything needed to resume exactly: CPU tensors and plain Python values, so
        ``torch.load`` reads it with its default ``weights_only=True``.

        Records the world size and this rank: :meth:`load_state_dict` refuses a checkpoint
        of another world size or rank. The tensors are copies: later steps do not change them.

        Parameters
        ----------
        all_ranks : bool
            ``False`` (default): this rank's state, to be saved in a file of its own.
            ``True``: a collective over the state's group, to be called on every rank at
            once; each rank gets ``{"all_ranks": [rank 0's state, rank 1's, ...]}``. For
            trainers that write only rank 0's checkpoint (Lightning's
            ``on_save_checkpoint``, Accelerate's ``register_for_checkpointing``): every
            rank then reads that one file, and :meth:`load_state_dict` takes its own entry.
        """
        own = typing.cast(dict[str, Any], to_torch(self._state_dict()))
        if not check_bool(all_ranks, "all_ranks"):
            return own
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, own, group=self.process_group)
        return {_ALL_RANKS: gathered}

    def _own_entry(self, entries: Any) -> Any:
        """This rank's state out of a ``state_dict(all_ranks=True)``."""
        if not isinstance(entries, list):
            raise TypeError(
                f"state_dict[{_ALL_RANKS!r}] must be a list (one state per rank), got "
                f"{type(entries).__name__}"
            )
        if not dist.is_initialized():
            raise ValueError(
                "a state_dict(all_ranks=True) holds one state per rank: load it after "
                "init_process_group, so that the state knows which entry is its own"
            )
        if len(entries) != self.world_size:
            raise ValueError(
                f"this checkpoint holds the states of {len(entries)} ranks; this group has "
                f"{self.world_size} (resume with the same number of ranks)"
            )
        return entries[self.rank]

    def _state_dict(self) -> dict[str, Any]:
        """The checkpoint in the library's own values (numpy arrays); subclasses add theirs."""
        ex = self._exchanger
        return {
            "iteration": self.iteration,
            "counters": dict(self._counters),
            "numels": list(self.layout.numels or self._expected_numels or []),
            "param_digests": self._param_digests() or [],
            "world_size": self.world_size,
            "rank": self.rank,
            "exchange": ex.state_dict() if ex is not None else self._exchange_state,
            "unscaled": bool(self._unscaled),
            "fallback": None if self._probe is None else self._probe.state_dict(),
            "hook": type(self).__name__,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; call before the first backward pass with this state.

        Everything is checked now, on this rank, and nothing changes on error
        (``ValueError`` / ``TypeError``): missing keys, negative counters, another world
        size or rank, the subclass's vectors (NaN, wrong length). The parameters are
        re-learnt at the first iteration, in the checkpoint's order when they are the saved
        ones in another bucket layout (:meth:`_adopt_saved_order`); the parameter sizes must
        then match the checkpoint's. A ``state_dict(all_ranks=True)`` gives this rank its own
        entry (which must be the state this rank saved).
        """
        if isinstance(sd, dict) and _ALL_RANKS in sd:  # state_dict(all_ranks=True)
            sd = self._own_entry(sd[_ALL_RANKS])
        if not isinstance(sd, dict):
            raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
        sd = to_numpy(sd)  # tensors as state_dict() writes them; numpy from before
        missing = [k for k in self._state_keys() if k not in sd]
        if missing:
            raise ValueError(
                f"state_dict lacks the key(s) {missing}: not a checkpoint of this hook"
            )
        saved_hook = sd.get("hook")  # absent before it was recorded
        if saved_hook is not None and saved_hook != type(self).__name__:
            # The keys of one hook's checkpoint cover another's (a LAQState's those of a
            # QSGDState), so a QSGDState loaded a LAQ checkpoint, or a TernGradState a QSGD
            # one, without an error: its stats() went on from the other hook's counters
            # (LAQ's skipped uploads under QSGD, which never skips), its exchange from the
            # other hook's.
            raise ValueError(
                f"this checkpoint is a {saved_hook}'s; this state is a {type(self).__name__}: "
                f"load it into a {saved_hook}, or start a fresh hook state"
            )
        world = check_positive_int(sd["world_size"], "state_dict['world_size']")
        rank = check_positive_int(sd["rank"], "state_dict['rank']", minimum=0)
        if dist.is_initialized() and (world, rank) != (self.world_size, self.rank):
            raise ValueError(
                f"this checkpoint was saved by rank {rank} of {world}; loading it on rank "
                f"{self.rank} of {self.world_size} would mix up per-rank state (LAQ's holds "
                "this rank's share of the shared aggregate, every hook its counters; load each "
                "rank's own state_dict, with the same number of ranks; a trainer that writes "
                "rank 0's checkpoint only, as Lightning and Accelerate do, must save "
                "state.state_dict(all_ranks=True) on every rank)"
            )
        # "auto" takes the checkpoint's exchange (a run saved before "auto" existed, or on
        # another number of ranks' resolution, resumes as it ran); another is refused.
        saved_kind = _saved_exchange_kind(sd["exchange"])
        exchange = getattr(self, "exchange", None)
        adopt = saved_kind is not None and exchange == "auto"
        if not adopt:
            _check_exchange_kind(saved_kind, exchange)
        iteration = check_positive_int(sd["iteration"], "state_dict['iteration']", minimum=0)
        if not isinstance(sd["counters"], dict):
            raise TypeError("state_dict['counters'] must be a dict")
        counters = {
            str(k): check_positive_int(v, f"state_dict['counters'][{k!r}]", minimum=0)
            for k, v in sd["counters"].items()
        }
        numels = [check_positive_int(v, "state_dict['numels'] entry") for v in sd["numels"]]
        digests = sd.get("param_digests") or []  # absent before it was recorded
        if not isinstance(digests, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in digests
        ):
            raise TypeError("state_dict['param_digests'] must be a list of int")
        if digests and len(digests) != len(numels):
            raise ValueError(
                f"state_dict['param_digests'] has {len(digests)} entries for {len(numels)} "
                "parameters"
            )
        unscaled = sd.get("unscaled", False)  # absent before grad_scaler existed
        if not isinstance(unscaled, bool):
            raise TypeError("state_dict['unscaled'] must be a bool")
        probe_sd = sd.get("fallback")  # absent before the option existed
        if probe_sd is not None and not isinstance(probe_sd, dict):
            raise TypeError("state_dict['fallback'] must be a dict or None")
        probe = None
        if probe_sd is not None and self._probe is not None:
            probe = LinkProbe(self._probe.steps, self._probe.clear)
            probe.load_state_dict(probe_sd)
        elif probe_sd is not None and probe_sd.get("mode") == ALLREDUCE:
            raise ValueError(
                "this checkpoint's run fell back to DDP's all-reduce (fallback=True chose it), "
                "so its compressed state stopped there: load it into a state with fallback=True"
            )
        self._load(sd, sum(numels))  # validates and installs the subclass's part, or raises
        self.iteration = iteration
        self._counters.update(counters)
        self._expected_numels = numels or None
        self._expected_digests = digests or None
        # Before its first step a state holds nothing in either units: any scaler fits.
        self._unscaled = unscaled if numels else None
        self._exchange_state = sd["exchange"]
        if adopt:
            self._pinned_exchange = saved_kind
            self._exchanger = None  # rebuilt as the checkpoint's kind at the next step
        if self._exchanger is not None and sd["exchange"] is not None:
            self._exchanger.load_state_dict(sd["exchange"])
        if probe is not None:
            self._probe = probe
        self._pickled_at = None  # checked above: a checkpoint's world size and rank

    def _state_keys(self) -> tuple[str, ...]:
        return ("iteration", "counters", "numels", "world_size", "rank", "exchange")

    def _load(self, sd: dict[str, Any], n: int) -> None:
        """Validate and install the subclass's part of a checkpoint (``n`` elements)."""

    def _check_layout(self) -> None:
        """At the first compressed step: the model must match a loaded checkpoint. The same
        sizes in another order are DDP's bucket layout of other settings (the error said
        only "saved for parameters of sizes [128, 16, ...]" then, nothing of the cause)."""
        numels = self._expected_numels
        now = self.layout.numels
        if numels is not None and numels != now:
            sizes = f"saved: {_sizes(numels)}; this model's buckets: {_sizes(now)}"
            if sorted(numels) == sorted(now):
                raise ValueError(
                    "this model's DDP buckets hold the parameter sizes of the run that saved "
                    f"this hook state in another order ({sizes}): {_BUCKET_ORDER}"
                )
            raise ValueError(
                f"the loaded hook state was saved for other parameters ({sizes}): load it "
                "into the model it was saved with (no layer added, removed or frozen), or "
                "start a fresh hook state"
            )
        self._expected_numels = None

    def _param_digests(self) -> list[int] | None:
        """Each parameter's digest in the stable order (or the loaded ones, before the
        first iteration learnt the parameters)."""
        if self.layout.params:
            return parameter_digests(self.layout.params)
        return self._expected_digests

    def _adopt_saved_order(self) -> None:
        """At the first iteration after a load: take the saving run's parameter order.

        The stable order is the bucket layout of the state's first iteration, and DDP's
        layout depends on ``bucket_cap_mb``, ``find_unused_parameters`` and ``static_graph``
        (the constructor's) and on whether DDP had already rebuilt its buckets (a hook
        registered after some steps of plain DDP sees the rebuilt one; resumed and
        registered before the first step, the constructor's). The checkpoint's vectors are
        in the saving run's order, so when this iteration's parameters are the saved ones
        (their digests, values included) in another order, the layout takes the saved order:
        every parameter keeps its own quantizer memory and aggregate and the resume is
        bit-exact. Before, a new order of equal-sized parameters silently handed each
        another one's memory, and any new order was then refused. Only parameters whose
        digests cannot be told apart (equal values) in another order are refused. Values
        that differ (a hook state saved at another step than the model) prove nothing and
        pass. Every rank holds the same replicas and decides alike, before any collective
        of the iteration."""
        saved, self._expected_digests = self._expected_digests, None
        now = parameter_digests(self.layout.params)
        if saved is None or now == saved or sorted(now) != sorted(saved):
            return
        if len(set(now)) == len(now):
            position = {d: i for i, d in enumerate(now)}
            self.layout.reorder([position[d] for d in saved])
            return
        moved = next(i for i, (a, b) in enumerate(zip(now, saved)) if a != b)
        raise ValueError(
            "this model's DDP buckets put its parameters in another order than the run that "
            f"saved this hook state (from parameter #{moved} of the hook's order on; the "
            "values are the saved ones), and some of them hold equal values, so the saved "
            f"order cannot be recovered: {_BUCKET_ORDER}"
        )

    def __getstate__(self) -> dict[str, Any]:
        # A process group cannot be pickled (PowerSGDState drops it too); parameter identities
        # and parked buckets are meaningless in another process, which re-learns them.
        d = dict(self.__dict__)
        ex = self._exchanger
        # The scaler belongs to the trainer (it has its own state_dict): re-attach it after
        # unpickling; ``_unscaled`` makes the first step refuse to run without it.
        d.update(_process_group=None, _exchanger=None, layout=None, _grad_scaler=None)
        if self._grad_scaler is not None and self._unscaled is None:
            # Built with a scaler, not run yet: the copy must refuse to run without one too
            # (it would train in the scaled units, with no error until a back-off).
            d["_unscaled"] = True
        d["_replicas_checked"] = False
        d["_transport_control"] = None  # agreed again by the next process's first step
        # Where its per-rank memory belongs (load_state_dict's world size and rank check):
        # the first step refuses it on another rank or number of ranks, on every rank.
        # An unpickled state keeps its origin until a first step has checked it.
        holds = self.iteration > 0 or bool(self.layout.numels or self._expected_numels)
        if holds and self._pickled_at is None:
            d["_pickled_at"] = self._origin()
        d["_expected_numels"] = self.layout.numels or self._expected_numels
        d["_expected_digests"] = self._param_digests()
        d["_exchange_state"] = ex.state_dict() if ex is not None else self._exchange_state
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        # States pickled before grad_scaler existed were recorded in the scaled units, as
        # load_state_dict assumes of a checkpoint without "unscaled" (None if still empty).
        recorded = bool(d.get("_expected_numels"))
        defaults = {
            "_grad_scaler": None,
            "_scale": 1.0,
            "_warned_nonfinite": False,
            "_replicas_checked": False,
            "_transport_control": None,
            "fallback": False,
            "_probe": None,
            "_expected_digests": None,
            "_pinned_exchange": None,
            "_pickled_at": None,
        }
        d = defaults | {"_unscaled": False if recorded else None} | d
        # plain attributes before they became checked properties
        for name in ("warmup_steps", "nonfinite", "process_group"):
            if name in d:
                d[f"_{name}"] = d.pop(name)
        self.__dict__.update(d)
        self.__dict__["layout"] = BucketLayout()
        self.__dict__["_sealed"] = True  # also for states pickled before settings were sealed


def _saved_exchange_kind(saved: Any) -> str | None:
    """The exchange a checkpoint's entry comes from, told by its keys: only the two-phase
    exchange writes ``rounds``, only the all-gather ``transport`` (``None``: nothing
    exchanged yet, or an older all-gather checkpoint)."""
    if not isinstance(saved, dict):
        return None
    return "two-phase" if "rounds" in saved else "all-gather" if "transport" in saved else None


def _check_exchange_kind(kind: str | None, exchange: str | None) -> None:
    """Refuse a checkpoint of the other exchange (``kind``: :func:`_saved_exchange_kind`;
    ``exchange``: this state's setting, ``"auto"`` only with ``kind`` ``None``). LAQ keeps its aggregate in the two-phase
    exchange's replica, so a two-phase checkpoint resumed with ``exchange="all-gather"``
    started from a zero aggregate while every rank's last upload was kept: the averages were
    silently wrong (1 gloo rank: the aggregate 0 against a last upload of norm_1 67 after the
    first resumed step); the reverse failed at the first step with ``KeyError: 'rounds'``."""
    if kind is not None and exchange is not None and kind != exchange:
        raise ValueError(
            f"this checkpoint was saved with exchange={kind!r} and this state has "
            f"exchange={exchange!r}: the exchange holds part of the hook's state (LAQ's "
            f"aggregate in the two-phase one), so build the state with exchange={kind!r}, "
            "or start a fresh hook state"
        )


#: What sets the hook's parameter order, and what to do when a checkpoint's differs.
_BUCKET_ORDER = (
    "DDP's bucket layout, which sets the hook's parameter order, depends on bucket_cap_mb, "
    "find_unused_parameters and static_graph, and on whether the hook was registered before "
    "DDP's first backward pass. Build DDP and register the hook as in the saving run, or "
    "start a fresh hook state"
)


def _sizes(numels: list[int], shown: int = 8) -> str:
    """``numels`` for a message: the first ``shown`` and how many there are."""
    more = f", ... ({len(numels)} tensors)" if len(numels) > shown else ""
    return "[" + ", ".join(map(str, numels[:shown])) + more + "]"


#: Why the hooks cannot run under DDP's Python reducer (one text for both places that
#: refuse it: :func:`run_hook` and ``register_hook``).
PYTHON_REDUCER_ERROR = (
    "laqcore's DDP hooks need DDP's C++ reducer, which hands a hook one GradBucket per "
    "bucket and uses the future it returns. With torch._dynamo.config.optimize_ddp = "
    '"python_reducer" (the setting compiled autograd needs) DDP calls a comm hook once per '
    "parameter with (grad, param) and ignores what it returns, so no hook that compresses "
    "the whole gradient can run there: keep the default optimize_ddp (torch.compile of the "
    "model or of the DDP model works with these hooks) and no compiled autograd, or use no "
    "hook (docs/ddp.md, 'torch.compile')"
)


def _divide_before_sum(buffer: torch.Tensor, world: int) -> bool:
    """Prepare ``buffer`` for the hooks' all-reduces (warm-up, ``fallback``): divide it by the
    world size before summing where DDP does, for float16, whose sum of the ranks' gradients
    overflows at 65504 where their average does not (2 gloo ranks, entries of 4e4: DDP
    returned them, the warm-up returned inf, a dropped step). Other dtypes keep the sum
    first, the hooks' numerics since the warm-up existed (the same values at 2 and 4 ranks,
    where dividing by the world size is exact). Returns whether the sum must still be
    divided."""
    if buffer.dtype == torch.float16:
        buffer.div_(world)
        return False
    return True


#: Why the hooks cannot run under FSDP (one text for :func:`run_hook` and ``register_hook``).
FSDP_ERROR = (
    "laqcore's hooks are DistributedDataParallel communication hooks: DDP hands a hook one "
    "GradBucket per bucket and uses the future it returns. FullyShardedDataParallel's "
    "register_comm_hook takes hooks of another kind, called with the flat gradient tensor "
    "(and, when sharded, the tensor the reduced shard goes to) and expected to write the "
    "result in place, so none of laqcore's hooks can run under FSDP: wrap the model in "
    "DistributedDataParallel, or train FSDP without a laqcore hook (docs/ddp.md, 'FSDP')"
)


def run_hook(
    state: Any,
    bucket: object,  # a GradBucket from DDP's reducer; anything else is refused
    kind: type[HookState],
    hook: str,
    extra: tuple[Any, ...] = (),
) -> Future[torch.Tensor]:
    """One step of hook ``hook``, whose state must be a ``kind``: another hook's state would
    run that hook's method under this hook's name (a QSGDState under laq_hook is QSGD), and
    anything else fails deep inside DDP; both are a TypeError naming the pairing instead.
    So is a ``bucket`` that is not DDP's ``GradBucket``: DDP's Python reducer (compiled
    autograd) passes ``(grad, param)`` per parameter, which failed with an AttributeError
    deep inside the layout (:data:`PYTHON_REDUCER_ERROR`), and FSDP passes the flat gradient
    tensor, with the output shard as a third argument (``extra``) when it shards
    (:data:`FSDP_ERROR`); every rank raises alike, none is left waiting."""
    if not isinstance(state, kind):
        raise TypeError(
            f"{hook} needs a {kind.__name__} as its state: "
            f"ddp_model.register_comm_hook({kind.__name__}(...), {hook}) (or "
            f"laqcore.torch.register_hook(ddp_model, name)), got {type(state).__name__}"
        )
    if extra or isinstance(bucket, torch.Tensor):
        got = ", ".join(type(a).__name__ for a in (bucket, *extra))
        raise TypeError(f"{hook} was called with ({got}), not a GradBucket: {FSDP_ERROR}")
    if not isinstance(bucket, GradBucket):
        raise TypeError(
            f"{hook} got a {type(bucket).__name__}, not a GradBucket: {PYTHON_REDUCER_ERROR}"
        )
    return state._run(bucket)
