"""Slow, readable numpy references for every native kernel, and transcriptions of the
official LAQ code.

The kernel references live in the package (:mod:`laqcore._reference`, which the benchmark's
numpy baselines also use) and are re-exported here, so tests write ``ref.laq_quantize``.
This file adds what only tests need: literal transcriptions of the official LAQ/SLAQ code
(the formulas of docs/algorithms.md as that code writes them), used to pin the algorithms.
"""

from __future__ import annotations

import numpy as np

from laqcore._reference import *  # noqa: F403  (the kernel references, one source)
from laqcore._reference_transforms import *  # noqa: F403  (entropy coder, rotation)


def laq_official_quantd(vec: np.ndarray, v2: np.ndarray, b: int) -> np.ndarray:
    """The official code's formula, transcribed (float64 throughout):
    r = max|vec - v2|; delta = r / (2^b - 1); Q = v2 - r + 2 delta floor((vec - v2 + r + delta) / (2 delta))."""
    vec = np.asarray(vec, dtype=np.float64)
    v2 = np.asarray(v2, dtype=np.float64)
    r = np.max(np.abs(vec - v2))
    delta = r / (np.floor(2**b) - 1)
    return v2 - r + 2 * delta * np.floor((vec - v2 + r + delta) / (2 * delta))


def official_laq_me(diffs: list[float], D: int = 10, ck: float = 0.8) -> float:
    """`me` of the official LAQ.py loop at iteration k = len(diffs), transcribed literally.

    diffs[j] = ||theta^{j+1} - theta^j||^2, so dtheta[k] = diffs[k-1] (dtheta[0] = 0).
    ksi[:, 0] = ck; ksi[:, i] = ck * (1/i) for i = 1..D.
    """
    k = len(diffs)
    dtheta_sq = [0.0, *diffs]
    ksi = np.ones((D, D + 1))
    for i in range(D + 1):
        ksi[:, i] = np.ones(D) if i == 0 else 1 / i * np.ones(D)
    ksi = ck * ksi
    me = 0.0
    for d in range(D):
        if k - d >= 0:
            if k <= D:
                me = me + ksi[d, k] * dtheta_sq[k - d]
            if k > D:
                me = me + ksi[d, D] * dtheta_sq[k - d]
    return float(me)


def official_slaq_me_steady(diffs: list[float], D: int = 10, ck: float = 0.8) -> float:
    """`me` of the official SLAQ.py loop for k = len(diffs) >= D (its shift buffer holds the D
    most recent differences, column D-1 the newest; the sum runs over d = 1..D-1)."""
    k = len(diffs)
    assert k >= D
    dtheta_sq = list(diffs[-D:])  # columns 0..D-1, oldest first
    me = 0.0
    for d in range(1, D):
        w = ck * (1 / D)
        me = me + w * (dtheta_sq[k - d] if k <= D else dtheta_sq[D - d])
    return float(me)
