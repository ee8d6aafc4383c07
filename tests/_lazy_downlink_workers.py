"""Rank body of tests/test_lazy_downlink.py (a module of its own so ``spawn`` can import it)."""

from __future__ import annotations

from typing import Any

import numpy as np

N_COORDS = 1000  # 16 blocks of 64, the last one ragged
BLOCK = 64
BITS = 4
DOWN_BITS = 6
FACTOR, DEPTH, CK = 1.0, 4, 1.0
ROUNDS = 9


def uploads_in(rnd: int, rank: int) -> bool:
    """Round 0 and 5: everyone; round 3: nobody; otherwise ranks of the round's parity."""
    if rnd in (0, 5):
        return True
    return rnd != 3 and rank % 2 == rnd % 2


def gradient(rank: int, rnd: int) -> np.ndarray:
    """A fixed gradient per rank plus a small change each round; from round 5 on it is
    tripled (a change no deferral may hide)."""
    base = np.random.default_rng([7, rank]).standard_normal(N_COORDS)
    change = np.random.default_rng([7, rank, rnd]).standard_normal(N_COORDS)
    scale = 3.0 if rnd >= 5 else 1.0
    return (scale * base + 0.05 * change).astype(np.float32)


def lazy_rounds(rank: int, world: int) -> dict[str, Any]:
    """``ROUNDS`` rounds of the pattern above with a lazy downlink, then one round in which
    the last rank's gradient is non-finite; per round the output and the stats."""
    from laqcore import laq_apply, laq_quantize
    from laqcore.distributed.exchange_codecs import LAQChunkCodec
    from laqcore.distributed.lazy_downlink import LazyDownlink
    from laqcore.distributed.two_phase import TwoPhaseExchange

    codec = LAQChunkCodec(BITS, BLOCK, DOWN_BITS, entropy=True)
    ex = TwoPhaseExchange(N_COORDS, codec, lazy_downlink=LazyDownlink(codec, FACTOR, DEPTH, CK))
    q_prev = np.zeros(N_COORDS, np.float32)
    outputs, stats = [], []
    for rnd in range(ROUNDS):
        upload = None
        if uploads_in(rnd, rank):
            upload = laq_quantize(gradient(rank, rnd), q_prev, BITS, block_size=BLOCK)
            laq_apply(q_prev, upload)
        res = ex.round(upload, step=rnd)
        assert res.output is not None
        outputs.append(res.output.tobytes())
        stats.append(ex.stats.as_dict())
    bad = ex.round(None, step=ROUNDS, nonfinite=(rank == world - 1))
    return {
        "outputs": outputs,
        "stats": stats,
        "bounds": ex.bounds,
        "owned": codec.owned.copy(),
        "aborted": bad.output is None,
        "lazy": ex.lazy.state_dict() if ex.lazy is not None else None,
    }
