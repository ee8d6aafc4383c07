"""The LAQ/LAG upload ("innovation") test (docs/algorithms.md "Lazy upload rule", "Default
hyper-parameters" and "Reproducing the LAQ experiments").

LAQ's official code uploads worker ``m``'s quantized innovation at iteration ``k`` iff::

    ||dQ_m||^2 >= (1 / (alpha^2 M^2)) * sum_{d=1..D} xi_d ||theta^{k+1-d} - theta^{k-d}||^2
                  + 3 (err_m + err_hat_m)                                  or  clock_m >= t_bar

(``err_m = ||Q_new - grad||^2``; ``err_hat_m`` = the error recorded at the worker's last
upload; ``clock_m`` = iterations since that upload; ``t_bar = 100``). The SLAQ script uses
``... + 0.5 * 3 (err + err_hat) + 0.2`` and sums ``d = 1..D-1`` only.

* :class:`IterateHistory` keeps the last ``D`` values of ``||theta^{k+1-d} - theta^{k-d}||^2``
  (a native ring buffer) and computes the first term, including the official warm-up
  (``xi_d = ck / min(k, D)``); see ``cpp/include/laqcore/lazy_rule.hpp`` for the exact weights
  and summation order.
* :func:`squared_distance` computes ``||a - b||^2`` natively (no numpy temporaries, NaN check).
* :class:`UploadRule` holds the test's constants, with :meth:`UploadRule.laq` and
  :meth:`UploadRule.slaq` presets; :func:`laq_should_upload` is the bare test.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._validate import as_float_or_double_vector, check_positive_int, check_real

__all__ = [
    "IterateHistory",
    "UploadRule",
    "laq_should_upload",
    "squared_distance",
]


def __dir__() -> list[str]:
    return __all__


def _squared_distance(a: Any, b: Any, name_a: str, name_b: str) -> float:
    x = as_float_or_double_vector(a, name_a)
    y = as_float_or_double_vector(b, name_b)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name_a} has length {x.shape[0]} but {name_b} has length {y.shape[0]}")
    if x.dtype == np.float64 or y.dtype == np.float64:
        kernel = _core.lazy.squared_distance_f64
        x, y = x.astype(np.float64, copy=False), y.astype(np.float64, copy=False)
    else:
        kernel = _core.lazy.squared_distance
    try:
        return float(kernel(x, y))
    except ValueError as err:  # the kernel says "a"/"b": name the caller's arguments
        msg = str(err).replace("a contains", f"{name_a} contains")
        msg = msg.replace("b contains", f"{name_b} contains")
        # same type: an overflow of finite inputs stays a FloatRangeError (OverflowError)
        raise type(err)(msg.replace("||a - b||", f"||{name_a} - {name_b}||")) from None


def squared_distance(a: Any, b: Any) -> float:
    """``||a - b||^2``, each difference and square in double, deterministic blocked sum.

    The server uses it for ``||theta^{k+1} - theta^k||^2``. float32 vectors are read as they
    are; if either vector is float64 both are used in float64 (no rounding to float32, which
    would erase the tiny steps of a float64 iterate near convergence). Raises ``ValueError``
    naming the argument that holds NaN or Inf, or for mismatched lengths; finite vectors
    whose squared distance overflows float64 raise ``FloatRangeError`` (an
    ``OverflowError`` and a ``ValueError``), as the kernels' other range errors do.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> laqcore.squared_distance(np.array([1.0, 2.0], np.float32), np.array([0.0, 4.0], np.float32))
    5.0
    >>> laqcore.squared_distance(np.array([1.0 + 1e-12]), np.array([1.0]))  # float64 kept
    1.0001778090679956e-24
    """
    return _squared_distance(a, b, "a", "b")


class IterateHistory:
    """Ring buffer of the last ``D`` squared iterate differences and the rule's first term.

    Push ``||theta^{k+1} - theta^k||^2`` once per iteration, after the server step; then at
    iteration ``k`` (0-based) ``count == k`` and :meth:`rhs` equals the official code's
    ``me / (alpha^2 M^2)`` bit for bit (``0`` at ``k = 0``).

    Parameters
    ----------
    D : int, default 10
        History depth.
    xi : float, sequence of D floats, or None
        Explicit weights ``xi_1..xi_D`` (a single float means the same weight for every ``d``),
        e.g. LAG's ``1/D``. Differences not pushed yet count as 0. ``None`` (default) selects
        the official LAQ schedule: ``xi_d = ck * (1 / min(count, D))`` where ``count`` is the
        number of pushes so far, i.e. the warm-up ``0.8/k`` for ``k <= D``, then ``0.8/D``.
    ck : float, default 0.8
        Scale of the official schedule (ignored when ``xi`` is given).
    num_terms : int or None
        Sum only the ``num_terms`` most recent differences (``None``: ``D``). SLAQ uses
        ``D - 1``.

    Examples
    --------
    >>> import laqcore
    >>> h = laqcore.IterateHistory(D=10)
    >>> h.rhs(alpha=0.02, num_workers=10)     # nothing pushed yet
    0.0
    >>> h.push(1.0); h.push(3.0)              # warm-up: xi = 0.8 / 2
    >>> h.weighted_sum()
    1.6
    """

    def __init__(
        self,
        D: int = 10,
        xi: float | Sequence[float] | None = None,
        ck: float = 0.8,
        num_terms: int | None = None,
    ) -> None:
        depth = check_positive_int(D, "D")
        weights: list[float] = []
        if xi is not None:
            if isinstance(xi, numbers.Real):
                weights = [check_real(xi, "xi", minimum=0.0)] * depth
            else:
                arr = np.asarray(xi)
                if arr.dtype.kind not in "fiu" or arr.ndim != 1:
                    raise TypeError(f"xi must be a float or a 1-D sequence of floats, got {xi!r}")
                if arr.shape[0] != depth:
                    raise ValueError(f"xi must hold D = {depth} weights, got {arr.shape[0]}")
                weights = [check_real(float(w), "xi weight", minimum=0.0) for w in arr]
        ck_value = check_real(ck, "ck", minimum=0.0)
        terms = 0 if num_terms is None else check_positive_int(num_terms, "num_terms")
        if terms > depth:
            raise ValueError(f"num_terms must be in [1, D = {depth}], got {terms}")
        self._h = _core.lazy.IterateHistory(depth, weights, ck_value, terms)

    def __repr__(self) -> str:
        xi = f"xi={list(self._h.weights)!r}" if self._h.explicit_weights else f"ck={self._h.ck!r}"
        return (
            f"IterateHistory(D={self.D}, {xi}, num_terms={self._h.num_terms}, count={self.count})"
        )

    @property
    def D(self) -> int:
        """History depth."""
        return int(self._h.depth)

    @property
    def num_terms(self) -> int:
        """How many of the most recent differences the sum uses."""
        return int(self._h.num_terms)

    @property
    def count(self) -> int:
        """Number of differences pushed since creation (or :meth:`clear`)."""
        return int(self._h.count)

    def push(self, diff_sq: float) -> None:
        """Record ``||theta^{k+1} - theta^k||^2`` (finite, >= 0); the oldest beyond D drops."""
        self._h.push(check_real(diff_sq, "diff_sq", minimum=0.0))

    def push_iterates(self, theta_new: Any, theta_old: Any) -> float:
        """Push ``squared_distance(theta_new, theta_old)`` and return it."""
        d = _squared_distance(theta_new, theta_old, "theta_new", "theta_old")
        self._h.push(d)
        return d

    def recent(self) -> npt.NDArray[np.float64]:
        """Stored differences, most recent first."""
        return np.array(self._h.recent(), dtype=np.float64)

    def weights(self) -> npt.NDArray[np.float64]:
        """Current ``xi_1..xi_D`` (0 where a difference is not used)."""
        return np.array([self._h.weight(d) for d in range(1, self.D + 1)], dtype=np.float64)

    def weighted_sum(self) -> float:
        """``sum_d xi_d * diff_d`` (the official code's ``me``)."""
        return float(self._h.weighted_sum())

    def rhs(self, alpha: float, num_workers: int) -> float:
        """``(1 / (alpha^2 M^2)) * weighted_sum()``: the first term of the upload test."""
        a = check_real(alpha, "alpha", positive=True)
        m = check_positive_int(num_workers, "num_workers")
        return float(self._h.rhs(a, m))

    def clear(self) -> None:
        """Forget every difference (count back to 0)."""
        self._h.clear()

    def state(self) -> dict[str, Any]:
        """Plain-Python snapshot (parameters, stored differences, count): for checkpoints.

        ``IterateHistory.from_state(h.state())`` rebuilds ``h`` exactly; pickling and
        :func:`copy.deepcopy` use the same snapshot.
        """
        return {
            "D": self.D,
            "xi": list(self._h.weights) if self._h.explicit_weights else None,
            "ck": float(self._h.ck),
            "num_terms": self.num_terms,
            "recent": [float(v) for v in self._h.recent()],
            "count": self.count,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> IterateHistory:
        """Inverse of :meth:`state`; ``ValueError`` for an inconsistent snapshot."""
        try:
            h = cls(state["D"], state["xi"], state["ck"], state["num_terms"])
            recent = [check_real(v, "stored difference", minimum=0.0) for v in state["recent"]]
            count = check_positive_int(state["count"], "count", minimum=0)
        except KeyError as err:
            raise ValueError(f"history state lacks the key {err}") from None
        h._h.restore(recent, count)
        return h

    def __reduce__(self) -> tuple[Any, ...]:
        # The native ring buffer does not pickle by itself: go through the plain snapshot.
        return (IterateHistory.from_state, (self.state(),))


def laq_should_upload(
    innov_sq: float,
    rhs: float,
    err_sq: float,
    err_hat_sq: float,
    clock: int,
    *,
    t_bar: int | None = 100,
    err_coef: float = 3.0,
    err_scale: float = 1.0,
    additive: float = 0.0,
) -> bool:
    """The LAQ upload test in the official code's form.

    Returns ``innov_sq >= rhs + (err_scale * err_coef) * (err_sq + err_hat_sq) + additive``
    or ``clock >= t_bar`` (``t_bar=None``: never forced; ``t_bar=0``: always, i.e. upload
    every iteration, as ``--t-bar 0`` and ``Params(t_bar=0)`` mean). LAQ: the defaults; SLAQ:
    ``err_scale=0.5, additive=0.2`` (and an :class:`IterateHistory` with ``num_terms=D-1``).

    Examples
    --------
    >>> import laqcore
    >>> laqcore.laq_should_upload(1.0, rhs=0.5, err_sq=0.05, err_hat_sq=0.05, clock=3)
    True
    >>> laqcore.laq_should_upload(0.5, rhs=0.5, err_sq=0.05, err_hat_sq=0.05, clock=100)
    True
    """
    innov = check_real(innov_sq, "innov_sq", minimum=0.0)
    r = check_real(rhs, "rhs", minimum=0.0)
    e = check_real(err_sq, "err_sq", minimum=0.0)
    ehat = check_real(err_hat_sq, "err_hat_sq", minimum=0.0)
    c = check_positive_int(clock, "clock", minimum=0)
    coef = check_real(err_scale, "err_scale", minimum=0.0) * check_real(
        err_coef, "err_coef", minimum=0.0
    )
    add = check_real(additive, "additive")
    limit = None if t_bar is None else check_positive_int(t_bar, "t_bar", minimum=0)
    return _upload_test(innov, r, e, ehat, c, limit, coef, add)


def _upload_test(
    innov_sq: float,
    rhs: float,
    err_sq: float,
    err_hat_sq: float,
    clock: int,
    t_bar: int | None,
    coef: float,
    additive: float,
) -> bool:
    """The test itself, unchecked: the one place its formula is written (docs/algorithms.md)."""
    if t_bar is not None and clock >= t_bar:
        return True
    return innov_sq >= rhs + coef * (err_sq + err_hat_sq) + additive


@dataclass(frozen=True)
class UploadRule:
    """Constants of the lazy upload test, with the official LAQ and SLAQ presets.

    Attributes
    ----------
    D, ck, xi, num_terms
        History parameters (see :class:`IterateHistory`).
    t_bar : int or None
        Forced upload after this many skipped iterations (``None``: never; ``0``: every
        iteration uploads).
    err_coef, err_scale, additive
        Error term ``(err_scale * err_coef) * (err + err_hat) + additive``.

    Examples
    --------
    >>> import laqcore
    >>> rule = laqcore.UploadRule.slaq()
    >>> rule.err_scale, rule.additive, rule.make_history().num_terms
    (0.5, 0.2, 9)
    """

    D: int = 10
    ck: float = 0.8
    xi: float | tuple[float, ...] | None = None
    num_terms: int | None = None
    t_bar: int | None = 100
    err_coef: float = 3.0
    err_scale: float = 1.0
    additive: float = 0.0

    def __post_init__(self) -> None:
        # Fail at construction, not at the first iteration: build a history to validate.
        self.make_history()
        if self.t_bar is not None:
            check_positive_int(self.t_bar, "t_bar", minimum=0)
        check_real(self.err_coef, "err_coef", minimum=0.0)
        check_real(self.err_scale, "err_scale", minimum=0.0)
        check_real(self.additive, "additive")

    @classmethod
    def laq(cls) -> UploadRule:
        """Official deterministic LAQ: D=10, ck=0.8, t_bar=100, ``3 (err + err_hat)``."""
        return cls()

    @classmethod
    def slaq(cls, D: int = 10) -> UploadRule:
        """Official SLAQ: as LAQ but ``0.5 * 3 (err + err_hat) + 0.2`` and d = 1..D-1."""
        depth = check_positive_int(D, "D", minimum=2)
        return cls(D=depth, num_terms=depth - 1, err_scale=0.5, additive=0.2)

    def make_history(self) -> IterateHistory:
        """A fresh :class:`IterateHistory` with this rule's parameters."""
        return IterateHistory(self.D, self.xi, self.ck, self.num_terms)

    def should_upload(
        self, innov_sq: float, rhs: float, err_sq: float, err_hat_sq: float, clock: int
    ) -> bool:
        """:func:`laq_should_upload` with this rule's constants (every argument checked)."""
        return laq_should_upload(
            innov_sq,
            rhs,
            err_sq,
            err_hat_sq,
            clock,
            t_bar=self.t_bar,
            err_coef=self.err_coef,
            err_scale=self.err_scale,
            additive=self.additive,
        )

    def should_upload_unchecked(
        self, innov_sq: float, rhs: float, err_sq: float, err_hat_sq: float, clock: int
    ) -> bool:
        """:meth:`should_upload` without the per-call argument checks.

        For callers whose values are finite and >= 0 by construction (the quantizer's norms,
        an :class:`IterateHistory`'s right-hand side, a clock they count themselves):
        :class:`laqcore.lazy_state.LazyUploader` on every iteration, where the checks would
        cost more than the quantizer kernel on small models. Same result as
        :meth:`should_upload` for valid input, undefined for invalid input.
        """
        return _upload_test(
            innov_sq,
            rhs,
            err_sq,
            err_hat_sq,
            clock,
            self.t_bar,
            self.err_scale * self.err_coef,
            self.additive,
        )
