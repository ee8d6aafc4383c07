"""The state of LAQ's lazy uploads, once: one worker's uploader and the server's aggregate.

Every LAQ-style user (the simulator's LAQ/SLAQ/QGD/random-selection workers and servers, the
LAG servers, the DDP hook) builds on these two objects instead of keeping its own copy:

* :class:`LazyUploader` (worker side): the :class:`~laqcore.laq.InnovationQuantizer`
  (``q_prev``, ``err_hat_sq``), the :class:`~laqcore.lazy.UploadRule` and the clock of
  iterations since the last upload. Per iteration ``propose`` -> ``decide`` -> ``commit`` or
  ``skip`` (or :meth:`LazyUploader.step` for all of it).
* :class:`LazyAggregate` (server side): the running sum of the workers' uploads, the
  :class:`~laqcore.lazy.IterateHistory` of ``||theta^{k+1} - theta^k||^2`` and the previous
  iterate; :meth:`LazyAggregate.observe` computes that squared distance and stores the new
  iterate in one native pass (``_core.lazy.advance_iterate``), so every user rounds it the
  same way.

The rule itself (``||dQ||^2 >= rhs + c (err + err_hat) + a`` or ``clock >= t_bar``) is
written once, in :mod:`laqcore.lazy`; the uploader calls its unchecked fast path.

First upload. A worker that has never uploaded always uploads (whatever the rule says): the
server's copy of its gradient is still zero, and the aggregate must hold every worker's
gradient before skipping makes sense. The official LAQ code has no such clause, but its
first test compares ``||Q(g)||^2`` with ``3 ||eps||^2`` at a zero history, which passes for
any gradient that is not already tiny, so the trajectories agree (docs/algorithms.md,
"First iteration").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._typing import FloatVector
from ._validate import (
    as_float_or_double_vector,
    as_state_vector,
    check_bits,
    check_positive_int,
    check_real,
    check_width_options,
)
from .laq import InnovationQuantizer, LAQPayload, laq_accumulate
from .lazy import IterateHistory, UploadRule

__all__ = ["LazyAggregate", "LazyUploader"]


def __dir__() -> list[str]:
    return __all__


_UPLOADER_FORMAT = "laqcore.LazyUploader/1"
_AGGREGATE_FORMAT = "laqcore.LazyAggregate/1"


def _check_format(sd: Any, expected: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(sd, dict):
        raise TypeError(f"state_dict must be a dict, got {type(sd).__name__}")
    if sd.get("format") != expected:
        raise ValueError(f"state_dict has format {sd.get('format')!r}, expected {expected!r}")
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ValueError(f"state_dict lacks the keys {missing}")
    return sd


def _same(name: str, saved: Any, mine: Any) -> None:
    if saved != mine:
        raise ValueError(f"state_dict was saved with {name} = {saved!r}, this object has {mine!r}")


def _check_rhs(rhs: Any) -> float:
    """``rhs`` as a float >= 0, ``inf`` included: the rule's first term overflows double
    for an extreme ``xi``/``ck`` (``xi=1e308``), which stopped the run with "rhs must be
    finite, got inf"; an infinite threshold is met by no innovation, only by the clock."""
    if isinstance(rhs, (float, np.floating)) and rhs == np.inf:
        return float("inf")
    return check_real(rhs, "rhs", minimum=0.0)


class LazyUploader:
    """One worker's LAQ state: innovation quantizer + upload rule + clock.

    Parameters
    ----------
    n : int
        Gradient length.
    bits : int
        Bits per coordinate of the innovation, 1..8.
    rule : UploadRule or None, default ``UploadRule()`` (official LAQ)
        The lazy test; ``None`` switches it off: :meth:`decide` is always True (QGD).
    block_size : int or None
        Blockwise radius of the quantizer (one radius per ``block_size`` coordinates), passed
        to :class:`~laqcore.laq.InnovationQuantizer`; ``None`` (default): one radius.
    adaptive_bits : float or None
        Adaptive bit width: per upload, :meth:`step` quantizes with the smallest b in 1..8
        whose quantization-error term of the rule, ``err_coef * ||eps_b||^2``, is at most
        ``adaptive_bits * rhs`` (the rule's iterate-difference term); 8 if none is. The
        first upload, forced before any iterate difference exists (``rhs`` is 0 then), uses
        ``bits``. Each frame carries its b. ``None`` (default): always ``bits``.
    width_block : int or None
        With ``adaptive_bits = F``: a width per block of this many coordinates instead of
        one per upload (:mod:`laqcore.laq_widths`): the widths meet
        ``err_coef * ||eps||^2 <= F * rhs`` (capped at ``ERROR_CAP * ||v||^2``) with the
        fewest bits the rate-distortion allocation finds. The first upload uses ``bits``.
        ``None`` (default): off.

    Attributes
    ----------
    q_prev : float32 array
        The last quantized gradient uploaded (the server's copy of this worker's gradient).
    err_hat_sq : float
        ``||eps_hat||^2``, the quantization error of the last upload.
    clock : int
        Iterations since the last upload (``t_m``).
    uploads : int
        Uploads so far; 0 means the next :meth:`decide` is forced (see the module docstring).

    The attributes are read-only by convention: only the methods change them.

    Notes
    -----
    Per iteration: ``payload = u.propose(grad)`` quantizes ``grad - q_prev`` (no state change);
    ``u.decide(payload, rhs)`` applies the rule, where ``rhs`` is the first term of the test,
    ``(1/(alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2`` (e.g.
    :meth:`LazyAggregate.rhs`); then exactly one of ``u.commit(payload)`` (uploaded:
    ``q_prev += dQ``, ``err_hat_sq = payload.err_sq``, clock 0) or ``u.skip()`` (clock + 1).
    ``commit`` also takes the payload *decoded from the wire* instead of the proposed object,
    provided its wire content is identical (a different one raises ``ValueError``): a sender
    that applies what it decoded stays in step with every receiver. :meth:`step` does the
    whole iteration.

    state_dict format
    -----------------
    ``{"format": "laqcore.LazyUploader/1", "n": int, "bits": int, "block_size": int | None,
    "q_prev": float32 array (n,), "err_hat_sq": float, "clock": int, "uploads": int}``:
    numpy arrays and plain Python values only (``np.savez`` + JSON friendly).
    :meth:`load_state_dict` refuses, with ``ValueError``/``TypeError`` naming the field, a
    missing key, another format, n, bits or block_size, a q_prev of another dtype or length or
    with NaN/Inf, a negative or non-finite err_hat_sq, a negative clock or upload count.

    Examples
    --------
    >>> import numpy as np
    >>> from laqcore.lazy_state import LazyUploader
    >>> u = LazyUploader(3, bits=4)
    >>> u.step(np.array([1.0, 0.5, -1.0], np.float32), rhs=0.0) is not None  # first: forced
    True
    >>> u.step(np.array([1.0, 0.5, -1.0], np.float32), rhs=0.0) is None  # nothing new
    True
    >>> u.clock, u.uploads
    (1, 1)
    """

    def __init__(
        self,
        n: int,
        bits: int,
        rule: UploadRule | None = UploadRule(),  # noqa: B008 - frozen, never mutated
        *,
        block_size: int | None = None,
        adaptive_bits: float | None = None,
        width_block: int | None = None,
    ) -> None:
        if rule is not None and not isinstance(rule, UploadRule):
            raise TypeError(f"rule must be an UploadRule or None, got {type(rule).__name__}")
        self.rule = rule
        self.block_size = (
            None if block_size is None else check_positive_int(block_size, "block_size")
        )
        extra: dict[str, Any] = {} if block_size is None else {"block_size": self.block_size}
        self._iq = InnovationQuantizer(n, bits, **extra)
        self.n, self.bits = self._iq.n, self._iq.bits
        self.adaptive_bits = (
            None
            if adaptive_bits is None
            else check_real(adaptive_bits, "adaptive_bits", minimum=0.0)
        )
        self.width_block = check_width_options(width_block, self.adaptive_bits, block_size)
        # The rule's err_coef (3 for LAQ); the quantization-error term is this * ||eps||^2.
        self._err_weight = 3.0 if rule is None else rule.err_scale * rule.err_coef
        self.clock = 0
        self.uploads = 0

    def __repr__(self) -> str:
        return (
            f"LazyUploader(n={self.n}, bits={self.bits}, rule={self.rule!r}, "
            f"clock={self.clock}, uploads={self.uploads})"
        )

    @property
    def q_prev(self) -> FloatVector:
        return self._iq.q_prev

    @property
    def err_hat_sq(self) -> float:
        return self._iq.err_hat_sq

    # -- one iteration -------------------------------------------------------------------
    def propose(self, grad: Any) -> LAQPayload:
        """Quantize ``grad - q_prev`` (float32 1-D, length ``n``); no state change."""
        return self._iq.propose(grad)

    def propose_adaptive(self, grad: Any, rhs: float) -> LAQPayload:
        """The adaptive-width proposal (see ``adaptive_bits``): the smallest b in 1..8 with
        ``err_coef * ||eps_b||^2 <= adaptive_bits * rhs``, else b = 8 (``bits`` for the first
        upload, which has no iterate difference to compare with); with ``width_block`` a width
        per block meeting the same budget; no state change."""
        if self.adaptive_bits is None or self.uploads == 0:
            return self.propose(grad)
        r = _check_rhs(rhs)
        budget = self.adaptive_bits * r if self.adaptive_bits else 0.0  # 0 * inf: 0, not NaN
        if self.width_block is not None:
            w = self._err_weight  # 0: the rule ignores the error, nothing bounds it but the cap
            return self._iq.propose_widths(grad, self.width_block, budget / w if w else np.inf)
        for b in range(1, 9):
            payload = self._iq.propose(grad, bits=b)
            assert payload.err_sq is not None  # set by the quantizer
            if self._err_weight * payload.err_sq <= budget:
                break
        return payload

    def decide(self, payload: LAQPayload, rhs: float) -> bool:
        """Whether ``payload`` (the latest :meth:`propose`) should be uploaded.

        True for the first upload, when ``clock >= t_bar``, without a rule, or when the rule's
        test passes with ``rhs`` (>= 0; ``inf``, a threshold beyond the double range, passes
        only at the clock) as its first term.
        """
        r = _check_rhs(rhs)
        if self.rule is None or self.uploads == 0:
            return True
        if payload.err_sq is None:
            raise ValueError("decide() needs the payload returned by propose() (it has err_sq)")
        return self.rule.should_upload_unchecked(
            payload.innov_sq, r, payload.err_sq, self._iq.err_hat_sq, self.clock
        )

    def commit(self, payload: LAQPayload) -> None:
        """Upload: apply the proposed payload (or its decoded copy, see the class docstring)."""
        pending = self._iq._pending
        if pending is not None and payload is not pending:
            if not isinstance(payload, LAQPayload):
                raise TypeError(f"payload must be a LAQPayload, got {type(payload).__name__}")
            if payload != pending:
                raise ValueError(
                    "the committed payload differs from the proposed one (n, bits, radius or "
                    "codes): the frame was altered between quantizing and applying"
                )
            payload = pending
        self._iq.commit(payload)
        self.clock = 0
        self.uploads += 1

    def skip(self) -> None:
        """No upload this iteration: the clock advances, the proposal is dropped."""
        self._iq._pending = None
        self.clock += 1

    def step(self, grad: Any, rhs: float) -> LAQPayload | None:
        """``propose`` (:meth:`propose_adaptive` with ``adaptive_bits``), ``decide``, then
        ``commit`` (return the payload) or ``skip`` (None)."""
        payload = self.propose_adaptive(grad, rhs)
        if self.decide(payload, rhs):
            self.commit(payload)
            return payload
        self.skip()
        return None

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (format in the class docstring); copies."""
        return {
            "format": _UPLOADER_FORMAT,
            "n": self.n,
            "bits": self.bits,
            "block_size": self.block_size,
            "q_prev": np.array(self._iq.q_prev, dtype=np.float32),
            "err_hat_sq": float(self._iq.err_hat_sq),
            "clock": self.clock,
            "uploads": self.uploads,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` after validating every field (nothing changes on error)."""
        keys = ("n", "bits", "block_size", "q_prev", "err_hat_sq", "clock", "uploads")
        sd = _check_format(sd, _UPLOADER_FORMAT, keys)
        _same("n", check_positive_int(sd["n"], "state_dict['n']"), self.n)
        _same("bits", check_bits(sd["bits"]), self.bits)
        _same("block_size", sd["block_size"], self.block_size)
        q = as_state_vector(sd["q_prev"], self.n, "state_dict['q_prev']", np.float32)
        err = check_real(sd["err_hat_sq"], "state_dict['err_hat_sq']", minimum=0.0)
        clock = check_positive_int(sd["clock"], "state_dict['clock']", minimum=0)
        uploads = check_positive_int(sd["uploads"], "state_dict['uploads']", minimum=0)
        if uploads == 0 and (err != 0.0 or q.any()):
            raise ValueError("state_dict has uploads = 0 but a non-zero q_prev or err_hat_sq")
        self._iq.reset()
        self._iq._q_prev[:] = q
        self._iq.err_hat_sq = err
        self.clock, self.uploads = clock, uploads


class LazyAggregate:
    """The server's lazy state: ``aggregate = sum_m (worker m's uploads)``, the iterate history.

    Parameters
    ----------
    n : int
        Model / gradient length.
    history : IterateHistory or UploadRule
        The right-hand side's history, or a rule whose :meth:`~UploadRule.make_history` is used.
    dtype : float32 (default) or float64
        Of the aggregate: float32 for LAQ payloads (:meth:`add`, decoded natively from the
        packed codes), float64 for dense innovations (:meth:`add_dense`, LAG).

    Methods
    -------
    ``add(payload)``: ``aggregate += dQ`` (``laq_accumulate``, no decoded temporary).
    ``add_dense(delta)``: ``aggregate += delta``.
    ``observe(theta)``: after each model update, push ``||theta - theta_prev||^2`` to the
    history and store ``theta`` as ``theta_prev``, in one native pass; returns the squared
    distance, or ``None`` on the first call (which only stores). float32 or float64 iterates
    (the dtype of the first call is kept; float64 keeps steps far below float32 resolution).
    ``rhs(alpha, num_workers)`` = ``weighted_sum() / (alpha^2 M^2)``: the rule's first term.

    state_dict format
    -----------------
    ``{"format": "laqcore.LazyAggregate/1", "n": int, "aggregate": array (n,) of the dtype,
    "theta_prev": array (n,) or None, "history": IterateHistory.state() (plain values)}``.
    :meth:`load_state_dict` refuses another format or n, arrays of another dtype or length or
    with NaN/Inf, and a history with other parameters or an inconsistent content.

    Examples
    --------
    >>> import numpy as np
    >>> from laqcore.lazy_state import LazyAggregate
    >>> from laqcore.lazy import UploadRule
    >>> agg = LazyAggregate(2, UploadRule())
    >>> agg.observe(np.zeros(2)) is None, agg.observe(np.array([3.0, 4.0]))
    (True, 25.0)
    >>> agg.weighted_sum()  # warm-up weight 0.8 / 1
    20.0
    """

    def __init__(
        self, n: int, history: IterateHistory | UploadRule, *, dtype: npt.DTypeLike = np.float32
    ) -> None:
        self.n = check_positive_int(n, "n")
        if isinstance(history, UploadRule):
            history = history.make_history()
        if not isinstance(history, IterateHistory):
            raise TypeError(
                f"history must be an IterateHistory or UploadRule, got {type(history).__name__}"
            )
        self.history = history
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        self._aggregate: npt.NDArray[Any] = np.zeros(self.n, dtype=dt)
        self._theta_prev: npt.NDArray[Any] | None = None

    def __repr__(self) -> str:
        return f"LazyAggregate(n={self.n}, dtype={self._aggregate.dtype}, history={self.history!r})"

    @property
    def aggregate(self) -> npt.NDArray[Any]:
        """Read-only view of the running sum of uploads."""
        view = self._aggregate.view()
        view.flags.writeable = False
        return view

    @property
    def theta_prev(self) -> npt.NDArray[Any] | None:
        """Read-only view of the last observed iterate (None before the first)."""
        if self._theta_prev is None:
            return None
        view = self._theta_prev.view()
        view.flags.writeable = False
        return view

    def add(self, payload: LAQPayload) -> None:
        """``aggregate += dQ`` of a LAQ payload (float32 aggregate)."""
        if self._aggregate.dtype != np.float32:
            raise TypeError("add() needs a float32 aggregate; use add_dense() for float64")
        laq_accumulate(self._aggregate, payload)

    def assign(self, values: Any) -> None:
        """``aggregate = values`` (a vector of length n; copied in the aggregate's dtype)."""
        v = as_float_or_double_vector(values, "values")
        if v.shape[0] != self.n:
            raise ValueError(f"values has length {v.shape[0]}, expected {self.n}")
        self._aggregate[:] = v

    def add_dense(self, delta: Any) -> None:
        """``aggregate += delta`` (a float vector of length n)."""
        d = as_float_or_double_vector(delta, "delta")
        if d.shape[0] != self.n:
            raise ValueError(f"delta has length {d.shape[0]}, expected {self.n}")
        self._aggregate += d

    def observe(self, theta: Any) -> float | None:
        """Push ``||theta - theta_prev||^2`` and keep ``theta`` (see the class docstring)."""
        x = as_float_or_double_vector(theta, "theta_new")
        if x.shape[0] != self.n:
            raise ValueError(f"theta_new has length {x.shape[0]}, expected {self.n}")
        prev = self._theta_prev
        if prev is None:
            self._theta_prev = np.array(x)
            return None
        if x.dtype != prev.dtype:
            raise TypeError(f"theta_new has dtype {x.dtype}, the stored iterate {prev.dtype}")
        kernel = (
            _core.lazy.advance_iterate
            if prev.dtype == np.float32
            else _core.lazy.advance_iterate_f64
        )
        try:
            d2 = float(kernel(prev, x))
        except ValueError:
            self._theta_prev = None  # half overwritten: start again from the next iterate
            raise
        self.history.push(d2)
        return d2

    def weighted_sum(self) -> float:
        """``sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2``."""
        return self.history.weighted_sum()

    def rhs(self, alpha: float, num_workers: int) -> float:
        """The rule's first term ``weighted_sum() / (alpha^2 M^2)``."""
        return self.history.rhs(alpha, num_workers)

    # -- checkpoints ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (format in the class docstring); copies."""
        return {
            "format": _AGGREGATE_FORMAT,
            "n": self.n,
            "aggregate": self._aggregate.copy(),
            "theta_prev": None if self._theta_prev is None else self._theta_prev.copy(),
            "history": self.history.state(),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` after validating every field (nothing changes on error)."""
        sd = _check_format(sd, _AGGREGATE_FORMAT, ("n", "aggregate", "theta_prev", "history"))
        _same("n", check_positive_int(sd["n"], "state_dict['n']"), self.n)
        agg = as_state_vector(
            sd["aggregate"], self.n, "state_dict['aggregate']", self._aggregate.dtype
        )
        prev = sd["theta_prev"]
        if prev is not None:
            dt = prev.dtype if isinstance(prev, np.ndarray) else np.float64
            if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise TypeError(f"state_dict['theta_prev'] must be float32 or float64, got {dt}")
            prev = as_state_vector(prev, self.n, "state_dict['theta_prev']", dt)
        if not isinstance(sd["history"], dict):
            raise TypeError("state_dict['history'] must be a dict (IterateHistory.state())")
        mine = self.history.state()
        for key in ("D", "xi", "ck", "num_terms"):
            _same(f"history {key}", sd["history"].get(key), mine[key])
        history = IterateHistory.from_state(sd["history"])
        self._aggregate[:] = agg
        self._theta_prev = prev
        self.history = history
