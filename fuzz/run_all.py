"""Run every atheris harness in this folder for a bounded time and report the input count.

    python fuzz/run_all.py --seconds 8            # CI: each harness ~8 s
    python fuzz/run_all.py --seconds 1800 --jobs 2  # long run (see fuzz/README.md)

Each harness starts from its seed corpus (written by ``--write-seeds``) plus whatever a
previous run left in ``--corpus`` (default build/fuzz-corpus/<harness>), and runs in its own
process with a memory limit and a per-input timeout, so a hang or a blow-up is reported as
a failure rather than stalling CI. Exit status: 0 only if every harness finished cleanly.
Crashing inputs land in ``--artifacts`` (default build/fuzz-artifacts).
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


def harnesses(selected: list[str]) -> list[Path]:
    found = sorted(HERE.glob("fuzz_*.py"))
    if selected:
        found = [p for p in found if p.stem in selected or p.stem.removeprefix("fuzz_") in selected]
        if not found:
            sys.exit(f"no harness matches {selected}")
    return found


def run_one(path: Path, seconds: int, corpus_root: Path, artifacts: Path, jobs: int) -> int:
    corpus = corpus_root / path.stem
    seed_dir = corpus_root / (path.stem + "-seeds")
    subprocess.run([sys.executable, str(path), f"--write-seeds={seed_dir}"], check=True,
                   capture_output=True)
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, str(path),
        f"-max_total_time={seconds}",
        "-timeout=10",            # one input taking > 10 s is a hang
        "-rss_limit_mb=3072",     # a decoder that allocates GBs from a tiny frame is a bug
        "-max_len=65536",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/{path.stem}-",
        str(corpus), str(seed_dir),
    ]
    if jobs > 1:
        cmd[2:2] = [f"-fork={jobs}", "-ignore_crashes=0"]
    start = time.monotonic()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    log = proc.stdout + proc.stderr
    runs = sum(int(m) for m in DONE_RE.findall(log))
    if runs == 0:  # -fork mode reports stat lines instead of "Done N runs"
        stats = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
        runs = sum(int(s) for s in stats)
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    print(f"{path.stem:24s} {runs:>12,d} inputs in {elapsed:6.1f} s  {status}", flush=True)
    if proc.returncode != 0:
        tail = "\n".join(line for line in log.splitlines() if "Instrumenting" not in line)
        print(tail[-6000:], file=sys.stderr)
        raise SystemExit(1)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="time per harness")
    parser.add_argument("--jobs", type=int, default=1, help="libFuzzer -fork workers")
    parser.add_argument("--corpus", type=Path, default=Path("build/fuzz-corpus"))
    parser.add_argument("--artifacts", type=Path, default=Path("build/fuzz-artifacts"))
    parser.add_argument("only", nargs="*", help="harness names (default: all)")
    args = parser.parse_args()
    total = 0
    for path in harnesses(args.only):
        total += run_one(path, args.seconds, args.corpus.resolve(), args.artifacts.resolve(),
                         args.jobs)
    print(f"{'total':24s} {total:>12,d} inputs, 0 crashes")


if __name__ == "__main__":
    main()
