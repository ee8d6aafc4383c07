"""The batched evaluation of every worker's loss and gradient (Problem.use_batched)."""

from __future__ import annotations

import numpy as np
import pytest

from laqcore.algorithms import get_algorithm, own_overrides
from laqcore.problems import make_problem
from laqcore.problems.batched import BatchedOracle
from laqcore.simulator import simulate


def _problem(workers: int, model: str = "softmax"):  # type: ignore[no-untyped-def]
    # digits split unevenly (1437 rows over 7 or 600 workers): padded shards of 1..206 rows.
    return make_problem("digits", model=model, workers=workers, seed=1)


@pytest.mark.parametrize("workers", [7, 600])
def test_batched_values_match_per_worker(workers: int) -> None:
    prob = _problem(workers)
    rng = np.random.default_rng(0)
    theta = 0.05 * rng.standard_normal(prob.dim)
    plain = [w.value_and_grad(theta) for w in prob.workers]
    F, G = prob.value_and_grad(theta)
    assert prob.use_batched()
    for m, w in enumerate(prob.workers):
        f, g = w.value_and_grad(theta)
        np.testing.assert_allclose(f, plain[m][0], rtol=1e-12)
        np.testing.assert_allclose(g, plain[m][1], rtol=1e-10, atol=1e-14)
        # A full "minibatch" is the full gradient; a real minibatch bypasses the batch.
        np.testing.assert_allclose(w.minibatch_grad(theta, np.arange(w.n)), g, rtol=0)
    Fb, Gb = prob.value_and_grad(theta)
    np.testing.assert_allclose(Fb, F, rtol=1e-12)
    np.testing.assert_allclose(Gb, G, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(prob.loss(theta), F, rtol=1e-12)
    oracle = prob.batched_oracle
    assert oracle is not None and oracle.evaluations == 1  # one evaluation served them all
    g0 = prob.workers[0].grad(theta)
    g0[:] = 0.0  # the caller owns its copy: the cached rows are untouched
    assert np.any(prob.workers[0].grad(theta) != 0)
    assert not prob.use_batched(False) and prob.batched_oracle is None
    assert all(w.batched is None for w in prob.workers)


def test_batched_refuses_other_models() -> None:
    prob = _problem(3, model="least-squares")
    assert not prob.use_batched()  # not batched: the per-worker path stays
    with pytest.raises(ValueError, match="softmax"):
        BatchedOracle(prob)


@pytest.mark.parametrize("name", ["lag-wk", "laq", "qsgd"])
def test_batched_run_follows_the_per_worker_run(name: str) -> None:
    runs = []
    for batched in (False, True):
        prob = _problem(12)
        prob.use_batched(batched)
        alg = get_algorithm(name, **own_overrides(name, {"batch": 10**9}))  # full gradients
        runs.append(simulate(prob, alg, max_iterations=60, eps=0.0, eval_every=30))
    a, b = runs
    assert b.iterations == a.iterations == 60
    assert b.uploads == a.uploads and b.bits == a.bits  # same decisions on this run
    # digits is integer-valued, so at theta = 0 many quantizer inputs sit exactly on a
    # rounding tie: a 1e-17 difference moves such a code by one level, and the quantized
    # curves then agree to ~1e-3 (same decisions); the exact ones (LAG-WK) to rounding.
    tol = 1e-9 if name == "lag-wk" else 1e-2
    np.testing.assert_allclose(b.history["loss"], a.history["loss"], rtol=tol)
    # The time model is charged one worker's own gradient time, not the batch's share:
    # the measured worker step is a real, positive timing of the same order as the per-worker
    # run's. Both are wall-clock timings on a machine other jobs may share, so the margin is
    # wide (a 0.1 margin failed under load); it catches a missing or zero measurement, not a
    # batch share (1/12 here), which timings on a shared machine cannot tell apart reliably.
    assert a.trace is not None and b.trace is not None
    assert np.isfinite(b.trace.worker_step_s) and b.trace.worker_step_s > 0.0
    assert b.trace.worker_step_s > 0.02 * a.trace.worker_step_s
