"""Bucket parking and the flat, stable-order gradient layout of the laqcore DDP hooks.

DDP calls a hook once per gradient bucket; the laqcore hooks treat one iteration as one
message. :class:`BucketLayout` parks the buckets of an iteration until the last one arrives,
checks that the hooks can handle them (dense, real floating point, the same parameters every
iteration), and moves the gradient between the buckets and one flat float32 vector in a
**stable parameter order**: the order the parameters had in the buckets of the first
iteration the hook saw: DDP's constructor layout when the hook is registered before DDP's
first backward pass, DDP's rebuilt layout when it is registered later. DDP rebuilds its
buckets after its first iteration; the stable order keeps the hook's state (and the
quantizer's block boundaries) independent of that rebuild. A state loaded from a checkpoint
takes the saving run's order instead (:meth:`BucketLayout.reorder`, called by the state when
the first iteration's parameters are the saved ones in another order), so a resume is
bit-exact whichever layout the two processes' first iterations saw.

Per iteration the cost is one gather (``torch.cat`` into a reused buffer) and one scatter
(one ``numpy.copyto`` per piece for float32 CPU buckets, about twice as fast as
``torch._foreach_copy_`` on one thread: ``bench/profile_laq_hook.py``;
docs/results_hooks.md, "The hook's CPU work at 5.3M, phase by phase";
``torch._foreach_copy_`` for other dtypes and devices), each over as few pieces as possible:
parameters that are adjacent both in a bucket and in the stable order are copied as one
piece, so a layout equal to the stable one costs one piece per bucket. The scatter's loop
runs over those pieces (one per bucket when the layouts agree, at most one per parameter:
about a microsecond each); every other per-parameter step happens only when the layout
changes (the first iteration and DDP's rebuild).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch._C._distributed_c10d import GradBucket

__all__ = ["BucketLayout", "Parked"]


def __dir__() -> list[str]:
    return __all__


Future = torch.futures.Future
FloatVector = npt.NDArray[np.float32]


@dataclass
class Parked:
    """One bucket waiting for the last bucket of its iteration."""

    buffer: torch.Tensor
    params: list[torch.Tensor]
    future: Future[torch.Tensor]


#: What to do when the buckets' parameters change (one text for both refusals).
_NEW_MODEL = (
    "a DDP model whose trained parameters change, e.g. a layer unfrozen or frozen and the "
    "model wrapped in a new DDP, needs a new hook state registered on the new DDP; each DDP "
    "model needs a state of its own"
)


def _describe(ordinal: int, p: torch.Tensor) -> str:
    return f"parameter #{ordinal} (shape {list(p.shape)}, dtype {p.dtype})"


def _check_bucket(bucket_index: int, buffer: torch.Tensor, params: list[torch.Tensor]) -> None:
    """Refuse what the hooks cannot compress, naming the parameter (before any collective)."""
    for i, p in enumerate(params):
        g = p.grad
        if p.is_sparse or (g is not None and g.is_sparse) or buffer.is_sparse:
            raise TypeError(
                f"laqcore DDP hooks need dense gradients, but {_describe(i, p)} in bucket "
                f"{bucket_index} has a sparse gradient (e.g. nn.Embedding(sparse=True)); use "
                "sparse=False or register no laqcore hook for this model"
            )
        if p.is_complex():
            raise TypeError(
                f"laqcore DDP hooks need real gradients, but {_describe(i, p)} in bucket "
                f"{bucket_index} is complex; store it as torch.view_as_real (a real parameter "
                "with a trailing dimension of 2)"
            )
        if not p.is_floating_point():
            raise TypeError(
                f"laqcore DDP hooks need floating-point gradients, got {_describe(i, p)}"
            )


class BucketLayout:
    """Parks buckets and maps the flat stable-order gradient to and from them.

    Attributes
    ----------
    numels : list of int
        Number of elements of each parameter, in the stable order.
    numel : int
        Total number of gradient elements (0 before the first iteration).
    dense_bytes : int
        Bytes of one iteration's gradient in the buckets' own dtypes (2 bytes per element for
        fp16/bf16 gradients, 4 for float32): what a plain all-reduce would move.
    offsets : numpy.ndarray of int64
        Where each parameter starts in the flat gradient, and its length at the end
        (``len(numels) + 1`` values from 0 to ``numel``).
    """

    def __init__(self) -> None:
        self._parked: list[Parked] = []
        self._ordinal: dict[int, int] = {}  # id(param) -> position in the stable order
        self.numels: list[int] = []
        self.params: list[torch.Tensor] = []  # the parameters, in the stable order
        self.offsets: npt.NDArray[np.int64] = np.zeros(1, dtype=np.int64)
        self._known_key: tuple[int, ...] | None = None
        self._plan: tuple[list[torch.Tensor], list[int]] | None = None
        # The plan's pieces as numpy views, for float32 CPU buckets (else None).
        self._np_views: list[npt.NDArray[np.float32]] | None = None
        self._host_pieces: list[tuple[int, FloatVector]] | None = None
        self._plan_key: tuple[object, ...] | None = None
        self._flat: torch.Tensor | None = None
        self.dense_bytes = 0
        self.device = torch.device("cpu")

    @property
    def numel(self) -> int:
        return int(self.offsets[-1])

    # -- parking ----------------------------------------------------------------------------
    def park(self, bucket: GradBucket) -> tuple[Future[torch.Tensor], list[Parked] | None]:
        """Park ``bucket``; at the last bucket also return every parked bucket (in order)."""
        buffer = bucket.buffer()
        devices: list[int | str | torch.device] | None = (
            [buffer.device] if buffer.device.type != "cpu" else None
        )
        fut: Future[torch.Tensor] = Future(devices=devices)
        self._parked.append(Parked(buffer, list(bucket.parameters()), fut))
        if not bucket.is_last():
            return fut, None
        parked, self._parked = self._parked, []
        return fut, parked

    # -- layout -----------------------------------------------------------------------------
    def learn(self, parked: list[Parked]) -> None:
        """Check the buckets and learn (first iteration) or verify the parameter set.

        Raises ``TypeError`` for sparse, complex or integer gradients and ``ValueError`` if
        the set of parameters differs from the first iteration's, naming the parameter.
        """
        key = tuple(map(id, itertools.chain.from_iterable(b.params for b in parked)))
        if key == self._known_key:
            return
        for i, b in enumerate(parked):
            _check_bucket(i, b.buffer, b.params)
        if self._known_key is None:
            self._set_order([p for b in parked for p in b.params])
            self.dense_bytes = sum(int(b.buffer.numel()) * b.buffer.element_size() for b in parked)
            self.device = parked[0].buffer.device
        else:
            seen: set[int] = set()
            for i, b in enumerate(parked):
                for p in b.params:
                    o = self._ordinal.get(id(p))
                    if o is None or self.numels[o] != p.numel():
                        raise ValueError(
                            f"DDP bucket {i} holds {_describe(len(seen), p)}, which was not "
                            "among the parameters of the first iteration: laqcore hooks need "
                            f"the same parameters in the buckets every step ({_NEW_MODEL})"
                        )
                    seen.add(o)
            missing = sorted(set(range(len(self.numels))) - seen)
            if missing:
                raise ValueError(
                    f"the buckets of this iteration lack parameter #{missing[0]} (of "
                    f"{len(self.numels)} seen in the first iteration, numel "
                    f"{self.numels[missing[0]]}): laqcore hooks need the same parameters in "
                    f"the buckets every step ({_NEW_MODEL})"
                )
        self._known_key = key
        self._plan_key = None

    def _set_order(self, params: list[torch.Tensor]) -> None:
        """Make ``params`` the stable order."""
        self.params, self.numels = params, [int(p.numel()) for p in params]
        self._ordinal = {id(p): i for i, p in enumerate(params)}
        self.offsets = np.asarray(list(itertools.accumulate(self.numels, initial=0)), np.int64)
        self._plan_key = None

    def reorder(self, order: list[int]) -> None:
        """Make ``[params[i] for i in order]`` the stable order (a permutation of it)."""
        self._set_order([self.params[i] for i in order])

    def _pieces(self, parked: list[Parked]) -> tuple[list[torch.Tensor], list[int]]:
        """Views of the bucket buffers that, concatenated, give the stable order."""
        plan_key = (self._known_key, tuple(b.buffer.data_ptr() for b in parked))
        if self._plan is not None and plan_key == self._plan_key:
            return self._plan
        where: list[tuple[int, int, int]] = [(0, 0, 0)] * len(self.numels)
        for bi, b in enumerate(parked):
            pos = 0
            for p in b.params:
                k = int(p.numel())
                where[self._ordinal[id(p)]] = (bi, pos, k)
                pos += k
        views: list[torch.Tensor] = []
        sizes: list[int] = []
        run: list[int] | None = None  # [bucket, start, length] of the piece being grown
        for bi, start, k in where:
            if run is not None and run[0] == bi and run[1] + run[2] == start:
                run[2] += k
                continue
            if run is not None:
                views.append(parked[run[0]].buffer.view(-1).narrow(0, run[1], run[2]))
                sizes.append(run[2])
            run = [bi, start, k]
        if run is not None:
            views.append(parked[run[0]].buffer.view(-1).narrow(0, run[1], run[2]))
            sizes.append(run[2])
        self._plan, self._plan_key = (views, sizes), plan_key
        cpu32 = all(v.device.type == "cpu" and v.dtype == torch.float32 for v in views)
        self._np_views = [v.numpy() for v in views] if cpu32 else None
        starts = itertools.accumulate(sizes[:-1], initial=0)
        self._host_pieces = None if self._np_views is None else list(zip(starts, self._np_views))
        return views, sizes

    def gather(self, parked: list[Parked], out: torch.Tensor | None = None) -> torch.Tensor:
        """The flat float32 CPU gradient in the stable order, into ``out`` (a float32 CPU
        tensor of :attr:`numel` elements) or a reused buffer."""
        views, _ = self._pieces(parked)
        if out is None:
            if self._flat is None or self._flat.numel() != self.numel:
                self._flat = torch.empty(self.numel, dtype=torch.float32)
            out = self._flat
        if len(views) == 1:
            out.copy_(views[0])
        elif views[0].device.type == "cpu" and views[0].dtype == torch.float32:
            torch.cat(views, out=out)
        else:
            out.copy_(torch.cat(views))
        return out

    def host_pieces(self, parked: list[Parked]) -> list[tuple[int, FloatVector]] | None:
        """``(start, piece)`` for the pieces that, concatenated, give the stable order, each a
        float32 numpy view of a bucket buffer starting at ``start`` of the flat vector, where
        every piece is a float32 CPU tensor (a kernel can then read them in place instead of
        a gathered copy); else ``None``."""
        self._pieces(parked)
        return self._host_pieces

    def scatter(self, parked: list[Parked], flat: torch.Tensor, scale: float = 1.0) -> None:
        """Write ``scale`` times the flat stable-order vector back into the bucket buffers."""
        views, sizes = self._pieces(parked)
        if self._np_views is not None and flat.device.type == "cpu" and flat.dtype == torch.float32:
            src = flat.numpy()
            start = 0
            for dst, k in zip(self._np_views, sizes):
                if scale == 1.0:
                    np.copyto(dst, src[start : start + k])
                else:
                    np.multiply(src[start : start + k], np.float32(scale), out=dst)
                start += k
            return
        if scale != 1.0:
            flat = flat * scale
        if views[0].device != flat.device or views[0].dtype != flat.dtype:
            flat = flat.to(views[0].device, views[0].dtype, non_blocking=True)
        torch._foreach_copy_(views, list(torch.split(flat, sizes)))

    # -- checkpoints ------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget parameter identities (a new process re-learns them at its first step)."""
        self.__init__()  # type: ignore[misc]
