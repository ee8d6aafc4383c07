"""Helpers shared by the tests that drive algorithms by hand (test_algorithms,
test_simulator, test_distributed): the small problem they all use and a trajectory recorder
over the round driver (laqcore.driver), which exposes every iterate and upload decision."""

from __future__ import annotations

from typing import Any

import numpy as np

from laqcore.driver import Recorder, run_rounds

# 4 workers on 400 digits samples: big enough for every algorithm's rule to act, fast.
SMALL_DIGITS: dict[str, Any] = {"dataset": "digits", "workers": 4, "max_samples": 400}


def trajectory(prob: Any, alg: Any, iterations: int) -> tuple[Any, Any]:
    """Run ``iterations`` rounds with the round driver; return the iterates and the
    per-iteration upload masks, so that every decision can be checked."""
    M = prob.num_workers
    smooth = prob.smoothness() if alg.needs_smoothness else None
    server = alg.make_server(prob.initial_point(), M, smooth)
    workers = {m: alg.make_worker(m, prob.workers[m], M) for m in range(M)}
    recorder = Recorder(
        f_star=None, evaluate=lambda theta: (0.0, 0.0), eval_every=1, record_history=False
    )
    thetas = [server.theta.copy()]
    run_rounds(
        server,
        workers,
        recorder,
        loss=lambda theta: 0.0,  # no stop rule but the budget: every iteration is kept
        loss0=0.0,
        max_iterations=iterations,
        eps=0.0,
        after_round=lambda k, r: thetas.append(server.theta.copy()),
    )
    masks = [[m in ups for m in range(M)] for ups in recorder.decisions]
    return np.array(thetas), np.array(masks)
