"""The lazy upload rule of the LAQ DDP hook, in quantities the hook observes.

LAQ's rule (docs/algorithms.md, "LAQ": the upload test) lets worker ``m`` skip when its
quantized innovation is small next to the recent movement of the iterates::

    ||dQ_m||^2  <  (1 / (alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2
                   + 3 (||eps_m||^2 + ||eps_hat_m||^2)

Inside DDP the hook returns the *average* ``g^k = aggregate^k / M``; with plain SGD
``theta^{k+1} - theta^k = -alpha g^k``, so the first term is exactly
``sum_d xi_d ||g^{k-d}||^2``: the squared norms of the averaged gradients the hook itself
returned. The hook uses gradient norms it observes (:attr:`LazyRule.history`: these, or this
rank's own under the per-worker scale below) for every optimizer. It needs no
learning rate and no copy of the parameters, and it cannot be inflated by an optimizer whose
step is not ``lr x gradient`` (momentum, Adam, weight decay, schedulers): with those, a rule
on ``||theta^{k+1} - theta^k||^2 / lr^2`` over-estimates the right-hand side, skips almost
every upload and trains on a stale aggregate.

Minibatch noise. With stochastic gradients the innovation never falls below the noise of
two minibatch gradients, ``E||g_k - g_j||^2 >= 2 sigma^2``, so the deterministic test (a
threshold that ignores the noise) almost never skips. The hook adds
``noise_weight * nu``, where ``nu`` estimates that floor from the innovations measured one
step after this rank's own upload (then ``q_prev`` is the previous gradient up to
quantization, so ``||dQ||^2 ~ ||g_k - g_{k-1}||^2``), as an exponential moving average.
The test then skips when the innovation is explained by noise plus a drift smaller than the
recent steps: the deterministic rule applied to the noise-free part of the innovation.
``noise_weight = 0`` is the paper's rule.

Scale of the right-hand side (``scale``). In minibatch training ``E||g||^2 = ||grad f||^2
+ sigma^2 / (M B)``: averaging over M ranks shrinks the noise in the right-hand side, while
``E||dQ_m||^2 ~ 2 sigma^2 / B + drift`` does not shrink, so with ``scale="average"`` (the
paper's rule, this class's default) a rank skips fewer uploads the more ranks there are.
``scale="worker"`` pushes this rank's own gradient ``||g_m^k||^2`` into the history
instead: ``E||g_m||^2 = ||grad f||^2 + sigma^2 / B`` for any M, so both sides carry one
rank's minibatch noise and the skip rate no longer falls with M (``LAQState``'s default).
Justification
(docs/ddp.md, "Per-worker scale"): the aggregate's error from the skipped uploads is
``(1/M) sum_m e_m``; with ``e_m = b_m + n_m`` (drift plus noise independent across ranks,
``E||n_m||^2 = nu_m``) its expected square is at most ``T`` (the paper's budget
``sum_d xi_d ||g^{k-d}||^2``) as soon as every skipper has ``||e_m||^2 <= T + (1 - 1/M)
nu_m``; the worker scale adds ``ck (1 - 1/M) sigma^2 / B`` on average, within that for
``ck <= 2`` (``nu_m >= 2 sigma^2 / B``). At M = 1 the two scales coincide.

Safeguard. If this rank has not uploaded for ``safeguard_patience`` steps and its gradient's
squared norm has grown by ``safeguard_growth`` since the start of that streak, it uploads
(counted in ``stats()["safeguard_uploads"]``): a stale aggregate cannot silently drive
training away. ``t_bar`` still forces an upload after that many skips.

Stale cap. The threshold looks only at past steps. After a spike of the gradients (momentum
SGD at a large step size can catapult ``||g||^2`` up a hundredfold for a few steps and back)
it stays high for up to ``D`` steps while the gradients are small again, so every rank may
keep in the aggregate a contribution ``q_prev`` many times its current gradient; the
returned average then repeats the spike's gradient, and under ``scale="average"`` its norm
re-enters the history and prolongs the skips. ``stale_cap = c`` lets a rank skip only while
``||dQ||^2 <= c ||g_m^k||^2``, i.e. its stale contribution is within ``sqrt(c) ||g_m^k||`` of
its current gradient, a bound the past cannot loosen. It costs one norm, only in steps that
would skip (docs/ddp.md, "Stale cap", has the trace and the measurements behind ``c = 4``).

Stale cap per tensor. The cap's test sums over the whole gradient, so a tensor with a small
share of the gradient's energy (a normalisation layer's scale, a bias, a small head) can keep
a contribution far from its own gradient while the sum passes. ``stale_cap_scope="tensor"``
refuses such a skip too: the rank uploads if for some parameter tensor ``l``
``||g_l - q_prev_l||^2 > stale_cap ||g_l||^2`` (the exact innovation, one fused pass over
``g`` and ``q_prev`` only in steps that would skip; docs/ddp.md, "Stale cap per tensor").

Streak penalty. Under momentum (or any optimizer that averages past gradients) a skip is
not one stale step: the rank's stale contribution enters the optimizer's average again in
every step of a streak of skips, so its error adds up coherently (``s`` times the error
after ``s`` skips), where fresh minibatch noise adds up as ``sqrt(s)`` times. Keeping the
streak's error within the noise a fresh upload would carry asks ``s ||e||^2 <= sigma^2``:
a budget that shrinks with the streak. ``streak_penalty = p`` divides the test's first
term by ``(c + 1)^p`` when ``c`` skips precede this one (``p = 0``: the paper's rule). On
the bench MLP and CNN under momentum SGD the skipped uploads were where training lagged
all-reduce (a loss 1.3x all-reduce's over the first 200 steps, rising in steps 50-90
where the loss falls fastest; 4-bit quantization without skips tracks all-reduce); the
penalty keeps most of the skips and most of that lag away (docs/ddp.md, "Streak penalty").

The constants carry the library's names (docs/algorithms.md, "LAQ"): ``t_bar`` (forced
upload after that many skips) and ``err_coef`` (weight of the quantization-error term).
"""

from __future__ import annotations

from typing import Any

from .._validate import check_choice, check_positive_int, check_real
from ..lazy import IterateHistory

__all__ = ["LazyRule"]

#: Attribute names before the hook took the library's vocabulary (old -> new).
RENAMED = {"max_stale": "t_bar", "error_weight": "err_coef"}
#: Constants built into the state once (the history's depth and weights, and the
#: :class:`~laqcore.lazy.UploadRule` of the hook's uploader): assigning one later would be
#: ignored, so it raises.
FIXED = ("D", "ck", "err_coef")
#: ``LazyRule.scale`` choices: the returned average's ``||g||^2`` (the paper's, default) or
#: this rank's own gradient's ``||g_m||^2`` (docs/ddp.md, "Per-worker scale").
SCALES = ("average", "worker")
#: ``LazyRule.stale_cap_scope`` choices: the stale cap's test over the whole gradient
#: (default) or over each parameter tensor as well (docs/ddp.md, "Stale cap per tensor").
CAP_SCOPES = ("gradient", "tensor")


def __dir__() -> list[str]:
    return __all__


def _noise_decay(v: Any) -> float:
    decay = check_real(v, "noise_decay", minimum=0.0)
    if decay >= 1.0:
        raise ValueError(f"noise_decay must be in [0, 1), got {decay}")
    return decay


#: The constants' checks, on construction and on every later assignment.
_CHECKS: dict[str, Any] = {
    "D": lambda v: check_positive_int(v, "D"),
    "ck": lambda v: check_real(v, "ck", minimum=0.0),
    "err_coef": lambda v: check_real(v, "err_coef", minimum=0.0),
    "noise_weight": lambda v: check_real(v, "noise_weight", minimum=0.0),
    "noise_decay": _noise_decay,
    "t_bar": lambda v: check_positive_int(v, "t_bar"),
    "safeguard_patience": lambda v: check_positive_int(v, "safeguard_patience"),
    "safeguard_growth": lambda v: check_real(v, "safeguard_growth", minimum=1.0),
    "scale": lambda v: check_choice(v, "scale", SCALES),
    "stale_cap": lambda v: None if v is None else check_real(v, "stale_cap", positive=True),
    "stale_cap_scope": lambda v: check_choice(v, "stale_cap_scope", CAP_SCOPES),
    "streak_penalty": lambda v: check_real(v, "streak_penalty", minimum=0.0),
}
#: The rule's constants: its constructor's keywords, in their order.
CONSTANTS = tuple(_CHECKS)


class LazyRule:
    """Constants and running estimates of the hook's upload test (one rank).

    Parameters
    ----------
    D, ck : int, float
        Depth and weight of the right-hand side (``xi_d = ck / D``, ``ck / k`` while
        ``k <= D``).
    err_coef : float
        Weight of the quantization-error term ``(||eps||^2 + ||eps_hat||^2)``.
    noise_weight : float
        Weight of the minibatch-noise estimate (0: the paper's deterministic rule).
    noise_decay : float
        Decay of the noise estimate's moving average, in ``[0, 1)``.
    t_bar : int
        Forced upload after this many consecutive skips.
    safeguard_patience : int
        Skips after which the gradient norm is watched.
    safeguard_growth : float
        Growth of ``||g||^2`` over that streak that forces an upload (``>= 1``).
    scale : {"average", "worker"}
        What the history holds: the squared norms of the averaged gradients returned
        (``"average"``, the paper's) or of this rank's own gradients (``"worker"``, the
        per-worker scale; the module docstring).
    stale_cap : float or None
        Largest ``||dQ||^2 / ||g_m||^2`` at which this rank may skip (``None``: no cap; the
        module docstring, "Stale cap").
    stale_cap_scope : {"gradient", "tensor"}
        ``"tensor"``: a skip the cap allows over the whole gradient must also keep every
        parameter tensor's exact innovation within the cap, ``||g_l - q_prev_l||^2 <=
        stale_cap ||g_l||^2`` (the module docstring, "Stale cap per tensor").
    streak_penalty : float
        Exponent ``p >= 0``: after ``c`` consecutive skips the test's first term is divided
        by ``(c + 1)^p`` (0: the paper's rule; the module docstring, "Streak penalty").

    The other constants may be assigned between steps (``state.rule.stale_cap = 1``), checked
    as in the constructor and read at the next step; ``D``, ``ck`` and ``err_coef`` are fixed
    once built (:data:`FIXED`: an assignment raises ``AttributeError``).
    """

    def __init__(
        self,
        *,
        D: int,
        ck: float,
        err_coef: float,
        noise_weight: float,
        noise_decay: float,
        t_bar: int,
        safeguard_patience: int,
        safeguard_growth: float,
        scale: str = "average",
        stale_cap: float | None = None,
        stale_cap_scope: str = "gradient",
        streak_penalty: float = 0.0,
    ) -> None:
        self.D = D  # each checked by __setattr__
        self.ck = ck
        self.err_coef = err_coef
        self.noise_weight = noise_weight
        self.noise_decay = noise_decay
        self.t_bar = t_bar
        self.safeguard_patience = safeguard_patience
        self.safeguard_growth = safeguard_growth
        self.scale = scale
        self.stale_cap = stale_cap
        self.stale_cap_scope = stale_cap_scope
        self.streak_penalty = streak_penalty
        # sum_d xi_d ||g^{k-d}||^2 over the averaged gradients returned so far.
        self.history = IterateHistory(self.D, None, self.ck)
        self.noise = 0.0  # moving average of ||dQ||^2 one step after an own upload
        self.noise_samples = 0
        self.streak_ref = 0.0  # ||g||^2 when the safeguard started watching (0: not yet)
        self._built = True

    def __setattr__(self, name: str, value: Any) -> None:
        if name in FIXED and self.__dict__.get("_built", False):
            raise AttributeError(
                f"rule.{name} is fixed once the hook state is built (the rule's history and "
                f"its uploader's test are made from it, so a new value would be ignored): "
                f"build a new LAQState({name}=...) and register that one instead"
            )
        check = _CHECKS.get(name)
        object.__setattr__(self, name, value if check is None else check(value))

    def constants(self) -> dict[str, Any]:
        """The constructor's keywords with this rule's values (a fresh rule, same constants)."""
        return {name: getattr(self, name) for name in CONSTANTS}

    # -- the test -----------------------------------------------------------------------
    def rhs(self, clock: int = 0) -> float:
        """The test's first term: ``(sum_d xi_d ||g^{k-d}||^2 + noise_weight * nu)``,
        divided by ``(clock + 1)^streak_penalty`` when ``clock`` skips precede this test.

        The error term ``err_coef (err + err_hat)`` is added by
        :class:`~laqcore.lazy.UploadRule` (``err_coef``).
        """
        noise = self.noise_weight * self.noise if self.noise_samples else 0.0
        base = self.history.weighted_sum() + noise
        if self.streak_penalty == 0.0 or clock <= 0:
            return base
        return float(base / float(clock + 1) ** self.streak_penalty)

    def capped(self, innov_sq: float, grad_sq: float) -> bool:
        """``True``: a skip would leave this rank's contribution further than
        ``sqrt(stale_cap) ||g_m||`` from its current gradient (upload instead)."""
        return self.stale_cap is not None and innov_sq > self.stale_cap * grad_sq

    def watch(self, clock: int) -> bool:
        """Whether the safeguard needs this step's ``||g||^2`` (only in a long streak)."""
        return clock >= self.safeguard_patience

    def safeguard(self, grad_sq: float) -> bool:
        """Feed ``||g||^2`` during a long streak; ``True``: force an upload now."""
        if self.streak_ref <= 0.0:
            self.streak_ref = grad_sq
            return False
        return grad_sq >= self.safeguard_growth * self.streak_ref

    # -- updates after the exchange -------------------------------------------------------
    def record(self, out_sq: float, innov_sq: float | None, after_own_upload: bool) -> None:
        """One completed step: its ``||g||^2`` for the history and this rank's innovation.

        ``out_sq``: the returned average's ``||g||^2`` (``scale="average"``) or this rank's
        own gradient's (``scale="worker"``). ``after_own_upload``: this rank uploaded at the
        previous step, so ``innov_sq`` (if measured) samples the minibatch noise floor.
        """
        self.history.push(out_sq)
        if innov_sq is not None and after_own_upload:
            if self.noise_samples == 0:
                self.noise = innov_sq
            else:
                self.noise = self.noise_decay * self.noise + (1.0 - self.noise_decay) * innov_sq
            self.noise_samples += 1

    def uploaded(self) -> None:
        """This rank uploaded: the safeguard's streak ends."""
        self.streak_ref = 0.0

    # -- checkpoints ----------------------------------------------------------------------
    def __setstate__(self, d: dict[str, Any]) -> None:
        # A LAQState pickled before the rename holds its rule's constants under the old
        # names (max_stale, error_weight): unpickle them under the library's.
        for old, new in RENAMED.items():
            if old in d:
                d[new] = d.pop(old)
        d.setdefault("scale", "average")  # pickled before the per-worker scale existed
        d.setdefault("stale_cap", None)  # pickled before the cap existed
        d.setdefault("streak_penalty", 0.0)  # pickled before the streak penalty existed
        d.setdefault("stale_cap_scope", "gradient")  # pickled before the scope existed
        d["_built"] = True  # pickled before the constants were fixed
        self.__dict__.update(d)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history.state(),
            "noise": self.noise,
            "noise_samples": self.noise_samples,
            "streak_ref": self.streak_ref,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; ``ValueError`` for corrupt values (NaN, negative)."""
        history = IterateHistory.from_state(sd["history"])
        if history.D != self.D:
            raise ValueError(f"state_dict history has D = {history.D}, this rule D = {self.D}")
        noise = check_real(sd["noise"], "state_dict['noise']", minimum=0.0)
        samples = check_positive_int(sd["noise_samples"], "state_dict['noise_samples']", minimum=0)
        ref = check_real(sd["streak_ref"], "state_dict['streak_ref']", minimum=0.0)
        self.history, self.noise, self.noise_samples, self.streak_ref = (
            history,
            noise,
            samples,
            ref,
        )
