"""Objectives split over workers: f(theta) = sum_m f_m(theta).

Each worker m holds a shard of ``n_m`` samples and the local objective

    f_m(theta) = (1 / n_m) * sum_{i in shard m} loss(x_i, y_i; theta) + (l2 / 2) * ||theta||^2

With ``l2 = 0.01`` this is the official LAQ code's ``mean CE + 0.01 * tf.nn.l2_loss(v)`` summed
over *every* trainable variable ``v``: the code loops over ``mnist_model.trainable_variables``
(kernel *and* bias), so the bias is regularised too, and so is it here (the whole theta).

The algorithms step with the sum of the workers' gradients (``theta -= alpha * sum_m g_m``), as
the paper and the code do. Reported losses are the *mean* of the local objectives,
``F = (1/M) sum_m f_m`` (the code records ``loss_value / M``), and so is the optimality
residual ``F - F*`` that the 1e-6 stopping rule uses.

Parameters are one flat float64 vector. Linear models store a ``(d + 1, K)`` matrix row-major
(the last row is the bias): the model's inputs carry an appended column of ones, so a forward
pass is one matrix product. Everything is vectorised over samples; there are no per-sample
Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .._typing import F64
from .._validate import check_positive_int

__all__ = [
    "MODELS",
    "LeastSquaresModel",
    "LocalObjective",
    "LogisticModel",
    "MLPModel",
    "Model",
    "SoftmaxModel",
    "add_bias",
]


def __dir__() -> list[str]:
    return __all__


def add_bias(X: F64) -> F64:
    """Append a column of ones (the bias input)."""
    return np.hstack([X, np.ones((X.shape[0], 1))])


def _log_softmax_rows(Z: F64) -> tuple[F64, F64]:
    """Return (log-sum-exp per row, softmax probabilities), numerically stable."""
    zmax = Z.max(axis=1, keepdims=True)
    E = np.exp(Z - zmax)
    s = E.sum(axis=1, keepdims=True)
    return (np.log(s) + zmax)[:, 0], E / s


class Model:
    """A parametric per-sample loss. Subclasses implement the data term only; the L2 term
    is added by :class:`LocalObjective`.

    ``weights`` in :meth:`loss_grad` are per-sample weights (a scalar or an ``(n,)`` array):
    the data term is ``sum_i w_i loss_i``, so ``w = 1/n`` gives the mean.
    """

    name: str = ""
    convex: bool = True
    #: ``c`` in the smoothness bound ``c * lambda_max(sum_i w_i x_i x_i^T)`` (None: no bound).
    curvature: float | None = None

    def __init__(self, num_features: int, num_outputs: int) -> None:
        self.num_features = int(num_features)
        self.num_outputs = int(num_outputs)

    @property
    def dim(self) -> int:
        return (self.num_features + 1) * self.num_outputs

    def initial_point(self, seed: int = 0) -> F64:
        """Starting point: zeros for the convex models (as the official code's Dense(10)
        effectively converges from any start; zeros make runs comparable)."""
        return np.zeros(self.dim)

    def targets(self, y: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Labels in the form :meth:`loss_grad` wants (precomputed once per shard)."""
        return y

    def loss_grad(
        self, theta: F64, Xb: F64, t: npt.NDArray[Any], w: Any, *, grad: bool = True
    ) -> tuple[float, F64 | None]:
        raise NotImplementedError  # abstract: every model below overrides it

    def predict(self, theta: F64, Xb: F64) -> npt.NDArray[Any]:
        raise NotImplementedError  # abstract: every model below overrides it


class SoftmaxModel(Model):
    """Multinomial logistic regression (the paper's Dense(10)): mean cross-entropy."""

    name = "softmax"
    curvature = 0.5  # ||diag(p) - p p^T|| <= 1/2

    def loss_grad(
        self, theta: F64, Xb: F64, t: npt.NDArray[Any], w: Any, *, grad: bool = True
    ) -> tuple[float, F64 | None]:
        W = theta.reshape(self.num_features + 1, self.num_outputs)
        Z = Xb @ W
        per, P = self.residuals(Z, t)
        loss = float(np.sum(per * w))
        if not grad:
            return loss, None
        P *= np.reshape(w, (-1, 1)) if np.ndim(w) else w
        return loss, (Xb.T @ P).ravel()

    @staticmethod
    def residuals(Z: F64, t: npt.NDArray[Any]) -> tuple[F64, F64]:
        """Per-sample cross-entropy of the scores ``Z`` (n, K) and its derivative
        ``softmax(Z) - onehot(t)`` with respect to ``Z`` (unweighted)."""
        lse, P = _log_softmax_rows(Z)
        rows = np.arange(Z.shape[0])
        per = lse - Z[rows, t]
        P[rows, t] -= 1.0
        return per, P

    def predict(self, theta: F64, Xb: F64) -> npt.NDArray[Any]:
        scores = Xb @ theta.reshape(self.num_features + 1, self.num_outputs)
        return np.asarray(np.argmax(scores, axis=1))


class LogisticModel(Model):
    """Binary logistic regression, labels in {0, 1}."""

    name = "logistic"
    curvature = 0.25

    def __init__(self, num_features: int, num_outputs: int = 1) -> None:
        super().__init__(num_features, 1)

    def loss_grad(
        self, theta: F64, Xb: F64, t: npt.NDArray[Any], w: Any, *, grad: bool = True
    ) -> tuple[float, F64 | None]:
        z = Xb @ theta
        per = np.logaddexp(0.0, z) - t * z
        loss = float(np.sum(per * w))
        if not grad:
            return loss, None
        # sigmoid written via tanh: stable for large |z| without a branch.
        r = (0.5 * (1.0 + np.tanh(0.5 * z)) - t) * w
        return loss, Xb.T @ r

    def predict(self, theta: F64, Xb: F64) -> npt.NDArray[Any]:
        return (Xb @ theta > 0).astype(np.int64)


class LeastSquaresModel(Model):
    """Least squares ``0.5 * ||W^T x - t||^2``; classification labels become one-hot targets
    (multi-output regression, predicted class = argmax), regression targets are scalars."""

    name = "least-squares"
    curvature = 1.0

    def __init__(self, num_features: int, num_outputs: int) -> None:
        # num_outputs = 0 means regression (one scalar output).
        self.regression = num_outputs == 0
        super().__init__(num_features, max(num_outputs, 1))

    def targets(self, y: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self.regression:
            return np.asarray(y, dtype=np.float64).reshape(-1, 1)
        return np.eye(self.num_outputs)[np.asarray(y, dtype=np.int64)]

    def loss_grad(
        self, theta: F64, Xb: F64, t: npt.NDArray[Any], w: Any, *, grad: bool = True
    ) -> tuple[float, F64 | None]:
        E = Xb @ theta.reshape(self.num_features + 1, self.num_outputs) - t
        ww = np.reshape(w, (-1, 1)) if np.ndim(w) else w
        loss = float(0.5 * np.sum(E * E * ww))
        if not grad:
            return loss, None
        return loss, (Xb.T @ (E * ww)).ravel()

    def predict(self, theta: F64, Xb: F64) -> npt.NDArray[Any]:
        out = Xb @ theta.reshape(self.num_features + 1, self.num_outputs)
        return out[:, 0] if self.regression else np.argmax(out, axis=1)


class MLPModel(Model):
    """One hidden ReLU layer (200 units, as the paper's NN) and a softmax output layer.

    Layout: ``W1`` ``(d + 1, H)`` (last row = hidden bias) then ``W2`` ``(H + 1, K)``.
    Nonconvex: there is no f*, runs use a fixed iteration budget.
    """

    name = "mlp"
    convex = False
    curvature = None

    def __init__(self, num_features: int, num_outputs: int, hidden: int = 200) -> None:
        super().__init__(num_features, num_outputs)
        # int() truncated 2.7 and read "5" and True; 0 left a bias-only model, -1 a negative dim
        self.hidden = check_positive_int(hidden, "hidden")

    @property
    def dim(self) -> int:
        return (self.num_features + 1) * self.hidden + (self.hidden + 1) * self.num_outputs

    def _split(self, theta: F64) -> tuple[F64, F64]:
        n1 = (self.num_features + 1) * self.hidden
        return (
            theta[:n1].reshape(self.num_features + 1, self.hidden),
            theta[n1:].reshape(self.hidden + 1, self.num_outputs),
        )

    def initial_point(self, seed: int = 0) -> F64:
        """Seeded Glorot-uniform weights, zero biases (Keras' Dense default)."""
        rng = np.random.default_rng(seed)
        d, h, k = self.num_features, self.hidden, self.num_outputs
        W1 = np.zeros((d + 1, h))
        W2 = np.zeros((h + 1, k))
        W1[:d] = rng.uniform(-1, 1, size=(d, h)) * np.sqrt(6.0 / (d + h))
        W2[:h] = rng.uniform(-1, 1, size=(h, k)) * np.sqrt(6.0 / (h + k))
        return np.concatenate([W1.ravel(), W2.ravel()])

    def loss_grad(
        self, theta: F64, Xb: F64, t: npt.NDArray[Any], w: Any, *, grad: bool = True
    ) -> tuple[float, F64 | None]:
        W1, W2 = self._split(theta)
        A = Xb @ W1
        H = np.maximum(A, 0.0)
        Z = H @ W2[:-1] + W2[-1]
        lse, P = _log_softmax_rows(Z)
        rows = np.arange(Xb.shape[0])
        loss = float(np.sum((lse - Z[rows, t]) * w))
        if not grad:
            return loss, None
        P[rows, t] -= 1.0
        P *= np.reshape(w, (-1, 1)) if np.ndim(w) else w
        gW2 = np.vstack([H.T @ P, P.sum(axis=0, keepdims=True)])
        dA = (P @ W2[:-1].T) * (A > 0)
        gW1 = Xb.T @ dA
        return loss, np.concatenate([gW1.ravel(), gW2.ravel()])

    def predict(self, theta: F64, Xb: F64) -> npt.NDArray[Any]:
        W1, W2 = self._split(theta)
        H = np.maximum(Xb @ W1, 0.0)
        return np.asarray(np.argmax(H @ W2[:-1] + W2[-1], axis=1))


MODELS: dict[str, type[Model]] = {
    "softmax": SoftmaxModel,
    "logistic": LogisticModel,
    "least-squares": LeastSquaresModel,
    "mlp": MLPModel,
}


@dataclass
class LocalObjective:
    """Worker m's objective ``f_m`` on its shard (what a real worker process holds).

    Examples
    --------
    >>> import numpy as np
    >>> X = add_bias(np.eye(3)); y = np.array([0, 1, 0])
    >>> f = LocalObjective(SoftmaxModel(3, 2), X, y, l2=0.01)
    >>> round(f.loss(np.zeros(f.dim)), 4)  # log(2) at theta = 0
    0.6931
    """

    model: Model
    Xb: F64
    y: npt.NDArray[Any]
    l2: float = 0.01

    def __post_init__(self) -> None:
        if self.Xb.shape[0] == 0:
            raise ValueError("a worker's shard must hold at least one sample")
        self._t = self.model.targets(self.y)
        #: (oracle, index) when the problem evaluates every shard in one batch
        #: (:meth:`laqcore.problems.Problem.use_batched`); None: this shard alone.
        self.batched: tuple[Any, int] | None = None

    @property
    def n(self) -> int:
        return int(self.Xb.shape[0])

    @property
    def dim(self) -> int:
        return self.model.dim

    def loss(self, theta: F64) -> float:
        if self.batched is not None:
            return float(self.batched[0].loss(self.batched[1], theta))
        data, _ = self.model.loss_grad(theta, self.Xb, self._t, 1.0 / self.n, grad=False)
        return data + 0.5 * self.l2 * float(theta @ theta)

    def value_and_grad(self, theta: F64) -> tuple[float, F64]:
        if self.batched is not None:
            f, g = self.batched[0].value_and_grad(self.batched[1], theta)
            return float(f), g
        data, g = self.model.loss_grad(theta, self.Xb, self._t, 1.0 / self.n)
        assert g is not None  # grad=True always returns one
        return data + 0.5 * self.l2 * float(theta @ theta), g + self.l2 * theta

    def grad(self, theta: F64) -> F64:
        return self.value_and_grad(theta)[1]

    def minibatch_grad(self, theta: F64, idx: npt.NDArray[np.int64]) -> F64:
        """Gradient of the minibatch objective (mean loss over ``idx`` + the L2 term): an
        unbiased estimate of :meth:`grad` when ``idx`` is drawn uniformly (the full
        gradient when ``idx`` holds every sample, as :meth:`sample` returns for a batch
        of at least ``n``)."""
        if self.batched is not None and len(idx) == self.n:
            return self.value_and_grad(theta)[1]
        _, g = self.model.loss_grad(theta, self.Xb[idx], self._t[idx], 1.0 / max(len(idx), 1))
        assert g is not None
        return g + self.l2 * theta

    def sample(self, rng: np.random.Generator, batch: int) -> npt.NDArray[np.int64]:
        """A minibatch of ``min(batch, n)`` distinct sample indices."""
        if batch >= self.n:
            return np.arange(self.n)
        return np.sort(rng.choice(self.n, size=batch, replace=False))

    def smoothness(self) -> float:
        """An upper bound L_m on the Lipschitz constant of ``grad f_m`` (LAG-PS needs it)."""
        c = self.model.curvature
        if c is None:
            raise ValueError(
                f"the {self.model.name} model has no global smoothness bound (LAG-PS needs one)"
            )
        gram = (self.Xb.T @ self.Xb) / self.n
        return float(c * np.linalg.eigvalsh(gram)[-1] + self.l2)
