"""LAQ inside DDP: :class:`LAQState` and :func:`laq_hook`.

Each rank quantizes its gradient *innovation* (gradient minus the last quantized gradient
it uploaded) to ``bits`` bits with one radius per block of ``block_size`` coordinates and
uploads it only if the lazy test (:mod:`laqcore.torch._rule`, docs/ddp.md) finds it
informative. Every rank keeps the same running sum of the ranks' last uploads and returns it
divided by the world size.

The state is laqcore's one LAQ state (:mod:`laqcore.lazy_state`): this rank's worker side is
a :class:`~laqcore.lazy_state.LazyUploader` (quantizer memory, rule, clock) and the shared
server side a :class:`~laqcore.lazy_state.LazyAggregate` (aggregate and the rule's history),
exactly the objects the simulator's LAQ uses.
"""

from __future__ import annotations

import math
import typing
import warnings
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch
from torch._C._distributed_c10d import GradBucket

from .. import _core
from .._validate import (
    as_state_vector,
    check_bits,
    check_block_size,
    check_bool,
    check_choice,
    check_real,
    renamed_keywords,
)
from ..laq import LAQPayload
from ..lazy import UploadRule
from ..lazy_state import LazyAggregate, LazyUploader
from ._defaults import (
    auto_block_size,
    auto_ck,
    auto_error_feedback,
    auto_lazy_downlink,
    auto_warmup_steps,
)
from ._exchange import GradientExchange, LAQAllGather
from ._layout import Parked
from ._rule import CONSTANTS as RULE_CONSTANTS
from ._rule import FIXED as RULE_FIXED
from ._rule import RENAMED as RULE_RENAMED
from ._rule import SCALES, LazyRule
from ._state import HookState, run_hook
from ._two_phase import TwoPhaseAverage, check_exchange, laq_two_phase, resolve_exchange

__all__ = [
    "LAQState",
    "auto_block_size",
    "auto_ck",
    "auto_error_feedback",
    "auto_lazy_downlink",
    "auto_warmup_steps",
    "laq_hook",
]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
Future = torch.futures.Future


#: The LAQState keyword of each of the rule's constants (the rule's ``scale`` is
#: ``rule_scale`` on the state).
_KEYWORD_OF_RULE = {c: "rule_scale" if c == "scale" else c for c in RULE_CONSTANTS}
#: Below this norm its square is below float32's smallest normal number (2^-126).
_TINY_NORM = 2.0**-63


def _norm_sq(x: torch.Tensor) -> float:
    """``||x||^2`` by torch's vectorised reduction (no BLAS thread pool, no temporary).

    torch sums the squares in ``x``'s dtype, so a finite float32 gradient with entries above
    ~1.8e19 (float16: a norm above 65504) gives ``inf``, which the rule's history refuses
    (``ValueError: diff_sq must be finite``) although all-reduce would have trained on; and
    one with entries below ~1e-20 loses its squares below float32's normal range (entries of
    1e-25 gave 0), which changed the rule's decisions. In both cases the norm is taken again
    in float64, where no finite float32 or float16 vector overflows or underflows.
    """
    norm = float(torch.linalg.vector_norm(x))
    if math.isinf(norm) or norm < _TINY_NORM:
        norm = float(torch.linalg.vector_norm(x, dtype=torch.float64))
    return norm * norm


class LAQState(HookState):
    """State of :func:`laq_hook`: LAQ (Sun et al., NeurIPS 2019) inside DDP.

    Rank ``m`` uploads its quantized innovation ``dQ`` iff::

        ||dQ||^2 >= sum_d xi_d ||g^{k-d}||^2 + err_coef (||eps||^2 + ||eps_hat||^2)
                    + noise_weight * nu                     or clock >= t_bar

    where ``g^{k-d}`` are this rank's recent gradients (``rule_scale="worker"``, the default)
    or the averaged gradients the hook returned (``"average"``: for plain SGD this is the
    paper's ``(1/(alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2`` exactly, and it
    stays right for any optimizer), ``nu`` estimates the minibatch noise floor of the
    innovation and ``g_m`` is this rank's current gradient (docs/ddp.md, "The lazy rule").
    ``rule_scale="average"``, ``stale_cap=None``, ``noise_weight=0``, ``err_coef=3`` and
    ``error_feedback=0`` give the paper's deterministic rule; by default from 3 bits on the
    rank quantizes ``g + r / 2`` instead of ``g``, with ``r`` what the aggregate still lacks
    of its gradients (``error_feedback``: what a skip withheld is paid back).

    Parameters
    ----------
    process_group : ProcessGroup, optional
        Group to communicate in (the default group if ``None``).
    bits : int, default 4
        Bits per coordinate of the innovation, 1..8. ``bits=1`` warns: its grid ``{-R, +R}``
        makes the error larger than the innovation, so it trains well behind 2 bits, and with
        error feedback (off by default at 1 bit) it diverges (docs/ddp.md, "Low bits").
    block_size : int, None or "auto", default "auto"
        Coordinates per quantization radius, a multiple of 8 (``None``: one radius for the
        whole gradient, the paper's quantizer). ``"auto"``: :func:`auto_block_size` of
        ``bits`` (32 at 1-2 bits, 64 at 3, 256 from 4 on): a coordinate's error is up to
        ``R / (2^b - 1)`` with ``R`` its block's largest innovation, so low widths need
        smaller blocks (docs/ddp.md, "Low bits").
    D : int, default 10
        Number of recent averaged gradients on the right-hand side.
    ck : float or "auto", default "auto"
        Weights ``xi_d = ck / D`` (``ck / k`` while ``k <= D``); ``"auto"``:
        :func:`auto_ck` of ``bits`` (1.2 from 4 bits on, 0.8 below).
    err_coef : float, default 1.0
        Weight of the quantization-error term (the paper: 3, which at 2-4 bits makes the
        threshold exceed most innovations on deep nets). Deprecated alias: ``error_weight``.
    noise_weight : float, default 0.0
        Weight of the minibatch-noise estimate (0: the paper's deterministic rule).
    noise_decay : float, default 0.9
        Decay of the noise estimate's moving average.
    t_bar : int, default 10
        Force an upload after this many consecutive skips (the paper: 100; 1 and 2 skip
        less without making a transformer safe: docs/ddp.md, "A shorter clock instead").
        Deprecated alias: ``max_stale``.
    safeguard_patience : int, default 5
        Skips after which this rank watches its gradient norm.
    safeguard_growth : float, default 4.0
        Growth of ``||g||^2`` during such a streak that forces an upload
        (``stats()["safeguard_uploads"]``).
    warmup_steps : int or "auto", default "auto"
        Iterations of plain all-reduce first; they also fill the rule's history.
        ``"auto"``: :func:`auto_warmup_steps` of ``bits`` (none from 3 bits on, as in the
        paper's LAQ and the simulator: a rank's first upload is forced, its quantized
        gradient against ``q_prev = 0``, and the weights ``xi_d = ck / k`` already cover a
        history shorter than ``D``; 10 at 1-2 bits, whose first steps are fragile). On a
        link-bound model the warm-up cost most of the time to a target: 10 all-reduce steps
        were 62-65% of LAQ's time on a 30-step 100 Mbit/s run of the 5.3M bench model
        (docs/ddp.md, "Warm-up").
    nonfinite : {"propagate", "raise", "skip"}, default "propagate"
        What a NaN/Inf gradient does (:mod:`laqcore.torch._nonfinite`).
    lr : float, optional
        Ignored, with a warning (kept so old code runs): the rule no longer needs the
        learning rate.
    exchange : {"auto", "two-phase", "all-gather"}, default "auto"
        How the uploads travel (docs/ddp.md). ``"two-phase"``: chunk j of every upload goes
        to rank j, which publishes its chunk of the aggregate's change to all, so the bytes a
        rank receives per step do not grow with the number of ranks; every rank holds the
        same *replica* of the aggregate, exact up to the downlink quantization.
        ``"all-gather"``: every rank receives every uploader's frame (exact aggregate).
        ``"auto"``: the all-gather on 1-2 ranks for gradients of up to 2^20 coordinates
        (the same bytes as the two-phase exchange there, one collective and the downlink's
        re-quantization fewer) and from 3 ranks on while the coordinates it brings a rank
        beyond the two-phase exchange, ``n (N - 1) (N - 2) / N``, are at most 2^18 (small
        gradients at few ranks, where one round of messages beats two: the bench MLP up to
        5 ranks); the two-phase exchange otherwise and whenever a downlink setting is given
        (docs/ddp.md, "Two ranks", "Three ranks and more"). :attr:`active_exchange` says
        which, and a resumed state keeps its checkpoint's.
    downlink_bits : int or None, default 4
        Two-phase only (a value other than 4 makes ``"auto"`` the two-phase exchange): bits
        of the owners' re-quantized publications (double quantization;
        the error does not accumulate), ``None`` for an exact float32 downlink.
    downlink_block_size : int or None, default None
        Two-phase only: coordinates per radius of the publications (a multiple of 8);
        ``None``: ``block_size`` (256 for a global-radius upload). Either downlink setting
        other than its default with ``exchange="all-gather"`` is a ``ValueError``.
    entropy : bool, default True
        Entropy-code the codes of every frame that crosses the wire, with either exchange
        (the rANS coder of :mod:`laqcore.entropy`; lossless, so decisions and averages do not
        change, only the bytes).
    error_feedback : float or "auto", default "auto"
        Weight ``w`` in ``[0, 1]`` of the residual added to the next gradient
        (``g <- g + w r``, then ``r = g - q_prev`` after the step: what this rank's
        contribution to the aggregate still lacks). 0 is the paper's LAQ. ``"auto"``:
        :func:`auto_error_feedback` of ``bits``: 0.5 from 3 bits on, where the residual is
        mostly what skips withheld and paying half of it back keeps a third of the skips
        while making them much safer (docs/ddp.md, "Compensated skips"; 0 until session
        40), 1 at 2 bits, 0 at 1 bit, where the fed-back error grows without bound
        (docs/ddp.md, "Error feedback at 2 bits", "Low bits").
    rule_scale : {"average", "worker"}, default "worker"
        What the rule's history ``||g^{k-d}||^2`` holds: the squared norms of this rank's
        own gradients (``"worker"``) or of the averaged gradients the hook returned
        (``"average"``, the paper's rule). Averaging over M ranks divides the minibatch noise
        in ``||g||^2`` by M but not the noise in a rank's innovation, so with ``"average"``
        the rule skips fewer uploads the more ranks there are; ``"worker"`` keeps one
        rank's noise on both sides, and a stale aggregate cannot feed its own norm back into
        the threshold (docs/ddp.md, "Per-worker scale"). Warm-up steps record the average
        under either scale.
    lazy_downlink : float or "auto", default "auto"
        Two-phase only: ``0`` publishes the aggregate's change in every step in which some
        rank uploaded; ``c > 0`` lets the owners defer it while a bound on the returned
        average's error, ``||S - S_hat||^2 / N^2``, is at most ``c`` times the rule's
        ``sum_d xi_d ||g^{k-d}||^2`` (decided identically on every rank from the control
        values, no extra collective; nothing is lost, the next publication carries the
        deferred change). Fewer downlinks, a staler average: docs/ddp.md, "Lazy downlink".
        ``"auto"``: :func:`auto_lazy_downlink` of the world size (0 on 2 ranks, 0.25 from 3
        on), which keeps the bytes a rank receives from growing with the ranks; 0 with the
        all-gather exchange.
    stale_cap : float or None, default 4.0
        A rank skips only while its innovation is at most ``stale_cap`` times its current
        gradient's squared norm, ``||dQ||^2 <= stale_cap ||g_m||^2``: the stale
        contribution it leaves in the aggregate stays within ``sqrt(stale_cap) ||g_m||`` of
        what it would send. The paper's threshold looks at past steps only, so after a
        spike of the gradients it lets every rank keep a stale contribution many times its
        current gradient (docs/ddp.md, "Stale cap"); ``None``: the paper's rule. Uploads it
        forces: ``stats()["capped_uploads"]``. The default 4 was measured on the digits MLP
        and CNN trainers. On a new task start from ``bits=2`` instead (error feedback, under
        which the rule skips nothing; docs/results_hooks.md, "Other step sizes, and 2 bits"),
        or 1 for 4-bit innovations with almost no skipping: on the bench's small transformer
        under momentum SGD at lr 0.05, 4 lost 1.5-29 points and 1 at most 4.7 (2 ranks:
        README, "A small transformer"), but at lr 0.01 1 lost 11.0 on one seed where
        ``bits=2`` stayed within 1.1; on a CNN whose minibatch gradients are mostly noise 4
        lost 4.7-9.0 points on average and 1 none (docs/results_hooks.md, "A noisy image
        task").
    stale_cap_scope : {"gradient", "tensor"}, default "gradient"
        ``"tensor"``: a skip must also keep every parameter tensor's innovation within the
        cap, ``||g_l - q_prev_l||^2 <= stale_cap ||g_l||^2``, where ``"gradient"`` tests the
        sum over all tensors only (a tensor with a small share of the gradient's energy can
        then stay stale unseen). Costs one pass over the gradient in steps that would skip.
        Measured against the default (docs/ddp.md, "Stale cap per tensor"): on the digits
        CNN and MLP it still skips 33-43% within 1.3 points of all-reduce; on the noisy image
        task it refuses every skip (mean -0.0 points against -9.0); on the small transformer
        it halves the default's loss but is not safe there (-7.9 on average, -19.2 at worst,
        against -14.0 / -37.2; ``stale_cap=1``: -0.0 / -4.7).
    streak_penalty : float, default 0.0
        A skip after ``c`` consecutive skips needs ``||dQ||^2`` below the first term of the
        test divided by ``(c + 1)^streak_penalty``: under momentum or Adam a stale
        contribution re-enters the optimizer's average in every step of a streak, so its
        error adds up with the streak's length (docs/ddp.md, "Streak penalty"). 0 is the
        paper's rule.
    grad_scaler : torch.amp.GradScaler, optional
        The trainer's loss scaler (or set ``state.grad_scaler = scaler`` later). With it the
        state is kept in unscaled units, so the scaler's back-off after an fp16 overflow does
        not double every stale contribution (docs/ddp.md, "Mixed precision"); exact, and
        bit-identical to a run without it while the scale does not change. Without it, a
        non-finite step warns once.
    fallback : bool, default False
        Time this hook (8 compressed iterations) against DDP's own all-reduce (1 to 8
        iterations) and keep compressing only if it adds less to an iteration; else run
        DDP's all-reduce for the rest of the run (:mod:`laqcore.torch._fallback`;
        ``state.fallback_decision``, ``state.probe_times``, ``stats()["allreduce_steps"]``).
        The decision depends on timing, so the default keeps runs bit-reproducible.

    Examples
    --------
    >>> state = LAQState()                                     # doctest: +SKIP
    >>> ddp_model.register_comm_hook(state, laq_hook)          # doctest: +SKIP
    >>> state.stats()["compression_ratio"]                     # doctest: +SKIP
    """

    _SETTINGS = (
        "bits",
        "block_size",
        "exchange",
        "downlink_bits",
        "downlink_block_size",
        "entropy",
        "lazy_downlink",
    )

    #: Constructor keywords of the rule's constants -> their attributes on ``state.rule``.
    #: (and the deprecated aliases to their new names).
    _RULE_KEYWORDS: ClassVar[dict[str, str]] = {
        **{kw: attr for attr, kw in _KEYWORD_OF_RULE.items()},
        **RULE_RENAMED,
    }

    @renamed_keywords(max_stale="t_bar", error_weight="err_coef")
    def __init__(
        self,
        process_group: Any = None,
        *,
        bits: int = 4,
        block_size: int | str | None = "auto",
        D: int = 10,
        ck: float | str = "auto",
        err_coef: float = 1.0,
        noise_weight: float = 0.0,
        noise_decay: float = 0.9,
        t_bar: int = 10,
        safeguard_patience: int = 5,
        safeguard_growth: float = 4.0,
        warmup_steps: int | str = "auto",
        nonfinite: str = "propagate",
        lr: float | None = None,
        exchange: str = "auto",
        downlink_bits: int | None = 4,
        downlink_block_size: int | None = None,
        entropy: bool = True,
        error_feedback: float | str = "auto",
        rule_scale: str = "worker",
        lazy_downlink: float | str = "auto",
        stale_cap: float | None = 4.0,
        stale_cap_scope: str = "gradient",
        streak_penalty: float = 0.0,
        grad_scaler: Any = None,
        fallback: bool = False,
    ) -> None:
        bits = check_bits(bits)
        if isinstance(warmup_steps, str) and warmup_steps == "auto":
            warmup_steps = auto_warmup_steps(bits)
        super().__init__(process_group, warmup_steps, nonfinite, grad_scaler, fallback)  # type: ignore[arg-type]
        self.bits = bits
        auto = isinstance(block_size, str) and block_size == "auto"
        self.block_size = auto_block_size(self.bits) if auto else check_block_size(block_size)
        self.exchange = check_exchange(exchange)
        self.downlink_bits = (
            None if downlink_bits is None else check_bits(downlink_bits, "downlink_bits")
        )
        self.downlink_block_size = check_block_size(downlink_block_size)
        # The all-gather has no downlink to quantize: these settings would be ignored.
        if self.exchange == "all-gather" and self._downlink_given:
            raise ValueError(
                'downlink_bits and downlink_block_size need exchange="two-phase" or "auto" '
                "(the all-gather exchange sends every upload to every rank, with no downlink)"
            )
        self.entropy = check_bool(entropy, "entropy")
        # "auto" is resolved from the world size when the exchange is made (the process
        # group need not exist yet); with the all-gather exchange it means none.
        self.lazy_downlink: float | str = "auto"
        if not (isinstance(lazy_downlink, str) and lazy_downlink == "auto"):
            c = check_real(lazy_downlink, "lazy_downlink", minimum=0.0)
            if c > 0.0 and self.exchange == "all-gather":
                raise ValueError(
                    'lazy_downlink needs exchange="two-phase" or "auto" (it defers '
                    "publications, which the all-gather exchange does not have)"
                )
            self.lazy_downlink = c
        auto_ef = isinstance(error_feedback, str) and error_feedback == "auto"
        self.error_feedback = (
            auto_error_feedback(self.bits)
            if auto_ef
            else check_real(error_feedback, "error_feedback", minimum=0.0, maximum=1.0)
        )
        # Error feedback only (created when first used). The residual r = g' - q_prev is kept
        # implicit: ``_fed`` is the last step's g' (one of the two ``_flats``, the other is
        # where the next gather goes) and q_prev the uploader's, so the next gather reads the
        # buckets, g' and q_prev and writes g + w r in one pass (``_gather``) instead of a
        # gather, a pass that adds w r and one that writes r (3.9 against 9.2 ms at 5.3M
        # coordinates, bench/measured/hook_kernels_big_s41.json). ``_residual``: r itself, as a
        # checkpoint or a pickle brings it, until the next step. ``_ef_scratch``: where the
        # average goes, so g' stays for the next step.
        self._residual: FloatVector | None = None
        self._fed: FloatVector | None = None
        self._flats: list[torch.Tensor] = []
        self._ef_scratch: FloatVector | None = None
        if self.bits == 1:
            # Not an error (without error feedback it trains, if behind 2 bits), but no
            # surprise either: an outside trainer lagged 2 bits (loss 1.64 against 1.15), and
            # went to NaN with the error feedback that was then the 1-bit default.
            warnings.warn(
                "LAQState(bits=1): the 1-bit grid {-R, +R} sends every coordinate of a block "
                "at the block's largest innovation R, a quantization error larger than the "
                "innovation itself: it trains well behind bits=2 (an MLP with plain SGD: "
                "loss 1.64 against 1.15), and with error feedback (error_feedback > 0, off "
                "by default at 1 bit) it diverges; use bits=2 unless 1 bit was measured for "
                'this run (docs/ddp.md, "Low bits")',
                UserWarning,
                stacklevel=2,
            )
        if lr is not None:
            check_real(lr, "lr", positive=True)
            warnings.warn(
                "LAQState(lr=...) is ignored: the lazy rule's right-hand side is computed from "
                "the averaged gradients the hook returns, which equals the paper's "
                "||theta^{k+1} - theta^k||^2 / lr^2 for plain SGD and stays right for any "
                "optimizer",
                FutureWarning,
                stacklevel=2,
            )
        auto_rule = isinstance(ck, str) and ck == "auto"
        self.rule = LazyRule(
            D=D,
            ck=auto_ck(self.bits) if auto_rule else typing.cast(float, ck),  # checked there
            err_coef=err_coef,
            noise_weight=noise_weight,
            noise_decay=noise_decay,
            t_bar=t_bar,
            safeguard_patience=safeguard_patience,
            safeguard_growth=safeguard_growth,
            scale=check_choice(rule_scale, "rule_scale", SCALES),
            stale_cap=stale_cap,
            stale_cap_scope=stale_cap_scope,
            streak_penalty=streak_penalty,
        )
        if self.rule.stale_cap is None and self.rule.stale_cap_scope == "tensor":
            raise ValueError(
                'stale_cap_scope="tensor" needs a stale_cap (it applies the cap to each '
                "parameter tensor); stale_cap=None is the paper's rule, without a cap"
            )
        # The uploader's test without a clock: the hook forces the upload after rule.t_bar
        # skips itself (_decide), so a t_bar assigned between steps is the one in force.
        self._upload_rule = UploadRule(
            D=self.rule.D, ck=self.rule.ck, t_bar=None, err_coef=self.rule.err_coef
        )
        # Created at the first compressed step (or from a checkpoint), when n is known.
        self.uploader: LazyUploader | None = None
        self.server: LazyAggregate | None = None
        self._uploaded_last = False
        self._counters["safeguard_uploads"] = 0
        self._counters["stale_uploads"] = 0
        self._counters["capped_uploads"] = 0
        self._seal()

    @property
    def q_prev(self) -> FloatVector | None:
        """This rank's last uploaded quantized gradient (the paper's Q_m), or ``None``."""
        return None if self.uploader is None else self.uploader.q_prev

    @property
    def clock(self) -> int:
        """Iterations since this rank's last upload."""
        return 0 if self.uploader is None else self.uploader.clock

    @property
    def aggregate(self) -> FloatVector | None:
        """Sum over ranks of their ``q_prev`` (identical on every rank), or ``None``; with
        the two-phase exchange, the replica of it that every rank holds."""
        if isinstance(self._exchanger, TwoPhaseAverage):
            return self._exchanger.aggregate
        return None if self.server is None else self.server.aggregate

    @property
    def effective_lazy_downlink(self) -> float:
        """The lazy downlink in use: ``lazy_downlink``, with ``"auto"`` resolved from the
        world size (:func:`auto_lazy_downlink`; 0 with the all-gather exchange)."""
        c = getattr(self, "lazy_downlink", 0.0)  # pickled before the lazy downlink existed
        if isinstance(c, str):
            two_phase = self.active_exchange == "two-phase"
            return auto_lazy_downlink(self.world_size) if two_phase else 0.0
        return float(c)

    def _repr_settings(self) -> dict[str, Any]:
        # The rule's constants under their LAQState keywords.
        rule = {_KEYWORD_OF_RULE[k]: v for k, v in self.rule.constants().items()}
        return {**super()._repr_settings(), "error_feedback": self.error_feedback, **rule}

    def _new_state(self, n: int) -> tuple[LazyUploader, LazyAggregate]:
        uploader = LazyUploader(n, self.bits, self._upload_rule, block_size=self.block_size)
        return uploader, LazyAggregate(n, self.rule.history)

    @property
    def active_exchange(self) -> str:
        """The exchange this state runs in its process group: ``exchange``, or the one
        ``"auto"`` chose for the group's size and the gradient's (:func:`~laqcore.torch.
        _two_phase.resolve_exchange`; needs the process group, and the gradient's size is
        known from the first step on: before it, the choice for a small one)."""
        return self._exchange_on(self.world_size, self.numel)

    @property
    def _downlink_given(self) -> bool:
        """Whether a downlink setting other than the default was given: it asks for the
        two-phase exchange, which ``"auto"`` then takes on any number of ranks."""
        lazy = getattr(self, "lazy_downlink", "auto")  # pickled before the lazy downlink
        return (
            self.downlink_bits != 4
            or self.downlink_block_size is not None
            or (not isinstance(lazy, str) and lazy > 0.0)
        )

    def _exchange_on(self, world_size: int, n: int) -> str:
        return resolve_exchange(
            self.exchange,
            world_size,
            n,
            downlink=self._downlink_given,
            pinned=self._pinned_exchange,
        )

    def _make_exchange(self, n: int) -> GradientExchange:
        if self.server is None:
            self.uploader, self.server = self._new_state(n)
        if self._exchange_on(self.world_size, n) == "two-phase":
            bits, bs, down, down_bs = (
                self.bits,
                self.block_size,
                self.downlink_bits,
                self.downlink_block_size,
            )
            group, coded, c = self.process_group, self.entropy, self.effective_lazy_downlink
            lazy = (c, self.rule.D, self.rule.ck) if c > 0.0 else None
            return laq_two_phase(
                group, n, bits, bs, down, down_bs, entropy=coded, lazy_downlink=lazy
            )
        return LAQAllGather(
            self.process_group, self.server, entropy=self.entropy, control=self._transport_control
        )

    def _after_warmup_step(self, parked: list[Parked]) -> None:
        # The buckets carry the loss scale; the history is kept unscaled (grad_scaler).
        scaled_sq = sum(_norm_sq(b.buffer) for b in parked)
        self.rule.record(scaled_sq / (self._scale * self._scale), None, False)

    # -- the compressed step --------------------------------------------------------------
    def _decide(
        self, up: LazyUploader, grad: FloatVector, payload: Any
    ) -> tuple[bool, str, float, float]:
        """Upload or not, why (``"rule"``, ``"stale"``, ``"safeguard"``, ``"capped"``), the
        safeguard's ``||g||^2`` (0 if not watched) and ``||g||^2`` if either test computed it
        (else 0; the worker scale's history reuses it). Changes no state."""
        rule = self.rule
        if up.uploads > 0 and up.clock >= rule.t_bar:
            return True, "stale", 0.0, 0.0
        grad_sq = _norm_sq(torch.from_numpy(grad)) if rule.watch(up.clock) else 0.0
        if grad_sq > 0.0 and rule.safeguard(grad_sq):
            return True, "safeguard", grad_sq, grad_sq
        if up.decide(payload, rule.rhs(up.clock)):
            return True, "rule", grad_sq, grad_sq
        if rule.stale_cap is None:
            return False, "rule", grad_sq, grad_sq
        own_sq = grad_sq if grad_sq > 0.0 else _norm_sq(torch.from_numpy(grad))
        capped = rule.capped(float(payload.innov_sq), own_sq)
        if not capped and rule.stale_cap_scope == "tensor":  # (a first upload never skips)
            capped = self._tensor_capped(grad, up.q_prev)
        return capped, "capped" if capped else "rule", grad_sq, own_sq

    def _tensor_capped(self, grad: FloatVector, q_prev: FloatVector) -> bool:
        """Whether some parameter tensor's exact innovation exceeds the cap
        (``stale_cap_scope="tensor"``): one fused pass over ``grad`` and ``q_prev``."""
        cap = typing.cast(float, self.rule.stale_cap)
        innov_sq, grad_sq = _core.lazy.segment_squares(grad, q_prev, self.layout.offsets)
        return bool(np.any(innov_sq > cap * grad_sq))

    def _scratch(self, grad: FloatVector) -> FloatVector:
        """Where the average goes under error feedback (the flat gradient then keeps
        ``g + w r`` for the residual), made at its first use."""
        if self._ef_scratch is None:
            self._ef_scratch = np.empty_like(grad)
        return self._ef_scratch

    def _free_flat(self) -> torch.Tensor:
        """The one of the two flat buffers that does not hold ``_fed`` (made at first use)."""
        n = self.layout.numel
        if len(self._flats) != 2 or self._flats[0].numel() != n:
            self._flats = [torch.empty(n, dtype=torch.float32) for _ in range(2)]
        held = self._fed is not None and self._fed.ctypes.data == self._flats[0].data_ptr()
        return self._flats[1] if held else self._flats[0]

    def _gather(self, parked: list[Parked], out: torch.Tensor | None = None) -> torch.Tensor:
        """The flat gradient plus the error feedback's ``w r`` (numpy's rounding: ``r = g'
        - q_prev``, then ``w r``, then the sum, as the unfused passes did)."""
        if self.error_feedback <= 0.0:
            return super()._gather(parked, out)
        out = self._free_flat() if out is None else out
        w, dst = self.error_feedback, out.numpy()
        if self._fed is None:  # no residual yet, or r itself (a checkpoint's)
            super()._gather(parked, out)
            if self._residual is not None:
                _core.lazy.add_scaled(dst, self._residual, w)
            return out
        fed, q_prev = self._fed, typing.cast(LazyUploader, self.uploader).q_prev
        pieces = self.layout.host_pieces(parked) if self._scale == 1.0 else None
        if pieces is None:  # buckets not float32 on the CPU, or a loss scale to divide by
            super()._gather(parked, out)
            _core.lazy.add_scaled_difference(dst, dst, fed, q_prev, w)
            return out
        for start, piece in pieces:
            stop = start + len(piece)
            _core.lazy.add_scaled_difference(
                dst[start:stop], piece, fed[start:stop], q_prev[start:stop], w
            )
        return out

    def _residual_now(self) -> FloatVector | None:
        """The error feedback's residual ``r = g' - q_prev`` (a new array), ``None`` before
        the first step that set it."""
        if self._fed is not None:
            return np.subtract(self._fed, typing.cast(LazyUploader, self.uploader).q_prev)
        return None if self._residual is None else self._residual.copy()

    def _step(self, grad: FloatVector) -> FloatVector | None:
        """One compressed step on ``grad`` (with error feedback: ``g + w r``, added by
        ``_gather``)."""
        self.exchanger  # noqa: B018 - creates uploader and server at the first step
        up = typing.cast(LazyUploader, self.uploader)
        upload, why, grad_sq, norm_sq = False, "rule", 0.0, 0.0
        own_sq: float | None = None  # rule_scale="worker": this rank's ||g_m||^2
        ef = self.error_feedback > 0.0
        payload: Any = self._propose(up.propose, grad)
        bad = payload is None
        if not bad:
            upload, why, grad_sq, norm_sq = self._decide(up, grad, payload)
            if self.rule.scale == "worker":  # the history's ||g_m||^2, before out= overwrites
                own_sq = norm_sq if norm_sq > 0.0 else _norm_sq(torch.from_numpy(grad))
        # The average overwrites the flat gradient (nothing reads it after the proposal), or,
        # with error feedback, the scratch buffer: g' stays for r = g' - q_prev after the
        # step, and r itself stays as it was if the step is dropped.
        res = self._exchange(
            payload if upload else None, bad, out=self._scratch(grad) if ef else grad
        )
        if res.mean is None:
            return None  # dropped step: nothing above changed any state
        if upload:
            if res.own is None:
                raise RuntimeError(f"rank {self.rank}: its upload is missing from the exchange")
            # What the wire carried, like every other rank (refused if it differs).
            up.commit(typing.cast(LAQPayload, res.own))
            self.rule.uploaded()
            if why != "rule":
                self._counters[f"{why}_uploads"] += 1
        else:
            up.skip()
            if grad_sq > 0.0 and self.rule.streak_ref <= 0.0:
                self.rule.streak_ref = grad_sq
        if ef and not bad:  # r = g' - q_prev from now on; a dropped gradient keeps its r
            self._fed, self._residual = grad, None
        innov = None if payload is None else float(payload.innov_sq)
        hist_sq = _norm_sq(torch.from_numpy(res.mean)) if own_sq is None else own_sq
        self.rule.record(hist_sq, innov, self._uploaded_last)
        self._uploaded_last = upload
        return res.mean

    # -- checkpoints ----------------------------------------------------------------------
    def _state_dict(self) -> dict[str, Any]:
        sd = super()._state_dict()
        sd.update(
            uploader=None if self.uploader is None else self.uploader.state_dict(),
            server=None if self.server is None else self.server.state_dict(),
            uploaded_last=self._uploaded_last,
            rule=self.rule.state_dict(),
            residual=self._residual_now(),
        )
        return sd

    def _state_keys(self) -> tuple[str, ...]:
        return (*super()._state_keys(), "uploader", "server", "uploaded_last", "rule")

    def _load(self, sd: dict[str, Any], n: int) -> None:
        rule = LazyRule(**self.rule.constants())
        rule.load_state_dict(sd["rule"])
        uploader = server = None
        if (sd["uploader"] is None) != (sd["server"] is None):
            raise ValueError("state_dict has an uploader without a server or the reverse")
        if sd["uploader"] is not None:
            uploader, server = self._new_state(n)
            uploader.load_state_dict(sd["uploader"])
            server.load_state_dict(sd["server"])
            server.history = rule.history  # one history: the rule's
        if not isinstance(sd["uploaded_last"], bool):
            raise TypeError("state_dict['uploaded_last'] must be a bool")
        residual = sd.get("residual")  # absent in checkpoints from before error feedback
        if residual is not None:
            residual = as_state_vector(residual, n, "state_dict['residual']", np.float32)
        self.rule, self.uploader, self.server = rule, uploader, server
        self._uploaded_last = sd["uploaded_last"]
        self._residual, self._fed = residual, None
        self._exchanger = None  # rebuilt around the loaded server

    def __getstate__(self) -> dict[str, Any]:
        d = super().__getstate__()
        # r travels as itself (what a checkpoint holds), without the buffers it lives in.
        d.update(_residual=self._residual_now(), _fed=None, _flats=[], _ef_scratch=None)
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        blank: dict[str, Any] = {"_residual": None, "_fed": None, "_flats": [], "_ef_scratch": None}
        super().__setstate__(blank | d)  # states pickled before error feedback lack them

    def _keyword_elsewhere(self, name: str) -> str | None:
        if name == "lr":
            return "LAQState(lr=...) is ignored (the rule needs no learning rate)"
        attr = self._RULE_KEYWORDS.get(name)
        if attr is None:
            return None
        if attr in RULE_FIXED:
            return (
                f"the rule's {attr} is fixed once the state is built: build a new "
                f"LAQState({name}=...) and register that one instead"
            )
        return (
            f"the rule's constants live on state.rule: state.rule.{attr} = ... (read at the "
            "next step)"
        )


def laq_hook(state: LAQState, bucket: GradBucket, *extra: Any) -> Future[torch.Tensor]:
    """DDP communication hook running LAQ: ``ddp_model.register_comm_hook(state, laq_hook)``.

    See :mod:`laqcore.torch._state` for the per-iteration flow and :class:`LAQState` for
    the rule. ``extra`` is there only to refuse FSDP with a clear ``TypeError``: its sharded
    strategies call a comm hook with a third argument.
    """
    return run_hook(state, bucket, LAQState, "laq_hook", extra)


# DDP's register_comm_hook compares the hook's annotations with the real classes; with
# postponed evaluation (``from __future__ import annotations``) they are strings.
laq_hook.__annotations__ = typing.get_type_hints(laq_hook)
