"""Host gathers (laqcore.distributed.gather) at 2 and 3 gloo ranks: the rows of every
case equal ``dist.all_gather``'s and the ranks' arrays, on every rank; each collective ran
through the guard under its name."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from _two_phase_workers import GATHER_CASES, gather_send, host_gather_cases  # noqa: E402
from laqcore.distributed import run_processes  # noqa: E402

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("world", [2, 3])
def test_host_gather_matches_all_gather(world: int) -> None:
    outs = run_processes(host_gather_cases, world, pg_timeout_s=30, deadline_s=120)
    for out in outs:
        res = out.result
        for i, (size, dtype) in enumerate(GATHER_CASES):
            want = np.stack([gather_send(r, size, dtype) for r in range(world)])
            assert res["got"][i].dtype == want.dtype, (out.rank, i)
            assert np.array_equal(res["got"][i], want), (out.rank, i)
            assert np.array_equal(res["ring"][i], want), (out.rank, i)
        assert res["ints"] == [
            [[r, -r, 7] for r in range(world)],
            [[r * 10] for r in range(world)],
        ]
        names = [f"{'rows' if i % 2 else 'into'} {i}" for i in range(len(GATHER_CASES))]
        assert res["names"] == [*names, "ints", "int"]
