"""The engine's per-rank checkpoint files and its replica check.

:class:`RankCheckpoints` writes and restores ``rank<r>.ckpt`` (each rank's server replica,
its workers' state, the counters; the file format, which cannot run code, is
:mod:`laqcore.distributed.checkpoint`); :func:`check_replicas` compares the ranks' replica
digests and stops every rank if one differs. Used by :func:`laqcore.distributed.engine.run_engine`.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch.distributed as dist

from . import checkpoint as ckfmt
from .errors import ReplicaMismatchError
from .gather import HostGather

if TYPE_CHECKING:
    from ..driver import Recorder
    from .engine_config import EngineConfig

__all__ = ["RankCheckpoints", "check_replicas"]


def __dir__() -> list[str]:
    return __all__


_CKPT_FORMAT = "laqcore.engine-checkpoint/1"


def check_replicas(server: Any, rank: int, k: int) -> None:
    """All-gather the digest of every rank's server replica; raise on every rank if any
    differs (the gathered digests are the same everywhere, so all ranks agree to stop)."""
    mine = np.frombuffer(bytearray(ckfmt.state_digest(server)), dtype=np.int64)
    gathered = HostGather(None, dist.get_world_size(), "cpu").rows(mine, "replica digests")
    groups: dict[bytes, list[int]] = {}
    for r, row in enumerate(gathered):
        groups.setdefault(row.tobytes(), []).append(r)
    if len(groups) > 1:
        raise ReplicaMismatchError(sorted(groups.values()), k)


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
        self.path = (
            None
            if cfg.checkpoint_dir is None
            else os.path.join(cfg.checkpoint_dir, f"rank{rank}.ckpt")
        )
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
        ckfmt.write_checkpoint(self.path, tree, arrays)

    def load(
        self,
        server: Any,
        workers: dict[int, Any],
        recorder: Recorder,
        counters: dict[str, int],
        stats: Any,
    ) -> tuple[int, float]:
        path = self.path
        assert path is not None  # noqa: S101 - checked in __init__
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
            raise ckfmt.CheckpointError(
                f"checkpoint {path} was written by another configuration, world size or rank "
                f"({head.get('world')} processes, rank {head.get('rank')})"
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
            return int(state["k"]), float(state["loss0"])
        except (KeyError, TypeError, ValueError) as err:
            raise ckfmt.CheckpointError(f"checkpoint {path} does not fit this run: {err}") from None
