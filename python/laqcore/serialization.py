"""JSON output shared by every writer of results (simulator, CLI, sweep, engine).

JSON has no NaN or Inf and no numpy scalars: :func:`json_safe` turns a nested structure of
dicts, lists, floats and numpy values into one :mod:`json` writes as standard JSON;
:func:`write_json` writes a file so that an interrupted write never leaves half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from typing import Any

import numpy as np

__all__ = ["json_safe", "write_json"]


def __dir__() -> list[str]:
    return __all__


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (JSON null), numpy scalars
    converted to Python numbers and tuples to lists, recursively through dicts and lists.

    Examples
    --------
    >>> json_safe({"a": float("nan"), "b": (np.float32(1.5), 2)})
    {'a': None, 'b': [1.5, 2]}
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


def write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = None) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: into a temporary file beside it, then
    renamed over it, so Ctrl-C (or a full disk) during the write leaves the previous file, or
    none, never a truncated one (``json.dump`` writes in many small pieces)."""
    target = os.fspath(path)
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=indent)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
