"""Helpers shared by the tests that drive algorithms by hand (test_algorithms,
test_simulator, test_distributed): the small problem they all use and the server/worker loop
of algorithms/base.py, written out so that every decision can be checked."""

from __future__ import annotations

from typing import Any

import numpy as np

# 4 workers on 400 digits samples: big enough for every algorithm's rule to act, fast.
SMALL_DIGITS: dict[str, Any] = {"dataset": "digits", "workers": 4, "max_samples": 400}


def trajectory(prob: Any, alg: Any, iterations: int) -> tuple[Any, Any]:
    """Run the server/worker loop by hand; return iterates and per-iteration upload masks."""
    M = prob.num_workers
    smooth = prob.smoothness() if alg.needs_smoothness else None
    server = alg.make_server(prob.initial_point(), M, smooth)
    workers = [alg.make_worker(m, prob.workers[m], M) for m in range(M)]
    thetas, masks = [server.theta.copy()], []
    for _ in range(iterations):
        up = {}
        for m, w in enumerate(workers):
            p = w.step(server.message(m))
            if p is not None:
                up[m] = p
        server.apply(up)
        thetas.append(server.theta.copy())
        masks.append([m in up for m in range(M)])
    return np.array(thetas), np.array(masks)
