from __future__ import annotations

import numpy as np
import pytest

import laqcore
from laqcore import _core
from reference import make_key, uniform01


def test_version_and_build_info():
    info = laqcore.build_info()
    assert laqcore.__version__ == info["version"]
    assert isinstance(info["openmp"], bool)
    assert info["num_threads"] == laqcore.get_num_threads()
    assert "scalar" in info["simd"]


def test_set_num_threads_round_trip():
    old = laqcore.get_num_threads()
    with laqcore.num_threads(3):
        expected = 3 if laqcore.build_info()["openmp"] else 1
        assert laqcore.get_num_threads() == expected
    assert laqcore.get_num_threads() == old


@pytest.mark.parametrize("bad", [0, -2])
def test_set_num_threads_rejects_nonpositive(bad):
    with pytest.raises(ValueError, match=">= 1"):
        laqcore.set_num_threads(bad)


def test_set_num_threads_rejects_non_int():
    with pytest.raises(TypeError):
        laqcore.set_num_threads(2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seed", "step", "stream"), [(0, 0, 0), (42, 7, 3), (2**63, 2**40, 1)])
def test_counter_rng_matches_reference(seed, step, stream):
    key = _core.runtime.make_key(seed, step, stream)
    assert key == make_key(seed, step, stream)
    np.testing.assert_array_equal(_core.runtime.uniform01(key, 1000), uniform01(key, 1000))


def test_counter_rng_is_roughly_uniform():
    u = uniform01(make_key(1, 2, 3), 200_000)
    assert u.min() >= 0.0
    assert u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005  # 5 sigma is ~0.0032
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(hist - 20_000) < 800)
