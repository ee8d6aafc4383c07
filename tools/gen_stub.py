"""Draft a stub for one submodule of laqcore._core, in the style of python/laqcore/_core/.

    python tools/gen_stub.py qsgd > python/laqcore/_core/qsgd.pyi

Runs pybind11-stubgen (from the `dev` extra) on the *installed* laqcore._core, then rewrites
its output: numpy aliases, `SupportsIndex`/`SupportsFloat` for pybind11's int/float casters,
no `__all__` (the runtime module has none), and the pybind11 metaclass on classes (stubtest
requires it). Review the draft before committing it: stubgen cannot express everything (e.g.
a defaulted argument followed by a required one), and `python -m mypy.stubtest
laqcore._core` must pass afterwards.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path


def draft(topic: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pybind11_stubgen", "laqcore._core", "-o", tmp],
            check=True,
            capture_output=True,
        )
        text = (Path(tmp) / "laqcore" / "_core" / f"{topic}.pyi").read_text()
    # Imports first: the replacements below would turn them into "import np.typing".
    text = re.sub(
        r"^import (numpy|numpy\.typing|typing|collections\.abc)\n", "", text, flags=re.MULTILINE
    )
    text = text.replace("numpy.typing.NDArray", "npt.NDArray").replace("numpy.", "np.")
    text = text.replace("typing.SupportsInt | typing.SupportsIndex", "SupportsIndex")
    text = text.replace("typing.SupportsFloat | typing.SupportsIndex", "SupportsFloat")
    text = text.replace("collections.abc.", "")
    text = re.sub(r"^__all__: list\[str\] = .*\n", "", text, flags=re.MULTILINE)
    text = re.sub(r"^from __future__ import annotations\n", "", text, flags=re.MULTILINE)
    text = re.sub(r'^"""\n(.*?)\n"""\n', r'"""\1"""\n', text, count=1, flags=re.DOTALL)
    # Function docstrings -> nothing (the Python wrappers carry the documentation).
    text = re.sub(r':\n    """\n(?:    .*\n)*?    """\n', ": ...\n", text)
    text = re.sub(r":\n        \"\"\"\n(?:        .*\n)*?        \"\"\"\n", ": ...\n", text)
    text = re.sub(r":\n(\s+)\.\.\.\n", r": ...\n", text)
    has_class = bool(re.search(r"^class ", text, flags=re.MULTILINE))
    text = re.sub(
        r"^class (\w+):", r"class \1(metaclass=_pybind11_type):", text, flags=re.MULTILINE
    )
    lines = text.splitlines()
    header = [
        lines[0],
        "",
        "from collections.abc import Sequence",
        "from typing import SupportsFloat, SupportsIndex",
        "",
        "import numpy as np",
        "import numpy.typing as npt",
        "",
    ]
    if has_class:
        header += ["class _pybind11_type(type): ...  # pybind11_builtins.pybind11_type", ""]
    return "\n".join(header + lines[1:]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(draft(sys.argv[1]))
