"""``laqcore.distributed.idle_gloo_loop``: gloo's TCP loop threads found by name and put
under ``SCHED_IDLE`` in real gloo ranks (exchanges still exact), and its clear errors where
there is no such thread or no ``/proc`` (docs/ddp.md, "gloo's loop thread")."""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("torch")

from _dist_workers import idle_loop_then_all_reduce  # noqa: E402
from laqcore.distributed import gloo_threads, run_processes  # noqa: E402

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="threads are found under /proc/self/task"
)


def _fake_tasks(root, names: dict[int, str]) -> str:
    for tid, name in names.items():
        (root / str(tid)).mkdir()
        (root / str(tid) / "comm").write_text(name + "\n")
    (root / "77").mkdir()  # a thread that ended while listed: no comm file
    return str(root)


def test_loop_threads_found_by_name(tmp_path, monkeypatch):
    tasks = _fake_tasks(
        tmp_path, {10: "python", 12: "gloo_tcp_loop", 11: "gloo_tcp_loop", 13: "pt_gloo_runloop"}
    )
    monkeypatch.setattr(gloo_threads, "_TASKS", tasks)
    monkeypatch.setattr(gloo_threads.sys, "platform", "linux")
    assert gloo_threads.gloo_loop_threads() == [11, 12]


def test_no_loop_thread_is_a_clear_error(tmp_path, monkeypatch):
    tasks = _fake_tasks(tmp_path, {10: "python", 13: "pt_gloo_runloop"})
    monkeypatch.setattr(gloo_threads, "_TASKS", tasks)
    monkeypatch.setattr(gloo_threads.sys, "platform", "linux")
    calls = []
    monkeypatch.setattr(gloo_threads.os, "sched_setscheduler", lambda *a: calls.append(a))
    with pytest.raises(RuntimeError, match="after torch.distributed.init_process_group"):
        gloo_threads.idle_gloo_loop()
    assert calls == []


def test_loop_is_idle_only_when_every_loop_thread_is(tmp_path, monkeypatch):
    tasks = _fake_tasks(tmp_path, {10: "python", 11: "gloo_tcp_loop", 12: "gloo_tcp_loop"})
    monkeypatch.setattr(gloo_threads, "_TASKS", tasks)
    monkeypatch.setattr(gloo_threads.sys, "platform", "linux")
    policy = {10: os.SCHED_OTHER, 11: os.SCHED_IDLE, 12: os.SCHED_OTHER}
    monkeypatch.setattr(gloo_threads.os, "sched_getscheduler", lambda tid: policy[tid])
    assert not gloo_threads.gloo_loop_is_idle()
    policy[12] = os.SCHED_IDLE
    assert gloo_threads.gloo_loop_is_idle()

    def gone(tid):
        raise ProcessLookupError(tid)

    monkeypatch.setattr(gloo_threads.os, "sched_getscheduler", gone)
    assert not gloo_threads.gloo_loop_is_idle()
    monkeypatch.setattr(gloo_threads.sys, "platform", "darwin")
    assert not gloo_threads.gloo_loop_is_idle()


def test_not_linux_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(gloo_threads.sys, "platform", "darwin")
    with pytest.raises(RuntimeError, match="Linux only"):
        gloo_threads.idle_gloo_loop()


@linux_only
def test_this_process_without_a_group_has_no_loop_thread():
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is up in this process")
    assert gloo_threads.gloo_loop_threads() == []


@linux_only
@pytest.mark.distributed
def test_idle_loop_in_gloo_ranks():
    outs = run_processes(idle_loop_then_all_reduce, 2, pg_timeout_s=30, deadline_s=120)
    for out in outs:
        got = out.result
        assert len(got["threads"]) >= 1
        assert got["policies"] == [os.SCHED_IDLE] * len(got["threads"])
        assert got["again"] == got["threads"]
        assert got["sum"] == [3.0] * 1000
        assert got["idle"] == (False, True)
        assert got["control"] == "messages"
