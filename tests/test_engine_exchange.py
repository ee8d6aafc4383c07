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
from laqcore.distributed.engine_exchange import check_exchange, resolve_exchange, upload_unit
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
