"""DDP communication hooks: LAQ (lazy + quantized innovations), QSGD and TernGrad.

Usage (three lines in an existing DDP trainer)::

    from laqcore.torch import LAQState, laq_hook
    state = LAQState(lr=0.1)                    # every argument has a default
    ddp_model.register_comm_hook(state, laq_hook)

How the hooks work
------------------
DDP calls a hook once per gradient bucket and expects a future holding the *averaged* bucket,
identical on every rank. laqcore's hooks treat one iteration as one message, like the LAQ
paper does (one upload decision per worker over the whole gradient):

1. Buckets before the last one are parked: the hook returns a future that is completed later.
2. At the last bucket (``bucket.is_last()``; DDP launches buckets in index order), all parked
   buckets are gathered into one flat gradient in a **stable parameter order** (the order the
   parameters had in the buckets of the first iteration, which is DDP's constructor layout in
   every process). DDP rebuilds its buckets after the first iteration; the stable order makes
   the state independent of that rebuild and lets a checkpoint taken after it resume in a new
   process, whose first iteration again uses the constructor layout.
3. For the first ``warmup_steps`` iterations the buckets are plain all-reduced (averaged).
4. Afterwards the flat gradient is compressed on the CPU into one laqcore wire frame (LAQ may
   decide to skip), exchanged with :class:`laqcore.distributed.Transport` (all-gather of one
   int64 per rank, then only the uploaders' bytes), decoded in rank order so every rank gets
   the bit-identical average, scattered back into the buckets, and all futures complete.

The collectives run synchronously at the last bucket: compression does not overlap with the
backward pass, in exchange for one exchange (latency) per iteration and exact determinism.
"""

from __future__ import annotations

import math
import numbers
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch._C._distributed_c10d import GradBucket

from ..distributed.errors import NonFiniteGradientError
from ..distributed.transport import ExchangeResult, Transport
from ..laq import LAQPayload, laq_accumulate, laq_apply, laq_quantize
from ..lazy import IterateHistory, UploadRule

__all__ = [
    "LAQState",
    "QSGDState",
    "TernGradState",
    "laq_hook",
    "qsgd_hook",
    "terngrad_hook",
]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
Future = torch.futures.Future
_NONFINITE = ("raise", "skip")


def _check_int(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def _check_float(value: Any, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {v}")
    return v


@dataclass
class _Parked:
    """One bucket waiting for the last bucket of its iteration."""

    buffer: torch.Tensor
    params: list[torch.Tensor]
    future: Future[torch.Tensor]


class _HookState:
    """What every laqcore hook state shares: group, warm-up, fault policy, layout, counters.

    Parameters
    ----------
    process_group:
        The group to communicate in (``None``: the default group).
    warmup_steps:
        Iterations of plain all-reduce before compression starts (>= 0).
    nonfinite:
        ``"raise"`` (default): a NaN/Inf gradient on any rank raises
        :class:`~laqcore.distributed.NonFiniteGradientError` on *every* rank, naming the rank
        and the step (the flag travels in the lockstep control exchange, so nobody hangs).
        ``"skip"``: that rank does not upload this iteration; it is counted in
        ``stats()["nonfinite_skipped"]``. During warm-up the hook is a plain all-reduce and
        does not inspect values.
    """

    def __init__(self, process_group: Any, warmup_steps: int, nonfinite: str) -> None:
        # --- switches ---
        self.process_group = process_group
        self.warmup_steps = _check_int(warmup_steps, "warmup_steps", 0)
        if nonfinite not in _NONFINITE:
            raise ValueError(f"nonfinite must be one of {_NONFINITE}, got {nonfinite!r}")
        self.nonfinite = nonfinite
        # --- internal state ---
        self.iteration = 0
        self._transport: Transport | None = None
        self._parked: list[_Parked] = []
        # Stable parameter order: id(param) -> ordinal, fixed in the first iteration seen.
        self._ordinal: dict[int, int] = {}
        self._numels: list[int] = []  # numel of each ordinal (checked against checkpoints)
        self._offsets: list[int] = []
        self._gather_cache: dict[tuple[int, ...], npt.NDArray[np.int64]] = {}
        # Parameter sizes a loaded checkpoint expects (checked at the first compressed step).
        self._expected_numels: list[int] | None = None
        # --- statistics of this rank ---
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "warmup_steps_done",
                "warmup_bytes",
                "steps",
                "uploads",
                "uploads_skipped",
                "nonfinite_skipped",
                "bytes_sent",
                "bytes_dense",
            ),
            0,
        )

    # -- plumbing -----------------------------------------------------------------------
    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = Transport(self.process_group)
        return self._transport

    @property
    def world_size(self) -> int:
        return int(dist.get_world_size(self.process_group))

    @property
    def rank(self) -> int:
        return int(dist.get_rank(self.process_group))

    @property
    def numel(self) -> int:
        """Number of gradient elements in one iteration's message (0 before the first)."""
        return sum(self._numels)

    def _learn_layout(self, parked: list[_Parked]) -> None:
        """Give every parameter seen for the first time the next ordinal."""
        changed = False
        for b in parked:
            for p in b.params:
                if id(p) not in self._ordinal:
                    self._ordinal[id(p)] = len(self._numels)
                    self._numels.append(int(p.numel()))
                    changed = True
        if changed:
            self._offsets = np.concatenate([[0], np.cumsum(self._numels)]).tolist()
            self._gather_cache.clear()

    def _gather_index(self, parked: list[_Parked]) -> npt.NDArray[np.int64]:
        """``flat = concat(buffers)[index]`` puts the gradient into the stable order."""
        key = tuple(id(p) for b in parked for p in b.params)
        idx = self._gather_cache.get(key)
        if idx is None:
            idx = np.empty(self.numel, np.int64)
            pos = 0
            for b in parked:
                for p in b.params:
                    k = int(p.numel())
                    start = self._offsets[self._ordinal[id(p)]]
                    idx[start : start + k] = np.arange(pos, pos + k)
                    pos += k
            if pos != self.numel:
                raise RuntimeError(
                    f"DDP buckets hold {pos} gradient elements in this iteration but "
                    f"{self.numel} were seen before; the hook needs every parameter every step"
                )
            self._gather_cache[key] = idx
        return idx

    def _flat_params(self, parked: list[_Parked]) -> FloatVector:
        cat = torch.cat(
            [p.detach().reshape(-1).to("cpu", torch.float32) for b in parked for p in b.params]
        )
        return cat.numpy()[self._gather_index(parked)]

    # -- the per-iteration driver ---------------------------------------------------------
    def _run(self, bucket: GradBucket) -> Future[torch.Tensor]:
        fut: Future[torch.Tensor] = Future()
        self._parked.append(_Parked(bucket.buffer(), list(bucket.parameters()), fut))
        if not bucket.is_last():
            return fut
        parked, self._parked = self._parked, []
        try:
            self._learn_layout(parked)
            if self.iteration < self.warmup_steps:
                self._warmup(parked)
            else:
                self._compressed(parked)
        except BaseException as err:
            for b in parked[:-1]:
                b.future.set_exception(err)  # type: ignore[arg-type]  # torch stub says Tensor
            raise
        self.iteration += 1
        for b in parked:
            b.future.set_result(b.buffer)
        return fut

    def _warmup(self, parked: list[_Parked]) -> None:
        w = self.world_size
        for b in parked:
            self._counters["warmup_bytes"] += int(b.buffer.numel()) * b.buffer.element_size()
            dist.all_reduce(b.buffer, group=self.process_group)
            b.buffer.div_(w)
        self._counters["warmup_steps_done"] += 1
        self._after_warmup_step(parked)

    def _compressed(self, parked: list[_Parked]) -> None:
        idx = self._gather_index(parked)
        cat = torch.cat([b.buffer.detach().reshape(-1) for b in parked]).to("cpu", torch.float32)
        grad = np.ascontiguousarray(cat.numpy()[idx])
        bad = not bool(np.isfinite(grad).all())
        out = self._step(grad, bad, parked)
        merged = np.empty_like(out)
        merged[idx] = out
        pos = 0
        for b in parked:
            k = int(b.buffer.numel())
            b.buffer.copy_(torch.from_numpy(merged[pos : pos + k]).reshape(b.buffer.shape))
            pos += k

    def _after_warmup_step(self, parked: list[_Parked]) -> None:
        """Hook for subclasses that track state during warm-up."""

    def _step(self, grad: FloatVector, bad: bool, parked: list[_Parked]) -> FloatVector:
        raise NotImplementedError  # abstract: each hook state defines its compressed step

    def _exchange(self, frame: bytes | None, bad: bool) -> ExchangeResult:
        """Lockstep exchange of this iteration's frame, with the fault policy applied."""
        res = self.transport.exchange(
            None if bad else frame,
            nonfinite=bad,
            abort_on_nonfinite=self.nonfinite == "raise",
            tag=f"step {self.iteration}",
        )
        if res.nonfinite_ranks and self.nonfinite == "raise":
            raise NonFiniteGradientError(res.nonfinite_ranks, self.iteration)
        c = self._counters
        c["steps"] += 1
        c["bytes_dense"] += 4 * self.numel
        if bad:
            c["nonfinite_skipped"] += 1
        elif frame is None:
            c["uploads_skipped"] += 1
        else:
            c["uploads"] += 1
            c["bytes_sent"] += len(frame)
        return res

    # -- public -------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Communication statistics of this rank so far.

        ``bytes_sent``: the frames this rank uploaded after warm-up. ``bytes_dense``: what the
        same iterations would have cost as float32 (a plain all-reduce's payload).
        ``compression_ratio = bytes_dense / bytes_sent`` (``inf`` if nothing was sent).
        ``uploads_skipped``: iterations this rank skipped. ``wire_bytes``: the transport's
        count over all ranks, control and padding included
        (see :class:`~laqcore.distributed.TrafficStats`).
        """
        c = self._counters
        out: dict[str, float] = {"iteration": self.iteration, **c}
        out["compression_ratio"] = (
            c["bytes_dense"] / c["bytes_sent"] if c["bytes_sent"] else math.inf
        )
        if self._transport is not None:
            out["wire_bytes"] = self._transport.stats.wire_bytes
            out["control_bytes"] = self._transport.stats.control_bytes
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (numpy arrays and plain Python values)."""
        return {
            "iteration": self.iteration,
            "counters": dict(self._counters),
            "numels": list(self._numels),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; call before the first backward pass with this state.

        The stable parameter order is re-learnt from the first iteration (DDP's constructor
        layout, the same in every process) and must match the checkpoint's.
        """
        self.iteration = _check_int(sd["iteration"], "state_dict['iteration']", 0)
        self._counters.update({k: int(v) for k, v in sd["counters"].items()})
        self._expected_numels = [int(v) for v in sd["numels"]]

    def _check_checkpoint_layout(self) -> None:
        expected = self._expected_numels
        if expected is not None and expected != self._numels:
            raise ValueError(
                "the loaded hook state was saved for parameters of sizes "
                f"{expected[:8]}... ({len(expected)} tensors) but this model's buckets hold "
                f"{self._numels[:8]}... ({len(self._numels)} tensors)"
            )
        self._expected_numels = None

    def __getstate__(self) -> dict[str, Any]:
        # A process group cannot be pickled (PowerSGDState drops it too); parameter identities
        # and parked buckets are meaningless in another process.
        d = dict(self.__dict__)
        d.update(process_group=None, _transport=None, _parked=[], _gather_cache={})
        d.update(_ordinal={}, _numels=[], _offsets=[], _expected_numels=list(self._numels))
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__dict__.update(d)


# ---------------------------------------------------------------------------------------
# LAQ
# ---------------------------------------------------------------------------------------
class LAQState(_HookState):
    """State of :func:`laq_hook`: LAQ (Sun et al., NeurIPS 2019) inside DDP.

    Each rank quantizes its gradient *innovation* (gradient minus the last quantized gradient
    it uploaded) to ``bits`` bits and uploads it only if the LAQ test (ALGORITHMS.md 1.2) finds
    it informative::

        ||dQ||^2 >= (1/lr^2) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2
                    + error_weight (||eps||^2 + ||eps_hat||^2)       or   clock >= max_stale

    over the whole model. (DDP averages gradients, so the paper's ``alpha * M`` is the
    optimizer's learning rate.) Every rank keeps the same running sum of the ranks' last
    uploads and returns it divided by the world size.

    Parameters
    ----------
    process_group : ProcessGroup, optional
        Group to communicate in (the default group if ``None``).
    bits : int, default 8
        Bits per coordinate of the innovation, 1..8. The paper uses 4 for logistic
        regression; on deep-network gradients (heavy-tailed, so a max-norm grid is coarse for
        most coordinates) the error term ``error_weight * (||eps||^2 + ||eps_hat||^2)`` of the
        test then exceeds almost every innovation, uploads stop and training drifts on a
        stale aggregate (measured: a 64-256-10 MLP at lr 0.5 diverged with 4 bits, trained
        normally with 8; bench/bench_distributed.py). Hence 8 here.
    lr : float, optional
        The optimizer's learning rate; with plain SGD the right-hand side is then exactly the
        paper's. ``None`` estimates the effective step every iteration from how far the
        parameters moved for the gradient returned at the previous step (exact for SGD
        without weight decay, an approximation with momentum or adaptive optimizers).
    D : int, default 10
        Number of recent iterate differences on the right-hand side.
    ck : float, default 0.8
        Weights ``xi_d = ck / D`` (the official code; ``ck / k`` while ``k <= D``).
    error_weight : float, default 3.0
        Weight of the quantization-error term (the paper's 3).
    max_stale : int, default 100
        Force an upload after this many consecutive skips (the paper's t_bar).
    warmup_steps : int, default 10
        Iterations of plain all-reduce first; they also fill the iterate history.
    nonfinite : {"raise", "skip"}, default "raise"
        What a NaN/Inf gradient does (see :class:`_HookState`).

    Examples
    --------
    >>> state = LAQState(bits=4, lr=0.05)                      # doctest: +SKIP
    >>> ddp_model.register_comm_hook(state, laq_hook)          # doctest: +SKIP
    >>> state.stats()["compression_ratio"]                     # doctest: +SKIP
    """

    def __init__(
        self,
        process_group: Any = None,
        *,
        bits: int = 8,
        lr: float | None = None,
        D: int = 10,
        ck: float = 0.8,
        error_weight: float = 3.0,
        max_stale: int = 100,
        warmup_steps: int = 10,
        nonfinite: str = "raise",
    ) -> None:
        super().__init__(process_group, warmup_steps, nonfinite)
        # --- hyperparameters that are commonly tuned ---
        self.bits = _check_int(bits, "bits", 1, 8)
        self.lr = None if lr is None else _check_float(lr, "lr", positive=True)
        # The rule's constants; laqcore.lazy.UploadRule owns the test itself.
        self.rule = UploadRule(
            D=_check_int(D, "D", 1),
            ck=_check_float(ck, "ck"),
            t_bar=_check_int(max_stale, "max_stale", 1),
            err_coef=_check_float(error_weight, "error_weight"),
        )
        # --- internal state (all vectors in the stable parameter order) ---
        # q_prev of this rank: the last quantized gradient it uploaded (the paper's Q_m).
        self.q_prev: FloatVector | None = None
        # Sum over ranks of their q_prev, maintained identically on every rank from the frames.
        self.aggregate: FloatVector | None = None
        self.err_hat_sq = 0.0
        self.clock = 0
        # theta^{k-1}, and sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2 via IterateHistory.
        self.prev_params: FloatVector | None = None
        self.history: IterateHistory = self.rule.make_history()
        # ||gradient returned at the previous step||^2 and the step-size estimate from it.
        self.last_out_sq = 0.0
        self.lr_sq_estimate = 0.0

    # -- the rule's right-hand side --------------------------------------------------------
    def _track_iterates(self, parked: list[_Parked]) -> None:
        theta = self._flat_params(parked)
        if self.prev_params is not None:
            d2 = float(self.history.push_iterates(theta, self.prev_params))
            if self.last_out_sq > 0.0 and d2 > 0.0:
                self.lr_sq_estimate = d2 / self.last_out_sq
        self.prev_params = theta

    def _after_warmup_step(self, parked: list[_Parked]) -> None:
        self._track_iterates(parked)
        sq = 0.0
        for b in parked:
            flat = b.buffer.detach().reshape(-1).double()
            sq += float(torch.dot(flat, flat))
        self.last_out_sq = sq

    def _rhs(self) -> float | None:
        """First term of the test, or ``None`` while the step size is unknown."""
        lr_sq = self.lr * self.lr if self.lr is not None else self.lr_sq_estimate
        if lr_sq <= 0.0:
            return None
        return self.history.weighted_sum() / lr_sq

    # -- the compressed step --------------------------------------------------------------
    def _step(self, grad: FloatVector, bad: bool, parked: list[_Parked]) -> FloatVector:
        """Steps: (a) track iterates; (b) quantize and test; (c) exchange; (d) aggregate."""
        self._check_checkpoint_layout()
        # (a)
        self._track_iterates(parked)
        n = grad.shape[0]
        if self.q_prev is None or self.aggregate is None:
            self.q_prev = np.zeros(n, np.float32)
            self.aggregate = np.zeros(n, np.float32)
            self.clock = self.rule.t_bar or 0  # first compressed step: everyone uploads
        # (b) A rank with no step-size estimate yet uploads (a too-eager upload is safe).
        frame: bytes | None = None
        payload: LAQPayload | None = None
        if not bad:
            payload = laq_quantize(grad, self.q_prev, self.bits)
            rhs = self._rhs()
            err = float(payload.err_sq or 0.0)
            if rhs is None or self.rule.should_upload(
                payload.innov_sq, rhs, err, self.err_hat_sq, self.clock
            ):
                frame = payload.to_bytes()
        # (c)
        res = self._exchange(frame, bad)
        # (d) Same payloads, same order on every rank: bit-identical aggregates.
        for r in res.uploaders:
            if r == self.rank and payload is not None:
                got = payload
                laq_apply(self.q_prev, got)
                self.err_hat_sq = float(got.err_sq or 0.0)
            else:
                got = LAQPayload.from_bytes(res.frames[r], expected_n=n)
            laq_accumulate(self.aggregate, got)
        self.clock = 0 if frame is not None else self.clock + 1
        out = self.aggregate / np.float32(self.world_size)
        self.last_out_sq = float(np.dot(out.astype(np.float64), out.astype(np.float64)))
        return out

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd.update(
            q_prev=_vector_or_none(self.q_prev),
            aggregate=_vector_or_none(self.aggregate),
            err_hat_sq=self.err_hat_sq,
            clock=self.clock,
            prev_params=_vector_or_none(self.prev_params),
            history=_history_to_plain(self.history),
            last_out_sq=self.last_out_sq,
            lr_sq_estimate=self.lr_sq_estimate,
        )
        return sd

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        super().load_state_dict(sd)
        self.q_prev = _vector_or_none(sd["q_prev"])
        self.aggregate = _vector_or_none(sd["aggregate"])
        self.prev_params = _vector_or_none(sd["prev_params"])
        self.err_hat_sq = float(sd["err_hat_sq"])
        self.clock = int(sd["clock"])
        self.last_out_sq = float(sd["last_out_sq"])
        self.lr_sq_estimate = float(sd["lr_sq_estimate"])
        self.history = _history_from_plain(self.rule, sd["history"])

    def __getstate__(self) -> dict[str, Any]:
        d = super().__getstate__()
        d["history"] = _history_to_plain(self.history)  # the native object does not pickle
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        super().__setstate__(d)
        self.history = _history_from_plain(self.rule, d["history"])


def _vector_or_none(a: Any) -> FloatVector | None:
    """A float32 copy (checkpoints must not alias live state), or None."""
    return None if a is None else np.array(a, dtype=np.float32)


def _history_to_plain(h: IterateHistory) -> dict[str, Any]:
    return {"recent": [float(v) for v in h.recent()], "count": h.count}


def _history_from_plain(rule: UploadRule, plain: dict[str, Any]) -> IterateHistory:
    # Replaying the stored differences (oldest first) rebuilds the history exactly: its
    # weights depend on the number of pushes only up to D, and the last D are stored.
    h = rule.make_history()
    recent = [float(v) for v in plain["recent"]]
    for v in reversed(recent[: min(int(plain["count"]), rule.D)]):
        h.push(v)
    return h


def laq_hook(state: LAQState, bucket: GradBucket) -> Future[torch.Tensor]:
    """DDP communication hook running LAQ: ``ddp_model.register_comm_hook(state, laq_hook)``.

    See the module docstring for the per-iteration flow and :class:`LAQState` for the rule.
    """
    return state._run(bucket)


# ---------------------------------------------------------------------------------------
# QSGD and TernGrad: stochastic, unbiased, every rank uploads every step
# ---------------------------------------------------------------------------------------
class _CompressorState(_HookState):
    """Shared state of the stateless-compressor hooks (QSGD, TernGrad).

    Every rank uploads every iteration; the hook returns the mean of the decompressed
    gradients of the ranks that uploaded. The compressor's randomness is keyed on
    ``(seed, rank)`` and the iteration (its ``step``), so ranks draw independent rounding
    noise and a resumed run draws exactly the noise of the uninterrupted one.
    """

    _NAME = ""

    # The public constructor of QSGDState and TernGradState (documented on QSGDState):
    # they differ only in _NAME, i.e. in which compressor ``**kwargs`` configure.
    def __init__(
        self,
        process_group: Any = None,
        *,
        seed: int = 0,
        warmup_steps: int = 1,
        nonfinite: str = "raise",
        **kwargs: Any,
    ) -> None:
        super().__init__(process_group, warmup_steps, nonfinite)
        self.seed = _check_int(seed, "seed", 0)
        self.compressor_kwargs = dict(kwargs)
        self._compressor: Any = None
        self._make(0)  # validate the hyperparameters now, not at the first step

    def _make(self, rank: int) -> Any:
        from ..compressors import get_compressor

        # One reproducible random stream per rank; the iteration is the compressor's step.
        return get_compressor(self._NAME, seed=self.seed, stream=rank, **self.compressor_kwargs)

    def _step(self, grad: FloatVector, bad: bool, parked: list[_Parked]) -> FloatVector:
        self._check_checkpoint_layout()
        if self._compressor is None:
            self._compressor = self._make(self.rank)
        comp = self._compressor
        frame = None if bad else comp.compress(grad, step=self.iteration).to_bytes()
        res = self._exchange(frame, bad)
        total = np.zeros(grad.shape[0], np.float32)
        for r in res.uploaders:
            total += comp.decompress(comp.from_bytes(res.frames[r], expected_n=grad.shape[0]))
        # Mean over the ranks that contributed (all of them unless a non-finite one skipped).
        total /= np.float32(max(len(res.uploaders), 1))
        return total

    def __getstate__(self) -> dict[str, Any]:
        d = super().__getstate__()
        d["_compressor"] = None
        return d


class QSGDState(_CompressorState):
    """State of :func:`qsgd_hook`: QSGD (Alistarh et al., NeurIPS 2017).

    Parameters
    ----------
    process_group : ProcessGroup, optional
        Group to communicate in (the default group if ``None``).
    seed : int, default 0
        Base seed of the stochastic rounding (combined with the rank and the iteration).
    warmup_steps : int, default 1
        Iterations of plain all-reduce first.
    nonfinite : {"raise", "skip"}, default "raise"
        What a NaN/Inf gradient does.
    **kwargs
        QSGD hyperparameters, passed to ``laqcore.get_compressor("qsgd", ...)`` (e.g.
        ``levels``, ``bucket_size``); the compressor's defaults otherwise.
    """

    _NAME = "qsgd"


class TernGradState(_CompressorState):
    """State of :func:`terngrad_hook`: TernGrad (Wen et al., NeurIPS 2017), values {-s, 0, s}.

    Parameters are those of :class:`QSGDState`; ``**kwargs`` go to
    ``laqcore.get_compressor("terngrad", ...)``.
    """

    _NAME = "terngrad"


def qsgd_hook(state: QSGDState, bucket: GradBucket) -> Future[torch.Tensor]:
    """DDP communication hook running QSGD (see the module docstring for the flow)."""
    return state._run(bucket)


def terngrad_hook(state: TernGradState, bucket: GradBucket) -> Future[torch.Tensor]:
    """DDP communication hook running TernGrad (see the module docstring for the flow)."""
    return state._run(bucket)


# DDP's register_comm_hook compares the hook's annotations with the real classes; with
# postponed evaluation (``from __future__ import annotations``) they are strings, so they are
# resolved here once.
for _hook in (laq_hook, qsgd_hook, terngrad_hook):
    _hook.__annotations__ = typing.get_type_hints(_hook)
del _hook
