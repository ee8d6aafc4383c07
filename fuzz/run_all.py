"""Run every fuzz harness for a bounded time and report the number of inputs tried.

    python fuzz/run_all.py --seconds 8              # CI: each atheris harness ~8 s
    python fuzz/run_all.py --seconds 8 --cpp        # + the libFuzzer C++ harnesses (clang)
    python fuzz/run_all.py --seconds 1800 --cpp     # long run (see fuzz/README.md)
    python fuzz/run_all.py --runs 1000000 --seconds 900 --cpp   # 10^6 inputs each (900 s cap)
    python fuzz/run_all.py --seconds 60 --cpp frames cpp/laq    # only these harnesses

Atheris harnesses are ``fuzz/fuzz_*.py`` (the Python API, with the installed laqcore).
With ``--cpp`` the C++ harnesses ``fuzz/cpp/fuzz_*.cpp`` are built with the ``fuzz`` CMake
preset (clang, libFuzzer, ASan+UBSan) and run too.

Each harness starts from its seed corpus (atheris: written by ``--write-seeds``) plus
whatever a previous run left in ``--corpus`` (default build/fuzz-corpus/<harness>), and runs
in its own process with a memory limit and a per-input timeout, so a hang or a blow-up is
reported as a failure rather than stalling CI. Exit status: 0 only if every harness
finished cleanly. Crashing inputs land in ``--artifacts`` (default build/fuzz-artifacts).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DONE_RE = re.compile(r"Done (\d+) runs in")


def _matches(path: Path, selected: list[str]) -> bool:
    """``fuzz_frames``, ``frames``, ``cpp/fuzz_laq`` or ``cpp/laq`` name a harness."""
    is_python = path.suffix == ".py"
    names = {path.stem, path.stem.removeprefix("fuzz_")}
    if not is_python:
        names = {f"cpp/{n}" for n in names}
    return bool(names & set(selected))


def select(found: list[Path], selected: list[str]) -> list[Path]:
    if not selected:
        return found
    chosen = [p for p in found if _matches(p, selected)]
    if not chosen:
        sys.exit(f"no harness matches {selected}")
    return chosen


def build_cpp_harnesses() -> list[Path]:
    """Configure + build the `fuzz` CMake preset; return the harness executables."""
    root = HERE.parent
    subprocess.run(
        ["cmake", "--preset", "fuzz", f"-DPython_EXECUTABLE={sys.executable}"],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    names = sorted(p.stem for p in (HERE / "cpp").glob("fuzz_*.cpp"))
    # Only the harnesses (the preset would also build an instrumented _core, unused here).
    subprocess.run(
        ["cmake", "--build", "--preset", "fuzz", "--target", *names],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return [root / "build" / "preset-fuzz" / "fuzz" / "cpp" / name for name in names]


def run_one(
    path: Path, seconds: int, corpus_root: Path, artifacts: Path, jobs: int, runs: int | None
) -> int:
    is_python = path.suffix == ".py"
    label = path.stem if is_python else f"cpp/{path.name}"
    corpus = corpus_root / (path.stem if is_python else "cpp-" + path.name)
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    inputs = [str(corpus)]
    if is_python:
        seed_dir = corpus_root / (path.stem + "-seeds")
        subprocess.run(
            [sys.executable, str(path), f"--write-seeds={seed_dir}"],
            check=True,
            capture_output=True,
        )
        inputs.append(str(seed_dir))
    cmd = [
        *([sys.executable, str(path)] if is_python else [str(path)]),
        f"-max_total_time={seconds}",
        *([f"-runs={runs}"] if runs is not None else []),
        "-timeout=10",  # one input taking > 10 s is a hang
        "-rss_limit_mb=3072",  # a decoder that allocates GBs from a tiny frame is a bug
        "-max_len=65536",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/{label.replace('/', '-')}-",
        *inputs,
    ]
    if jobs > 1:
        cmd.insert(-len(inputs), f"-fork={jobs}")
    start = time.monotonic()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    log = proc.stdout + proc.stderr
    runs = sum(int(m) for m in DONE_RE.findall(log))
    if runs == 0:  # -fork mode reports stat lines instead of "Done N runs"
        stats = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
        runs = sum(int(s) for s in stats)
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    print(f"{label:24s} {runs:>12,d} inputs in {elapsed:6.1f} s  {status}", flush=True)
    if proc.returncode != 0:
        tail = "\n".join(line for line in log.splitlines() if "Instrumenting" not in line)
        print(tail[-6000:], file=sys.stderr)
        raise SystemExit(1)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="time per harness")
    parser.add_argument("--jobs", type=int, default=1, help="libFuzzer -fork workers")
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="stop each harness after this many inputs (--seconds still caps it)",
    )
    parser.add_argument("--corpus", type=Path, default=Path("build/fuzz-corpus"))
    parser.add_argument("--artifacts", type=Path, default=Path("build/fuzz-artifacts"))
    parser.add_argument("--cpp", action="store_true", help="also build + run fuzz/cpp (clang)")
    parser.add_argument(
        "only", nargs="*", help="harness names, e.g. frames or cpp/laq (default: all)"
    )
    args = parser.parse_args()
    targets = sorted(HERE.glob("fuzz_*.py"))
    if args.cpp:
        targets += build_cpp_harnesses()
    targets = select(targets, args.only)
    total = 0
    for path in targets:
        total += run_one(
            path,
            args.seconds,
            args.corpus.resolve(),
            args.artifacts.resolve(),
            args.jobs,
            args.runs,
        )
    print(f"{'total':24s} {total:>12,d} inputs, 0 crashes")


if __name__ == "__main__":
    main()
