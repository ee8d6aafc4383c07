"""Multi-process tests of laqcore.distributed (gloo on CPU, world sizes 2 and 4).

Every test runs its ranks through ``run_processes`` with a hard deadline, so a bug can make
a test fail but never hang CI.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from needs_torch import require_torch

torch = require_torch("the multi-process torch.distributed tests of tests/test_distributed.py")

from _dist_workers import (  # noqa: E402
    die_or_hang,
    engine_runs,
    frame_for,
    loader_with_workers,
    rank_and_world,
    transport_message_rounds,
    transport_rounds,
    transports_interleaved,
)
from _late_join_workers import LATE_JOIN_S, join_and_start_times  # noqa: E402
from driver_cases import SMALL_DIGITS, trajectory  # noqa: E402
from laqcore.distributed import LaunchError, Transport, run_processes  # noqa: E402
from laqcore.wire import FRAME_OVERHEAD  # noqa: E402

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("path", ["messages", "collectives", "nccl-path"])
@pytest.mark.parametrize("world", [2, 4])
def test_transport_delivers_only_uploaders_frames(world: int, path: str) -> None:
    outs = run_processes(transport_rounds, world, path, pg_timeout_s=30, deadline_s=120)
    expected = [[frame_for(r, rnd) for r in range(world)] for rnd in range(4)]
    for o in outs:
        assert o.result["frames"] == expected
        assert o.result["errors"][0].startswith("ValueError: frame must not be empty")
        assert o.result["errors"][1].startswith("TypeError: frame must be bytes")
        assert o.result["nonfinite"] == [world - 1]
    # Same accounting on every rank (but each rank's own share), and it matches the byte
    # counts by hand; every delivered byte is sent by one rank and received by one rank:
    mine = ("bytes_sent", "bytes_received")
    stats = [{k: v for k, v in o.result["stats"].items() if k not in mine} for o in outs]
    assert all(s == stats[0] for s in stats)
    s = stats[0]
    for k in mine:
        assert sum(o.result["stats"][k] for o in outs) == s["wire_bytes"]
    sizes = [[len(f) if f else 0 for f in rnd] for rnd in expected]
    assert s["rounds"] == 5
    assert s["uploads"] == sum(1 for rnd in sizes for x in rnd if x)
    assert s["nonfinite"] == 1
    assert s["payload_bytes"] == sum(map(sum, sizes))
    control = 5 * 8 * world * (world - 1)
    # every frame of rounds 0, 2 and 3 at its exact size to the world - 1 others (messages:
    # in the status messages or the all-to-all; collectives: the all-to-all; the NCCL path:
    # round 0 one all-gather of equal sizes, rounds 2 and 3 broadcasts, round 3's padding
    # exceeding the tolerance), never padded; with messages also the nonfinite round's
    # b"xyz" of the world - 1 finite ranks, which fit the inboxes and travelled with their
    # statuses (the collectives move no frame once the statuses name a non-finite rank)
    payload = (world * 16 + sum(sizes[2]) + sum(sizes[3])) * (world - 1)
    if path == "messages":
        payload += 3 * (world - 1) * (world - 1)
    assert s["control_bytes"] == control
    assert s["padding_bytes"] == 0
    assert s["wire_bytes"] == control + payload


def test_resolve_control(monkeypatch: pytest.MonkeyPatch) -> None:
    """How the control phase crosses: as given, else the environment variable, else "auto",
    which takes the collectives on cpu for a process that may run on one CPU only (unless
    gloo's loop thread is idle) and on every other device; "messages" needs cpu; a bad value
    is refused naming its source."""
    from laqcore.distributed import transport
    from laqcore.distributed.transport import resolve_control

    monkeypatch.delenv("LAQCORE_TRANSPORT_CONTROL", raising=False)
    for given in ("messages", "collectives"):
        assert resolve_control(given, "cpu") == given
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert resolve_control(None, "cpu") == resolve_control("auto", "cpu") == "collectives"
    monkeypatch.setattr(transport, "gloo_loop_is_idle", lambda: True)  # idle_gloo_loop()
    assert resolve_control("auto", "cpu") == "messages"
    assert resolve_control("collectives", "cpu") == "collectives"
    monkeypatch.setattr(transport, "gloo_loop_is_idle", lambda: False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert resolve_control(None, "cpu") == "messages"
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # not Linux: the CPU count
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert resolve_control("auto", "cpu") == "messages"
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert resolve_control("auto", "cpu") == "collectives"
    monkeypatch.setenv("LAQCORE_TRANSPORT_CONTROL", "collectives")
    assert resolve_control(None, "cpu") == "collectives"
    assert resolve_control("messages", "cpu") == "messages"  # the argument wins
    assert resolve_control(None, "cuda") == resolve_control("auto", "cuda") == "collectives"
    with pytest.raises(ValueError, match='"messages" needs a cpu'):
        resolve_control("messages", "cuda")
    monkeypatch.setenv("LAQCORE_TRANSPORT_CONTROL", "ring")
    with pytest.raises(ValueError, match="the LAQCORE_TRANSPORT_CONTROL environment variable"):
        resolve_control(None, "cpu")
    with pytest.raises(ValueError, match="control must be one of auto, messages, collectives"):
        resolve_control("fast", "cpu")


@pytest.mark.parametrize("world", [2, 3])
def test_transports_of_one_group_keep_their_messages_apart(world: int) -> None:
    """Every Transport posts the receives of its next round as a round ends; two Transports
    of one group taking turns each get their own messages (their own tags), the group named
    once as ``None`` and once by the default group's object."""
    outs = run_processes(transports_interleaved, world, pg_timeout_s=30, deadline_s=120)
    expected = [[bytes([r, 0]) * 8 for r in range(world)]]
    for rnd in range(1, 5):
        for i in range(2):
            expected.append(
                [
                    None if (r + rnd + i) % 3 == 0 else bytes([r, rnd, i]) * (1 + r + 2 * i)
                    for r in range(world)
                ]
            )
    tags = outs[0].result["tags"]
    assert tags[0] != tags[1]
    for o in outs:
        assert o.result["frames"] == expected
        assert o.result["tags"] == tags
        assert o.result["posted"] == [world - 1, world - 1]


@pytest.mark.parametrize("world", [2, 3])
def test_transport_sends_frames_that_fit_with_the_statuses(world: int) -> None:
    """On gloo one round of messages carries the statuses and every frame that fits the
    capacity (twice the largest frame seen so far, the same on every rank); only the first
    frames and a frame beyond the capacity take the second, all-to-all round."""
    outs = run_processes(transport_message_rounds, world, pg_timeout_s=30, deadline_s=120)
    for o in outs:
        assert o.result["delivered"] == [True] * 5
        assert o.result["calls"] == [1, 0, 0, 1, 0]
        assert o.result["capacity"] == 400  # twice the last round's 200-byte frames
    # the capacity stops at its bound (16 MiB; here 60 bytes): larger frames take phase 2
    outs = run_processes(transport_message_rounds, world, 60, pg_timeout_s=30, deadline_s=120)
    for o in outs:
        assert o.result["delivered"] == [True] * 5
        assert o.result["calls"] == [1, 0, 0, 1, 1]
        assert o.result["capacity"] == 60


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX threads' signals")
def test_a_sigterm_to_another_thread_waits_for_the_ranks_start() -> None:
    """The launcher blocks SIGTERM in its own thread while the ranks start; a SIGTERM that a
    thread not blocking it receives still runs Python's handler in the main thread, which
    cut a start short ("Ran out of input"). It must run after the start instead, once."""
    import threading

    from laqcore.distributed.launch import _start_signals_blocked

    got: list[object] = []
    go, done = threading.Event(), threading.Event()

    def helper() -> None:  # started before the mask: SIGTERM is not blocked here
        go.wait(10)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        done.set()

    before = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        thread = threading.Thread(target=helper)
        thread.start()
        with _start_signals_blocked():
            go.set()
            assert done.wait(10)
            for _ in range(200):  # Python runs a pending handler between bytecodes
                time.sleep(0.001)
            got.append("started")
        for _ in range(200):
            time.sleep(0.001)
        thread.join(10)
        assert got == ["started", signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is not None
    finally:
        signal.signal(signal.SIGTERM, before)


def test_transport_and_launcher_reject_bad_input() -> None:
    with pytest.raises(RuntimeError, match="init_process_group"):
        Transport()
    for bad in (0, -1, 2.5, True, 257):  # 257: above MAX_LOCAL_NPROC
        with pytest.raises(ValueError, match="nproc"):
            run_processes(transport_rounds, bad)
    with pytest.raises(ValueError, match="pg_timeout_s must be > 0"):
        run_processes(transport_rounds, 2, pg_timeout_s=0)
    # NaN passed the old "<= 0" test: every rank failed, or was killed at once
    for kw in ({"pg_timeout_s": math.nan}, {"deadline_s": math.nan}, {"pg_timeout_s": 1e15}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            run_processes(transport_rounds, 2, **kw)


def test_posted_messages_reject_bad_input_before_any_call() -> None:
    """Malformed rounds fail on the calling rank before any backend call, so they cannot
    leave a peer waiting for a message."""
    import numpy as np

    from laqcore.distributed.messages import MAX_WIDTH, PostedMessages

    def no_backend(*_: Any) -> Any:
        raise AssertionError("no backend call expected")

    mail = PostedMessages(None, 0, 2, no_backend, no_backend)
    eight = np.zeros(8, np.uint8)
    with pytest.raises(ValueError, match="1 messages for 2 ranks"):
        mail.send([eight], 8, "test")
    with pytest.raises(ValueError, match="exceeds the receives' 4"):
        mail.send([eight, eight], 4, "test")
    for bad in (-1, MAX_WIDTH + 1):
        with pytest.raises(ValueError, match="width must be in"):
            mail.send([eight, eight], bad, "test")
        with pytest.raises(ValueError, match="width must be in"):
            mail.repost(bad, "test")
    assert mail.tag is None and mail.posted == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_ranks_exit_when_the_launcher_is_killed(tmp_path: Path, sig: int) -> None:
    """`timeout` or a scheduler kills the launcher, not its ranks: they must not keep
    running (they were each other's peers, so no collective would ever time out)."""
    tests_dir = Path(__file__).parent
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from _dist_workers import record_pid_and_sleep\n"
        "from laqcore.distributed import run_processes\n"
        "run_processes(record_pid_and_sleep, 2, sys.argv[2], deadline_s=3600)\n"
    )
    launcher = subprocess.Popen([sys.executable, "-c", script, str(tests_dir), str(tmp_path)])
    pids: list[int] = []
    try:
        pids = _wait_for_pids(tmp_path, 2, launcher)
        launcher.send_signal(sig)
        launcher.wait(timeout=30)
        assert not _still_alive(pids, within_s=20), "ranks outlived their launcher"
    finally:
        _kill_all(launcher, pids)


def test_a_rank_that_exits_stops_the_launch_within_seconds() -> None:
    """A rank that died without a result (SIGKILLed while importing, a crash) left the
    others waiting for it where no collective notices a dead peer (joining the process
    group: "DistStoreError: wait timeout after 60000ms") until the process-group timeout,
    60 s by default. No rank can finish without it: they are stopped 5 s later, saying why."""
    from _dist_workers import rank1_exits_while_rank0_waits_on_the_store

    t0 = time.monotonic()
    with pytest.raises(LaunchError) as info:
        run_processes(
            rank1_exits_while_rank0_waits_on_the_store, 2, pg_timeout_s=60, deadline_s=120
        )
    assert time.monotonic() - t0 < 30
    first, second = info.value.outcomes
    assert second.status == "exited" and second.exitcode == 23
    assert first.status == "killed"
    assert "stopped 5 s after rank 1 exited without a result" in (first.error or "")


@pytest.mark.skipif(torch.cuda.is_available(), reason="NCCL may run here")
def test_nccl_without_a_gpu_is_refused_before_any_rank_starts() -> None:
    """On a CPU machine rank 0 failed with "Distributed package doesn't have NCCL built in"
    and rank 1 waited at the rendezvous for the process-group timeout: `laqcore launch
    --backend nccl` took 67 s to say so. Now a ValueError at once."""
    from laqcore.cli import main

    t0 = time.monotonic()
    with pytest.raises(ValueError, match="backend 'nccl'.*use 'gloo'"):
        run_processes(rank_and_world, 2, backend="nccl", pg_timeout_s=60, deadline_s=120)
    assert main(["launch", "--backend", "nccl", "-K", "1", "-q", "--no-plots"]) == 2
    assert time.monotonic() - t0 < 10


def test_nccl_ranks_take_a_cuda_device_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process starts on CUDA device 0 and NCCL builds its communicators on the current
    device, so the launcher's NCCL ranks (and the engine's under torchrun) all used GPU 0,
    which NCCL refuses. Now rank r (torchrun: LOCAL_RANK) makes cuda:r current before
    joining, and more ranks than devices is a ValueError before any rank starts. No GPU is
    needed: torch.cuda and NCCL's availability are stood in for (a GPU machine runs the
    real path; none was lent to check it)."""
    import torch.distributed as dist

    from laqcore.distributed.launch import check_backend, local_cuda_index, select_nccl_device

    assert [local_cuda_index(r, 4, {}) for r in range(4)] == [0, 1, 2, 3]
    assert local_cuda_index(5, 4, {"LOCAL_RANK": "1"}) == 1  # torchrun, second node
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    select_nccl_device(1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    select_nccl_device(3)  # global rank 3 of a second node: its local rank 0
    assert chosen == [1, 0]
    monkeypatch.delenv("LOCAL_RANK")
    with pytest.raises(ValueError, match="local rank 2 needs a CUDA device of its own"):
        select_nccl_device(2)
    check_backend("nccl", 2)
    with pytest.raises(ValueError, match="with 3 processes needs a CUDA device per process"):
        check_backend("nccl", 3)


@pytest.mark.skipif(
    not hasattr(signal, "pthread_sigmask") or not Path("/proc/self/stat").exists(),
    reason="POSIX signal masks; reads /proc",
)
def test_an_interrupted_launch_stops_its_ranks(tmp_path: Path) -> None:
    """A host that survives the KeyboardInterrupt of run_processes (a notebook's "interrupt
    kernel" signals the kernel only; a script that catches it) left the ranks computing to
    the end: their parent was alive. Now the interrupt stops them. The ranks start with
    SIGINT blocked, so a terminal's Ctrl-C, which signals every process of the group, no
    longer prints the tracebacks of ranks interrupted while importing."""
    from _dist_workers import blocked_signals

    outs = run_processes(blocked_signals, 2, deadline_s=60)
    assert [o.result for o in outs] == [(True, False), (True, False)]
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.SIGINT not in mask and signal.SIGTERM not in mask  # restored
    # The host takes Ctrl-C as KeyboardInterrupt, as a terminal's or a notebook's Python
    # does; a shell that starts a job in the background (`cmd &`, nohup) makes it ignore
    # SIGINT, which Python then leaves ignored (and the ranks outlived a signal never seen).
    script = (
        "import signal, sys, time; sys.path.insert(0, sys.argv[1])\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from _dist_workers import record_pid_and_sleep\n"
        "from laqcore.distributed import run_processes\n"
        "try:\n"
        "    run_processes(record_pid_and_sleep, 2, sys.argv[2], deadline_s=3600)\n"
        "except KeyboardInterrupt:\n"
        "    time.sleep(3600)  # the host lives on\n"
    )
    host = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent), tmp_path])
    pids: list[int] = []
    try:
        pids = _wait_for_pids(tmp_path, 2, host)
        host.send_signal(signal.SIGINT)  # to the host alone
        assert not _still_alive(pids, within_s=20), "the ranks outlived the interrupt"
        assert host.poll() is None
    finally:
        _kill_all(host, pids)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_launch_command_killed_as_its_ranks_start(tmp_path: Path, sig: int) -> None:
    """`laqcore launch` killed while its ranks are starting. A rank that was still importing
    when its launcher died took its new parent for the launcher and ran the whole job as an
    orphan (SIGKILL; the ranks of test_ranks_exit_when_the_launcher_is_killed had started).
    A scheduler's SIGTERM killed the launcher with no word (status -15) and its resource
    tracker warned of "leaked semaphore objects"; now it stops its ranks and exits with 143
    and one line."""
    argv = ["launch", "--workers", "4", "--max-samples", "200", "-K", "1000000", "--eps", "0"]
    argv += ["-q", "--no-plots", "--cache-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "laqcore", *argv], stderr=subprocess.PIPE, text=True
    )
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(ranks) < 2 and time.monotonic() < deadline:
            assert launcher.poll() is None, launcher.communicate()[1]
            time.sleep(0.2)
            ranks = [p for p in _children(launcher.pid) if "spawn_main" in _cmdline(p)]
        launcher.send_signal(sig)
        _, err = launcher.communicate(timeout=30)  # the ranks hold its stderr: gone too
        if sig == signal.SIGTERM:
            assert launcher.returncode == 143, err
            assert err.strip() == "laqcore launch: terminated (SIGTERM); the ranks were stopped"
        assert not _still_alive(ranks, within_s=0)
    finally:
        _kill_all(launcher, ranks)


def _still_alive(pids: list[int], within_s: float) -> list[int]:
    """The processes of ``pids`` still running after at most ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _kill_all(parent: subprocess.Popen[Any], pids: list[int]) -> None:
    """A failing test must not leave its processes behind."""
    parent.kill()
    parent.wait()
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except FileNotFoundError:
        return ""


def _wait_for_pids(pid_dir: Path, n: int, launcher: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        files = sorted(pid_dir.glob("rank[0-9]"))
        if len(files) == n:
            return [int(f.read_text()) for f in files]
        assert launcher.poll() is None, "the launcher ended before its ranks started"
        time.sleep(0.1)
    raise AssertionError("the ranks did not start")


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, waiting for a reaper, counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_rank_may_start_processes_of_its_own() -> None:
    """The ranks were daemonic processes, which may not have children: a trainer's
    DataLoader(num_workers=2) failed with "daemonic processes are not allowed to have
    children" (and torch.compile's worker pool under torch 2.1)."""
    outs = run_processes(loader_with_workers, 2, deadline_s=120)
    assert [o.result for o in outs] == [28.0, 828.0]


@pytest.mark.parametrize(
    ("error_type", "error", "rendezvous", "taken"),
    [
        ("DistNetworkError", "EADDRINUSE ...", True, True),  # torch 2.13
        # torch 2.1.2's plain RuntimeErrors for the same two failures (its runs of the two
        # port tests below failed the launch instead of repeating it)
        (
            "RuntimeError",
            "The server socket has failed to bind to [::]:45647 (errno: 98 - Address already "
            "in use).",
            True,
            True,
        ),
        ("RuntimeError", "Connection reset by peer", True, True),
        ("RuntimeError", "Connection reset by peer", False, False),  # fn's own error
        ("RuntimeError", "Timed out waiting for the other ranks", True, False),
    ],
)
def test_a_taken_port_is_recognised_by_every_torch_version(
    error_type: str, error: str, rendezvous: bool, taken: bool
) -> None:
    from laqcore.distributed.launch import RankOutcome, _port_taken

    outcome = RankOutcome(0, "error", error_type=error_type, error=error, rendezvous=rendezvous)
    assert _port_taken(outcome) is taken


def test_two_launches_that_draw_one_port_do_not_join_each_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two launches on one machine can draw the same rendezvous port. The loser's rank 0
    fails to listen and its launch is repeated, but its rank 1 had already joined the
    winner's store: under shared keys it overwrote the winner's peer address, and the
    winner's gloo mesh failed ("Connection closed by peer", seen in a CI run beside other
    launches). Each launch now has its own key space in the store."""
    import threading

    from laqcore.distributed import launch

    real = launch.free_port
    for _ in range(3):
        port, drawn = real(), threading.local()

        def same_port_first(drawn: Any = drawn, port: int = port) -> int:
            if getattr(drawn, "done", False):
                return real()
            drawn.done = True
            return port

        monkeypatch.setattr(launch, "free_port", same_port_first)
        results: list[Any] = []

        def one_launch(results: list[Any] = results) -> None:
            try:
                outs = run_processes(rank_and_world, 2, pg_timeout_s=10, deadline_s=60)
                results.append([o.result for o in outs])
            except LaunchError as err:
                results.append(err)

        threads = [threading.Thread(target=one_launch) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [[(0, 2), (1, 2)]] * 2


def test_a_taken_rendezvous_port_is_retried_on_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """free_port() closes the port it found, so another process can take it before rank 0
    listens on it: the launch is repeated on a new port, not failed (it failed with
    EADDRINUSE on rank 0 while rank 1 waited for the deadline)."""
    from laqcore.distributed import launch

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = iter([taken])
        real = launch.free_port
        monkeypatch.setattr(launch, "free_port", lambda: next(ports, None) or real())
        outs = run_processes(rank_and_world, 2, pg_timeout_s=10, deadline_s=60)
        assert [o.result for o in outs] == [(0, 2), (1, 2)]
        # A port taken at every attempt: the reason, promptly, not rank 1 at the deadline.
        monkeypatch.setattr(launch, "free_port", lambda: taken)
        t0 = time.monotonic()
        with pytest.raises(LaunchError) as info:
            run_processes(rank_and_world, 2, pg_timeout_s=10, deadline_s=60)
    assert time.monotonic() - t0 < 40
    first, second = info.value.outcomes
    # EADDRINUSE (torch 2.13), "errno: 98 - Address already in use" (torch 2.1.2)
    assert first.rendezvous and launch._port_taken(first)
    assert second.status == "killed"
    assert "could not listen on the rendezvous port" in str(info.value)


def test_no_rank_starts_before_every_rank_has_joined() -> None:
    """gloo returns from init_process_group on a rank once its own ends of the pairs are
    connected. A rank whose function needs no collective then returned and exited while a
    peer starved of CPU was still inside gloo's connect, and that peer failed with "Gloo
    connectFullMesh failed ... Connection closed by peer" (8 of 20 runs of the two tests
    above beside other multi-process tests on 2 cores). Here rank 0 joins LATE_JOIN_S late:
    no rank may start before it has joined."""
    outs = run_processes(join_and_start_times, 2, pg_timeout_s=10, deadline_s=60)
    last_joined = max(o.result[0] for o in outs)
    first_started = min(o.result[1] for o in outs)
    assert first_started >= last_joined, (
        f"a rank started {last_joined - first_started:.2f} s before the last one joined "
        f"(rank 0 joins {LATE_JOIN_S} s late)"
    )


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
    else:  # killed for hanging after rank 0's failure, not at the run's deadline
        assert outs[1].status == "killed"
        assert "still running 10 s after rank 0 failed (hung, or stopped)" in str(info.value)
    # Survivors notice within the timeout (plus process start-up), never the deadline.
    assert elapsed < 45


# ---------------------------------------------------------------------------------------
# the engine: the simulator's algorithms across processes
# ---------------------------------------------------------------------------------------
PROBLEM = SMALL_DIGITS
#: A minibatch below every worker's sample count, so the stochastic methods do draw samples
#: (the default 500 would be every sample: full local gradients).
BATCH = {"batch": 16}


def _overrides(name: str) -> dict[str, Any]:
    from laqcore.algorithms import own_overrides

    return own_overrides(name, BATCH)


def _sim_reference(name: str, iterations: int) -> tuple[list[list[int]], Any, Any]:
    """The simulator's result plus its per-iteration upload sets (same loop, recorded)."""
    import numpy as np

    from laqcore.algorithms import get_algorithm
    from laqcore.problems import make_problem
    from laqcore.simulator import simulate

    prob = make_problem(**PROBLEM)
    alg = get_algorithm(name, **_overrides(name))
    res = simulate(prob, alg, max_iterations=iterations, eps=0.0)
    thetas, masks = trajectory(prob, get_algorithm(name, **_overrides(name)), iterations)
    decisions = [[int(m) for m in np.flatnonzero(row)] for row in masks]
    return decisions, thetas[-1], res


@pytest.fixture
def cache(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.mark.parametrize("world", [2, 4])
def test_engine_matches_simulator(world: int, cache) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from laqcore.distributed import EngineConfig
    from laqcore.distributed.two_phase import chunk_bounds

    iters = 40
    # The deterministic trio the issue asks for; with 2 ranks also the stochastic methods,
    # whose randomness is keyed on (seed, worker), so they match the simulator exactly too.
    # The default exchange is two-phase for all of them but topk-ef (sparse uploads do not
    # slice: all-gather); LAQ once more over the all-gather.
    names = ["gd", "lag-wk", "laq"] + (
        ["slaq", "qsgd", "terngrad", "topk-ef", "lag-ps", "random-select"] if world == 2 else []
    )
    exchanges = ["auto"] * len(names) + ["all-gather"]
    names.append("laq")
    cfgs = [
        EngineConfig(
            problem=PROBLEM,
            algorithm=n,
            overrides=_overrides(n),
            max_iterations=iters,
            eps=0.0,
            eval_every=20,
            exchange=x,
        )
        for n, x in zip(names, exchanges)
    ]
    outs = run_processes(engine_runs, world, cfgs, pg_timeout_s=30, deadline_s=200)
    for i, name in enumerate(names):
        decisions, theta, sim = _sim_reference(name, iters)
        for o in outs:
            got = o.result[i]
            # Same upload decisions and (to rel 1e-6; in fact bit-identical) iterates.
            assert got["decisions"] == decisions
            np.testing.assert_allclose(got["theta"], theta, rtol=1e-6, atol=0)
            r = got["result"]
            assert r["iterations"] == sim.iterations == iters
            assert r["uploads"] == sim.uploads and r["bits"] == sim.bits
            assert r["downlink_bits"] == sim.downlink_bits
            np.testing.assert_allclose(r["history"]["loss"], sim.history["loss"], rtol=1e-6)
            np.testing.assert_allclose(r["final_residual"], sim.final_residual, rtol=1e-6)
        # Skipping saves real bytes: the payload that crossed is exactly the uploads' frames
        # plus each uploading rank's bundle framing (header + CRC, and 8 bytes per item).
        w = outs[0].result[i]["wire"]
        # The loop's wall time split (the time model's validation): per-round compute of
        # this rank, and compute + time in collectives = the loop's wall time.
        rounds = outs[0].result[i]["round_compute_s"]
        assert len(rounds) == iters and min(rounds) >= 0
        wall = outs[0].result[i]["result"]["wall_time"]
        parts = w["compute_s"] + w["exchange_s"] + w["monitor_s"]
        assert w["exchange_s"] > 0 and abs(parts - wall) <= 1e-6 * wall
        uploads_by_rank = sum(len({m % world for m in d}) for d in decisions)
        gathered = name == "topk-ef" or exchanges[i] == "all-gather"
        assert w["exchange"] == ("all-gather" if gathered else "two-phase")
        if w["exchange"] == "all-gather":
            framing = FRAME_OVERHEAD * uploads_by_rank + 8 * sim.uploads
            assert w["payload_bytes"] == sim.bits // 8 + framing
            continue
        # Two-phase: the same upload decisions per rank; each round with an upload publishes
        # the server state's chunks (float32 LAQ aggregate, else float64), exactly their
        # sizes (gloo's rounds of messages), and every rank receives the other ranks' ones.
        assert w["exchange"] == "two-phase" and w["rounds"] == iters
        assert w["uploads"] == uploads_by_rank
        busy = sum(1 for d in decisions if d)
        itemsize = 4 if name in ("laq", "slaq", "random-select") else 8
        unit = 512 if name == "qsgd" else 8
        lens = [e - s for s, e in chunk_bounds(len(theta), world, unit)]
        for me, o in enumerate(outs):
            got = o.result[i]["wire"]
            assert got["downlink_received"] == busy * (sum(lens) - lens[me]) * itemsize
            assert 0 < got["uplink_received"] < w["uploads"] * len(theta) * 4
    lazy = outs[0].result[names.index("laq")]["result"]
    assert lazy["uploads"] < iters * 4  # LAQ skipped some uploads


@pytest.mark.parametrize("world", [2, 4])
def test_engine_quantized_downlink_matches_chunked_simulator(world: int, cache) -> None:  # type: ignore[no-untyped-def]
    """--downlink delta:laq:B over the two-phase exchange is the simulator's
    downlink_chunks=N run: same upload decisions, losses and traffic counters, bit for bit."""
    from laqcore.algorithms import get_algorithm
    from laqcore.distributed import EngineConfig
    from laqcore.problems import make_problem
    from laqcore.simulator import simulate

    iters, names = 20, ["gd", "lag-wk", "laq"]
    base = {"problem": PROBLEM, "eps": 0.0, "eval_every": 10, "downlink": "delta:laq:6"}
    cfgs = [EngineConfig(**base, algorithm=n, max_iterations=iters) for n in names]
    outs = run_processes(engine_runs, world, cfgs, pg_timeout_s=30, deadline_s=200)
    prob = make_problem(**PROBLEM)
    for i, name in enumerate(names):
        sim = simulate(
            prob,
            get_algorithm(name),
            max_iterations=iters,
            eps=0.0,
            eval_every=10,
            downlink="delta:laq:6",
            downlink_chunks=world,
        )
        assert sim.trace is not None
        decisions = [[int(m) for m in row.nonzero()[0]] for row in sim.trace.uploader_flags()]
        for o in outs:
            got = o.result[i]
            r = got["result"]
            assert got["decisions"] == decisions and got["wire"]["exchange"] == "two-phase"
            assert r["history"]["loss"] == sim.history["loss"]
            assert (r["uploads"], r["bits"]) == (sim.uploads, sim.bits)
            assert r["downlink_bits"] == sim.downlink_bits
    if world == 2:  # the owners' exact chunks and the held copy survive a resume
        ck = str(cache / "ckpt")
        kw = {**base, "algorithm": "laq", "checkpoint_dir": ck}
        run_processes(engine_runs, 2, [EngineConfig(**kw, max_iterations=8, checkpoint_every=8)])
        again = run_processes(
            engine_runs, 2, [EngineConfig(**kw, max_iterations=iters, resume=True)]
        )
        full = outs[0].result[names.index("laq")]
        assert again[0].result[0]["decisions"] == full["decisions"]
        assert again[0].result[0]["theta"].tobytes() == full["theta"].tobytes()


def test_engine_resume_continues_exactly(cache) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from laqcore.distributed import EngineConfig

    ck = str(cache / "ckpt")
    base = {"problem": PROBLEM, "algorithm": "laq", "eps": 0.0, "eval_every": 10}
    full = run_processes(
        engine_runs,
        2,
        [
            EngineConfig(**base, max_iterations=30),
            EngineConfig(**base, max_iterations=12, checkpoint_dir=ck, checkpoint_every=6),
        ],
        pg_timeout_s=30,
        deadline_s=120,
    )
    resume = [EngineConfig(**base, max_iterations=30, checkpoint_dir=ck, resume=True)]
    resumed = run_processes(engine_runs, 2, resume, pg_timeout_s=30, deadline_s=120)
    for r in range(2):
        a, b = full[r].result[0], resumed[r].result[0]
        np.testing.assert_array_equal(a["theta"], b["theta"])
        assert a["decisions"] == b["decisions"]
        assert a["result"]["history"] == b["result"]["history"]
        assert a["wire"]["exchange"] == b["wire"]["exchange"] == "two-phase"
        for key in ("bytes_received", "bytes_sent", "uploads", "rounds"):
            assert a["wire"][key] == b["wire"][key]
    # Rank 1 stopped before it wrote iteration 12 (Ctrl-C, a kill): its files hold 6 only,
    # rank 0's 12 and 6. Each rank resumed from its own newest file and both failed with
    # "server replicas differ after iteration 12"; now both resume from 6, the same run.
    os.replace(os.path.join(ck, "rank1.prev.ckpt"), os.path.join(ck, "rank1.ckpt"))
    resumed = run_processes(engine_runs, 2, resume, pg_timeout_s=30, deadline_s=120)
    for r in range(2):
        np.testing.assert_array_equal(full[r].result[0]["theta"], resumed[r].result[0]["theta"])
    os.remove(os.path.join(ck, "rank0.prev.ckpt"))  # rank 0 holds 12, rank 1 holds 6
    with pytest.raises(LaunchError) as info:
        run_processes(engine_runs, 2, resume, pg_timeout_s=30, deadline_s=120)
    for o in info.value.outcomes:
        assert "hold no iteration that every rank has (rank 0: 12; rank 1: 6)" in (o.error or "")


def test_engine_killed_rank_and_nonfinite(cache) -> None:  # type: ignore[no-untyped-def]
    from _dist_workers import exit_rank1_in_loss_at_3, kill_rank1_at_3, poison_rank1_at_4
    from laqcore.distributed import EngineConfig

    cfg = EngineConfig(problem=PROBLEM, algorithm="laq", max_iterations=10, eps=0.0)
    t0 = time.monotonic()
    with pytest.raises(LaunchError) as info:
        run_processes(engine_runs, 2, [cfg], kill_rank1_at_3, pg_timeout_s=5, deadline_s=60)
    outs = info.value.outcomes
    assert outs[1].status == "exited" and outs[1].exitcode == 19
    assert outs[0].error_type == "PeerFailureError" and "iteration 3" in (outs[0].error or "")
    assert time.monotonic() - t0 < 45
    # A rank that dies between the exchange and the loss all-reduce (where a run spends
    # much of its time) failed the others with gloo's bare RuntimeError ("Connection reset
    # by peer"): now the same PeerFailureError, naming the all-reduce and the iteration.
    with pytest.raises(LaunchError) as info:
        run_processes(engine_runs, 2, [cfg], exit_rank1_in_loss_at_3, pg_timeout_s=5, deadline_s=60)
    outs = info.value.outcomes
    assert outs[1].status == "exited" and outs[1].exitcode == 19
    assert outs[0].error_type == "PeerFailureError"
    assert "the loss all-reduce after iteration 3" in (outs[0].error or "")
    with pytest.raises(LaunchError) as info:
        run_processes(engine_runs, 2, [cfg], poison_rank1_at_4, pg_timeout_s=30, deadline_s=60)
    for o in info.value.outcomes:
        assert o.error_type == "NonFiniteGradientError"
        assert "rank 1" in (o.error or "") and "step 4" in (o.error or "")
    skip = EngineConfig(
        problem=PROBLEM, algorithm="laq", max_iterations=10, eps=0.0, nonfinite="skip"
    )
    outs = run_processes(engine_runs, 2, [skip], poison_rank1_at_4, pg_timeout_s=30, deadline_s=60)
    # Rank 1 hosts workers 1 and 3 (round-robin), both poisoned once at iteration 4.
    assert [o.result[0]["wire"]["nonfinite_skipped"] for o in outs] == [0, 2]
    assert 1 not in outs[0].result[0]["decisions"][4] and 3 not in outs[0].result[0]["decisions"][4]


def test_launch_command_writes_results(cache, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from laqcore.cli import main

    out = cache / "out"
    argv = [
        "launch",
        "--nproc",
        "2",
        "--algorithm",
        "lag-wk",
        "--workers",
        "4",
        "--max-samples",
        "200",
        "-K",
        "6",
        "--eps",
        "0",
        "-q",
        "--no-plots",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    run = data["runs"][0]
    assert run["algorithm"] == "lag-wk" and run["iterations"] == 6
    wire = data["config"]["wire"]
    assert wire["processes"] == 2 and wire["exchange"] == "two-phase"
    # Rank 0 receives rank 1's chunks (about half of its uploads) and its publications.
    assert wire["uplink_received"] > 0 and wire["bytes_received"] > wire["uplink_received"]
    assert "2 processes, two-phase exchange: rank 0 sent" in capsys.readouterr().out
    assert main(["launch", "--nproc", "0"]) == 2
    assert main(["launch", "--resume"]) == 2
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err


def test_engine_refuses_foreign_worker_ids_corrupt_checkpoints_and_diverged_replicas(
    cache,
) -> None:  # type: ignore[no-untyped-def]
    """Issue 14.15/14.18/14.19: a rank that uploads as another rank's worker stops every rank
    with a clear error; a checkpoint with one flipped bit is refused at resume, naming the
    file; a checkpoint whose (valid) content makes the replicas differ is caught by the
    replica digest check right after the resume."""
    import numpy as np

    from _dist_workers import relabel_rank1_as_worker0_at_2
    from laqcore.distributed import EngineConfig
    from laqcore.distributed.checkpoint import read_checkpoint, write_checkpoint

    base = {"problem": PROBLEM, "algorithm": "laq", "eps": 0.0}
    cfg = EngineConfig(problem=PROBLEM, algorithm="gd", eps=0.0, max_iterations=5)
    with pytest.raises(LaunchError) as info:
        run_processes(
            engine_runs, 2, [cfg], relabel_rank1_as_worker0_at_2, pg_timeout_s=30, deadline_s=60
        )
    for o in info.value.outcomes:
        assert o.error_type == "ValueError"
        assert "rank 1 sent an upload labelled as worker 0" in (o.error or "")

    ck = cache / "ckpt"
    save = EngineConfig(**base, max_iterations=4, checkpoint_dir=str(ck), checkpoint_every=4)
    run_processes(engine_runs, 2, [save], pg_timeout_s=30, deadline_s=60)
    resume = EngineConfig(**base, max_iterations=8, checkpoint_dir=str(ck), resume=True)
    path = ck / "rank1.ckpt"
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x04
    path.write_bytes(bytes(flipped))
    with pytest.raises(LaunchError) as info:
        run_processes(engine_runs, 2, [resume], pg_timeout_s=10, deadline_s=60)
    assert info.value.outcomes[1].error_type == "CheckpointError"
    assert "rank1.ckpt" in (info.value.outcomes[1].error or "")
    # rank 0 says so too, at once (it waited in a collective for the process-group timeout)
    assert info.value.outcomes[0].error_type == "CheckpointError"
    assert "rank 1 could not read its checkpoint" in (info.value.outcomes[0].error or "")

    # A well-formed checkpoint (valid checksum) whose server iterate differs on rank 1.
    path.write_bytes(good)
    tree, arrays = read_checkpoint(str(path))
    server = dict(tree["__map__"])["server"]
    theta_index = server["state"]["theta"]["__array__"]
    arrays[theta_index] = arrays[theta_index] + np.float64(1e-9)
    write_checkpoint(str(path), tree, arrays)
    with pytest.raises(LaunchError) as info:
        run_processes(engine_runs, 2, [resume], pg_timeout_s=30, deadline_s=60)
    for o in info.value.outcomes:
        assert o.error_type == "ReplicaMismatchError"
        assert "ranks 0; ranks 1" in (o.error or "")

    # Another configuration, or a budget below the checkpoint's iteration: refused on every
    # rank, saying what differs (the messages used to name neither).
    path.write_bytes(good)
    other = EngineConfig(
        **{**base, "overrides": {"bits": 4}}, max_iterations=8, checkpoint_dir=str(ck), resume=True
    )
    short = EngineConfig(**base, max_iterations=3, checkpoint_dir=str(ck), resume=True)
    for cfg, text in (
        (other, "overrides.bits: the default in the checkpoint, 4 in this run"),
        (short, "is at iteration 4, past this run's max_iterations 3"),
    ):
        with pytest.raises(LaunchError) as info:
            run_processes(engine_runs, 2, [cfg], pg_timeout_s=30, deadline_s=60)
        for o in info.value.outcomes:
            assert o.error_type == "CheckpointError" and text in (o.error or ""), o.error


def test_launch_shows_progress_unless_quiet() -> None:
    """Rank 0 of a launched run draws the simulator's progress line (long engine runs used
    to be silent until the end); ``-q`` turns it off, and library users opt in."""
    from laqcore.cli import build_parser
    from laqcore.distributed import EngineConfig
    from laqcore.distributed.cli import _config

    parser = build_parser()
    assert _config(parser.parse_args(["launch"])).progress
    assert not _config(parser.parse_args(["launch", "-q"])).progress
    assert not EngineConfig(problem={}, algorithm="laq").progress


def test_launch_reports_rank_failures_without_a_traceback(capsys) -> None:  # type: ignore[no-untyped-def]
    """An error raised inside the ranks (here: the designated-worker data set on another
    partition, found when each rank builds the problem) is one error block naming each
    rank's exception, exit status 1, not a LaunchError traceback."""
    from laqcore.cli import main

    argv = ["launch", "--dataset", "synthetic-lag", "--partition", "iid", "-K", "2", "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("laqcore launch: error: distributed run failed:")
    assert "rank 0: ValueError: dataset" in err and "Traceback" not in err
