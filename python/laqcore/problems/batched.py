"""All M local losses and gradients at one point in one batched evaluation.

The simulator asks every worker for ``grad f_m(theta)`` at the same ``theta`` (the model the
server sent) and then asks the problem for ``F(theta') = (1/M) sum_m f_m(theta')`` at the
next model, which is where the workers evaluate next. Done worker by worker, this costs M
small matrix products and M Python calls per iteration, which dominates a run at M = 1024
(weak scaling: 20 samples per worker). :class:`BatchedOracle` stacks the shards into one
zero-padded ``(M, n_max, d + 1)`` array and evaluates every local loss and gradient with one
matrix product for the scores and one batched product for the gradients, keeping the result
for the last point it saw; :meth:`Problem.use_batched` routes the workers' and the problem's
``loss``/``grad``/``value_and_grad`` through it.

The values are the same functions (padding rows carry weight 0) but the floating-point sums
are grouped differently, so a batched run agrees with a per-worker run to rounding, not bit
for bit: it is opt-in (the scaling studies use it; the simulator/engine equivalence tests do
not). Only the softmax model is batched; other models keep the per-worker path.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from .._typing import F64
from .objectives import SoftmaxModel

if TYPE_CHECKING:
    from .problem import Problem

__all__ = ["BatchedOracle", "supports_batched"]


def __dir__() -> list[str]:
    return __all__


def supports_batched(problem: Problem) -> bool:
    """Whether :class:`BatchedOracle` can evaluate ``problem`` (softmax model)."""
    return type(problem.model) is SoftmaxModel


class BatchedOracle:
    """Every worker's ``(f_m(theta), grad f_m(theta))`` from one batched evaluation.

    Parameters
    ----------
    problem : Problem
        A softmax problem (:func:`supports_batched`).
    """

    def __init__(self, problem: Problem) -> None:
        if not supports_batched(problem):
            raise ValueError(
                f"batched evaluation supports the softmax model, not {problem.model.name!r}"
            )
        model = problem.model
        assert isinstance(model, SoftmaxModel)
        self.model = model
        self.l2 = problem.l2
        sizes = [b - a for a, b in problem.bounds]
        M, width = len(sizes), problem.Xb.shape[1]
        self.n_max = max(sizes)
        self.X = np.zeros((M, self.n_max, width))
        self.t = np.zeros((M, self.n_max), dtype=np.int64)
        self.w = np.zeros((M, self.n_max))
        labels = model.targets(problem.y)
        for m, (a, b) in enumerate(problem.bounds):
            self.X[m, : b - a] = problem.Xb[a:b]
            self.t[m, : b - a] = labels[a:b]
            self.w[m, : b - a] = 1.0 / (b - a)
        self.XT = np.ascontiguousarray(self.X.transpose(0, 2, 1))
        self._theta: F64 | None = None
        self.losses: F64 = np.zeros(M)
        self.grads: F64 = np.zeros((M, model.dim))
        self.sizes = sizes
        #: Batched evaluations done (each serves up to M gradients and the global loss).
        self.evaluations = 0
        #: Seconds spent in batched evaluations, and the workers' gradient requests served.
        self.seconds = 0.0
        self.requests = 0
        self._single_s: float | None = None

    def _at(self, theta: F64) -> None:
        """Evaluate at ``theta`` unless it is the point of the last evaluation."""
        if self._theta is not None and np.array_equal(theta, self._theta):
            return
        start = time.perf_counter()
        M, n, width = self.X.shape
        K = self.model.num_outputs
        W = theta.reshape(width, K)
        Z = (self.X.reshape(M * n, width) @ W).reshape(M, n, K)
        per, dZ = self.model.residuals(Z.reshape(M * n, K), self.t.reshape(-1))
        reg = 0.5 * self.l2 * float(theta @ theta)
        self.losses = (per.reshape(M, n) * self.w).sum(axis=1) + reg
        dZ = dZ.reshape(M, n, K) * self.w[:, :, None]
        self.grads = np.matmul(self.XT, dZ).reshape(M, width * K) + self.l2 * theta
        self._theta = np.array(theta, dtype=np.float64, copy=True)
        self.evaluations += 1
        self.seconds += time.perf_counter() - start

    def single_grad_seconds(self, theta: F64, *, probes: int = 8, repeats: int = 3) -> float:
        """What one worker's gradient costs evaluated alone (the way a real worker computes
        it): the best of ``repeats`` timings of the per-shard product for up to ``probes``
        workers spread over the M, averaged; measured once and kept. The simulator charges
        this, not the batched evaluation's share, as the gradient part of a worker's step."""
        if self._single_s is None:
            M = len(self.sizes)
            picks = sorted({round(i * (M - 1) / max(probes - 1, 1)) for i in range(probes)})
            best = []
            for m in picks:
                n = self.sizes[m]
                Xb, t = np.ascontiguousarray(self.X[m, :n]), self.t[m, :n]
                times = []
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    _, g = self.model.loss_grad(theta, Xb, t, 1.0 / n)
                    assert g is not None
                    _ = g + self.l2 * theta
                    times.append(time.perf_counter() - t0)
                best.append(min(times))
            self._single_s = float(np.mean(best))
        return self._single_s

    def value_and_grad(self, m: int, theta: F64) -> tuple[float, F64]:
        """Worker ``m``'s ``(f_m(theta), grad f_m(theta))`` (the gradient is a fresh copy)."""
        self._at(theta)
        self.requests += 1
        return float(self.losses[m]), self.grads[m].copy()

    def loss(self, m: int, theta: F64) -> float:
        """Worker ``m``'s ``f_m(theta)``."""
        self._at(theta)
        return float(self.losses[m])

    def mean_loss(self, theta: F64) -> float:
        """``F(theta) = (1/M) sum_m f_m(theta)``, summed in worker order."""
        self._at(theta)
        return float(sum(self.losses.tolist())) / int(self.losses.shape[0])

    def mean_value_and_grad(self, theta: F64) -> tuple[float, F64]:
        """``(F(theta), grad F(theta))``."""
        self._at(theta)
        M = int(self.losses.shape[0])
        grad: F64 = self.grads.sum(axis=0) / M
        return float(sum(self.losses.tolist())) / M, grad
