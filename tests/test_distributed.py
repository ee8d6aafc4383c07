"""Multi-process tests of laqcore.distributed (gloo on CPU, world sizes 2 and 4).

Every test runs its ranks through ``run_processes`` with a hard deadline, so a bug can make
a test fail but never hang CI.
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

from _dist_workers import die_or_hang, frame_for, transport_rounds  # noqa: E402

from laqcore.distributed import LaunchError, Transport, run_processes  # noqa: E402

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("world", [2, 4])
def test_transport_delivers_only_uploaders_frames(world: int) -> None:
    outs = run_processes(transport_rounds, world, pg_timeout_s=30, deadline_s=120)
    expected = [[frame_for(r, rnd) for r in range(world)] for rnd in range(4)]
    for o in outs:
        assert o.result["frames"] == expected
        assert o.result["nonfinite"] == [world - 1]
    # Same accounting on every rank, and it matches the byte counts by hand:
    stats = [o.result["stats"] for o in outs]
    assert all(s == stats[0] for s in stats)
    s = stats[0]
    sizes = [[len(f) if f else 0 for f in rnd] for rnd in expected]
    assert s["rounds"] == 5
    assert s["uploads"] == sum(1 for rnd in sizes for x in rnd if x)
    assert s["nonfinite"] == 1
    assert s["payload_bytes"] == sum(map(sum, sizes))
    control = 5 * 8 * world * (world - 1)
    # round 0 all-gather (equal sizes, no padding); rounds 2 and 3 broadcasts of exact sizes
    # (round 3's padding would exceed the tolerance).
    payload = (world * 16 + sum(sizes[2]) + sum(sizes[3])) * (world - 1)
    assert s["control_bytes"] == control
    assert s["padding_bytes"] == 0
    assert s["wire_bytes"] == control + payload


def test_transport_rejects_bad_frames_without_a_group() -> None:
    with pytest.raises(RuntimeError, match="init_process_group"):
        Transport()


@pytest.mark.parametrize("mode", ["die", "hang"])
def test_dead_or_hung_rank_fails_the_others_within_timeout(mode: str) -> None:
    pg_timeout = 5.0
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as info:
        run_processes(die_or_hang, 2, mode, 2, pg_timeout_s=pg_timeout, deadline_s=60)
    elapsed = time.monotonic() - t0
    outs = info.value.outcomes
    assert outs[0].status == "error"
    assert outs[0].error_type == "PeerFailureError"
    assert "rank 0" in (outs[0].error or "") and "round 2" in (outs[0].error or "")
    if mode == "die":
        assert outs[1].status == "exited" and outs[1].exitcode == 17
    else:
        assert outs[1].status == "killed"
    # Survivors notice within the timeout (plus process start-up), never the deadline.
    assert elapsed < 45
