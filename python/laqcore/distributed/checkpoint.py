"""Engine checkpoints that cannot run code, with a checksum, and replica digests.

Format (one ``rank<r>.ckpt`` per rank, written atomically, the one before it kept as
``rank<r>.prev.ckpt``): the 8-byte magic
``LQCKPT01``, the SHA-256 of everything after it (32 bytes), then a numpy ``.npz`` archive
read back with ``allow_pickle=False``, holding ``state.json`` (a uint8 array, the UTF-8 JSON
*state tree*, see below) and ``a0``, ``a1``, ...: the numeric arrays the tree refers to
(never object arrays).

:func:`read_checkpoint` verifies the checksum (so any flipped bit is refused) before anything
is decoded, and every failure (missing file, bad magic, checksum mismatch, pickled or
malformed content) raises :class:`CheckpointError` naming the file. Nothing in a checkpoint
is ever executed or used to choose a class: objects are restored *into* the objects a fresh
run builds (same type name and the same attribute names, or the load is refused).

State tree. JSON values stand for themselves; everything else is a one-key-tagged dict:
``{"__array__": i}``, ``{"__float__": "nan"|"inf"|"-inf"}``, ``{"__scalar__": dtype, "value"}``,
``{"__tuple__": [...]}``, ``{"__deque__": [...], "maxlen": n}``, ``{"__map__": [[k, v], ...]}``
(any dict), ``{"__rng__": bit generator state}``, ``{"__history__": IterateHistory.state()}``,
``{"__payload__": i}`` (a wire frame, decoded with its CRC), ``{"__object__": type name,
"state": {attribute: value}}``.

:func:`state_digest` hashes an object's state tree the same way: the engine's replicas
compare the digests of their servers every so often (``EngineConfig.replica_check_every``).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import math
import os
import zipfile
from typing import Any

import numpy as np

from .._npy import NPZ_ERRORS, npy_from_bytes
from ..lazy import IterateHistory
from ..wire import Payload, payload_from_bytes

__all__ = [
    "CheckpointError",
    "checkpoint_path",
    "encode_state",
    "read_checkpoint",
    "restore_state",
    "state_digest",
    "write_checkpoint",
]


def __dir__() -> list[str]:
    return __all__


def checkpoint_path(directory: str, rank: int, *, previous: bool = False) -> str:
    """Where rank ``rank`` of the engine keeps its checkpoint in ``directory``, or
    (``previous``) the one before it, which a resume falls back to when the ranks were
    stopped while writing theirs."""
    return os.path.join(directory, f"rank{rank}.prev.ckpt" if previous else f"rank{rank}.ckpt")


_RNGS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (unreadable, corrupt, or of another run)."""


def encode_state(value: Any, *, skip: tuple[type, ...] = ()) -> tuple[Any, list[np.ndarray]]:
    """``value`` as a JSON-able state tree plus its arrays. Object attributes holding an
    instance of a ``skip`` type (e.g. a worker's objective: data, not state) are left out."""
    arrays: list[np.ndarray] = []

    def enc(x: Any) -> Any:
        if x is None or isinstance(x, (bool, str, int)):
            return x
        if isinstance(x, float):
            return x if math.isfinite(x) else {"__float__": repr(x)}
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise TypeError("cannot checkpoint an object array")
            arrays.append(np.ascontiguousarray(x))
            return {"__array__": len(arrays) - 1}
        if isinstance(x, np.generic):
            return {"__scalar__": x.dtype.str, "value": enc(x.item())}
        if isinstance(x, list):
            return [enc(v) for v in x]
        if isinstance(x, tuple):
            return {"__tuple__": [enc(v) for v in x]}
        if isinstance(x, collections.deque):
            return {"__deque__": [enc(v) for v in x], "maxlen": x.maxlen}
        if isinstance(x, dict):
            return {"__map__": [[enc(k), enc(v)] for k, v in x.items()]}
        if isinstance(x, np.random.Generator):
            return {"__rng__": enc(x.bit_generator.state)}
        if isinstance(x, IterateHistory):
            return {"__history__": enc(x.state())}
        if isinstance(x, Payload):
            return {"__payload__": enc(np.frombuffer(x.to_bytes(), np.uint8).copy())["__array__"]}
        if hasattr(x, "__dict__") and not isinstance(x, type):
            fields = {k: v for k, v in vars(x).items() if not isinstance(v, skip)}
            return {
                "__object__": type(x).__qualname__,
                "state": {k: enc(v) for k, v in fields.items()},
            }
        raise TypeError(f"cannot checkpoint a {type(x).__name__}")

    return enc(value), arrays


#: The numpy scalar kinds :func:`encode_state` writes (others have no JSON ``item()``).
_SCALAR_KINDS = "biufU"


def _scalar(dt: np.dtype[Any], value: Any) -> Any:
    """``dt``'s scalar of ``value``; ``OverflowError`` where it does not fit. numpy 2 raises
    that for an integer by itself; numpy 1.x wrapped it (``np.int8(1000)`` was -24, with a
    DeprecationWarning), and either rounds a float beyond the type's range to infinity."""
    if dt.kind in "iu" and isinstance(value, int) and not isinstance(value, bool):
        info = np.iinfo(dt)
        if not info.min <= value <= info.max:
            raise OverflowError(f"{value} is out of the range of {dt}")
    if dt.kind == "f" and isinstance(value, float) and math.isfinite(value):
        with np.errstate(over="ignore"):
            scalar = dt.type(value)
        if not np.isfinite(scalar):
            raise OverflowError(f"{value} is out of the range of {dt}")
        return scalar
    return dt.type(value)


def restore_state(
    target: Any, tree: Any, arrays: list[np.ndarray], *, skip: tuple[type, ...] = ()
) -> Any:
    """Rebuild a value from its state tree; objects are restored into ``target`` in place,
    their ``skip``-typed attributes kept (``ValueError`` if the tree does not fit the
    target). Returns the restored value."""

    def array(i: Any) -> np.ndarray:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(arrays):
            raise ValueError(f"state tree refers to array {i!r}, which is not stored")
        return np.array(arrays[i])

    def dec(t: Any, target: Any) -> Any:
        if isinstance(t, list):
            items = target if isinstance(target, list) else []
            return [dec(v, items[i] if i < len(items) else None) for i, v in enumerate(t)]
        if not isinstance(t, dict):
            return t
        if "__float__" in t:
            if t["__float__"] not in ("nan", "inf", "-inf"):
                raise ValueError(f"bad non-finite float {t['__float__']!r}")
            return float(t["__float__"])
        if "__array__" in t:
            return array(t["__array__"])
        if "__scalar__" in t:
            dt = np.dtype(str(t["__scalar__"]))
            if dt.kind not in _SCALAR_KINDS:  # e.g. void: np.void(2**31 - 1) allocates 2 GiB
                raise ValueError(
                    f"checkpoint holds a scalar of dtype {dt}; encode_state writes only bool, "
                    "integer, float and str scalars"
                )
            return _scalar(dt, dec(t["value"], None))
        if "__tuple__" in t:
            return tuple(dec(v, None) for v in t["__tuple__"])
        if "__deque__" in t:
            return collections.deque((dec(v, None) for v in t["__deque__"]), maxlen=t["maxlen"])
        if "__map__" in t:
            known: dict[Any, Any] = target if isinstance(target, dict) else {}
            out = {}
            for k, v in t["__map__"]:
                key = dec(k, None)
                out[key] = dec(v, known.get(key))
            return out
        if "__rng__" in t:
            state = dec(t["__rng__"], None)
            name = state.get("bit_generator") if isinstance(state, dict) else None
            if name not in _RNGS:
                raise ValueError(f"unknown random generator {name!r}")
            gen = target
            if not isinstance(gen, np.random.Generator) or type(gen.bit_generator).__name__ != name:
                gen = np.random.Generator(getattr(np.random, name)())
            gen.bit_generator.state = state
            return gen
        if "__history__" in t:
            return IterateHistory.from_state(dec(t["__history__"], None))
        if "__payload__" in t:
            return payload_from_bytes(array(t["__payload__"]).tobytes())
        if "__object__" in t:
            name, state = t["__object__"], t["state"]
            if target is None or type(target).__qualname__ != name:
                got = "nothing" if target is None else f"a {type(target).__qualname__}"
                raise ValueError(f"checkpoint holds a {name} where this run has {got}")
            mine = {k for k, v in vars(target).items() if not isinstance(v, skip)}
            if set(state) != mine:
                raise ValueError(
                    f"checkpoint's {name} has attributes {sorted(set(state) ^ mine)} "
                    "that this run's does not (or the reverse)"
                )
            new = {k: dec(v, vars(target).get(k)) for k, v in state.items()}
            vars(target).update(new)
            return target
        raise ValueError(f"unknown state tree node with keys {sorted(t)[:4]}")

    try:
        return dec(tree, target)
    except OverflowError as err:  # np.int8(1000), a deque's maxlen of 2**70
        raise ValueError(f"checkpoint holds a number out of range: {err}") from None


def _digest(meta: bytes, arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256(meta)
    for a in arrays:
        h.update(f"|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def state_digest(obj: Any) -> bytes:
    """SHA-256 of an object's state tree and arrays (32 bytes): equal states, equal digests."""
    tree, arrays = encode_state(obj)
    return bytes.fromhex(_digest(json.dumps(tree, sort_keys=True).encode(), arrays))


_MAGIC = b"LQCKPT01"


def write_checkpoint(path: str, tree: Any, arrays: list[np.ndarray]) -> None:
    """Write a state tree and its arrays to ``path`` atomically (format in the module doc)."""
    meta = json.dumps(tree, sort_keys=True).encode()
    members = {f"a{i}": a for i, a in enumerate(arrays)}
    members["state.json"] = np.frombuffer(meta, np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **members)  # type: ignore[arg-type]
    body = buf.getvalue()
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(_MAGIC + hashlib.sha256(body).digest() + body)
    os.replace(tmp, path)  # atomic: a crash mid-write keeps the previous checkpoint


def read_checkpoint(path: str) -> tuple[Any, list[np.ndarray]]:
    """Read and verify a checkpoint; :class:`CheckpointError` naming ``path`` otherwise."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from None
    head = len(_MAGIC) + 32
    if len(raw) < head or raw[: len(_MAGIC)] != _MAGIC:
        raise CheckpointError(f"checkpoint {path} is not a laqcore checkpoint (bad magic)")
    body = raw[head:]
    if hashlib.sha256(body).digest() != raw[len(_MAGIC) : head]:
        raise CheckpointError(f"checkpoint {path} is corrupt: its SHA-256 checksum does not match")
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            infos = zf.infolist()
            count = len(infos) - 1
            want = {f"{key}.npy" for key in ("state.json", *(f"a{i}" for i in range(count)))}
            if {info.filename for info in infos} != want:
                raise CheckpointError(f"checkpoint {path} lacks or has unexpected members")
            # write_checkpoint stores members uncompressed: none is larger than the file, and
            # every .npy header's shape is checked against its bytes before numpy allocates
            # (a forged header declaring 2**40 elements made np.load allocate 8 TiB).
            big = [info.filename for info in infos if info.file_size > len(body)]
            if big:
                raise CheckpointError(
                    f"checkpoint {path} has member(s) {big} larger than the checkpoint itself"
                )
            members = {
                info.filename: npy_from_bytes(zf.read(info), info.filename) for info in infos
            }
        meta = members["state.json.npy"].tobytes()
        arrays = [members[f"a{i}.npy"] for i in range(count)]
        tree = json.loads(meta)
        _check_depth(tree, path)
    except CheckpointError:
        raise
    except (*NPZ_ERRORS, KeyError, RecursionError) as err:  # RecursionError: deep JSON
        raise CheckpointError(f"checkpoint {path} cannot be decoded: {err}") from None
    return tree, arrays


#: Deepest state tree a checkpoint may hold (the engine's are under 20 levels): a deeper
#: one would exhaust the recursion of ``restore_state`` (RecursionError, not an error
#: naming the file).
_MAX_TREE_DEPTH = 200


def _check_depth(tree: Any, path: str) -> None:
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_TREE_DEPTH:
            raise CheckpointError(
                f"checkpoint {path} has a state tree deeper than {_MAX_TREE_DEPTH} levels"
            )
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, (dict, list)):
            stack.extend((child, depth + 1) for child in children)
