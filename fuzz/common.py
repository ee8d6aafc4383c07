"""Shared plumbing of the atheris harnesses in this folder.

Each ``fuzz_<target>.py`` defines ``test_one_input(data: bytes)`` and ``seeds()`` (valid
inputs that start the corpus) and ends with ``common.main(test_one_input, seeds)``.

The contract every harness checks: whatever the bytes, a laqcore decoder either returns a
well-formed result or raises ``ValueError``/``TypeError`` with a message. Any other
exception, an empty message, a crash (segfault, abort) or a hang (``-timeout``) is a bug,
and libFuzzer writes the input that caused it to ``crash-<sha1>`` in the working directory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Callable, Iterable

import atheris

__all__ = ["CLEAN_ERRORS", "expect_clean", "main"]

# The only exceptions a decoder may raise on bad input (docs/architecture.md, "Bad input").
CLEAN_ERRORS = (ValueError, TypeError)


def expect_clean(fn: Callable[[], object]) -> object | None:
    """Run ``fn``; return its result, or ``None`` if it raised a clean, explained error."""
    try:
        return fn()
    except CLEAN_ERRORS as err:
        if not str(err).strip():
            raise AssertionError(f"{type(err).__name__} without a message") from err
        return None


def write_seeds(directory: str, seeds: Iterable[bytes]) -> int:
    os.makedirs(directory, exist_ok=True)
    count = 0
    for blob in seeds:
        name = hashlib.sha1(blob).hexdigest()
        with open(os.path.join(directory, name), "wb") as fh:
            fh.write(blob)
        count += 1
    return count


def main(test_one_input: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]) -> None:
    """``python fuzz_x.py --write-seeds DIR`` writes the seed corpus; any other arguments go
    to libFuzzer (e.g. ``-max_total_time=60 CORPUS_DIR``)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--write-seeds", metavar="DIR")
    known, rest = parser.parse_known_args()
    if known.write_seeds:
        print(f"wrote {write_seeds(known.write_seeds, seeds())} seeds to {known.write_seeds}")
        return
    atheris.Setup([sys.argv[0], *rest], test_one_input)
    atheris.Fuzz()
