"""JSON output shared by every writer of results (simulator, CLI, sweep, engine).

JSON has no NaN or Inf and no numpy scalars: :func:`json_safe` turns a nested structure of
dicts, lists, floats and numpy values into one :mod:`json` writes as standard JSON.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["json_safe"]


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
