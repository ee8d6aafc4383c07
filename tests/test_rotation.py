"""The rotation quantizer: FWHT, randomized Hadamard rotation, RotationCompressor."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import laqcore
import reference as ref
from laqcore import _core
from laqcore.compressors import RotationPayload, rotation_padded_size
from laqcore.entropy import EntropyPayload

R = _core.rotation


@pytest.mark.parametrize("N", [1, 2, 4, 8, 16, 32, 128])
def test_fwht_matches_explicit_hadamard(rng: np.random.Generator, N: int) -> None:
    x = rng.standard_normal(N).astype(np.float32)
    np.testing.assert_allclose(R.fwht(x), ref.hadamard(N) @ x.astype(np.float64), atol=1e-4)


@pytest.mark.parametrize("N", [1, 8, 2**12, 2**13, 2**17])
def test_fwht_bit_identical_to_reference(rng: np.random.Generator, N: int) -> None:
    x = rng.standard_normal(N).astype(np.float32)
    np.testing.assert_array_equal(R.fwht(x), ref.fwht(x))


def test_fwht_rejects_non_power_of_two() -> None:
    with pytest.raises(ValueError, match="power-of-two"):
        R.fwht(np.zeros(6, dtype=np.float32))


@pytest.mark.parametrize("n", [1, 3, 63, 65, 1000, 2**13 + 5, 2**20 + 3])
def test_forward_matches_reference_and_inverts(rng: np.random.Generator, n: int) -> None:
    x = rng.standard_t(3, n).astype(np.float32)
    y = R.forward(x, 77)
    assert y.size == rotation_padded_size(n)
    np.testing.assert_array_equal(y, ref.rotation_forward(x, 77))
    back = R.inverse(y, n, 77)
    np.testing.assert_allclose(back, x, atol=2e-5 * float(np.abs(x).max()) * np.log2(y.size + 1))


def test_thread_count_invariant(rng: np.random.Generator) -> None:
    x = rng.lognormal(0, 2, 2**20 + 3).astype(np.float32)
    comp = laqcore.get_compressor("rotation", levels=5, seed=9)
    frames, outs = [], []
    for threads in (1, 2):
        with laqcore.num_threads(threads):
            p = comp.compress(x, step=3)
            frames.append(p.to_bytes())
            outs.append(comp.decompress(p))
    assert frames[0] == frames[1]
    np.testing.assert_array_equal(outs[0], outs[1])


ROTATE_IN_CHILD = """
import sys, numpy as np, laqcore
x = np.arange(2**17, dtype=np.float32) - 2**16
sys.stdout.write(laqcore.get_compressor("rotation", seed=9).compress(x, step=1).to_bytes().hex())
"""


def test_forward_ignores_omp_num_threads() -> None:
    # The forward pass ran an OpenMP region sized by OMP_NUM_THREADS, not by laqcore's
    # (bounded) thread count: 100000 of them crashed the interpreter (SIGSEGV).
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "100000"}
    out = subprocess.run(
        [sys.executable, "-c", ROTATE_IN_CHILD], env=env, capture_output=True, timeout=120
    )
    assert out.returncode == 0, out.stderr.decode()
    x = np.arange(2**17, dtype=np.float32) - 2**16
    want = laqcore.get_compressor("rotation", seed=9).compress(x, step=1).to_bytes()
    assert bytes.fromhex(out.stdout.decode()) == want


def _rotate_in_child(queue: object) -> None:
    x = np.arange(2**17, dtype=np.float32)
    queue.put(R.forward(x, 5).tobytes())  # type: ignore[attr-defined]


def test_forward_works_in_a_forked_child() -> None:
    # After the parent had run the forward pass's OpenMP region, the child hung in it.
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    x = np.arange(2**17, dtype=np.float32)
    with laqcore.num_threads(2):
        want = R.forward(x, 5).tobytes()
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        proc = ctx.Process(target=_rotate_in_child, args=(queue,))
        proc.start()
        try:
            got = queue.get(timeout=60)
        finally:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    assert proc.exitcode == 0
    assert got == want


def test_unbiased(rng: np.random.Generator) -> None:
    n, trials = 100, 3000
    x = rng.standard_t(3, n).astype(np.float32)
    comp = laqcore.get_compressor("rotation", levels=1, bucket_size=32, seed=4)
    samples = np.stack([comp.decompress(comp.compress(x, step=k)) for k in range(trials)])
    mean = samples.mean(axis=0)
    se = samples.std(axis=0) / np.sqrt(trials)
    # Every coordinate within 5 standard errors (a fixed seed: no flaky failure).
    assert np.all(np.abs(mean - x) <= 5 * se + 1e-6)
    # And the estimate really is random: different steps give different vectors.
    assert not np.array_equal(samples[0], samples[1])


@pytest.mark.parametrize("tail", ["student_t3", "lognormal"])
def test_lower_mse_than_qsgd_at_equal_bits(rng: np.random.Generator, tail: str) -> None:
    n = 2**16  # a power of two: the rotation adds no padded codes
    x = rng.standard_t(3, n) if tail == "student_t3" else rng.lognormal(0, 1.5, n)
    x = x.astype(np.float32)

    def nmse(comp: laqcore.Compressor) -> tuple[float, int]:
        errs, size = [], 0
        for k in range(3):
            p = comp.compress(x, step=k)
            errs.append(float(((comp.decompress(p) - x) ** 2).sum() / (x**2).sum()))
            size = p.nbytes
        return float(np.mean(errs)), size

    rot, rot_bytes = nmse(laqcore.get_compressor("rotation", levels=7, seed=1))
    for norm in ("l2", "max"):
        q, q_bytes = nmse(laqcore.get_compressor("qsgd", levels=7, norm=norm, seed=1))
        assert abs(rot_bytes - q_bytes) <= 16  # same codes and scales; 8 more metadata bytes
        assert rot < q, (norm, rot, q)


def test_frame_round_trip_and_rejects(rng: np.random.Generator) -> None:
    comp = laqcore.get_compressor("rotation", levels=3, bucket_size=64, seed=2)
    x = rng.standard_normal(300).astype(np.float32)
    p = comp.compress(x, step=0)
    frame = p.to_bytes()
    q = comp.from_bytes(frame, expected_n=300)
    assert isinstance(q, RotationPayload) and q.key == p.key
    np.testing.assert_array_equal(comp.decompress(q), comp.decompress(p))
    for cut in range(len(frame)):
        with pytest.raises(ValueError, match="truncated|corrupt|magic|expected"):
            comp.from_bytes(frame[:cut])
    bad = bytearray(frame)
    bad[12] = 0  # levels = 0
    bad[-4:] = zlib.crc32(bytes(bad[:-4])).to_bytes(4, "little")
    with pytest.raises(ValueError, match="levels"):
        comp.from_bytes(bytes(bad))


def test_entropy_coded_rotation(rng: np.random.Generator) -> None:
    x = rng.standard_t(3, 5000).astype(np.float32)
    coded = laqcore.get_compressor("rotation", levels=7, seed=5, entropy=True)
    plain = laqcore.get_compressor("rotation", levels=7, seed=5)
    p = coded.compress(x, step=1)
    assert isinstance(p, EntropyPayload) and p.nbytes < p.inner.nbytes
    got = coded.decompress(coded.from_bytes(p.to_bytes(), expected_n=5000))
    np.testing.assert_array_equal(got, plain.decompress(plain.compress(x, step=1)))


def test_bad_input() -> None:
    comp = laqcore.get_compressor("rotation")
    with pytest.raises(ValueError, match="NaN or Inf"):
        comp.compress(np.array([1.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="levels"):
        laqcore.get_compressor("rotation", levels=0)
    with pytest.raises(TypeError, match="RotationPayload"):
        comp.decompress(laqcore.get_compressor("qsgd").compress(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match="empty"):
        comp.compress(np.zeros(0, dtype=np.float32))


@pytest.mark.parametrize("norm", ["max", "l2"])
@pytest.mark.parametrize("n", [1, 64, 1000, 2**16])
def test_large_inputs_decode_finite_or_raise_overflow(n: int, norm: str) -> None:
    """Up to max|x| = FLT_MAX / N^1.5 the rotation and its inverse stay finite (one huge
    entry, or every entry at the limit with random signs); above it ``compress`` raises
    ``OverflowError`` (it used to decode to inf without a word)."""
    comp = laqcore.get_compressor("rotation", levels=16, seed=0, norm=norm)
    N = rotation_padded_size(n)
    limit = float(np.finfo(np.float32).max) / N**1.5
    signs = np.where(np.random.default_rng(n).random(n) < 0.5, -1.0, 1.0)
    fmax = float(np.finfo(np.float32).max)
    for f in (0.999, 1.001):
        if limit * f > fmax:  # N = 1: every finite input is below the limit
            continue
        big = np.float32(limit * f)
        one = np.ones(n, np.float32)
        one[n // 2] = big
        for x in (one, (signs * big).astype(np.float32)):
            if big <= limit:
                assert np.isfinite(comp.decompress(comp.compress(x))).all()
            else:
                with pytest.raises(OverflowError, match="overflows float32"):
                    comp.compress(x)


def test_compressed_gradient_algorithm_runs_it() -> None:
    # The compressed-gradient algorithms build compressors by registry name.
    from laqcore.algorithms.base import CodecSpec, CompressedGradient

    class RotatedSGD(CompressedGradient):
        name = "rotated-sgd-test"
        codec = CodecSpec("rotation", lambda p: {"levels": 3}, seeded=True)
        stochastic = True

    problem = laqcore.make_problem("digits", workers=2, max_samples=200)
    res = laqcore.simulate(problem, RotatedSGD(batch=16), max_iterations=5)
    assert res.iterations == 5 and res.uploads == 10
