"""Host gathers: a host array of the same size on every rank, gathered on every rank.

The exchanges (:mod:`.two_phase`, :mod:`.transport`) and the engine's replica check
(:mod:`.engine_state`) all-gather small host arrays: control int64s, padded publications,
digests. :class:`HostGather` runs them one way everywhere:

* on ``cpu`` (gloo), an ``all_to_all_single`` of ``world`` copies of the array: the same
  bytes as gloo's all-gather, whose ring of ``world - 1`` dependent hops waits for each next
  rank to be scheduled (4 ranks on 2 cores: 3.8 ms against 0.9 ms per control gather;
  bench/hook_floors.py);
* on any other device (NCCL), ``dist.all_gather`` into the rows of the output.

The rows are bit-identical either way. ``bench/ring_gathers`` puts the ring back on ``cpu``
for A/B runs by patching :meth:`HostGather.into`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist

__all__ = ["HostGather", "collective_device", "global_rank"]


def __dir__() -> list[str]:
    return __all__


def global_rank(process_group: Any, group_rank: int) -> int:
    """The default group's rank of ``group_rank`` of ``process_group`` (``None``: the default
    group itself): point-to-point calls and ``broadcast`` name peers that way."""
    if process_group is None:
        return group_rank
    return int(dist.get_global_rank(process_group, group_rank))


def collective_device(process_group: Any) -> torch.device:
    """Where a group's collectives want their tensors: the current CUDA device for NCCL,
    the CPU otherwise (gloo, MPI)."""
    if str(dist.get_backend(process_group)).lower() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _unguarded(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run the collective ``fn`` as it is (``what`` names it only for a guard)."""
    return fn(*args, **kwargs)


def _torch_dtype(send: npt.NDArray[Any]) -> torch.dtype:
    return torch.from_numpy(send[:0]).dtype


class HostGather:
    """All-gather of host arrays of the same size on every rank of a group.

    Parameters
    ----------
    group:
        The process group (``None``: the default group).
    world:
        The group's size.
    device:
        Where the collective's tensors live: ``cpu`` (gloo) gathers by an all-to-all of
        copies, any other device by ``dist.all_gather``.
    guard:
        Runs each collective as ``guard(what, fn, *args, **kwargs)``: the caller's
        wrapper that turns a backend failure into its own error (e.g.
        :class:`~laqcore.distributed.errors.PeerFailureError`). ``None`` runs it as it is.
    """

    def __init__(
        self,
        group: Any,
        world: int,
        device: torch.device | str,
        guard: Callable[..., Any] | None = None,
    ) -> None:
        self.group = group
        self.world = int(world)
        self.device = torch.device(device)
        self.guard: Callable[..., Any] = _unguarded if guard is None else guard
        self._copies: dict[str, torch.Tensor] = {}  # all-to-all inputs, by dtype
        self._rows: dict[str, torch.Tensor] = {}  # outputs of :meth:`rows`, by dtype
        self._ints: dict[int, tuple[npt.NDArray[np.int64], torch.Tensor]] = {}  # by length

    def into(self, whole: torch.Tensor, send: npt.NDArray[Any], what: str) -> npt.NDArray[Any]:
        """Gather ``send`` (a host array, the same size on every rank) into ``whole``
        (``world`` times its size and of its dtype, on the gather's device).

        Returns
        -------
        numpy.ndarray
            The rows (``world`` by the size of ``send``, row r from rank r), on the host. On
            ``cpu`` a view of ``whole``, valid until ``whole`` is written again.
        """
        rows = whole.view(self.world, -1)
        if self.device.type != "cpu":
            mine = torch.from_numpy(send).to(self.device)
            self.guard(what, dist.all_gather, list(rows.unbind(0)), mine, group=self.group)
            got: npt.NDArray[Any] = rows.cpu().numpy()
            return got
        copies = self._host_copies(send)  # send, once per destination (itself included)
        self.guard(what, dist.all_to_all_single, whole, copies, group=self.group)
        return rows.numpy()

    def rows(self, send: npt.NDArray[Any], what: str) -> npt.NDArray[Any]:
        """:meth:`into` an output buffer of this gather, reused across calls of the same
        dtype: the rows are valid until the next call with ``send`` of that dtype."""
        size = self.world * int(send.shape[0])
        key = send.dtype.str
        whole = self._rows.get(key)
        if whole is None or whole.shape[0] != size:
            whole = torch.empty(size, dtype=_torch_dtype(send), device=self.device)
            self._rows[key] = whole
        return self.into(whole, send, what)

    def ints(self, values: list[int], what: str) -> list[list[int]]:
        """Every rank's int64 ``values`` (the same length on every rank), in rank order."""
        k = len(values)
        if k not in self._ints:
            whole = torch.zeros(self.world * k, dtype=torch.int64, device=self.device)
            self._ints[k] = (np.zeros(k, dtype=np.int64), whole)
        mine, whole = self._ints[k]
        mine[:] = values
        got: list[list[int]] = self.into(whole, mine, what).tolist()
        return got

    def frames(self, data: bytes, sizes: list[int], what: str) -> list[bytes | None]:
        """Every rank's frame to every rank (``cpu`` only): rank r's frame has ``sizes[r]``
        bytes, 0 for none, and this rank's is ``data`` (``sizes[rank]`` bytes). One
        ``all_to_all_single`` with uneven splits: this rank sends ``data`` to each other
        rank and receives ``sizes[r]`` bytes from rank r, so frames of different sizes
        travel without padding, in one collective, whoever uploads.

        Returns
        -------
        list
            ``frames[r]``: rank r's bytes, ``None`` where ``sizes[r]`` is 0 (this rank's
            own entry is ``data`` itself).
        """
        if self.device.type != "cpu":
            raise ValueError(f"HostGather.frames runs on cpu (gloo), not {self.device}")
        me = int(dist.get_rank(self.group))
        if len(data) != sizes[me]:
            raise ValueError(f"this rank's frame has {len(data)} bytes, sizes say {sizes[me]}")
        send_splits = [0 if r == me else len(data) for r in range(self.world)]
        recv_splits = [0 if r == me else int(s) for r, s in enumerate(sizes)]
        send = torch.empty(sum(send_splits), dtype=torch.uint8)
        if data:
            copies = send.numpy().reshape(self.world - 1, len(data))
            copies[:] = np.frombuffer(data, dtype=np.uint8)
        got = torch.empty(sum(recv_splits), dtype=torch.uint8)
        self.guard(
            what,
            dist.all_to_all_single,
            got,
            send,
            output_split_sizes=recv_splits,
            input_split_sizes=send_splits,
            group=self.group,
        )
        flat = got.numpy()
        out: list[bytes | None] = []
        at = 0
        for r, size in enumerate(recv_splits):
            if r == me:
                out.append(data if data else None)
            else:
                out.append(flat[at : at + size].tobytes() if size else None)
            at += size
        return out

    def _host_copies(self, send: npt.NDArray[Any]) -> torch.Tensor:
        """``world`` copies of ``send`` in a reused host tensor (the all-to-all's input)."""
        size = self.world * int(send.shape[0])
        buf = self._copies.get(send.dtype.str)
        if buf is None or buf.shape[0] != size:
            buf = torch.empty(size, dtype=_torch_dtype(send))
            self._copies[send.dtype.str] = buf
        buf.numpy().reshape(self.world, -1)[:] = send
        return buf
