"""Checkpoints written by rank 0 only, as Lightning and Accelerate write them.

Lightning's ``on_save_checkpoint`` and Accelerate's ``register_for_checkpointing`` call the
hook state's ``state_dict()`` on every rank but write rank 0's file only, which every rank
reads on resume. The hook's state is per rank, so rank 1 loading rank 0's was refused (2
gloo ranks, Lightning 2.6.6: "this checkpoint was saved by rank 0 of 2; loading it on rank 1")
and such a trainer had no way to checkpoint the hook. ``state_dict(all_ranks=True)`` gathers
every rank's state into the one file; ``load_state_dict`` takes this rank's entry. The
mechanism is reproduced here with torch alone (rank 0's dict broadcast as "the file").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402

import _hook_trainers as ht  # noqa: E402
from laqcore.distributed import run_processes  # noqa: E402
from laqcore.torch import LAQState  # noqa: E402

_LAQ = {"method": "laq", "kwargs": {"warmup_steps": 5}, "opt": "momentum", "steps": 40}
_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("full", _LAQ),
    ("saved", {**_LAQ, "checkpoint_at": 20, "all_ranks_checkpoint": True}),
    ("resumed from rank 0's file", {**_LAQ, "resume_of_rank0": 1}),
    ("saved per rank", {**_LAQ, "steps": 20, "checkpoint_at": 20}),
    ("per-rank state from rank 0's file", {"method": "laq", "load_rank0_of": 3}),
]


@pytest.fixture(scope="module")
def two_ranks() -> dict[str, list[Any]]:
    outs = run_processes(ht.runs, 2, [s for _, s in _ROWS], pg_timeout_s=60, deadline_s=300)
    return {name: [o.result[i] for o in outs] for i, (name, _) in enumerate(_ROWS)}


pytestmark = pytest.mark.distributed


def test_all_ranks_checkpoint_from_rank_0_resumes_exactly(
    two_ranks: dict[str, list[Any]],
) -> None:
    for r in range(2):
        full, resumed = two_ranks["full"][r], two_ranks["resumed from rank 0's file"][r]
        np.testing.assert_array_equal(resumed["params"], full["params"])
        for k in ("iteration", "uploads", "uploads_skipped", "bytes_sent"):
            assert resumed["stats"][k] == full["stats"][k], (r, k)
    # The ranks' own states differ (they upload at different steps), so taking rank 0's for
    # both could not have given the same run.
    saved = two_ranks["saved"][0]["checkpoint"]["hook"]["all_ranks"]
    assert [sd["rank"] for sd in saved] == [0, 1]
    assert saved[0]["counters"] != saved[1]["counters"]


def test_a_per_rank_state_from_rank_0s_file_names_the_remedy(
    two_ranks: dict[str, list[Any]],
) -> None:
    assert two_ranks["per-rank state from rank 0's file"][0] == ("no error", "")
    kind, text = two_ranks["per-rank state from rank 0's file"][1]
    assert kind == "ValueError"
    assert "saved by rank 0 of 2" in text and "state_dict(all_ranks=True)" in text


def test_all_ranks_checkpoint_needs_the_process_group() -> None:
    if dist.is_initialized():  # pragma: no cover - another module left one
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(ValueError, match="after init_process_group"):
        LAQState().load_state_dict({"all_ranks": [{}, {}]})
    with pytest.raises(TypeError, match="one state per rank"):
        LAQState().load_state_dict({"all_ranks": {"rank": 0}})
