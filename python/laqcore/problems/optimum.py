"""High-accuracy minimisation of a convex problem, to get F* for the residual F - F*.

A plain L-BFGS (memory 20) with an Armijo backtracking line search, in float64, run until
``||grad F|| <= gtol``. For a mu-strongly convex F that bounds the error of F* by
``gtol^2 / (2 mu)``; with ``gtol = 1e-8`` and ``mu >= l2 = 0.01`` that is ~5e-15, far below
the 1e-6 stopping tolerance. Results are cached as small JSON files keyed by the problem's
fingerprint, so each problem is solved once per machine.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .._typing import F64

if TYPE_CHECKING:
    from .problem import Problem

__all__ = ["cache_dir", "cached_optimum", "lbfgs"]


def __dir__() -> list[str]:
    return __all__


def cache_dir() -> str:
    """Where optimal values are cached: ``$LAQCORE_CACHE_DIR`` or ``~/.cache/laqcore``."""
    base = os.environ.get("LAQCORE_CACHE_DIR")
    if not base:
        base = os.path.join(os.path.expanduser("~"), ".cache", "laqcore")
    return base


def lbfgs(
    fun: Callable[[F64], tuple[float, F64]],
    x0: F64,
    *,
    gtol: float = 1e-8,
    max_iter: int = 20000,
    memory: int = 20,
) -> tuple[F64, float, float, int]:
    """Minimise ``fun`` (returning value and gradient) from ``x0``.

    Returns ``(x, f(x), ||grad f(x)||, iterations)``.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.diag([1.0, 10.0])
    >>> x, f, g, _ = lbfgs(lambda x: (0.5 * x @ A @ x, A @ x), np.ones(2))
    >>> bool(f < 1e-15)
    True
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fun(x)
    hist: deque[tuple[F64, F64, float]] = deque(maxlen=memory)
    iterations = 0
    stalled = 0
    for _ in range(max_iter):
        iterations += 1
        gnorm = float(np.linalg.norm(g))
        if gnorm <= gtol:
            break
        # Two-loop recursion for the quasi-Newton direction.
        q = g.copy()
        alphas = []
        for s, yv, rho in reversed(hist):
            a = rho * float(s @ q)
            alphas.append(a)
            q -= a * yv
        if hist:
            s, yv, _ = hist[-1]
            q *= float(s @ yv) / float(yv @ yv)
        for (s, yv, rho), a in zip(hist, reversed(alphas)):
            b = rho * float(yv @ q)
            q += (a - b) * s
        direction = -q
        slope = float(g @ direction)
        if slope >= 0:  # not a descent direction (numerical trouble): restart with -g
            hist.clear()
            direction, slope = -g, -(gnorm**2)
        step = 1.0 if hist else min(1.0, 1.0 / gnorm)
        for _ in range(60):
            x_new = x + step * direction
            f_new, g_new = fun(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease left at float64 resolution: x is as good as it gets
        s, yv = x_new - x, g_new - g
        sy = float(s @ yv)
        if sy > 1e-300:
            hist.append((s, yv, 1.0 / sy))
        # Stop once F no longer moves at float64 resolution (gtol below what the data allows).
        stalled = stalled + 1 if f - f_new <= 4e-16 * abs(f) else 0
        x, f, g = x_new, f_new, g_new
        if stalled >= 10:
            break
    return x, float(f), float(np.linalg.norm(g)), iterations


def cached_optimum(problem: Problem, *, use_cache: bool = True, gtol: float = 1e-8) -> float:
    """F* of ``problem``, from the on-disk cache or a fresh :func:`lbfgs` solve."""
    path = os.path.join(cache_dir(), "optima", f"{problem.fingerprint()}.json")
    if use_cache and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                rec: dict[str, Any] = json.load(fh)
            cached = float(rec["f_star"])
            if math.isfinite(cached) and math.isfinite(float(rec.get("grad_norm", 0.0))):
                return cached
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable cache entry: recompute and overwrite it
    _x, f, gnorm, iters = lbfgs(problem.value_and_grad, problem.initial_point(), gtol=gtol)
    if not (math.isfinite(f) and math.isfinite(gnorm)):
        # Features so large that the loss or its gradient overflows float64: the solve
        # stopped at once, and every run "reached" that F* at iteration 0 (or never did).
        raise ValueError(
            f"F* of {problem.name} cannot be computed (F = {f:.6g}, ||grad F|| = {gnorm:.3g}): "
            f"the loss overflows float64 (features up to "
            f"{np.abs(problem.Xb).max():.3g} in magnitude); scale the features down "
            "(--normalize maxabs for mnist and libsvm:PATH)"
        )
    if use_cache:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + f".tmp{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(
                    {"problem": problem.name, "f_star": f, "grad_norm": gnorm, "iterations": iters},
                    fh,
                )
            os.replace(tmp, path)  # atomic: concurrent runs never read a half-written file
        except OSError:
            pass  # a read-only home directory must not stop a run
    return f
