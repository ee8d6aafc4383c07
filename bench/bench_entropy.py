"""Entropy coding (issue 13.1): speed against laq_quantize and size on real LAQ uploads.

    python bench/bench_entropy.py [--n 16777216] [--repeat 7] [--out bench/measured/entropy.json]

1. n = 2^24 standard normal float32, 4-bit LAQ codes, 1 thread: laq_quantize, the coder's
   encode and decode of its packed codes, timed in interleaved rounds (quantize, encode,
   decode, quantize, ...) so that every ratio compares times of the same rounds; the ratio
   reported is the median over rounds of (encode + decode) / quantize. Also checks that the
   coded bytes are identical with 1 and 2 threads and that decoding restores the codes.
2. The README's digits LAQ run (softmax, M = 10, eps = 1e-6) with and without
   ``entropy_coding``: uplink bits, iterations and uploads.

The machine is shared with other jobs: absolute times are indicative, the same-run ratios are
the result.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import laqcore
from laqcore import _core
from laqcore.bench.timing import SHARED_MACHINE, emit_report, machine_info
from laqcore.entropy import entropy_encode


def _time(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def speed(n: int, repeat: int) -> dict[str, Any]:
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    E = _core.entropy
    with laqcore.num_threads(1):
        p = laqcore.laq_quantize(x, None, 4)
        mode, stream = E.encode_packed(p.packed, n, 4)
        rounds = []
        for _ in range(repeat):
            tq = _time(lambda: laqcore.laq_quantize(x, None, 4))
            te = _time(lambda: E.encode_packed(p.packed, n, 4))
            td = _time(lambda: E.decode_packed(stream, n, 4, mode))
            rounds.append((tq, te, td))
        assert np.array_equal(E.decode_packed(stream, n, 4, mode), p.packed)
    with laqcore.num_threads(2):
        _, stream2 = E.encode_packed(p.packed, n, 4)
    ratios = [(te + td) / tq for tq, te, td in rounds]
    return {
        "n": n,
        "bits": 4,
        "threads": 1,
        "mode": int(mode),
        "quantize_s_median": statistics.median(r[0] for r in rounds),
        "encode_s_median": statistics.median(r[1] for r in rounds),
        "decode_s_median": statistics.median(r[2] for r in rounds),
        "ratio_encode_decode_over_quantize_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "coded_over_packed": stream.size / p.packed.size,
        "identical_1_vs_2_threads": bool(np.array_equal(stream, stream2)),
        "rounds": rounds,
    }


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
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = {
        "machine": machine_info(None, SHARED_MACHINE),
        "speed": speed(args.n, args.repeat),
        "digits": digits(),
        "example_frame": repr(
            entropy_encode(laqcore.laq_quantize(np.ones(8, np.float32), None, 4))
        ),
    }
    emit_report(result, args.out)


if __name__ == "__main__":
    main()
