"""Every SIMD path must reproduce the scalar reference exactly.

The scalar block functions are the reference (and are themselves checked against
tests/reference.py); here each other available level (e.g. avx2) runs the same inputs and
must give identical bytes. Lengths cover every tail case of the 32-code SIMD steps, the
8-code groups, the parallel block boundaries and the OpenMP threshold.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import laqcore
from laqcore import runtime
from reference import pack_bits as ref_pack

SIMD_LEVELS = [level for level in runtime.simd_levels() if level != "scalar"]
# 0..33 and around 64/128 hit every SIMD tail; 98321 spans three 32768-code parallel blocks
# plus a ragged end, above the OpenMP threshold.
SIMD_LENGTHS = [0, 1, 7, 8, 9, 15, 31, 32, 33, 40, 63, 64, 65, 127, 129, 1000, 4099, 98321]


@pytest.fixture(params=SIMD_LEVELS or [None], ids=lambda lv: str(lv))
def simd_level(request: pytest.FixtureRequest) -> str:
    if request.param is None:
        pytest.skip("no SIMD path besides scalar on this machine/build")
    return str(request.param)


def run_on(level: str, fn, *args):
    with runtime.simd(level):
        return fn(*args)


@pytest.mark.parametrize("n", SIMD_LENGTHS, ids=lambda n: f"n{n}")
def test_pack_unpack_identical_to_scalar(simd_level, bits, n):
    rng = np.random.default_rng(1000 * bits + n)
    codes = rng.integers(0, 1 << bits, size=n, dtype=np.uint8)
    packed_scalar = run_on("scalar", laqcore.pack_bits, codes, bits)
    packed_simd = run_on(simd_level, laqcore.pack_bits, codes, bits)
    np.testing.assert_array_equal(packed_simd, packed_scalar)
    np.testing.assert_array_equal(packed_scalar, ref_pack(codes, bits))
    unpacked_scalar = run_on("scalar", laqcore.unpack_bits, packed_scalar, bits, n)
    unpacked_simd = run_on(simd_level, laqcore.unpack_bits, packed_scalar, bits, n)
    np.testing.assert_array_equal(unpacked_simd, unpacked_scalar)
    np.testing.assert_array_equal(unpacked_simd, codes)


def test_pack_identical_for_any_thread_count(simd_level):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 8, size=2**20 + 3, dtype=np.uint8)
    expected = run_on("scalar", laqcore.pack_bits, codes, 3)
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            np.testing.assert_array_equal(run_on(simd_level, laqcore.pack_bits, codes, 3), expected)


@pytest.mark.parametrize("bits", range(1, 8), ids=lambda b: f"bits{b}")  # 8: all bytes valid
@pytest.mark.parametrize("where", [0, 5, 31, 32, 1000, 98320], ids=lambda w: f"at{w}")
def test_simd_pack_rejects_oversized_code(simd_level, bits, where):
    codes = np.zeros(98321, dtype=np.uint8)
    codes[where] = 1 << bits
    with runtime.simd(simd_level), pytest.raises(ValueError, match=f"at index {where} "):
        laqcore.pack_bits(codes, bits)


def test_simd_unpack_rejects_bad_padding(simd_level):
    packed = run_on("scalar", laqcore.pack_bits, np.ones(1001, dtype=np.uint8), 3)
    packed[-1] |= 0x80
    with runtime.simd(simd_level), pytest.raises(ValueError, match="padding"):
        laqcore.unpack_bits(packed, 3, 1001)


# --- LAQ quantizer ------------------------------------------------------------------------
# Lengths around the 8-element groups and the 16384-element reduction blocks; the largest
# runs several blocks in parallel.
LAQ_LENGTHS = [1, 7, 8, 9, 31, 33, 1000, 16383, 16385, 3 * 16384 + 5, 2**17 + 11]


def _laq_inputs(n: int, bits: int, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(10_000 * bits + n)
    grad = rng.standard_normal(n).astype(np.float32)
    if kind == "noprev":
        return grad, None
    prev = (grad + rng.standard_normal(n).astype(np.float32) * np.float32(0.1)).astype(np.float32)
    if kind == "ties":  # many exact grid points and repeated values: rounding ties, -0.0
        grad = np.round(grad * 4) / np.float32(4)
        prev = np.zeros(n, np.float32)
        prev[::3] = -0.0
    return grad.astype(np.float32), prev


def _laq_everything(level: str, grad, prev, bits: int) -> tuple:
    """Every LAQ kernel output (codes, radius, sums, decodes) on SIMD path ``level``."""
    with runtime.simd(level):
        p = laqcore.laq_quantize(grad, prev, bits)
        dq = laqcore.laq_dequantize(p)
        agg = np.linspace(-1, 1, grad.size, dtype=np.float32)
        laqcore.laq_accumulate(agg, p, weight=-0.37)
        innov = laqcore._core.laq.innov_sq(p.packed, p.n, p.bits, p.radius)
        name = laqcore._core.laq.kernel_name()
    assert name == level  # the driver really used this level's table
    return p.packed.tobytes(), p.radius, p.err_sq, p.innov_sq, dq.tobytes(), agg.tobytes(), innov


@pytest.mark.parametrize("kind", ["prev", "noprev", "ties"])
@pytest.mark.parametrize("n", LAQ_LENGTHS, ids=lambda n: f"n{n}")
def test_laq_identical_to_scalar(simd_level, bits, n, kind):
    grad, prev = _laq_inputs(n, bits, kind)
    scalar = _laq_everything("scalar", grad, prev, bits)
    simd = _laq_everything(simd_level, grad, prev, bits)
    assert simd == scalar  # bytes and floats compared exactly
    assert scalar[3] == scalar[6]  # decoded ||dQ||^2 equals the encoder's, bit for bit


def test_laq_midpoints_identical_to_scalar(simd_level, bits):
    # Innovations on and next to the midpoints between grid points, where the code is
    # decided by the last bits of the reference's double arithmetic: the SIMD fast path
    # must detect these and take its exact path.
    levels = (1 << bits) - 1
    mid = (-1.0 + (np.arange(levels) + 0.5) * (2.0 / levels)).astype(np.float32)
    grad = np.concatenate(
        [
            [1.0, -1.0],
            mid,
            np.nextafter(mid, np.float32(2)),
            np.nextafter(mid, np.float32(-2)),
        ]
    ).astype(np.float32)
    grad = np.tile(grad, 40)
    scalar = _laq_everything("scalar", grad, None, bits)
    assert _laq_everything(simd_level, grad, None, bits) == scalar
    # Shifted by a q_prev, the float32 innovations land near the midpoints too.
    prev = np.full(grad.size, 0.25, np.float32)
    assert _laq_everything(simd_level, grad + prev, prev, bits) == _laq_everything(
        "scalar", grad + prev, prev, bits
    )


def test_laq_near_fast_path_margin_identical_to_scalar(simd_level, bits):
    # The SIMD encoders trust a float32 estimate of x = (v + R) / step + 1/2 only when it is
    # at least 2^-14 from an integer (its error bound is 2^-15): innovations at distances
    # 2^-22 .. 2^-8 (in units of x) on both sides of every rounding boundary straddle that
    # margin and must all give the scalar reference's codes and sums.
    levels = (1 << bits) - 1
    step = 2.0 / levels
    boundary = -1.0 + (np.arange(levels) + 0.5) * step  # x is an integer here (R = 1)
    dist = np.concatenate([-(2.0 ** -np.arange(8, 23)), 2.0 ** -np.arange(8, 23)])
    v = (boundary[:, None] + dist[None, :] * step).ravel()
    grad = np.concatenate([[1.0, -1.0], v]).astype(np.float32)
    x = (grad.astype(np.float64) + 1.0) / step + 0.5
    frac = np.abs(x - np.round(x))
    assert np.any((frac > 0) & (frac < 2.0**-14)) and np.any(frac > 2.0**-13)  # both sides
    assert _laq_everything(simd_level, grad, None, bits) == _laq_everything(
        "scalar", grad, None, bits
    )


@pytest.mark.parametrize("scale", [1e-30, 1e-38, 1e30, 3e38], ids=lambda s: f"x{s:g}")
def test_laq_extreme_radius_identical_to_scalar(simd_level, scale):
    grad = np.random.default_rng(2).standard_normal(1001) * scale
    grad = np.clip(grad, -3.4e38, 3.4e38).astype(np.float32)  # finite float32
    for bits in (2, 8):
        assert _laq_everything(simd_level, grad, None, bits) == _laq_everything(
            "scalar", grad, None, bits
        )


def test_laq_identical_for_any_thread_count(simd_level):
    grad, prev = _laq_inputs(2**18 + 3, 3, "prev")
    expected = _laq_everything("scalar", grad, prev, 3)
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            assert _laq_everything(simd_level, grad, prev, 3) == expected


@pytest.mark.parametrize("where", [0, 9, 16384 + 3, 40000])
def test_laq_simd_rejects_nonfinite(simd_level, where):
    grad, prev = _laq_inputs(40001, 4, "prev")
    grad[where] = np.nan
    with (
        runtime.simd(simd_level),
        pytest.raises(ValueError, match=f"grad contains NaN or Inf .*index {where}"),
    ):
        laqcore.laq_quantize(grad, prev, 4)


# --- QSGD --------------------------------------------------------------------------------
def _qsgd_everything(level: str, x, levels: int, bucket: int, norm: str) -> tuple:
    with runtime.simd(level):
        comp = laqcore.get_compressor("qsgd", levels=levels, bucket_size=bucket, norm=norm, seed=3)
        p = comp.compress(x, step=11)
        return p.scales.tobytes(), p.packed.tobytes(), comp.decompress(p).tobytes()


@pytest.mark.parametrize("norm", ["l2", "max"])
@pytest.mark.parametrize(
    ("n", "bucket"),
    [
        (1, 1),
        (7, 3),
        (9, 9),
        (33, 5),
        (1000, 100),
        (4099, 512),
        (20000, 20000),
        (70001, 512),
        (2**15 + 9, 2**14 + 3),
    ],
    ids=lambda v: str(v),
)
@pytest.mark.parametrize("levels", [1, 7, 127])
def test_qsgd_identical_to_scalar(simd_level, n, bucket, levels, norm):
    rng = np.random.default_rng(n + bucket + levels)
    x = rng.standard_normal(n).astype(np.float32)
    x[::17] = 0.0
    x[1::19] = -0.0
    assert _qsgd_everything(simd_level, x, levels, bucket, norm) == _qsgd_everything(
        "scalar", x, levels, bucket, norm
    )


def test_qsgd_identical_for_any_thread_count(simd_level):
    x = np.random.default_rng(5).standard_normal(2**18 + 7).astype(np.float32)
    expected = _qsgd_everything("scalar", x, 7, 512, "l2")
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            assert _qsgd_everything(simd_level, x, 7, 512, "l2") == expected


def test_qsgd_simd_rejects_nonfinite(simd_level):
    x = np.ones(5000, np.float32)
    x[4321] = np.inf
    comp = laqcore.get_compressor("qsgd", levels=7, bucket_size=512)
    with runtime.simd(simd_level), pytest.raises(ValueError, match="contains NaN or Inf"):
        comp.compress(x, step=0)


# --- scaled sign ---------------------------------------------------------------------------
def _sign_everything(level: str, x) -> tuple:
    with runtime.simd(level):
        comp = laqcore.get_compressor("sign")
        p = comp.compress(x)
        return p.scale, p.packed.tobytes(), comp.decompress(p).tobytes()


@pytest.mark.parametrize("n", [*SIMD_LENGTHS[1:], 2**18 + 5], ids=lambda n: f"n{n}")
def test_sign_identical_to_scalar(simd_level, n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    x[::7] = -0.0
    x[1::11] = 0.0
    assert _sign_everything(simd_level, x) == _sign_everything("scalar", x)
    for threads in (2, 7):
        with laqcore.num_threads(threads):
            assert _sign_everything(simd_level, x) == _sign_everything("scalar", x)


@pytest.mark.parametrize("where", [0, 8, 16390, 20000])
def test_sign_simd_rejects_nonfinite(simd_level, where):
    x = np.ones(20001, np.float32)
    x[where] = np.nan
    with runtime.simd(simd_level), pytest.raises(ValueError, match="contains NaN or Inf"):
        laqcore.get_compressor("sign").compress(x)


# --- TernGrad ----------------------------------------------------------------------------
def _terngrad_everything(level: str, x, clip: float | None, shared: float | None) -> tuple:
    with runtime.simd(level):
        comp = laqcore.get_compressor("terngrad", clip_factor=clip, seed=9)
        p = comp.compress(x, step=4, shared_scaler=shared)
        return p.scaler, p.packed.tobytes(), comp.decompress(p).tobytes()


@pytest.mark.parametrize("clip", [None, 2.5, 0.5])
@pytest.mark.parametrize("n", [*SIMD_LENGTHS[1:], 2**17 + 3], ids=lambda n: f"n{n}")
def test_terngrad_identical_to_scalar(simd_level, n, clip):
    x = (np.random.default_rng(n).standard_normal(n) + 0.3).astype(np.float32)
    x[::13] = -0.0
    expected = _terngrad_everything("scalar", x, clip, None)
    assert _terngrad_everything(simd_level, x, clip, None) == expected
    shared = 2 * expected[0] + 1
    assert _terngrad_everything(simd_level, x, clip, shared) == _terngrad_everything(
        "scalar", x, clip, shared
    )


def test_terngrad_identical_for_any_thread_count(simd_level):
    x = np.random.default_rng(8).standard_normal(2**18 + 1).astype(np.float32)
    expected = _terngrad_everything("scalar", x, 2.5, None)
    for threads in (1, 2, 7):
        with laqcore.num_threads(threads):
            assert _terngrad_everything(simd_level, x, 2.5, None) == expected


# --- selection -------------------------------------------------------------------------
def _level_in_subprocess(env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("LAQCORE_SIMD", None)
    if env_value is not None:
        env["LAQCORE_SIMD"] = env_value
    code = "import laqcore; print(laqcore.runtime.simd_level())"
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_env_forces_scalar():
    proc = _level_in_subprocess("scalar")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "scalar"


def test_default_is_best_available():
    proc = _level_in_subprocess(None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == runtime.simd_levels()[-1]
    proc = _level_in_subprocess("auto")
    assert proc.stdout.strip() == runtime.simd_levels()[-1]


def test_env_unknown_level_fails_clearly():
    proc = _level_in_subprocess("avx9000")
    assert proc.returncode != 0
    # the error the user reads (the last line) names the variable, not a broken install
    last = proc.stderr.strip().splitlines()[-1]
    assert "LAQCORE_SIMD must be one of" in last
    assert "Did you build" not in proc.stderr  # (paths may contain "build")


def test_levels_reported():
    levels = runtime.simd_levels()
    assert levels[0] == "scalar"
    assert runtime.simd_level() in levels
    info = laqcore.build_info()
    assert info["simd"] == levels
    assert info["simd_active"] == runtime.simd_level()


def test_simd_context_restores_level():
    before = runtime.simd_level()
    with runtime.simd("scalar"):
        assert runtime.simd_level() == "scalar"
    assert runtime.simd_level() == before


def test_set_simd_level_bad_input():
    with pytest.raises(ValueError, match="must be one of"):
        runtime.set_simd_level("sse9")
    with pytest.raises(TypeError, match="level must be a str"):
        runtime.set_simd_level(2)  # type: ignore[arg-type]
