"""Scheduling of gloo's TCP loop thread: :func:`idle_gloo_loop` (docs/ddp.md, "gloo's loop thread").

gloo's TCP transport reads its sockets on one thread per device (named ``gloo_tcp_loop``),
which waits in a level-triggered ``epoll_wait`` and, on every event, only *tries* the pair's
lock: while another thread of the rank holds it (a send or a receive being posted), the loop
returns to ``epoll_wait``, which reports the same unread socket at once, and so spins. When
the holder has been preempted (our reading: at the return from its own ``writev``, whose
wake-up of a loop thread asked for a reschedule), that spin keeps it off the CPU until the
scheduler's tick: an exchange of a few KB then takes 1-4 ms longer (the "slow mode" measured in
``bench/gloo_control_rounds.py``; on the Linux 6.18 guest of session 38 the loop thread
spent about 0.9 ms of CPU per 8 KB round of messages).

Under ``SCHED_IDLE`` the loop thread never preempts a thread of normal priority and any
such thread that wakes preempts it, so a spin yields to the lock's holder at once. Any
unprivileged process may put its own threads there. The cost: while every CPU is busy with
normal-priority work (another job, data-loader processes that never rest) the loop thread
gets a very small share of it, and messages wait for a free CPU.
"""

from __future__ import annotations

import os
import sys

__all__ = ["LOOP_THREAD_NAME", "gloo_loop_is_idle", "gloo_loop_threads", "idle_gloo_loop"]

#: The name gloo gives the thread that runs a TCP device's event loop.
LOOP_THREAD_NAME = "gloo_tcp_loop"

_TASKS = "/proc/self/task"


def gloo_loop_threads() -> list[int]:
    """Thread ids of this process's gloo TCP loop threads (``/proc/self/task/*/comm``);
    empty before a gloo process group exists. ``RuntimeError`` off Linux."""
    if not sys.platform.startswith("linux") or not os.path.isdir(_TASKS):
        raise RuntimeError(
            "gloo's loop threads are found by name under /proc/self/task: Linux only"
        )
    found = []
    for entry in os.listdir(_TASKS):
        try:
            with open(os.path.join(_TASKS, entry, "comm")) as fh:
                name = fh.read().strip()
        except OSError:  # the thread ended while the directory was listed
            continue
        if name == LOOP_THREAD_NAME:
            found.append(int(entry))
    return sorted(found)


def gloo_loop_is_idle() -> bool:
    """Whether this process has gloo TCP loop threads and every one is under ``SCHED_IDLE``
    (:func:`idle_gloo_loop` was called); ``False`` off Linux and when a thread's policy
    cannot be read."""
    try:
        threads = gloo_loop_threads()
        return bool(threads) and all(os.sched_getscheduler(t) == os.SCHED_IDLE for t in threads)
    except (RuntimeError, OSError, AttributeError):  # not Linux, a thread gone, no API
        return False


def idle_gloo_loop() -> list[int]:
    """Put every gloo TCP loop thread of this process under ``SCHED_IDLE``; return their ids.

    Call it after ``torch.distributed.init_process_group("gloo")`` (and again after creating
    further gloo groups, whose devices start their own loop threads; calling it twice is
    harmless), on every rank and before the first step: a
    :class:`~laqcore.distributed.transport.Transport` built after it takes the round of
    messages even for pinned ranks (:func:`~laqcore.distributed.transport.resolve_control`).
    It changes how every gloo exchange of the process is scheduled, DDP's own all-reduce
    included, and leaves results unchanged. ``RuntimeError`` off Linux or when the process
    has no gloo loop thread yet.
    """
    threads = gloo_loop_threads()
    if not threads:
        raise RuntimeError(
            "no gloo TCP loop thread in this process: call idle_gloo_loop() after "
            "torch.distributed.init_process_group('gloo') (NCCL groups have none)"
        )
    for tid in threads:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    return threads
