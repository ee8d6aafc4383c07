"""Rotation quantizer (issue 13.2): speed against QSGD, and error at equal bits.

    python bench/bench_rotation.py [--n 1048576] [--repeat 11] [--out bench/measured/rotation.json]

1. n = 2^20 float32, 1 thread: ``get_compressor("rotation", levels=7)`` (rotate + quantize +
   pack) against ``get_compressor("qsgd", levels=7)`` compress, timed in alternating rounds;
   the ratio reported is the median over rounds of rotation / QSGD (same-run ratio).
2. Normalised MSE ||C(x) - x||^2 / ||x||^2 (mean of 5 steps) and bytes per frame at
   n = 2^16 on Gaussian, Student-t(3) and log-normal(0, 1.5) vectors, rotation vs QSGD with
   the same levels and bucket (equal bits per coordinate).

The machine is shared with other jobs: absolute times are indicative, the ratios are the
result.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from laqcore.bench.timing import SHARED_MACHINE, emit_report, machine_info


def speed(n: int, repeat: int) -> dict[str, Any]:
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    rot = laqcore.get_compressor("rotation", levels=7, seed=1)
    qsgd = laqcore.get_compressor("qsgd", levels=7, seed=1)
    rounds = []
    with laqcore.num_threads(1):
        for k in range(repeat):
            t = time.perf_counter()
            qsgd.compress(x, step=k)
            tq = time.perf_counter() - t
            t = time.perf_counter()
            rot.compress(x, step=k)
            tr = time.perf_counter() - t
            rounds.append((tq, tr))
    with laqcore.num_threads(2):
        two = rot.compress(x, step=0).to_bytes()
    with laqcore.num_threads(1):
        one = rot.compress(x, step=0).to_bytes()
    return {
        "n": n,
        "levels": 7,
        "threads": 1,
        "qsgd_s_median": statistics.median(r[0] for r in rounds),
        "rotation_s_median": statistics.median(r[1] for r in rounds),
        "ratio_rotation_over_qsgd_median": statistics.median(r[1] / r[0] for r in rounds),
        "identical_1_vs_2_threads": one == two,
        "rounds": rounds,
    }


def accuracy(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    vectors = {
        "gaussian": rng.standard_normal(n),
        "student_t3": rng.standard_t(3, n),
        "lognormal": rng.lognormal(0.0, 1.5, n),
    }
    out: dict[str, Any] = {}
    for name, v in vectors.items():
        x = v.astype(np.float32)
        row = {}
        for label, comp_name, kw in (
            ("rotation", "rotation", {}),
            ("qsgd_l2", "qsgd", {"norm": "l2"}),
            ("qsgd_max", "qsgd", {"norm": "max"}),
        ):
            comp = laqcore.get_compressor(comp_name, levels=7, seed=2, **kw)
            errs, size = [], 0
            for k in range(5):
                p = comp.compress(x, step=k)
                errs.append(float(((comp.decompress(p) - x) ** 2).sum() / (x**2).sum()))
                size = p.nbytes
            row[label] = {"nmse": float(np.mean(errs)), "bits_per_coord": 8 * size / n}
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2**20)
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = {
        "machine": machine_info(None, SHARED_MACHINE),
        "speed": speed(args.n, args.repeat),
        "nmse_at_equal_bits_n65536": accuracy(2**16),
    }
    emit_report(result, args.out)


if __name__ == "__main__":
    main()
