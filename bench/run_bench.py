#!/usr/bin/env python3
"""Run the laqcore kernel benchmark (same as `laqcore bench`), writing JSON and a plot.

Usage (the README's Performance table was made with the first form):

    python bench/run_bench.py --sizes 24:24 --json bench/results.json
    python bench/run_bench.py --kernels pack,unpack --bits 1,4 --plot pack.png

All options: `python bench/run_bench.py --help`. The machine is described in the JSON
("machine": cpu, threads, SIMD level, build info), next to every figure's memcpy, numpy and
torch baselines measured in the same run.
"""

from __future__ import annotations

import sys

from laqcore.bench import main

if __name__ == "__main__":
    sys.exit(main())
