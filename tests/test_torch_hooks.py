"""DDP communication hooks (laqcore.torch) on gloo with 2 and 4 ranks.

Reference: the same training without a hook (DDP's own all-reduce), compared with
``torch.testing.assert_close`` at a per-method tolerance.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from needs_torch import require_torch

torch = require_torch("the DDP comm-hook tests of tests/test_torch_hooks.py")

import laqcore  # noqa: E402
from _dist_workers import ddp_runs, near_float32_max, owner_sum_overflow  # noqa: E402
from laqcore.distributed import run_processes  # noqa: E402
from laqcore.torch import LAQState, QSGDState, TernGradState  # noqa: E402

pytestmark = pytest.mark.distributed


_ALL_GATHER = {"exchange": "all-gather"}  # the formulas below are those of the all-gather


def _run(world: int, runs: list[dict], deadline: float = 150) -> list[list]:
    outs = run_processes(ddp_runs, world, runs, pg_timeout_s=30, deadline_s=deadline)
    return [o.result for o in outs]  # [rank][run]


@pytest.mark.parametrize("world", [2, 4])
def test_laq_hook_against_allreduce_reference(world: int) -> None:
    steps, warm = 14, 3
    res = _run(
        world,
        [
            {"method": "none", "steps": steps, "kwargs": {}},
            {
                "method": "laq",
                "steps": steps,
                "kwargs": {"bits": 8, "lr": 0.1, "warmup_steps": warm, **_ALL_GATHER},
            },
            {
                "method": "laq",
                "steps": 40,
                "kwargs": {
                    "bits": 4,
                    "block_size": None,
                    "warmup_steps": 2,
                    "entropy": False,
                    **_ALL_GATHER,
                },
                "lr": 0.02,
            },
            # The default two-phase exchange (entropy-coded frames): 8-bit uploads in
            # blocks, 8-bit downlink.
            {
                "method": "laq",
                "steps": steps,
                "kwargs": {"bits": 8, "block_size": 64, "downlink_bits": 8, "warmup_steps": warm},
            },
            # Run 2 with entropy-coded frames (the default): lossless, fewer bytes.
            {
                "method": "laq",
                "steps": 40,
                "kwargs": {"bits": 4, "block_size": None, "warmup_steps": 2, **_ALL_GATHER},
                "lr": 0.02,
            },
        ],
    )
    ref, laq8 = res[0][0], res[0][1]
    # Two-phase: first compressed step within the upload error plus the downlink's (the
    # replica is the exact aggregate re-quantized to 8 bits: tau * its max|.| / N more).
    two = res[0][3]
    g = ref["grads"][warm]
    bound = np.mean([res[r][3]["local_absmax"][warm] for r in range(world)]) / 255
    torch.testing.assert_close(two["grads"][warm], g, rtol=0, atol=2 * bound * 1.01 + 1e-6)
    assert abs(two["losses"][-1] - ref["losses"][-1]) < 0.02 * ref["losses"][0]
    for r in range(world):
        np.testing.assert_array_equal(res[r][3]["params"], two["params"])
        st = res[r][3]["stats"]
        assert st["bytes_received"] > 0
        # Entropy-coded publications (gloo: messages): the first compressed step's by an
        # all-to-all with exact sizes (no capacity yet), later ones with their sizes unless
        # one outgrows twice the largest seen (then an all-to-all again).
        assert st["downlink_sized_rounds"] == 0
        assert 1 <= st["downlink_tail_rounds"] < steps - warm
    # Warm-up iterations are a plain all-reduce: the reference's gradients.
    torch.testing.assert_close(laq8["grads"][:warm], ref["grads"][:warm], rtol=1e-5, atol=1e-7)
    # First compressed step: every rank uploads Q_m with |Q_m - g_m| <= tau * max|g_m|, so the
    # average is within mean_m(tau * max|g_m|) of the reference (8 bits: tau = 1/255).
    bound = np.mean([res[r][1]["local_absmax"][warm] for r in range(world)]) / 255
    g = ref["grads"][warm]
    torch.testing.assert_close(laq8["grads"][warm], g, rtol=0, atol=bound * 1.01 + 1e-6)
    # Whole run: 8-bit LAQ trains like the reference.
    assert abs(laq8["losses"][-1] - ref["losses"][-1]) < 0.02 * ref["losses"][0]
    torch.testing.assert_close(laq8["params"], ref["params"], rtol=0, atol=2e-2)
    # DDP's contract: every replica holds the same parameters.
    for r in range(world):
        for k in range(5):
            np.testing.assert_array_equal(res[r][k]["params"], res[0][k]["params"])
    for r in range(world):
        s = res[r][2]["stats"]
        # 4-bit LAQ skips uploads; each upload is one frame of 4-bit codes (24 bytes of frame
        # header, metadata and CRC + ceil(n/2) bytes), and the loss still goes down.
        n = res[r][2]["grads"].shape[1]
        assert s["steps"] == 38 and s["warmup_steps_done"] == 2
        assert s["uploads"] + s["uploads_skipped"] == 38
        assert s["uploads_skipped"] > 0
        assert s["bytes_sent"] == s["uploads"] * (24 + (n + 1) // 2)
        assert s["bytes_dense"] == 38 * 4 * n
        assert s["compression_ratio"] == s["bytes_dense"] / s["bytes_sent"]
        assert np.mean(res[r][2]["losses"][-5:]) < np.mean(res[r][2]["losses"][:5])
        assert res[r][2]["aggregate_minus_sum_qprev"] < 1e-5
        # The transport's traffic count is the same on every rank.
        assert s["wire_bytes"] == res[0][2]["stats"]["wire_bytes"]
        # Entropy coding changes the bytes only: the same decisions and parameters.
        coded = res[r][4]["stats"]
        np.testing.assert_array_equal(res[r][4]["params"], res[r][2]["params"])
        assert coded["uploads"] == s["uploads"]
        assert coded["bytes_sent"] < s["bytes_sent"]
        assert coded["bytes_received"] < s["bytes_received"]


@pytest.mark.parametrize("world", [2, 3])
def test_auto_exchange_is_the_all_gather_for_small_gradients(world: int) -> None:
    """exchange="auto" (the default): for this small gradient the all-gather on 2 and on 3
    ranks (``resolve_exchange``: where the two-phase exchange is chosen instead is tested
    there), bit for bit the explicit one (LAQ and QSGD); a downlink setting asks for the
    two-phase exchange on any number of ranks."""
    laq = {"bits": 4, "warmup_steps": 2}
    runs = [
        {"method": "laq", "steps": 12, "kwargs": laq},
        {"method": "laq", "steps": 12, "kwargs": {**laq, "exchange": "all-gather"}},
        {"method": "qsgd", "steps": 8, "kwargs": {"levels": 8}},
        {"method": "qsgd", "steps": 8, "kwargs": {"levels": 8, "exchange": "all-gather"}},
        {"method": "laq", "steps": 12, "kwargs": {**laq, "downlink_bits": 8}},
        {
            "method": "laq",
            "steps": 12,
            "kwargs": {**laq, "downlink_bits": 8, "exchange": "two-phase"},
        },
    ]
    res = _run(world, runs)
    for r in range(world):
        for auto, explicit in ((0, 1), (2, 3), (4, 5)):
            np.testing.assert_array_equal(res[r][auto]["params"], res[r][explicit]["params"])
            assert res[r][auto]["stats"] == res[r][explicit]["stats"]
        # Only the two-phase exchange reports its phases; only the all-gather wire_bytes.
        assert "received_uplink" not in res[r][0]["stats"]
        assert "wire_bytes" in res[r][0]["stats"]
        assert "received_uplink" in res[r][4]["stats"]


@pytest.mark.parametrize("world", [2, 4])
def test_qsgd_and_terngrad_hooks_against_reference(world: int) -> None:
    steps = 25
    res = _run(
        world,
        [
            {"method": "none", "steps": steps, "kwargs": {}},
            {"method": "qsgd", "steps": steps, "kwargs": {"levels": 16, "seed": 3, **_ALL_GATHER}},
            {"method": "terngrad", "steps": steps, "kwargs": {"seed": 3, **_ALL_GATHER}},
            # The default two-phase exchange (owners re-compress the mean, unbiased).
            {"method": "qsgd", "steps": steps, "kwargs": {"levels": 16, "seed": 3}},
        ],
    )
    ref, qsgd, tern, two = res[0]
    for r in range(world):
        np.testing.assert_array_equal(res[r][3]["params"], two["params"])
    assert np.mean(two["losses"][-5:]) < np.mean(two["losses"][:5])
    # Warm-up (1 step) is the plain all-reduce.
    for run in (qsgd, tern):
        torch.testing.assert_close(run["grads"][:1], ref["grads"][:1], rtol=1e-5, atol=1e-7)
    g = ref["grads"][1]
    # QSGD: per element |Q(v) - v| <= ||v_bucket||_2 / s <= ||v||_2 / s, averaged over ranks.
    bound = np.mean([res[r][1]["local_l2"][1] for r in range(world)]) / 16
    torch.testing.assert_close(qsgd["grads"][1], g, rtol=0, atol=bound * 1.01 + 1e-6)
    # TernGrad: values in {-s, 0, s} with s <= max|v|, so |Q(v) - v| <= max|v| per rank.
    bound = np.mean([res[r][2]["local_absmax"][1] for r in range(world)])
    torch.testing.assert_close(tern["grads"][1], g, rtol=0, atol=bound * 1.01 + 1e-6)
    for r in range(world):
        for k in range(3):
            np.testing.assert_array_equal(res[r][k]["params"], res[0][k]["params"])
        for k in (1, 2):
            s = res[r][k]["stats"]
            assert s["uploads"] == steps - 1 and s["uploads_skipped"] == 0
            assert s["compression_ratio"] > 4  # QSGD 16 levels: ~6 bits; TernGrad 2 bits
            losses = res[r][k]["losses"]
            assert np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.mark.parametrize("method", ["laq", "qsgd", "rotation"])
def test_hook_resume_is_exact(method: str) -> None:
    kwargs = {"warmup_steps": 3, "bits": 4} if method == "laq" else {"warmup_steps": 3, "seed": 5}
    spec = {"method": method, "steps": 16, "kwargs": kwargs, "lr": 0.05}
    full = _run(2, [{**spec, "checkpoint_at": 7}])
    ck = {
        **full[0][0]["checkpoint"],
        "hook": [full[r][0]["checkpoint"]["hook"] for r in range(2)],
    }
    resumed = _run(2, [{**spec, "resume_from": ck}])
    for r in range(2):
        np.testing.assert_array_equal(resumed[r][0]["grads"], full[r][0]["grads"][7:])
        np.testing.assert_array_equal(resumed[r][0]["params"], full[r][0]["params"])
        assert resumed[r][0]["stats"]["uploads"] == full[r][0]["stats"]["uploads"]


def test_fallback_decides_the_same_on_every_rank() -> None:
    """LAQState(fallback=True) at 2 ranks: whichever mode the timing picks, every rank picks
    it at the same iteration (the times are averaged over the ranks) and the replicas stay
    identical; 8 compressed iterations, 1 to 8 of DDP's all-reduce, then the decision."""
    steps = 24
    res = _run(2, [{"method": "laq", "steps": steps, "kwargs": {"fallback": True}}])
    modes = {res[r][0]["fallback_decision"] for r in range(2)}
    assert len(modes) == 1 and modes <= {"compress", "allreduce"}, modes
    np.testing.assert_array_equal(res[0][0]["params"], res[1][0]["params"])
    s = [res[r][0]["stats"] for r in range(2)]
    assert s[0]["allreduce_steps"] == s[1]["allreduce_steps"]
    assert s[0]["allreduce_steps"] + s[0]["steps"] == steps
    assert 1 <= s[0]["probe_allreduce_steps"] == s[1]["probe_allreduce_steps"] <= 8
    if modes == {"allreduce"}:
        assert s[0]["steps"] == 8
    else:
        assert s[0]["allreduce_steps"] == s[0]["probe_allreduce_steps"]
    assert np.isfinite(res[0][0]["grads"]).all()


def test_nonfinite_gradient_raise_and_skip() -> None:
    base = {"method": "laq", "steps": 8, "nan_at": (1, 5)}
    res = _run(
        2,
        [
            {**base, "kwargs": {"warmup_steps": 2, "nonfinite": "raise"}, "expect_error": True},
            {**base, "kwargs": {"warmup_steps": 2, "nonfinite": "skip"}},
        ],
    )
    for r in range(2):
        kind, msg = res[r][0]
        assert kind == "NonFiniteGradientError"
        assert "rank 1" in msg and "step 5" in msg
        s = res[r][1]["stats"]
        assert s["nonfinite_skipped"] == (1 if r == 1 else 0)
        assert np.isfinite(res[r][1]["params"]).all()


def test_dropped_step_counts_a_frame_that_had_left() -> None:
    """All-gather exchange, "propagate": at step 5 only rank 1's gradient is NaN. Rank 0's
    frame travelled with the statuses before the step was dropped, and its bytes_sent
    counts it: on 2 ranks the frames every rank sent plus the control messages are exactly
    the transport's wire bytes (a frame sent counted by every rank that sent it)."""
    run = {"method": "laq", "steps": 8, "nan_at": (1, 5)}
    run["kwargs"] = {"warmup_steps": 2, "nonfinite": "propagate", "exchange": "all-gather"}
    res = _run(2, [run])
    stats = [res[r][0]["stats"] for r in range(2)]
    assert all(s["nonfinite_steps"] >= 1 for s in stats)
    sent = sum(s["bytes_sent"] for s in stats)
    assert stats[0]["wire_bytes"] == stats[1]["wire_bytes"] == sent + stats[0]["control_bytes"]


_BAD_LAQ_ARGUMENTS = [
    ({"bits": 0}, ValueError, "bits"),
    ({"bits": 9}, ValueError, "bits"),
    ({"bits": "4"}, TypeError, "bits"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps"),
    ({"warmup_steps": "on"}, TypeError, "warmup_steps"),
    ({"nonfinite": "ignore"}, ValueError, "nonfinite"),
    ({"t_bar": 0}, ValueError, "t_bar"),
    ({"block_size": "big"}, TypeError, "block_size"),
    ({"block_size": 12}, ValueError, "block_size"),
    ({"downlink_block_size": 12}, ValueError, "block_size"),
    ({"entropy": "yes"}, TypeError, "entropy"),
    ({"error_feedback": 1.5}, ValueError, "error_feedback"),
    ({"error_feedback": -0.1}, ValueError, "error_feedback"),
    ({"error_feedback": "on"}, TypeError, "error_feedback"),
    ({"ck": "high"}, TypeError, "ck"),
    ({"exchange": "ring"}, ValueError, "exchange must be one of"),
    ({"exchange": 2}, TypeError, "exchange must be one of"),
    ({"grad_scaler": 2.0**16}, TypeError, "grad_scaler must be a torch.amp.GradScaler"),
    # the all-gather exchange has no downlink: these would be ignored
    ({"exchange": "all-gather", "downlink_bits": 2}, ValueError, 'need exchange="two-phase"'),
    ({"exchange": "all-gather", "downlink_bits": None}, ValueError, "downlink_bits and"),
    ({"exchange": "all-gather", "downlink_block_size": 64}, ValueError, "no downlink"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), _BAD_LAQ_ARGUMENTS)
def test_laq_state_refuses_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        LAQState(**kwargs)


@pytest.mark.filterwarnings("ignore:LAQState\\(bits=1\\):UserWarning")  # its defaults too
def test_state_defaults_and_pickle() -> None:
    # block_size="auto" (the default): smaller radius blocks at low widths (docs/ddp.md).
    assert [LAQState(bits=b).block_size for b in (1, 2, 3, 4, 8)] == [32, 32, 64, 256, 256]
    assert LAQState(bits=2, block_size=None).block_size is None
    assert LAQState(bits=2, block_size=128).block_size == 128
    # The defaults of docs/ddp.md "Bytes per step": entropy-coded frames, a 4-bit downlink,
    # ck 1.2 from 4 bits on (0.8 below).
    st0 = LAQState()
    assert (st0.entropy, st0.downlink_bits, st0.rule.ck) == (True, 4, 1.2)
    # No all-reduce warm-up from 3 bits on, 10 steps at 1-2 bits (docs/ddp.md, "Warm-up").
    assert [LAQState(bits=b).warmup_steps for b in (1, 2, 3, 4, 8)] == [10, 10, 0, 0, 0]
    assert LAQState(bits=2, warmup_steps=0).warmup_steps == 0
    assert [LAQState(bits=b).rule.ck for b in (1, 2, 3, 4, 8)] == [0.8, 0.8, 0.8, 1.2, 1.2]
    assert LAQState(bits=2, ck=1.5).rule.ck == 1.5
    # Error feedback at 2 bits (docs/ddp.md, "Error feedback at 2 bits"), LAQ's own above;
    # not at 1 bit, whose error exceeds the innovation (the residual grows without bound).
    assert [LAQState(bits=b).error_feedback for b in (1, 2, 3, 4, 8)] == [0, 1, 0.5, 0.5, 0.5]
    assert LAQState(bits=2, error_feedback=0).error_feedback == 0.0
    assert LAQState(bits=4, error_feedback=0.5).error_feedback == 0.5
    # The process group is dropped when pickling (it cannot cross processes).
    st = LAQState(process_group=object(), bits=3)
    st2 = pickle.loads(pickle.dumps(st))
    assert st2.process_group is None and st2.bits == 3 and st2.iteration == 0
    with pytest.raises(ValueError, match="levels"):
        QSGDState(levels=0)
    with pytest.raises(ValueError, match="seed"):
        TernGradState(seed=-1)
    q = pickle.loads(pickle.dumps(QSGDState(process_group=object(), levels=4)))
    assert q.process_group is None and q.compressor_kwargs == {"norm": "max", "levels": 4}
    # The QSGD hook's norm defaults to "max" (docs/ddp.md, "Which settings"), unlike the
    # compressor's paper default, and the paper's "l2" is one keyword away.
    assert QSGDState()._make(0).norm == "max"
    assert QSGDState(norm="l2")._make(0).norm == "l2"
    assert laqcore.get_compressor("qsgd").norm == "l2"


def test_states_show_their_settings() -> None:
    """``print(state)`` says what the hook will do (the resolved "auto" values included),
    not ``<LAQState object at 0x...>``."""
    from laqcore.torch import QSGDState

    text = repr(LAQState(bits=2))
    assert text.startswith("LAQState(bits=2, block_size=32, exchange='auto', ")
    assert "error_feedback=1.0" in text and "stale_cap=4.0" in text
    assert text.endswith(") at iteration 0")
    assert repr(QSGDState(levels=4)).startswith(
        "QSGDState(seed=0, exchange='auto', compressor_kwargs={'norm': 'max', 'levels': 4}, "
    )


def test_a_hook_refuses_another_hooks_state() -> None:
    """qsgd_hook with a LAQState (or laq_hook with None) used to run the state's own method
    under the other hook's name, or fail inside DDP with an AttributeError."""
    from laqcore.torch import laq_hook, qsgd_hook

    with pytest.raises(TypeError, match=r"laq_hook needs a LAQState as its state: .*got QSGDState"):
        laq_hook(QSGDState(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got NoneType"):
        laq_hook(None, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="qsgd_hook needs a QSGDState"):
        qsgd_hook(LAQState(), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "kwargs", "dropped"),
    [("laq", {}, [1]), ("qsgd", {"norm": "l2"}, [0, 1]), ("qsgd", {}, [])],
)
def test_a_finite_gradient_the_kernels_cannot_represent_is_dropped_on_every_rank(
    method: str, kwargs: dict[str, Any], dropped: list[int]
) -> None:
    """Rank 0's finite gradient near the float32 maximum made LAQ's quantizer ("the
    innovation grad - prev overflows float32") or QSGD's ("the L2 norm of a bucket ...
    overflows float32") raise a ValueError on rank 0 alone while rank 1 waited in the
    exchange until the process-group timeout. Like the rotation's OverflowError, it is now a
    non-finite step on every rank (NaN buckets, as DDP's all-reduce of an overflow). The
    QSGD hook's default max norm represents those gradients: no step is dropped."""
    outs = run_processes(near_float32_max, 2, method, kwargs, pg_timeout_s=30, deadline_s=120)
    for o in outs:
        res = o.result
        assert res["error"] is None, res["error"]
        g = res["grads"]
        assert np.isnan(g[dropped]).all()
        assert np.isfinite(np.delete(g, dropped, axis=0)).all()
        assert res["stats"]["nonfinite_steps"] == len(dropped)


# The two-phase exchange's owners (on 2 ranks "auto" would run the all-gather, which has none).
_TWO_PHASE = {"exchange": "two-phase"}
_OVERFLOW_HOOKS = [
    ("laq", _TWO_PHASE),
    ("qsgd", {"norm": "max", **_TWO_PHASE}),
    ("terngrad", _TWO_PHASE),
]


@pytest.mark.parametrize("world", [2, 3])
def test_a_sum_that_overflows_at_one_owner_is_handled_on_every_rank(world: int) -> None:
    """Every rank's gradient fits float32 but their sum does not, on the last owner's chunk
    of the two-phase exchange. Before, that owner's re-quantization raised on it alone after
    the uplink and the others waited in the downlink until the process-group timeout. Now
    its failure marker reaches every rank in the downlink: "propagate" drops the step on
    every rank (NaN buckets, the state as if the step had not happened: the next step equals
    that of a run without it), "raise" and "skip" raise the same error on every rank."""
    specs = [
        {"method": m, "kwargs": kw, "policy": policy, "overflow": overflow}
        for m, kw in _OVERFLOW_HOOKS
        for policy, overflow in (
            ("propagate", True),
            ("propagate", False),
            ("raise", True),
            ("skip", True),
        )
    ]
    outs = run_processes(owner_sum_overflow, world, specs, pg_timeout_s=20, deadline_s=240)
    for o in outs:
        res = dict(zip([(s["method"], s["policy"], s["overflow"]) for s in specs], o.result))
        for method, _ in _OVERFLOW_HOOKS:
            dropped, reference = res[method, "propagate", True], res[method, "propagate", False]
            assert dropped["error"] is None, (method, dropped["error"])
            assert dropped["owner"] == world - 1
            g = dropped["grads"]
            assert np.isnan(g[1]).all() and np.isfinite(g[[0, 2]]).all(), method
            np.testing.assert_array_equal(g[[0, 2]], reference["grads"], err_msg=method)
            assert dropped["stats"]["nonfinite_steps"] == 1
            for policy in ("raise", "skip"):
                err = res[method, policy, True]["error"]
                assert err is not None and err[0] == "NonFiniteGradientError", (method, err)
                assert f"float32 range at rank {world - 1} " in err[1]
                assert "at step 1;" in err[1]


def test_float16_all_reduce_steps_average_like_ddp() -> None:
    """The hooks' all-reduce iterations summed float16 buckets before dividing: entries of
    4e4 per rank overflowed to inf (a dropped step, or NaN parameters without a scaler)
    where DDP, which divides first, returned their average."""
    from _dist_workers import fp16_average
    from needs_torch import skip_without

    skip_without("cpu_float16_matmul")

    hooks = [
        {"method": "qsgd"},  # QSGD's one warm-up step
        {"method": "laq", "kwargs": {"warmup_steps": 1}},
        # fallback=True: 8 timed compressed passes, then the probe's first all-reduce
        {"method": "qsgd", "kwargs": {"warmup_steps": 0, "fallback": True}, "steps": 9},
    ]
    outs = run_processes(fp16_average, 2, hooks, pg_timeout_s=30, deadline_s=120)
    (ddp, *hooked), (_, *allreduce_steps) = outs[0].result
    assert np.isfinite(ddp).all() and ddp.max() > 4e4
    assert allreduce_steps == [None, None, 1]  # the last pass was the fallback's all-reduce
    assert len(hooked) == len(hooks)
    for spec, got in zip(hooks, hooked):
        np.testing.assert_array_equal(got, ddp, err_msg=str(spec))
