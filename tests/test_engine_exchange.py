"""The engine's owner-chunk exchange, without processes: ``server.apply(uploads)`` equals
``server.commit`` of the state folded chunk by chunk from the uploads' slices (what the
owners of a two-phase round compute), bit for bit; which algorithms can use it; the
``--exchange`` errors before any process starts."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from driver_cases import SMALL_DIGITS
from laqcore.algorithms import get_algorithm
from laqcore.distributed.engine_exchange import (
    check_exchange,
    owner_chunks,
    resolve_exchange,
    upload_unit,
)
from laqcore.distributed.slicing import slice_payload
from laqcore.distributed.two_phase import chunk_bounds
from laqcore.problems import make_problem

CHUNKABLE = ["gd", "lag-wk", "laq", "qgd", "slaq", "qsgd", "terngrad", "lag-ps", "ef-sign"]


def _sides(name: str, **overrides: Any) -> tuple[Any, Any, Any, dict[int, Any]]:
    prob = make_problem(**SMALL_DIGITS)
    alg = get_algorithm(name, **overrides)
    M = prob.num_workers
    smooth = prob.smoothness() if alg.needs_smoothness else None
    server = alg.make_server(prob.initial_point(), M, smooth)
    workers = {m: alg.make_worker(m, prob.workers[m], M) for m in range(M)}
    return prob, alg, server, workers


@pytest.mark.parametrize("name", CHUNKABLE)
@pytest.mark.parametrize("world", [2, 3, 4])
def test_commit_of_chunk_folds_is_apply(name: str, world: int) -> None:
    prob, alg, server, workers = _sides(name)
    unit = upload_unit(alg, server)
    assert unit is not None and unit % 8 == 0
    bounds = chunk_bounds(prob.dim, world, unit)
    assert bounds[-1][1] == prob.dim
    chunked = copy.deepcopy(server)
    for _ in range(6):
        msgs = [server.message(m) for m in range(prob.num_workers)]
        for m in range(prob.num_workers):
            chunked.message(m)  # same per-iteration state (LAG-PS's requests, rhs)
        ups = {m: p for m, w in workers.items() if (p := w.step(msgs[m])) is not None}
        state = np.concatenate(
            [
                chunked.fold({m: slice_payload(p, s, e) for m, p in ups.items()}, s, e)
                for s, e in bounds
                if e > s  # an empty chunk (fewer units than ranks) has no owner's work
            ]
        )
        server.apply(ups)
        if ups:
            chunked.commit(sorted(ups), state)
        else:
            chunked.apply({})
        assert server.theta.tobytes() == chunked.theta.tobytes(), name
        if hasattr(server, "rhs"):
            assert server.rhs() == chunked.rhs()


def test_which_algorithms_can_and_the_errors() -> None:
    prob, alg, server, _ = _sides("laq", block_size=32)
    assert upload_unit(alg, server) == 32
    for name in ("topk-ef", "sparse-qsgd", "asylpg", "pqasgd", "one-shot"):
        _, a, s, _ = _sides(name)
        assert upload_unit(a, s) is None
        assert resolve_exchange("auto", a, s) is None
        assert resolve_exchange("all-gather", a, s) is None
        with pytest.raises(ValueError, match=f"two-phase needs .*; {name} cannot"):
            resolve_exchange("two-phase", a, s)
        with pytest.raises(ValueError, match="two-phase"):
            check_exchange("two-phase", a)
    _, a, s, _ = _sides("gd")
    assert resolve_exchange("auto", a, s) == resolve_exchange("two-phase", a, s) == 8
    with pytest.raises(ValueError, match="exchange must be one of"):
        resolve_exchange("ring", a, s)


def test_launch_refuses_bad_exchange_before_starting(capsys: Any) -> None:
    from laqcore.cli import main

    argv = ["launch", "--nproc", "2", "--algorithm", "topk-ef", "--workers", "2"]
    assert main([*argv, "--exchange", "two-phase"]) == 2
    assert "topk-ef cannot" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*argv, "--exchange", "ring"])


@pytest.mark.parametrize("name", ["gd", "lag-wk", "laq", "qsgd"])
def test_chunked_downlink_by_owners_is_the_simulators_round(name: str) -> None:
    """Owners fold their chunks of the uploads' slices and publish frames that the other
    ranks decode and apply: the simulator's one-process round, bit for bit, on both."""
    from laqcore.downlink import ChunkedStateDownlink
    from laqcore.laq_payload import LAQPayload

    prob, alg, sim_server, workers = _sides(name)
    servers = [copy.deepcopy(sim_server) for _ in range(2)]  # the owners', a receiver's
    bounds = owner_chunks(alg, sim_server, 3)
    sim, own, rx = (ChunkedStateDownlink(s, 5, bounds) for s in [sim_server, *servers])
    M = prob.num_workers
    for _ in range(6):
        msgs = [sim_server.message(m) for m in range(M)]
        for srv in servers:
            for m in range(M):
                srv.message(m)
        ups = {m: p for m, w in workers.items() if (p := w.step(msgs[m])) is not None}
        sent = sim.round(ups, M)
        size = 0
        for s, e in bounds if ups else []:
            if s < e:
                own.fold({m: slice_payload(p, s, e) for m, p in ups.items()}, s, e)
                frame = own.publish(s, e).to_bytes()
                rx.receive(s, e, LAQPayload.from_bytes(frame, expected_n=e - s))
                size += len(frame)
        assert own.held.tobytes() == rx.held.tobytes() == sim.held.tobytes()
        assert sent.broadcast == size and sent.delivered == M * size
        for srv, down in zip(servers, (own, rx)):
            if ups:
                down.commit(sorted(ups))
            else:
                srv.apply({})
            assert srv.theta.tobytes() == sim_server.theta.tobytes()


def test_chunked_downlink_errors(capsys: Any) -> None:
    from laqcore.cli import main
    from laqcore.simulator import simulate

    prob, alg, server, _ = _sides("laq")
    assert check_exchange("auto", alg, "delta:laq:4") is True
    assert check_exchange("two-phase", alg) is False
    with pytest.raises(ValueError, match="needs the two-phase exchange"):
        check_exchange("all-gather", alg, "delta:laq:4")
    with pytest.raises(ValueError, match="the engine's downlink is delta or delta:laq:B"):
        check_exchange("auto", alg, "model")
    _, topk, _, _ = _sides("topk-ef", batch=16)
    with pytest.raises(ValueError, match="needs the two-phase exchange"):
        check_exchange("auto", topk, "delta:laq:4")
    with pytest.raises(ValueError, match="downlink_chunks needs a delta:laq:B"):
        simulate(prob, alg, max_iterations=2, downlink="delta", downlink_chunks=2)
    with pytest.raises(ValueError, match="topk-ef cannot"):
        simulate(prob, topk, max_iterations=2, downlink="delta:laq:4", downlink_chunks=2)
    argv = ["run", "--workers", "2", "--max-samples", "100", "-K", "2", "-q", "--no-plots"]
    assert main([*argv, "--downlink-chunks", "2"]) == 2
    assert "--downlink-chunks needs" in capsys.readouterr().err
    # N processes host >= 1 worker each: more chunks than workers model no launch, and
    # --downlink-chunks 10**11 hung in the chunk split
    with pytest.raises(ValueError, match=rf"downlink_chunks must be in \[0, {prob.num_workers}\]"):
        simulate(prob, alg, max_iterations=2, downlink="delta:laq:4", downlink_chunks=10**11)
    assert main([*argv, "--downlink", "delta:laq:4", "--downlink-chunks", str(10**11)]) == 2
    assert "it needs N <= --workers (2)" in capsys.readouterr().err
