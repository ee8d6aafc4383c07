"""The engine's per-rank checkpoint files and its replica check.

:class:`RankCheckpoints` writes and restores ``rank<r>.ckpt`` (each rank's server replica,
its workers' state, the counters; the file format, which cannot run code, is
:mod:`laqcore.distributed.checkpoint`); :func:`check_replicas` compares the ranks' replica
digests and stops every rank if one differs. Used by :func:`laqcore.distributed.engine.run_engine`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.distributed as dist

from . import checkpoint as ckfmt
from .errors import ReplicaMismatchError, run_collective
from .gather import HostGather

if TYPE_CHECKING:
    from ..driver import Recorder
    from .engine_config import EngineConfig

__all__ = ["RankCheckpoints", "check_replicas"]


def __dir__() -> list[str]:
    return __all__


_CKPT_FORMAT = "laqcore.engine-checkpoint/1"


def _host_gather(rank: int, world: int, where: str = "") -> HostGather:
    """A gather over the default group whose backend failures (a peer that died) raise a
    PeerFailureError naming this rank and the operation (``where`` added)."""

    def guard(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return run_collective(rank, f"{what}{where}", None, fn, *args, **kwargs)

    return HostGather(None, world, "cpu", guard)


def check_replicas(server: Any, rank: int, k: int) -> None:
    """All-gather the digest of every rank's server replica; raise on every rank if any
    differs (the gathered digests are the same everywhere, so all ranks agree to stop)."""
    mine = np.frombuffer(bytearray(ckfmt.state_digest(server)), dtype=np.int64)
    gather = _host_gather(rank, dist.get_world_size(), f" after iteration {k}")
    gathered = gather.rows(mine, "replica digests")
    groups: dict[bytes, list[int]] = {}
    for r, row in enumerate(gathered):
        groups.setdefault(row.tobytes(), []).append(r)
    if len(groups) > 1:
        raise ReplicaMismatchError(sorted(groups.values()), k)


#: How a setting left at its default (absent from the recorded JSON) reads in a message.
_DEFAULT = "the default"


def _loads(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _setting_diffs(saved: dict[str, Any], live: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, checkpoint's value, this run's) of every differing setting; the problem's and
    the algorithm's parameters one by one (``problem.workers``, ``overrides.bits``)."""
    out = []
    for key in sorted(set(saved) | set(live)):
        a, b = saved.get(key, _DEFAULT), live.get(key, _DEFAULT)
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                x, y = a.get(sub, _DEFAULT), b.get(sub, _DEFAULT)
                if x != y:
                    out.append((f"{key}.{sub}", x, y))
        elif a != b:
            out.append((key, a, b))
    return out


#: What a rank announces for a checkpoint file it does not have, or cannot read.
_ABSENT, _UNREADABLE = -1, -2


def _iteration(path: str) -> int:
    """The iteration a checkpoint was written at (``CheckpointError`` if unreadable)."""
    tree, arrays = ckfmt.read_checkpoint(path)
    try:
        k = ckfmt.restore_state(None, dict(tree["__map__"])["k"], arrays)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise ckfmt.CheckpointError(f"checkpoint {path} has a malformed header: {err}") from None
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ckfmt.CheckpointError(f"checkpoint {path} has a malformed iteration {k!r}")
    return k


class RankCheckpoints:
    """``rank<r>.ckpt`` in ``checkpoint_dir`` (format: :mod:`laqcore.distributed.checkpoint`).

    ``skip``: types that wrap state but hold none of their own (the engine's finite-gradient
    wrapper of a worker's objective): not written, kept as they are at load.
    """

    def __init__(
        self,
        cfg: EngineConfig,
        rank: int,
        world: int,
        skip: tuple[type, ...] = (),
        downlink: Any = None,
    ) -> None:
        self.cfg, self.rank, self.world, self.skip = cfg, rank, world, skip
        #: The quantized downlink's state (owners' exact chunks, the held copy), or None.
        self.downlink = downlink
        d = cfg.checkpoint_dir
        self.path = None if d is None else ckfmt.checkpoint_path(d, rank)
        self.previous = None if d is None else ckfmt.checkpoint_path(d, rank, previous=True)
        if cfg.resume and self.path is None:
            raise ValueError("resume needs checkpoint_dir")
        if cfg.checkpoint_dir is not None:
            os.makedirs(cfg.checkpoint_dir, exist_ok=True)

    def _downlink(self) -> dict[str, Any]:
        return {} if self.downlink is None else dict(self.downlink.state_dict())

    def save(
        self,
        k: int,
        loss0: float,
        server: Any,
        workers: dict[int, Any],
        recorder: Recorder,
        counters: dict[str, int],
        stats: Any,
    ) -> None:
        assert self.path is not None  # noqa: S101 - only called when configured
        state = {
            "format": _CKPT_FORMAT,
            "fingerprint": self.cfg.fingerprint(),
            "world": self.world,
            "rank": self.rank,
            "settings": self.cfg.trajectory(),  # what the fingerprint hashes, for messages
            "k": k,
            "loss0": loss0,
            "counters": dict(counters),
            "recorder": recorder.state(),
            "wire": asdict(stats),
            "server": server,
            "workers": dict(workers),
            "downlink": self._downlink(),
        }
        tree, arrays = ckfmt.encode_state(state, skip=self.skip)
        # The last checkpoint stays as the previous one: ranks stopped while writing (Ctrl-C,
        # a kill, a crash) can leave checkpoints one period apart, and a resume then falls
        # back to the iteration all of them hold (:meth:`_choose`).
        assert self.previous is not None  # noqa: S101 - set with path
        if os.path.exists(self.path):
            os.replace(self.path, self.previous)
        ckfmt.write_checkpoint(self.path, tree, arrays)

    def _choose(self) -> str:
        """The file to resume from: of this rank's checkpoint and the one before it, the one
        at the newest iteration that every rank holds (a collective; every rank decides
        alike). Ranks stopped while writing their checkpoints (2 of them, Ctrl-C at
        --checkpoint-every 1: 1 try in 4) left them one iteration apart, and the resume
        failed on both ranks with "server replicas differ after iteration 457"."""
        assert self.path is not None and self.previous is not None  # noqa: S101 - resume
        paths = (self.path, self.previous)
        unreadable: ckfmt.CheckpointError | None = None
        mine = []
        for p in paths:
            try:
                mine.append(_iteration(p) if os.path.isfile(p) else _ABSENT)
            except ckfmt.CheckpointError as err:  # raised below, on every rank
                unreadable = unreadable or err
                mine.append(_UNREADABLE)
        rows = _host_gather(self.rank, self.world).ints(mine, "checkpoint iterations")
        if unreadable is not None:
            raise unreadable
        bad = [r for r, row in enumerate(rows) if _UNREADABLE in row]
        if bad:  # the peers raise at once instead of waiting for one that has stopped
            raise ckfmt.CheckpointError(
                f"rank {', '.join(map(str, bad))} could not read its checkpoint in "
                f"{self.cfg.checkpoint_dir} (its own error says why)"
            )
        common = set.intersection(*({k for k in row if k >= 0} for row in rows))
        if not common:
            held = "; ".join(
                f"rank {r}: {', '.join(str(k) for k in row if k >= 0) or 'none'}"
                for r, row in enumerate(rows)
            )
            raise ckfmt.CheckpointError(
                f"the checkpoints in {self.cfg.checkpoint_dir} hold no iteration that every "
                f"rank has ({held}), so the ranks cannot resume together"
            )
        return paths[mine.index(max(common))]

    def _mismatch(self, head: dict[str, Any], saved: str | None) -> str:
        """Why a checkpoint's header differs from this run's (``saved``: the settings it
        recorded, absent in checkpoints written before they were)."""
        if head["format"] != _CKPT_FORMAT:
            return f"has format {head['format']!r}; this version reads {_CKPT_FORMAT!r}"
        if (head["world"], head["rank"]) != (self.world, self.rank):
            return (
                f"was written by rank {head['rank']} of {head['world']} processes; this is rank "
                f"{self.rank} of {self.world} (resume with the same number of processes)"
            )
        diffs = (
            [] if saved is None else _setting_diffs(_loads(saved), _loads(self.cfg.trajectory()))
        )
        if not diffs:
            return (
                "was written by another configuration (problem, algorithm, its parameters, "
                "--eps, --exchange or --downlink)"
            )
        return (
            "was written by another configuration: "
            + "; ".join(f"{k}: {a} in the checkpoint, {b} in this run" for k, a, b in diffs[:6])
            + (f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else "")
        )

    def load(
        self,
        server: Any,
        workers: dict[int, Any],
        recorder: Recorder,
        counters: dict[str, int],
        stats: Any,
    ) -> tuple[int, float]:
        path = self._choose()
        tree, arrays = ckfmt.read_checkpoint(path)
        template = {
            "format": _CKPT_FORMAT,
            "fingerprint": self.cfg.fingerprint(),
            "world": self.world,
            "rank": self.rank,
        }
        try:
            entries = {k: v for k, v in tree["__map__"]}
            head = {key: ckfmt.restore_state(None, entries.get(key), arrays) for key in template}
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise ckfmt.CheckpointError(
                f"checkpoint {path} has a malformed header: {err}"
            ) from None
        if head != template:
            saved = entries.get("settings")
            raise ckfmt.CheckpointError(
                f"checkpoint {path} "
                + self._mismatch(head, saved if isinstance(saved, str) else None)
            )
        live = {
            **template,
            "downlink": self._downlink(),
            "k": 0,
            "loss0": 0.0,
            "counters": dict(counters),
            "recorder": recorder.state(),
            "wire": asdict(stats),
            "server": server,
            "workers": dict(workers),
        }
        try:
            state = ckfmt.restore_state(live, tree, arrays, skip=self.skip)
            recorder.load_state(state["recorder"])
            counters.update(state["counters"])
            if self.downlink is not None:
                self.downlink.load_state_dict(state["downlink"])
            for name, v in state["wire"].items():
                setattr(stats, name, v)
            k, loss0 = int(state["k"]), float(state["loss0"])
        except (KeyError, TypeError, ValueError) as err:
            raise ckfmt.CheckpointError(f"checkpoint {path} does not fit this run: {err}") from None
        if k > self.cfg.max_iterations:  # its results would report more than the budget
            raise ckfmt.CheckpointError(
                f"checkpoint {path} is at iteration {k}, past this run's max_iterations "
                f"{self.cfg.max_iterations} (--max-iterations): raise it to go on from there"
            )
        return k, loss0
