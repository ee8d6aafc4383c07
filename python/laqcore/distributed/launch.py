"""Start N local processes joined in a gloo (or NCCL) process group, with a hard deadline.

:func:`run_processes` is what ``laqcore launch`` and the multi-process tests use. It is the
place that guarantees "never hang": every child gets the process-group timeout, and the
parent kills whatever is still running at the overall deadline and reports, per rank, what
happened (result, exception, exit code, or killed).
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing as mp
import os
import pickle
import queue
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .._validate import check_positive_int, check_real

__all__ = [
    "MAX_LOCAL_NPROC",
    "MAX_PG_TIMEOUT_S",
    "PORT_ATTEMPTS",
    "LaunchError",
    "RankOutcome",
    "check_backend",
    "check_nproc",
    "check_timeouts",
    "free_port",
    "run_processes",
]


def __dir__() -> list[str]:
    return __all__


@dataclass
class RankOutcome:
    """How one rank ended.

    ``status`` is ``"ok"`` (``result`` holds the return value), ``"error"`` (``error_type`` and
    ``error`` hold the exception's class name and message, ``traceback`` its traceback),
    ``"exited"`` (the process ended without reporting; ``exitcode`` says how) or
    ``"killed"`` (still running at the deadline, or ``error`` says why it was stopped).
    """

    rank: int
    status: str
    result: Any = None
    error_type: str | None = None
    error: str | None = None
    traceback: str | None = None
    exitcode: int | None = None
    seconds: float = 0.0
    #: The error came from joining the process group (``init_process_group``, then the wait
    #: for every rank to join), before ``fn``.
    rendezvous: bool = False


class LaunchError(RuntimeError):
    """At least one rank did not finish successfully; ``outcomes`` has every rank's story."""

    def __init__(self, outcomes: list[RankOutcome]):
        self.outcomes = outcomes
        lines = []
        for o in outcomes:
            if o.status == "ok":
                continue
            if o.status == "error":
                lines.append(f"  rank {o.rank}: {o.error_type}: {o.error}")
            elif o.status == "exited":
                lines.append(f"  rank {o.rank}: exited with code {o.exitcode} without a result")
            elif o.error:  # killed for a stated reason
                lines.append(f"  rank {o.rank}: {o.error} ({o.seconds:.1f} s)")
            else:
                lines.append(f"  rank {o.rank}: killed at the deadline ({o.seconds:.1f} s)")
        super().__init__("distributed run failed:\n" + "\n".join(lines))


def free_port() -> int:
    """A TCP port that was free a moment ago (for MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: How often a rank checks that the process that started it is still there.
_PARENT_POLL_S = 0.5


def _exit_with_parent(rank: int, parent: int) -> None:
    """Start a daemon thread that ends this rank once the launcher (pid ``parent``) is gone.

    Without it a launcher killed by SIGTERM or SIGKILL (``timeout``, a job scheduler, an OOM
    kill) left its ranks running: they are still each other's peers, so no collective ever
    times out, and they computed to the end of the run with nobody to report to. The launcher
    is this process's parent; when it dies the kernel re-parents the rank, so an
    ``os.getppid()`` other than ``parent`` is the signal (portable, unlike Linux's
    ``PR_SET_PDEATHSIG``). ``parent`` comes from the launcher, not from ``os.getppid()`` here:
    a launcher killed while this rank was still starting (importing, before this point) had
    already re-parented it, and the rank took its new parent for the launcher and ran the
    whole job as an orphan.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        print(
            f"laqcore: rank {rank}: the launcher (pid {parent}) is gone; exiting",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    threading.Thread(target=watch, name="laqcore-parent-watch", daemon=True).start()


def _wait_for_every_rank(dist: Any, backend: str) -> None:
    """Return once every rank has joined the process group.

    gloo connects every pair of ranks inside ``init_process_group``, and a rank returns
    from it as soon as its own ends are connected. A rank whose ``fn`` needs no collective
    could then return and exit, closing its sockets, while a slower peer (a starved CPU)
    was still inside gloo's full-mesh connect: that peer failed with "Gloo connectFullMesh
    failed ... Connection closed by peer" although nothing was wrong (seen in test runs
    beside other multi-process jobs). A barrier keeps every rank here until all have
    joined. NCCL creates its communicators at the first collective instead (on the rank's
    device, :func:`select_nccl_device`, or the one ``fn`` makes current), so there is nothing
    to wait for, and a barrier now would fix the device before ``fn`` could choose.
    """
    if backend == "gloo":
        dist.barrier()


def _child(
    parent: int,
    rank: int,
    world_size: int,
    rendezvous: tuple[int, str],
    backend: str,
    pg_timeout_s: float,
    threads: int,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    results: Any,
) -> None:
    import torch
    import torch.distributed as dist

    from ..runtime import set_num_threads

    _exit_with_parent(rank, parent)
    if hasattr(signal, "pthread_sigmask"):  # SIGINT stays blocked: _start_signals_blocked
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    # Oversubscribing the cores with N processes x M threads only slows every rank. laqcore
    # is already imported here (fn was unpickled), so its kernels' thread count is set
    # directly: OMP_NUM_THREADS alone would reach only libraries loaded after this point.
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    set_num_threads(threads)
    t0 = time.monotonic()
    joined = False
    try:
        port, namespace = rendezvous
        timeout = datetime.timedelta(seconds=pg_timeout_s)
        # No worker count (wait_for_workers): the store counts every client that connects,
        # another launch's too; the group's own rendezvous waits for this launch's ranks.
        # (torch's stubs do not re-export the store classes from torch.distributed)
        store = dist.TCPStore(  # type: ignore[attr-defined]
            "127.0.0.1", port, world_size, rank == 0, timeout, wait_for_workers=False
        )
        # The launch's own key space: two launches on one machine can draw the same port
        # (free_port must close it again), and then the loser's ranks other than 0 join the
        # winner's store; under shared keys they could overwrite the winner's peer addresses.
        # Now they only wait in their own space until their rank 0's EADDRINUSE repeats the
        # launch on another port. (The "Connection closed by peer" seen beside other jobs
        # was mostly the join race _wait_for_every_rank closes.)
        if backend == "nccl":  # before the group: NCCL's communicators use this device
            select_nccl_device(rank)
        dist.init_process_group(
            backend,
            store=dist.PrefixStore(f"laqcore-launch/{namespace}", store),  # type: ignore[attr-defined]
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
        try:
            _wait_for_every_rank(dist, backend)
            joined = True
            out = fn(rank, world_size, *args)
            # Plain pickle, by value: the queue's own pickler would pass torch tensors as
            # shared-memory handles that die with this process before the parent reads them.
            # Reported before the group's teardown (as an error is): under torch 2.1 that
            # teardown could deadlock (the gloo group's destructor holds the GIL while it
            # joins a worker thread that needs it), and the run then waited for its deadline;
            # now the launcher has every result and stops a rank still tearing down.
            results.put(
                pickle.dumps(RankOutcome(rank, "ok", result=out, seconds=time.monotonic() - t0))
            )
        except BaseException as err:  # noqa: BLE001 - report everything to the parent
            results.put(_error_report(rank, err, t0, rendezvous=not joined))
        finally:
            # Never block on teardown: after a peer failure the group may be unusable.
            with contextlib.suppress(Exception):
                dist.destroy_process_group()
    except BaseException as err:  # noqa: BLE001 - the store or the group was not set up
        results.put(_error_report(rank, err, t0, rendezvous=True))


def _error_report(rank: int, err: BaseException, t0: float, *, rendezvous: bool) -> bytes:
    """The pickled :class:`RankOutcome` of ``err``, raised in this rank since ``t0``."""
    return pickle.dumps(
        RankOutcome(
            rank,
            "error",
            error_type=type(err).__name__,
            error=str(err),
            traceback=traceback.format_exc(),
            seconds=time.monotonic() - t0,
            rendezvous=rendezvous,
        )
    )


def _shorten(end: float, why: str | None, grace_s: float, reason: str) -> tuple[float, str | None]:
    """The deadline after a rank's failure, and why the ranks still running then are
    killed: ``grace_s`` from now, unless ``end`` comes first."""
    new = time.monotonic() + grace_s
    return (new, f"killed: {reason}") if new < end else (end, why)


#: Seconds beyond the process-group timeout that the other ranks get after a rank reported
#: an error: they must notice within the timeout; one still running after that is hung and
#: gets killed rather than holding the run until the overall deadline.
_FAILURE_MARGIN_S = 5.0

#: Seconds the other ranks get after a rank exited without a result (killed, crashed): a
#: peer in a collective notices at once and reports, but one still joining the process group
#: waited for the dead rank until the process-group timeout (a rank SIGKILLed while
#: importing: "DistStoreError: wait timeout after 60000ms" 60 s later). No rank can finish
#: without it.
_EXITED_GRACE_S = 5.0


#: Most processes :func:`run_processes` starts on this machine: each is a whole Python
#: interpreter, and gloo connects every pair, so a typo such as ``--nproc 100000`` would
#: otherwise start processes until the machine stalls.
MAX_LOCAL_NPROC = 256


def check_nproc(nproc: int, name: str = "nproc") -> int:
    """``nproc`` in ``1..MAX_LOCAL_NPROC`` (local processes; torchrun sets its own)."""
    return check_positive_int(nproc, name, maximum=MAX_LOCAL_NPROC)


#: Largest process-group timeout: torch converts it to a C int of milliseconds (1e15 s
#: overflowed inside every rank); 1e9 s is 31 years.
MAX_PG_TIMEOUT_S = 10**9


def check_timeouts(
    pg_timeout_s: Any, deadline_s: Any, names: tuple[str, str] = ("pg_timeout_s", "deadline_s")
) -> None:
    """Both are finite seconds > 0, the timeout at most :data:`MAX_PG_TIMEOUT_S` (NaN passed
    a ``<= 0`` test: the ranks then failed with "cannot convert float NaN to integer", or
    were killed at once at a NaN deadline)."""
    check_real(pg_timeout_s, names[0], positive=True, maximum=MAX_PG_TIMEOUT_S)
    check_real(deadline_s, names[1], positive=True)


def check_backend(backend: str, nproc: int = 1) -> None:
    """``backend`` can run ``nproc`` local ranks on this machine, checked before any rank
    starts: NCCL needs a torch built with it and a CUDA device per rank
    (:func:`select_nccl_device`). Without them rank 0 failed with "Distributed package
    doesn't have NCCL built in" and the other ranks waited at the rendezvous until the
    process-group timeout (``laqcore launch --backend nccl`` on a CPU machine: 67 s)."""
    if backend != "nccl":
        return
    import torch
    import torch.distributed as dist

    if not dist.is_nccl_available():
        raise ValueError(
            "backend 'nccl': this torch has no NCCL (a CPU-only build?); use 'gloo' on CPUs"
        )
    if not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs a CUDA device and torch sees none; use 'gloo'")
    if nproc > torch.cuda.device_count():
        raise ValueError(
            f"backend 'nccl' with {nproc} processes needs a CUDA device per process and "
            f"torch sees {torch.cuda.device_count()}; use at most that many, or 'gloo'"
        )


def local_cuda_index(rank: int, device_count: int, env: Mapping[str, str]) -> int:
    """The CUDA device an NCCL rank of this machine takes: ``LOCAL_RANK`` (torchrun's rank
    on this node) or, without it, ``rank``, modulo the devices torch sees.

    Every process starts on device 0, and NCCL builds its communicators on the current
    device at the first collective: without a choice every rank of a machine used GPU 0
    (NCCL refuses two ranks on one device). One device per rank is the usual layout; with
    more ranks than devices they share round-robin, which NCCL refuses as well, so
    :func:`select_nccl_device` says so first."""
    local = int(env.get("LOCAL_RANK", rank))
    return local % device_count


def select_nccl_device(rank: int) -> None:
    """Make this NCCL rank's CUDA device current (:func:`local_cuda_index`); a
    ``ValueError`` when the machine has fewer devices than local ranks."""
    import torch

    count = torch.cuda.device_count()
    local = int(os.environ.get("LOCAL_RANK", rank))
    if local >= count:
        raise ValueError(
            f"backend 'nccl': local rank {local} needs a CUDA device of its own and torch "
            f"sees {count}; run at most {count} ranks per machine, or use 'gloo'"
        )
    torch.cuda.set_device(local_cuda_index(rank, count, os.environ))


#: Launches :func:`run_processes` tries when the rendezvous port :func:`free_port` found was
#: taken by another process before rank 0 could listen on it (a race no choice of port
#: avoids: the port must be closed again before the ranks can bind it).
PORT_ATTEMPTS = 3


def _port_taken(o: RankOutcome) -> bool:
    """Whether ``o`` failed at the rendezvous because the port was not this launch's: rank 0
    could not listen on it (EADDRINUSE), or another rank had joined the store of another
    launch that held the port and has since closed it (its connection dropped). No rank has
    started ``fn`` then, so the launch can be repeated on another port."""
    if o.status != "error" or not o.rendezvous:
        return False
    if o.error_type == "DistNetworkError":  # how torch 2.13 raises either failure
        return True
    # torch 2.1.2 raises a plain RuntimeError for both, told apart by its text alone.
    return any(text in (o.error or "") for text in _PORT_TAKEN_TEXTS)


#: How the rendezvous failures of a taken port read (EADDRINUSE; a peer's store closing).
_PORT_TAKEN_TEXTS = ("EADDRINUSE", "Address already in use", "Connection reset by peer")


def _launch_once(
    ctx: Any, nproc: int, port: int, launch: tuple[Any, ...], end: float
) -> list[RankOutcome]:
    """One launch of ``nproc`` ranks on ``port``, watched until every rank reported, the
    deadline ``end`` or a taken port (then the others, waiting at the rendezvous, are
    killed at once). ``launch``: ``(fn, args, backend, pg_timeout_s, threads_per_proc)``."""
    fn, args, backend, pg_timeout_s, threads = launch
    rendezvous = (port, secrets.token_hex(8))  # the port, this launch's store keys (_child)
    launcher = os.getpid()  # the ranks' parent, which they watch (_exit_with_parent)
    results: Any = ctx.Queue()
    procs = [
        ctx.Process(
            target=_child,
            args=(
                launcher,
                r,
                nproc,
                rendezvous,
                backend,
                pg_timeout_s,
                threads,
                fn,
                args,
                results,
            ),
            # Not daemonic: a daemonic process may not start children, so a rank's
            # DataLoader(num_workers > 0) failed ("daemonic processes are not allowed to have
            # children"), as did torch.compile's worker pool under torch 2.1. Every rank is
            # still stopped: by _stop on every path out of here, and by _exit_with_parent
            # when the launcher is killed.
            daemon=False,
        )
        for r in range(nproc)
    ]
    t0 = time.monotonic()
    try:
        with _start_signals_blocked():  # the ranks inherit the mask: see there
            for p in procs:
                p.start()
        return _watch(procs, results, nproc, pg_timeout_s, end, t0)
    except BaseException:
        # Ctrl-C (KeyboardInterrupt) or any error of the watch: stop the ranks first. A host
        # that survives the interrupt (a notebook's "interrupt kernel", which signals only
        # the kernel; a script catching KeyboardInterrupt) left them computing to the end,
        # with nobody to report to: their parent was alive, so they did not exit by themselves.
        _stop(procs)
        raise


def _stop(procs: list[Any]) -> None:
    """Kill the ranks still running and reap every started one."""
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        if p.pid is not None:
            p.join(timeout=5)


@contextlib.contextmanager
def _start_signals_blocked() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread while the ranks start. A child inherits the
    mask (across the spawn's exec): the ranks never see SIGINT, which the launcher alone
    handles (stopping them; above), and unblock SIGTERM once started (:func:`_child`). Ctrl-C
    in a terminal signals every process of the group, and ranks interrupted while still
    importing printed tracebacks ("Process SpawnProcess-2:", KeyboardInterrupt in numpy's or
    torch's import) under "laqcore: interrupted". Blocked, not ignored: a signal that arrives
    meanwhile reaches the launcher once every rank has started, so none is left half-started
    (SIGTERM in the middle of a start left a rank whose start-up data was cut print "Ran out
    of input").

    The mask is this thread's: a SIGTERM sent to the process while another of its threads
    (an OpenMP worker, say) does not block it is delivered there, and Python then runs its
    handler in this thread all the same, in the middle of a start (seen once in a test run:
    "Ran out of input" again). So the Python-level handlers are swapped too, for ones that
    only note the signal; once every rank has started the previous handlers are back and
    each noted signal is handed to them."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not on Windows
        yield
        return
    noted: list[int] = []
    swapped: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():  # where handlers are set
        for blocked in sorted(_START_BLOCKED):
            if signal.getsignal(blocked) is not None:  # (None: set outside Python; left)
                swapped[blocked] = signal.signal(blocked, lambda num, frame: noted.append(num))
    before = signal.pthread_sigmask(signal.SIG_BLOCK, _START_BLOCKED)
    try:
        yield
    finally:
        for num, handler in swapped.items():
            signal.signal(num, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)  # pending ones arrive here
        for num in dict.fromkeys(noted):
            signal.raise_signal(num)


_START_BLOCKED = {signal.SIGINT, signal.SIGTERM}


def _watch(
    procs: list[Any], results: Any, nproc: int, pg_timeout_s: float, end: float, t0: float
) -> list[RankOutcome]:
    """Collect the started ranks' outcomes until every rank reported, the deadline ``end``
    or a taken port; then stop whatever still runs."""
    outcomes: dict[int, RankOutcome] = {}
    why: str | None = None  # why the ranks still running at ``end`` are killed (a failure)
    while len(outcomes) < nproc and time.monotonic() < end:
        try:
            o = pickle.loads(results.get(timeout=0.2))
            outcomes[o.rank] = o
            if _port_taken(o):
                # The others' reports that are already on their way (a rank 0 that failed
                # by itself, whose exit dropped the others' connections, is not a taken port)
                with contextlib.suppress(queue.Empty):
                    while len(outcomes) < nproc:
                        late = pickle.loads(results.get(timeout=0.5))
                        outcomes[late.rank] = late
                break
            if o.status != "ok":
                grace = pg_timeout_s + _FAILURE_MARGIN_S
                end, why = _shorten(
                    end,
                    why,
                    grace,
                    f"still running {grace:g} s after rank {o.rank} failed (hung, or stopped)",
                )
            continue
        except queue.Empty:
            pass
        # A rank that died without reporting (os._exit, signal, OOM) gets a short grace
        # period for its report to drain from the queue, then is recorded as exited.
        for r, p in enumerate(procs):
            if r not in outcomes and not p.is_alive() and p.exitcode is not None:
                try:
                    o = pickle.loads(results.get(timeout=0.5))
                    outcomes[o.rank] = o
                except queue.Empty:
                    outcomes[r] = RankOutcome(
                        r, "exited", exitcode=p.exitcode, seconds=time.monotonic() - t0
                    )
                    end, why = _shorten(
                        end,
                        why,
                        _EXITED_GRACE_S,
                        f"stopped {_EXITED_GRACE_S:g} s after "
                        f"rank {r} exited without a result (no rank can finish without it)",
                    )
    if any(_port_taken(o) for o in outcomes.values()):
        why = (
            "stopped: rank 0 could not listen on the rendezvous port, or a rank had joined "
            "another launch's store on it"
        )
    for r in range(nproc):
        if r not in outcomes:
            outcomes[r] = RankOutcome(r, "killed", error=why, seconds=time.monotonic() - t0)
    _stop(procs)
    return [outcomes[r] for r in range(nproc)]


def run_processes(
    fn: Callable[..., Any],
    nproc: int,
    *args: Any,
    backend: str = "gloo",
    pg_timeout_s: float = 60.0,
    deadline_s: float = 600.0,
    threads_per_proc: int = 1,
    raise_on_failure: bool = True,
) -> list[RankOutcome]:
    """Run ``fn(rank, world_size, *args)`` in ``nproc`` fresh processes and collect results.

    The rendezvous port is one :func:`free_port` found free; should another process take
    it before rank 0 listens on it, the launch is repeated on a new port (at most
    :data:`PORT_ATTEMPTS` launches, within the one deadline) instead of failing the run.
    With gloo, no rank calls ``fn`` before every rank has joined the process group.

    Parameters
    ----------
    fn:
        A module-level (picklable) function. Its return value must be picklable.
    nproc:
        Number of processes (world size), >= 1.
    backend:
        ``"gloo"`` (CPU) or ``"nccl"`` (a ``ValueError`` before any rank starts unless this
        torch has NCCL and sees a CUDA device per process: :func:`check_backend`; rank r
        then runs on ``cuda:r``, :func:`select_nccl_device`).
    pg_timeout_s:
        The process-group timeout: a collective that waits longer than this for a peer
        fails on the ranks that are still alive.
    deadline_s:
        Wall-clock limit for the whole run; ranks still alive then are killed.
    threads_per_proc:
        ``torch.set_num_threads`` in each child.
    raise_on_failure:
        Raise :class:`LaunchError` unless every rank returned; otherwise return the outcomes.

    Examples
    --------
    >>> outs = run_processes(my_fn, 2, "cfg.json")   # doctest: +SKIP
    >>> [o.result for o in outs]                     # doctest: +SKIP
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer, got {nproc!r}")
    check_nproc(nproc)
    check_timeouts(pg_timeout_s, deadline_s)
    check_backend(backend, nproc)
    ctx = mp.get_context("spawn")
    end = time.monotonic() + deadline_s  # for every attempt together
    launch = (fn, args, backend, pg_timeout_s, threads_per_proc)
    for _ in range(PORT_ATTEMPTS):
        ordered = _launch_once(ctx, nproc, free_port(), launch, end)
        # Repeat only a launch that failed at the port alone (no rank ran fn; a rank's own
        # error, reported with the others' dropped connections, is not repeated).
        if not any(_port_taken(o) for o in ordered) or not all(
            _port_taken(o) or o.status == "killed" for o in ordered
        ):
            break
    if raise_on_failure and any(o.status != "ok" for o in ordered):
        raise LaunchError(ordered)
    return ordered
