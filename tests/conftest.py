from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from driver_cases import SMALL_DIGITS

settings.register_profile("ci", deadline=None, max_examples=60, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The gloo Transport's control phase is the messages' in every test (and in the ranks the
# tests spawn, which inherit the environment), whatever CPUs this machine lets the process
# use: "auto" would take the collectives under a one-CPU affinity and move the frames of an
# aborted round differently. The tests of the collectives name them (Transport(control=...)),
# and resolve_control's "auto" is tested on its own.
os.environ.setdefault("LAQCORE_TRANSPORT_CONTROL", "messages")

ALL_BITS = list(range(1, 9))
# Lengths that hit every edge of the 8-code packing groups, plus one large enough to
# cross the OpenMP threshold and the deterministic-reduction block size.
LENGTHS = [1, 7, 8, 9, 1000, 2**20 + 3]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(params=ALL_BITS, ids=lambda b: f"bits{b}")
def bits(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(params=LENGTHS, ids=lambda n: f"n{n}")
def length(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Point laqcore's cache (datasets, optima) at this session's temporary directory."""
    monkeypatch.setenv("LAQCORE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def prob() -> Any:
    """The small digits problem of driver_cases (one per test module)."""
    from laqcore.problems import make_problem

    return make_problem(**SMALL_DIGITS)
