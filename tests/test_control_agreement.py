"""Ranks that resolve the gloo control phase differently take rank 0's choice.

Each rank resolves ``control`` (``laqcore.distributed.transport.resolve_control``) from its
own process: the ``LAQCORE_TRANSPORT_CONTROL`` variable, its CPU affinity, whether gloo's
loop thread is idle. Before the hooks' first-iteration check and ``laqcore launch``'s first
broadcast carried it, a rank pinned to one CPU next to an unpinned one paired a round of
messages with collectives and both waited until the group's timeout. The variable set
differently per rank stands in for every such cause here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from needs_torch import require_torch

require_torch("the control-phase agreement tests")

from _dist_workers import ddp_runs, engine_runs, with_control_env  # noqa: E402
from driver_cases import SMALL_DIGITS  # noqa: E402
from laqcore.distributed import run_processes  # noqa: E402
from laqcore.distributed.transport import CONTROL_ENV, adopt_control  # noqa: E402

# The all-gather exchange is the one whose statuses cross by ``control``.
_RUNS = [
    {"method": "laq", "steps": 6, "kwargs": {"warmup_steps": 1, "exchange": "all-gather"}},
    {"method": "qsgd", "steps": 6, "kwargs": {"warmup_steps": 1, "exchange": "all-gather"}},
]


def _launch(controls: list[str], runner, *args) -> list[dict]:
    outs = run_processes(
        with_control_env, 2, controls, runner, *args, pg_timeout_s=30, deadline_s=150
    )
    return [o.result for o in outs]


def test_adopt_control_warns_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert adopt_control("messages", "messages", "hook") == "messages"  # agreed: silent
    monkeypatch.setenv(CONTROL_ENV, "collectives")
    with pytest.warns(UserWarning, match="LAQCORE_TRANSPORT_CONTROL=collectives") as got:
        assert adopt_control("collectives", "messages", "hook") == "messages"
    text = str(got[0].message)
    assert "laqcore hook" in text and "rank 0 to 'messages'" in text
    monkeypatch.delenv(CONTROL_ENV)
    with pytest.warns(UserWarning, match=r"auto, with this process allowed on \d+ CPU"):
        adopt_control("collectives", "messages", "engine")


@pytest.mark.distributed
def test_hooks_take_rank0s_control() -> None:
    """LAQ and QSGD over the all-gather finish with rank 0's control on both ranks, only
    the rank whose own resolution differed warns, and the gradients are those of a launch
    where both ranks chose the same (the choice changes time only)."""
    for controls in (["messages", "collectives"], ["collectives", "messages"]):
        mixed = _launch(controls, ddp_runs, _RUNS)
        assert mixed[0]["warnings"] == []
        assert len(mixed[1]["warnings"]) == len(_RUNS)  # once per hook state
        assert f"rank 0 to '{controls[0]}'" in mixed[1]["warnings"][0]
        same = _launch([controls[0]] * 2, ddp_runs, _RUNS)
        assert same[0]["warnings"] == same[1]["warnings"] == []
        for rank in (0, 1):
            for got, ref in zip(mixed[rank]["result"], same[rank]["result"]):
                np.testing.assert_array_equal(got["grads"], ref["grads"])
        np.testing.assert_array_equal(
            mixed[0]["result"][0]["params"], mixed[1]["result"][0]["params"]
        )


@pytest.mark.distributed
def test_engine_takes_rank0s_control() -> None:
    from laqcore.distributed.engine_config import EngineConfig

    cfg = EngineConfig(
        problem=SMALL_DIGITS, algorithm="laq", max_iterations=8, exchange="all-gather"
    )
    out = _launch(["messages", "collectives"], engine_runs, [cfg])
    assert out[0]["warnings"] == []
    assert len(out[1]["warnings"]) == 1 and "laqcore engine" in out[1]["warnings"][0]
    a, b = (o["result"][0] for o in out)
    assert a["decisions"] == b["decisions"]
    np.testing.assert_array_equal(a["theta"], b["theta"])
    assert a["result"]["iterations"] == 8
