"""Measuring a DDP comm hook from the outside: bytes per collective and time in the hook."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist


def _nbytes(t: Any) -> int:
    if isinstance(t, torch.Tensor):
        return int(t.numel()) * t.element_size()
    if isinstance(t, (list, tuple)):
        return sum(_nbytes(v) for v in t)
    return 0


class CommMeter:
    """Counts the bytes of the ``torch.distributed`` collectives called through ``dist.*``.

    Per call, this rank's bytes under the usual bandwidth-optimal schedules: all-reduce of S
    bytes: ``2 S (N-1)/N`` sent and received (ring); all-gather: its own S to each of the
    N-1 others, and every other rank's contribution received; broadcast: the source sends S
    to each of the N-1 others, everybody else receives S; all-to-all: exactly the chunks
    for / from the other ranks; reduce-scatter of S: ``S (N-1)/N`` each way; a point-to-point
    send (``send``/``isend``) of S: S sent. A point-to-point receive may land in a buffer
    larger than the message (laqcore's Transport on gloo: a status and, when it fits, a
    frame), so its size says nothing: the bytes received point to point are counted as the
    bytes this rank sent point to point, which is exact in the mean over the ranks (every
    message sent is received once), the figure the reports show. The bench's own control
    all-reduces use the saved originals and are not counted.
    """

    NAMES = (
        "all_reduce",
        "all_gather",
        "all_gather_into_tensor",
        "broadcast",
        "all_to_all",
        "all_to_all_single",
        "reduce_scatter",
        "reduce_scatter_tensor",
        "send",
        "isend",
    )

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world
        self.sent = 0.0
        self.recv = 0.0
        self.calls = 0
        self.orig: dict[str, Callable[..., Any]] = {}

    def install(self) -> None:
        for name in self.NAMES:
            fn = getattr(dist, name, None)
            if fn is None or name in self.orig:
                continue
            self.orig[name] = fn
            setattr(dist, name, self._wrap(name, fn))

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self._count(name, args, kwargs)
            return fn(*args, **kwargs)

        return counted

    def _count(self, name: str, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        n, me = self.world, self.rank
        self.calls += 1
        first = args[0] if args else kw.get("tensor", kw.get("output_tensor_list"))
        if name == "all_reduce":
            s = 2.0 * _nbytes(first) * (n - 1) / n
            self.sent += s
            self.recv += s
        elif name in ("all_gather", "all_gather_into_tensor"):
            inp = args[1] if len(args) > 1 else kw.get("tensor", kw.get("input_tensor"))
            own = _nbytes(inp)
            total = _nbytes(first)  # the output holds every rank's contribution
            self.sent += own * (n - 1)
            self.recv += max(total - own, 0)
        elif name == "broadcast":
            src = args[1] if len(args) > 1 else kw.get("src", 0)
            if src == me:
                self.sent += _nbytes(first) * (n - 1)
            else:
                self.recv += _nbytes(first)
        elif name == "all_to_all":
            outs = args[0] if args else kw["output_tensor_list"]
            ins = args[1] if len(args) > 1 else kw["input_tensor_list"]
            self.sent += _nbytes(ins) - _nbytes(ins[me])
            self.recv += _nbytes(outs) - _nbytes(outs[me])
        elif name == "all_to_all_single":
            out = args[0] if args else kw["output"]
            inp = args[1] if len(args) > 1 else kw["input"]
            osp = args[2] if len(args) > 2 else kw.get("output_split_sizes")
            isp = args[3] if len(args) > 3 else kw.get("input_split_sizes")
            self.sent += _nbytes(inp) * (1 - _share(isp, me, n))
            self.recv += _nbytes(out) * (1 - _share(osp, me, n))
        elif name in ("send", "isend"):  # received: see the class docstring
            s = _nbytes(first)
            self.sent += s
            self.recv += s
        else:  # reduce_scatter(_tensor): output is this rank's 1/N share of the input
            s = _nbytes(args[1] if len(args) > 1 else kw.get("input")) * (n - 1) / n
            self.sent += s
            self.recv += s

    def snapshot(self) -> tuple[float, float]:
        return self.sent, self.recv


def _share(splits: Any, me: int, n: int) -> float:
    """Fraction of an all_to_all_single buffer that stays on this rank."""
    if not splits:
        return 1.0 / n
    total = float(sum(int(v) for v in splits))
    return float(int(splits[me])) / total if total else 0.0


class HookTimer:
    """Wraps a comm hook: time inside the hook calls and the span to ``backward()``'s end.

    ``calls``/``spans`` hold one value per step (seconds), appended by :meth:`end_backward`.
    """

    def __init__(self) -> None:
        self.call_s = 0.0
        self.first: float | None = None
        self.calls: list[float] = []
        self.spans: list[float] = []

    def wrap(self, hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def timed(state, bucket):  # type: ignore[no-untyped-def]  # DDP rejects string annotations
            t = time.perf_counter()
            if self.first is None:
                self.first = t
            fut = hook(state, bucket)
            self.call_s += time.perf_counter() - t
            return fut

        timed.__annotations__ = {}
        return timed

    def end_backward(self) -> None:
        if self.first is not None:
            self.spans.append(time.perf_counter() - self.first)
            self.calls.append(self.call_s)
        self.first, self.call_s = None, 0.0
