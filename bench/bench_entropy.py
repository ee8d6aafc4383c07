"""Entropy coding (issue 13.1): speed against laq_quantize and size on real LAQ uploads.

    python bench/bench_entropy.py [--n 16777216] [--repeat 15] [--out bench/measured/entropy.json]

1. n = 2^24 standard normal float32, 4-bit LAQ codes, 1 thread: laq_quantize, the coder's
   encode and decode of its packed codes on the active SIMD level, and the same encode and
   decode with the scalar bulk loops (LAQCORE_SIMD=scalar for the coder only: the coder as
   it was before the SIMD loops, same stream), timed in interleaved rounds so that every
   ratio compares times of the same rounds. Reported: the median over rounds of
   (encode + decode) / quantize, in wall time and in the calling thread's CPU time (with 1
   thread the kernels run on the calling thread; CPU time leaves out the time the shared
   machine's other jobs took the core). Also checks that the coded bytes are identical for
   1 and 2 threads and for every SIMD level, and that decoding restores the codes.
2. The README's digits LAQ run (softmax, M = 10, eps = 1e-6) with and without
   ``entropy_coding``: uplink bits, iterations and uploads.

The machine is shared with other jobs: absolute times are indicative, the same-run ratios are
the result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from laqcore import _core, runtime
from laqcore.bench.timing import SHARED_MACHINE, emit_report, machine_info
from laqcore.entropy import entropy_encode
from provenance import bench_command, source_info

PHASES = ("quantize", "encode", "decode", "encode_scalar", "decode_scalar")


def _time(fn: Any) -> tuple[float, float]:
    """(wall, calling thread's CPU) seconds of fn()."""
    w, c = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w, time.thread_time() - c


def _ratios(
    rounds: list[dict[str, tuple[float, float]]], enc: str, dec: str, k: int
) -> list[float]:
    return [(r[enc][k] + r[dec][k]) / r["quantize"][k] for r in rounds]


def speed(n: int, repeat: int) -> dict[str, Any]:
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    E = _core.entropy
    level = runtime.simd_level()

    def on_scalar(fn: Any) -> Any:
        def run() -> Any:
            with runtime.simd("scalar"):
                return fn()

        return run

    with laqcore.num_threads(1):
        p = laqcore.laq_quantize(x, None, 4)
        mode, stream = E.encode_packed(p.packed, n, 4)
        calls = {
            "quantize": lambda: laqcore.laq_quantize(x, None, 4),
            "encode": lambda: E.encode_packed(p.packed, n, 4),
            "decode": lambda: E.decode_packed(stream, n, 4, mode),
        }
        calls["encode_scalar"] = on_scalar(calls["encode"])
        calls["decode_scalar"] = on_scalar(calls["decode"])
        rounds = [{ph: _time(calls[ph]) for ph in PHASES} for _ in range(repeat)]
        assert np.array_equal(E.decode_packed(stream, n, 4, mode), p.packed)
    identical = True
    for threads in (1, 2):
        for lv in runtime.simd_levels():
            with laqcore.num_threads(threads), runtime.simd(lv):
                identical &= bool(np.array_equal(E.encode_packed(p.packed, n, 4)[1], stream))
                identical &= bool(np.array_equal(E.decode_packed(stream, n, 4, mode), p.packed))
    out: dict[str, Any] = {
        "n": n,
        "bits": 4,
        "threads": 1,
        "simd_level": level,
        "mode": int(mode),
        "coded_over_packed": stream.size / p.packed.size,
        "identical_threads_1_2_and_every_simd_level": identical,
    }
    for k, clock in enumerate(("wall", "cpu")):
        for ph in PHASES:
            out[f"{ph}_s_median_{clock}"] = statistics.median(r[ph][k] for r in rounds)
        simd = _ratios(rounds, "encode", "decode", k)
        scalar = _ratios(rounds, "encode_scalar", "decode_scalar", k)
        out[f"ratio_encode_decode_over_quantize_median_{clock}"] = statistics.median(simd)
        out[f"ratio_max_{clock}"] = max(simd)
        out[f"ratio_scalar_coder_median_{clock}"] = statistics.median(scalar)
    out["rounds"] = rounds
    return out


def digits() -> dict[str, Any]:
    problem = laqcore.make_problem("digits", model="softmax", workers=10)
    algo = laqcore.get_algorithm("laq")
    plain = laqcore.simulate(problem, algo, eps=1e-6)
    coded = laqcore.simulate(problem, algo, eps=1e-6, entropy_coding=True)
    return {
        "command": "laqcore run --dataset digits --algorithm laq --workers 10 [--entropy-coding]",
        "iterations": [plain.iterations, coded.iterations],
        "uploads": [plain.uploads, coded.uploads],
        "uplink_bits_packed": plain.bits,
        "uplink_bits_entropy": coded.bits,
        "ratio": coded.bits / plain.bits,
        "identical_loss_history": plain.history["loss"] == coded.history["loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2**24)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    load_before = list(os.getloadavg())
    speed_result = speed(args.n, args.repeat)
    result = {
        "command": bench_command(__file__, sys.argv[1:]),
        **source_info(),  # commit, modified
        "machine": {
            **machine_info(None, SHARED_MACHINE),
            "load_average_before_after_speed": [load_before, list(os.getloadavg())],
        },
        "speed": speed_result,
        "previous": {
            "note": "before the SIMD bulk loops (commit e34d8fa, same machine, load ~20): "
            "(encode + decode) / quantize wall-time median",
            "ratio_encode_decode_over_quantize_median": 4.494024593606319,
        },
        "digits": digits(),
        "example_frame": repr(
            entropy_encode(laqcore.laq_quantize(np.ones(8, np.float32), None, 4))
        ),
    }
    emit_report(result, args.out)


if __name__ == "__main__":
    main()
