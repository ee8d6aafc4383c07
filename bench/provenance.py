"""What produced a bench report: the command that reruns it and the code it ran.

Every script under bench/ that writes a report records ``command`` (:func:`bench_command`)
and, with :func:`source_info`, the commit and the tracked files edited since it; the torch
benches add the machine around that (``bench_hooks.machine_info``). Torch-free, so the
kernel and simulator benches use it without importing torch.
"""

from __future__ import annotations

import os
import shlex
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def _git(*args: str) -> str:
    """``git -C bench/ ARGS``'s output; "" where git or the checkout is missing."""
    try:
        return subprocess.run(
            ["git", "-C", HERE, *args], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return ""


def bench_command(script: str, argv: list[str]) -> str:
    """The command that reruns a bench, as its report records it: ``python bench/NAME ARGS``,
    quoted as a shell needs it (hook lists and variants may hold JSON), so it pastes."""
    return shlex.join(["python", f"bench/{os.path.basename(script)}", *argv])


def source_info() -> dict[str, str | list[str]]:
    """The checkout a report was made from: ``commit`` (short hash; "" outside a checkout)
    and ``modified``, the tracked files that differ from it. A report made from an edited
    bench (or library) says so, since the commit alone would name code that did not
    produce it; untracked files are not listed."""
    commit = _git("rev-parse", "--short", "HEAD").strip()
    modified = sorted(line[3:] for line in _git("status", "--porcelain", "-uno").splitlines())
    return {"commit": commit, "modified": modified}
