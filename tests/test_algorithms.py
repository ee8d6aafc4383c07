"""Each algorithm's first iterations against hand-written formulas (float64 numpy), plus the
equivalences the LAQ paper implies (LAQ -> QGD, LAG-WK -> GD) and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

import laqcore
from driver_cases import trajectory
from laqcore.algorithms import (
    ALGORITHMS,
    Params,
    algorithm_parameters,
    available_algorithms,
    get_algorithm,
    own_overrides,
)
from laqcore.simulator import simulate

pytestmark = pytest.mark.usefixtures("private_cache")


def f32(x):
    return np.asarray(x, dtype=np.float32).astype(np.float64)


# -- deterministic family -------------------------------------------------------------------


def test_gd_first_iterations(prob):
    th, masks = trajectory(prob, get_algorithm("gd"), 3)
    x = prob.initial_point()
    for k in range(3):
        x = x - 0.02 * sum(f32(w.grad(x)) for w in prob.workers)
        np.testing.assert_allclose(th[k + 1], x, rtol=1e-12, atol=1e-15)
    assert masks.all()


def quantd(g, prev, b):
    """The official code's quantizer: Q = prev - r + 2 delta floor((g - prev + r + delta) / (2 delta))."""
    r = np.max(np.abs(g - prev))
    if r == 0:
        return prev.copy()
    delta = r / (2**b - 1)
    return prev - r + 2 * delta * np.floor((g - prev + r + delta) / (2 * delta))


def laq_reference(
    prob,
    iterations,
    *,
    alpha=0.02,
    b=4,
    D=10,
    ck=0.8,
    C=100,
    always=False,
    err_scale=1.0,
    additive=0.0,
    terms=None,
    err_coef=3.0,
):
    """LAQ as in the official LAQ.py (float64), gradients rounded to float32 like the wire;
    ``err_scale=0.5, additive=0.2, terms=D-1`` is SLAQ.py's trigger; ``err_coef`` is the
    official 3 unless ``Params.err_coef`` says otherwise. Plus laqcore's one
    addition (docs/algorithms.md, "First iteration"): a worker's first upload is forced."""
    M = prob.num_workers
    theta = prob.initial_point()
    mgr = np.zeros((M, prob.dim))
    ehat = np.zeros(M)
    clock = np.zeros(M)
    dsa = np.zeros(prob.dim)
    diffs: list[float] = []
    thetas, masks = [theta.copy()], []
    for _ in range(iterations):
        k = len(diffs)
        recent = diffs[::-1][: (terms or D)]
        me = sum(ck / min(k, D) * d for d in recent) if k else 0.0
        mask = []
        for m, w in enumerate(prob.workers):
            g = f32(w.grad(theta))
            q = quantd(g, mgr[m], b)
            e = float((q - g) @ (q - g))
            dl = q - mgr[m]
            thr = me / (alpha**2 * M**2) + err_scale * err_coef * (e + ehat[m]) + additive
            up = always or k == 0 or dl @ dl >= thr or clock[m] == C
            if up:
                mgr[m], ehat[m], clock[m] = q, e, 0
                dsa += dl
            else:
                clock[m] += 1
            mask.append(bool(up))
        new = theta - alpha * dsa
        diffs.append(float((new - theta) @ (new - theta)))
        theta = new
        thetas.append(theta.copy())
        masks.append(mask)
    return np.array(thetas), np.array(masks)


def test_laq_matches_the_official_code_formulas(prob):
    th, masks = trajectory(prob, get_algorithm("laq"), 40)
    ref_th, ref_masks = laq_reference(prob, 40)
    np.testing.assert_array_equal(masks, ref_masks)
    np.testing.assert_allclose(th, ref_th, rtol=1e-5, atol=1e-7)
    assert masks[0].all()
    assert not masks.all()


@pytest.mark.parametrize("err_coef", [0.0, 1.0, 3.0, 12.0])
def test_laq_error_weight_follows_the_formula(prob, err_coef):
    # Params.err_coef replaces the rule's 3 in 3 (||eps||^2 + ||eps_hat||^2): at 2 bits, with
    # a small iterate term (ck = 0.05) and a large step, the quantization error's weight
    # decides most uploads (44 at 0, 38 at 1, only the forced first 4 at 3 and 12).
    kw = dict(bits=2, ck=0.05, alpha=0.1)
    th, masks = trajectory(prob, get_algorithm("laq", err_coef=err_coef, **kw), 40)
    ref_th, ref_masks = laq_reference(prob, 40, b=2, ck=0.05, alpha=0.1, err_coef=err_coef)
    np.testing.assert_array_equal(masks, ref_masks)
    np.testing.assert_allclose(th, ref_th, rtol=1e-5, atol=1e-7)


def test_laq_error_weight_changes_decisions(prob):
    # That the weight reaches the rule at all: a smaller weight skips less.
    kw = dict(bits=2, ck=0.05, alpha=0.1)
    uploads = {
        c: int(trajectory(prob, get_algorithm("laq", err_coef=c, **kw), 40)[1].sum())
        for c in (0.0, 1.0, 3.0)
    }
    assert uploads[0.0] > uploads[1.0] > uploads[3.0] == prob.num_workers, uploads


def test_laq_forced_clock_uploads(prob):
    # t_bar = 2: no worker can skip 3 iterations in a row.
    _, masks = trajectory(prob, get_algorithm("laq", t_bar=2, ck=50.0), 30)
    _ref_th, ref_masks = laq_reference(prob, 30, ck=50.0, C=2)
    np.testing.assert_array_equal(masks, ref_masks)
    for m in range(masks.shape[1]):
        run = 0
        for up in masks[:, m]:
            run = 0 if up else run + 1
            assert run <= 2


def test_qgd_matches_formula(prob):
    th, masks = trajectory(prob, get_algorithm("qgd"), 10)
    ref_th, _ = laq_reference(prob, 10, always=True)
    np.testing.assert_allclose(th, ref_th, rtol=1e-5, atol=1e-7)
    assert masks.all()


def test_laq_without_lazy_rule_is_qgd(prob):
    lazy_off = get_algorithm("laq", xi=0.0, t_bar=0)
    th_laq, m_laq = trajectory(prob, lazy_off, 25)
    th_qgd, m_qgd = trajectory(prob, get_algorithm("qgd"), 25)
    np.testing.assert_array_equal(th_laq, th_qgd)
    assert m_laq.all()
    assert m_qgd.all()


def test_random_selection_at_rate_one_is_qgd(prob):
    th_r, _ = trajectory(prob, get_algorithm("random-select", upload_rate=1.0), 10)
    th_q, _ = trajectory(prob, get_algorithm("qgd"), 10)
    np.testing.assert_array_equal(th_r, th_q)


def test_random_selection_rate(prob):
    _, masks = trajectory(prob, get_algorithm("random-select", upload_rate=0.25, seed=3), 200)
    assert masks[0].all()
    assert abs(masks[1:].mean() - 0.25) < 0.05


def test_lag_wk_without_lazy_rule_is_gd(prob):
    th_lag, masks = trajectory(prob, get_algorithm("lag-wk", xi=0.0), 40)
    th_gd, _ = trajectory(prob, get_algorithm("gd"), 40)
    np.testing.assert_allclose(th_lag, th_gd, rtol=1e-6, atol=1e-9)
    assert masks.all()


def _longest_skip_run(masks: np.ndarray) -> int:
    longest = 0
    for col in masks.T:
        run = 0
        for up in col:
            run = 0 if up else run + 1
            longest = max(longest, run)
    return longest


def test_lag_wk_forced_upload_after_t_bar(prob):
    # A heavy lazy weight makes workers skip for long stretches; t_bar caps them.
    _, free = trajectory(prob, get_algorithm("lag-wk", ck=40.0, lag_forced=False), 60)
    _, forced = trajectory(prob, get_algorithm("lag-wk", ck=40.0, t_bar=3), 60)
    assert _longest_skip_run(free) > 3
    assert _longest_skip_run(forced) == 3
    assert get_algorithm("lag-wk").params.lag_forced and get_algorithm("lag-wk").params.t_bar == 100


def test_lag_wk_rule_by_hand(prob):
    alpha, M = 0.02, prob.num_workers
    th, masks = trajectory(prob, get_algorithm("lag-wk"), 15)
    ghat = np.zeros((M, prob.dim))
    diffs: list[float] = []
    for k in range(15):
        theta = th[k]
        me = sum(0.8 / min(k, 10) * d for d in diffs[::-1][:10]) if k else 0.0
        for m, w in enumerate(prob.workers):
            delta = w.grad(theta) - ghat[m]
            up = delta @ delta > me / (alpha**2 * M**2)
            assert up == masks[k, m], (k, m)
            if up:
                ghat[m] += f32(delta)
        new = theta - alpha * ghat.sum(axis=0)
        np.testing.assert_allclose(th[k + 1], new, rtol=1e-9, atol=1e-12)
        diffs.append(float((new - theta) @ (new - theta)))


def test_lag_ps_rule_by_hand(prob):
    alpha, M = 0.02, prob.num_workers
    L = prob.smoothness()
    alg = get_algorithm("lag-ps", ck=20.0)
    th, masks = trajectory(prob, alg, 12)
    assert masks[0].all()
    theta_hat = [th[0]] * M
    diffs = [float((th[1] - th[0]) @ (th[1] - th[0]))]
    for k in range(1, 12):
        me = sum(20.0 / min(k, 10) * d for d in diffs[::-1][:10])
        for m in range(M):
            d = theta_hat[m] - th[k]
            asked = L[m] ** 2 * (d @ d) > me / (alpha**2 * M**2)
            assert asked == masks[k, m], (k, m)
            if asked:
                theta_hat[m] = th[k]
        diffs.append(float((th[k + 1] - th[k]) @ (th[k + 1] - th[k])))
    assert not masks.all()
    with pytest.raises(ValueError, match="smoothness"):
        alg.make_server(prob.initial_point(), M, None)


# -- stochastic family ----------------------------------------------------------------------


def minibatch_grads(prob, x, seed, batch):
    """Worker m's first minibatch: drawn with default_rng([seed, m])."""
    out = []
    for m, w in enumerate(prob.workers):
        idx = w.sample(np.random.default_rng([seed, m]), batch)
        out.append(w.minibatch_grad(x, idx))
    return out


def test_sgd_first_iteration(prob):
    th, _ = trajectory(prob, get_algorithm("sgd", batch=16, seed=5), 1)
    x = prob.initial_point()
    expect = x - 0.008 * sum(f32(g) for g in minibatch_grads(prob, x, 5, 16))
    np.testing.assert_allclose(th[1], expect, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("name", "compressor", "kwargs"),
    [
        ("qsgd", "qsgd", {"levels": 10, "bucket_size": 512}),
        ("terngrad", "terngrad", {}),
        ("ssgd", "randk", {"ratio": 0.1, "rescale": True}),
    ],
)
def test_compressed_sgd_first_iteration(prob, name, compressor, kwargs):
    th, _ = trajectory(prob, get_algorithm(name, batch=16, seed=2), 1)
    x = prob.initial_point()
    total = np.zeros(prob.dim)
    for m, g in enumerate(minibatch_grads(prob, x, 2, 16)):
        c = laqcore.get_compressor(compressor, seed=2, stream=m, **kwargs)
        total += c.decompress(c.compress(g, step=0))
    np.testing.assert_allclose(th[1], x - 0.008 * total, rtol=1e-12, atol=1e-15)


def test_ssgd_is_unbiased_on_average(prob):
    # Mean of many independent rand-k uploads of one vector -> the vector itself.
    g = minibatch_grads(prob, prob.initial_point(), 0, 16)[0]
    c = laqcore.get_compressor("randk", ratio=0.1, rescale=True, seed=1)
    est = np.mean([c.decompress(c.compress(g, step=s)) for s in range(2000)], axis=0)
    assert np.linalg.norm(est - g) < 0.1 * np.linalg.norm(g)


def test_sparse_qsgd_first_iteration(prob):
    th, _ = trajectory(prob, get_algorithm("sparse-qsgd", batch=16), 1)
    x = prob.initial_point()
    total = np.zeros(prob.dim)
    for m, g in enumerate(minibatch_grads(prob, x, 0, 16)):
        c = laqcore.get_compressor(
            "sparse_quant", ratio=0.1, bits=4, selection="randk", seed=0, stream=m
        )
        p = c.compress(g, step=0)
        total += c.decompress(p) * prob.dim / len(p.indices)  # n/k: unbiased
    np.testing.assert_allclose(th[1], x - 0.008 * total, rtol=1e-6, atol=1e-12)


def test_ef_sign_two_iterations_by_hand(prob):
    alpha, batch = 0.008, 16
    th, _ = trajectory(prob, get_algorithm("ef-sign", batch=batch), 2)
    M = prob.num_workers
    rngs = [np.random.default_rng([0, m]) for m in range(M)]
    x, e = prob.initial_point(), np.zeros((M, prob.dim))
    for k in range(2):
        total = np.zeros(prob.dim)
        for m, w in enumerate(prob.workers):
            g = w.minibatch_grad(x, w.sample(rngs[m], batch))
            p = f32(alpha * g) + e[m]
            # Scaled sign; one bit cannot say 0, so zeros go out as +.
            delta = np.abs(p).sum() / p.size * np.where(p < 0, -1.0, 1.0)
            e[m] = p - delta
            total += delta
        x = x - total
        np.testing.assert_allclose(th[k + 1], x, rtol=1e-5, atol=1e-8)


def test_topk_with_memory_first_iteration(prob):
    th, _ = trajectory(prob, get_algorithm("topk-ef", batch=16, ratio=0.05), 1)
    x = prob.initial_point()
    total = np.zeros(prob.dim)
    for g in minibatch_grads(prob, x, 0, 16):
        p = f32(0.008 * g)
        kk = laqcore.get_compressor("topk", ratio=0.05).compress(p).k
        keep = np.argsort(-np.abs(p), kind="stable")[:kk]
        sent = np.zeros_like(p)
        sent[keep] = p[keep]
        total += sent
    np.testing.assert_allclose(th[1], x - total, rtol=1e-6, atol=1e-9)


def test_slaq_matches_the_official_slaq_rule(prob):
    # Full batch, so the gradients are deterministic and the official SLAQ.py trigger
    # (0.5 * 3 (e + ehat) + 0.2, d = 1..D-1) can be replayed by hand. A large step and a
    # short clock make this small problem show rule-driven uploads, forced ones and skips.
    alg = get_algorithm("slaq", batch=10_000, ck=0.05, alpha=0.1, t_bar=7)
    assert get_algorithm("slaq").params.alpha == 0.008
    assert get_algorithm("slaq").params.bits == 3
    th, masks = trajectory(prob, alg, 40)
    ref_th, ref_masks = laq_reference(
        prob, 40, alpha=0.1, b=3, ck=0.05, C=7, err_scale=0.5, additive=0.2, terms=9
    )
    np.testing.assert_array_equal(masks, ref_masks)
    np.testing.assert_allclose(th, ref_th, rtol=1e-5, atol=1e-7)
    assert masks[0].all()
    assert not masks.all()
    assert set(masks.sum(axis=1).tolist()) - {0, 4}  # some iterations upload only some workers


# -- local-update and averaging methods -------------------------------------------------------


def test_dynamic_averaging_with_zero_threshold_is_gd(prob):
    # Every local step violates a zero threshold, so every iteration averages all models:
    # mean_m (x - alpha M g_m) = x - alpha sum_m g_m, i.e. GD, but every other iteration
    # (the violation round, then the synchronisation round that collects the rest).
    th_dyn, masks = trajectory(prob, get_algorithm("dynamic-avg", threshold=0.0), 2)
    th_gd, _ = trajectory(prob, get_algorithm("gd"), 1)
    assert masks[0].all()  # every worker violated and uploaded at once
    np.testing.assert_allclose(th_dyn[1], th_gd[1], rtol=1e-6, atol=1e-9)


def test_dynamic_averaging_sync_round(prob):
    alg = get_algorithm("dynamic-avg", threshold=0.05)
    _th, masks = trajectory(prob, alg, 40)
    assert masks.any()
    assert not masks.all()
    # A synchronisation completes exactly when every worker has uploaded since the last one.
    never = get_algorithm("dynamic-avg", threshold=1e9)
    th2, masks2 = trajectory(prob, never, 10)
    assert not masks2.any()
    assert np.array_equal(th2[-1], th2[0])


def test_one_shot_averaging_by_hand(prob):
    steps = 5
    th, masks = trajectory(prob, get_algorithm("one-shot", local_steps=steps), steps)
    assert not masks[:-1].any()
    assert masks[-1].all()
    M = prob.num_workers
    locals_ = []
    for w in prob.workers:
        x = prob.initial_point()
        for _ in range(steps):
            x = x - 0.02 * M * w.grad(x)
        locals_.append(f32(x))
    np.testing.assert_allclose(th[-1], np.mean(locals_, axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(th[-2], th[0])  # nothing moves before the upload


def test_pqasgd_periodic_uploads(prob):
    period = 3
    th, masks = trajectory(prob, get_algorithm("pqasgd", period=period, batch=16), 9)
    assert masks[period - 1 :: period].all()
    others = np.delete(masks, np.arange(period - 1, 9, period), axis=0)
    assert not others.any()
    np.testing.assert_array_equal(th[1], th[0])  # server model only moves at averaging


def test_pqasgd_first_average_by_hand(prob):
    th, _ = trajectory(prob, get_algorithm("pqasgd", period=1, batch=16), 1)
    x0, M = prob.initial_point(), prob.num_workers
    total = np.zeros(prob.dim)
    for m, g in enumerate(minibatch_grads(prob, x0, 0, 16)):
        c = laqcore.get_compressor("qsgd", levels=10, bucket_size=512, seed=0, stream=m)
        total += c.decompress(c.compress(-0.008 * M * g, step=0))
    np.testing.assert_allclose(th[1], x0 + total / M, rtol=1e-6, atol=1e-9)


def test_asylpg_first_step_uses_quantized_full_gradient(prob):
    # At k = 0 the snapshot is x0 and the read model is x0, so a_m = grad f_m(x0) exactly
    # (the two minibatch terms cancel); the upload is its unbiased 8-bit max-norm quantization.
    th, masks = trajectory(prob, get_algorithm("asylpg", batch=16), 1)
    x0 = prob.initial_point()
    g = [w.grad(x0) for w in prob.workers]
    step = th[0] - th[1]
    bound = 0.02 * sum(np.abs(gm).max() / 127 for gm in g)
    assert np.all(np.abs(step - 0.02 * np.sum(g, axis=0)) <= bound + 1e-12)
    assert masks.all()


@pytest.mark.parametrize("name", ["asylpg", "sparse-asylpg", "acc-asylpg"])
def test_asylpg_family_decreases_loss(prob, name):
    alg = get_algorithm(name, batch=32, max_delay=2, epoch=10)
    res = simulate(prob, alg, max_iterations=60, eps=0.0, eval_every=60)
    assert res.history["loss"][-1] < 0.7 * res.history["loss"][0]
    assert res.downlink_bits > 0
    assert res.uploads == 60 * prob.num_workers


def test_asylpg_delays_are_bounded(prob):
    alg = get_algorithm("asylpg", max_delay=3, epoch=1000)
    server = alg.make_server(prob.initial_point(), prob.num_workers)
    seen = []
    for _ in range(8):
        msgs = [server.message(m) for m in range(prob.num_workers)]
        seen.append(len(server.recent))
        for msg in msgs:  # every worker reads one of the last max_delay + 1 models
            assert any(np.array_equal(msg.theta, p) for _, p in server.recent)
        server.apply({})
    assert max(seen) == 4  # max_delay + 1 candidate models


# -- every algorithm ----------------------------------------------------------------------


@pytest.mark.parametrize("name", available_algorithms())
def test_every_algorithm_runs_and_is_reproducible(prob, name):
    # the minibatch for the stochastic ones, the local steps for one-shot
    kw = own_overrides(name, {"batch": 32, "seed": 7, "local_steps": 10})
    r1 = simulate(prob, get_algorithm(name, **kw), max_iterations=15, eval_every=5)
    r2 = simulate(prob, get_algorithm(name, **kw), max_iterations=15, eval_every=5)
    assert r1.history == r2.history
    assert r1.bits == r2.bits
    assert r1.history["loss"][-1] < r1.history["loss"][0]
    assert not r1.diverged
    if get_algorithm(name).stochastic:
        r3 = simulate(prob, get_algorithm(name, **{**kw, "seed": 8}), max_iterations=15)
        assert r3.history["loss"] != r1.history["loss"]


def test_thread_count_does_not_change_results(prob):
    runs = []
    for t in (1, 2, 7):
        with laqcore.num_threads(t):
            runs.append(simulate(prob, get_algorithm("laq"), max_iterations=20).history)
    assert runs[0] == runs[1] == runs[2]


def test_get_algorithm_errors():
    with pytest.raises(ValueError, match="unknown algorithm"):
        get_algorithm("adam")
    with pytest.raises(TypeError, match="unknown algorithm parameter"):
        get_algorithm("laq", learning_rate=0.1)
    with pytest.raises(TypeError):
        get_algorithm(3)
    assert get_algorithm("LAG_WK").name == "lag-wk"
    assert get_algorithm("lag").name == "lag-wk"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("alpha", 0.0),
        ("alpha", float("nan")),
        ("bits", 9),
        ("D", 0),
        ("ratio", 1.5),
        ("upload_rate", 0.0),
        ("t_bar", -1),
        ("model_bits", 1),
        ("momentum", 1.0),
        ("threshold", -1.0),
        ("threshold", float("nan")),  # passed "< 0": dynamic-avg silently never synced
        ("threshold", float("inf")),
        ("ck", -0.1),
        # past 64 bits: an OverflowError traceback from deque(maxlen=...) once running
        ("max_delay", 10**20),
        ("D", 2**62),
    ],
)
def test_params_validation(field, value):
    with pytest.raises(ValueError, match=field):
        Params(**{field: value}).validate()


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        # Each was accepted: pqasgd ran with period=nan and never averaged, one-shot ran
        # local_steps=2.5, lag-wk read lag_forced="no" as True, asylpg's epoch=nan failed
        # mid-run with "worker stepped before receiving a snapshot", batch=nan with numpy's
        # "negative dimensions are not allowed", alpha="0.1" with a numpy ufunc message.
        ("period", float("nan"), TypeError),
        ("local_steps", 2.5, TypeError),
        ("epoch", float("nan"), TypeError),
        ("batch", float("nan"), TypeError),
        ("max_delay", 1.5, TypeError),
        ("t_bar", float("nan"), TypeError),
        ("model_bits", 4.5, TypeError),
        ("bits", 4.0, TypeError),
        ("levels", float("inf"), TypeError),
        ("D", True, TypeError),
        ("lag_forced", "no", TypeError),
        ("lag_forced", 0, TypeError),
        ("alpha", "0.1", TypeError),
        ("threshold", True, TypeError),
        ("upload_rate", [0.5], TypeError),
        ("ck", float("nan"), ValueError),
        ("xi", float("inf"), ValueError),
    ],
)
def test_params_of_the_wrong_type_are_refused_before_the_run(field, value, error):
    with pytest.raises(error, match=field):
        Params(**{field: value}).validate()
    name = next(n for n in ALGORITHMS if field in algorithm_parameters(n))
    with pytest.raises(error, match=field):
        get_algorithm(name, **{field: value})


def test_slaq_with_d_1_is_refused_when_built(prob):
    """get_algorithm("slaq", D=1) was accepted; the run then failed building the first
    worker, after the simulator had solved for F*."""
    with pytest.raises(ValueError, match="slaq needs D >= 2"):
        get_algorithm("slaq", D=1)
    with pytest.raises(ValueError, match="slaq needs D >= 2"):
        get_algorithm("slaq", Params(D=1))
    assert get_algorithm("slaq", D=2).params.D == 2


def test_params_of_other_numeric_types_are_accepted():
    p = Params(alpha=1, D=np.int64(3), ck=0, xi=np.float32(0.1), threshold=0).validate()
    assert p.D == 3 and p.alpha == 1


def test_acc_asylpg_momentum_formula(prob):
    # Without momentum Acc-AsyLPG is AsyLPG; with it, the server reads y = x + beta (x - x_prev).
    th_plain, _ = trajectory(prob, get_algorithm("asylpg", batch=16, max_delay=2), 6)
    th_zero, _ = trajectory(
        prob, get_algorithm("acc-asylpg", batch=16, max_delay=2, momentum=0.0), 6
    )
    np.testing.assert_array_equal(th_plain, th_zero)
    alg = get_algorithm("acc-asylpg", batch=16, momentum=0.5)
    server = alg.make_server(prob.initial_point(), prob.num_workers)
    workers = [
        alg.make_worker(m, prob.workers[m], prob.num_workers) for m in range(prob.num_workers)
    ]
    prev = server.theta.copy()
    for _ in range(4):
        y_before = server.y.copy()
        ups = {m: w.step(server.message(m)) for m, w in enumerate(workers)}
        total = sum(
            alg.grad_codec(0).decompress(p).astype(np.float64) for _, p in sorted(ups.items())
        )
        # x_{t+1} = y_t - alpha * sum_m Q(a_m)
        np.testing.assert_allclose(_apply(server, ups), y_before - 0.02 * total, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            server.y, server.theta + 0.5 * (server.theta - prev), rtol=0, atol=1e-12
        )
        prev = server.theta.copy()


def _apply(server, ups):
    server.apply(ups)
    return server.theta


def test_sparse_asylpg_first_step_by_hand(prob):
    th, _ = trajectory(prob, get_algorithm("sparse-asylpg", batch=16), 1)
    x0 = prob.initial_point()
    total = np.zeros(prob.dim)
    for m, w in enumerate(prob.workers):
        # k = 0: read model = snapshot = x0, so a_m = grad f_m(x0) exactly.
        c = laqcore.get_compressor(
            "sparse_quant", ratio=0.1, bits=8, selection="randk", seed=0, stream=m
        )
        p = c.compress(w.grad(x0), step=0)
        total += c.decompress(p).astype(np.float64) * (prob.dim / len(p.indices))
    np.testing.assert_allclose(th[1], x0 - 0.02 * total, rtol=1e-6, atol=1e-12)


# -- which parameters each algorithm reads ---------------------------------------------------


_READ: set[str] = set()


class _RecordingParams(Params):
    """Params that note in ``_READ`` every field read from the algorithm code (not from
    validation, ``replace`` or the simulator's own bookkeeping, which read every field)."""

    def __getattribute__(self, name):
        if name in Params.__dataclass_fields__:
            import sys

            frame = sys._getframe(1)
            code = frame.f_code
            in_algorithms = "/laqcore/algorithms/" in code.co_filename.replace("\\", "/")
            if in_algorithms and code.co_name not in ("validate", "replace", "__repr__"):
                _READ.add(name)
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("name", available_algorithms())
def test_uses_is_what_the_algorithm_reads(prob, name):
    """``USES`` (which overrides an algorithm accepts) is exactly the set of fields its
    code reads over a short run, in the configurations that read optional fields."""
    import dataclasses

    cls = laqcore.algorithms.ALGORITHMS[name]
    seen: set[str] = set()
    for extra in ({}, {"block_size": 64}, {"adaptive_bits": 2.0}, {"xi": 0.1}):
        fields = {**dataclasses.asdict(cls.default_params()), **extra}
        alg = cls(_RecordingParams(**fields))
        _READ.clear()
        simulate(prob, alg, max_iterations=30, record_history=False)
        seen |= _READ
    assert seen == cls.USES
    assert set(cls.DEFAULTS) <= cls.USES


def test_an_override_the_algorithm_does_not_read_is_refused():
    from laqcore.algorithms import LAGWK, algorithm_parameters

    with pytest.raises(TypeError, match=r"qsgd does not use momentum \(its parameters: alpha, "):
        get_algorithm("qsgd", momentum=0.9)
    with pytest.raises(TypeError, match="lag-wk does not use bits"):
        LAGWK(bits=3)
    assert algorithm_parameters("QSGD") == {"alpha", "batch", "bucket_size", "levels", "seed"}
    assert own_overrides("laq", {"levels": 4, "bits": 3, "alpha": 0.1}) == {"bits": 3, "alpha": 0.1}
    # every algorithm takes a seed and a step, even the deterministic ones
    assert get_algorithm("gd", seed=3, alpha=0.1).params.alpha == 0.1
    # a whole Params is taken as given: its fields are not overrides
    assert get_algorithm("qsgd", Params(momentum=0.5)).params.momentum == 0.5


def test_cli_flags_go_to_the_algorithms_that_read_them():
    import argparse

    from laqcore.experiments.options import PARAM_FLAGS, algorithm_from_args

    args = argparse.Namespace(**dict.fromkeys(PARAM_FLAGS), seed=0)
    args.levels, args.bits = 4, 3
    assert algorithm_from_args("qsgd", args).params.levels == 4
    laq = algorithm_from_args("laq", args)
    assert laq.params.bits == 3 and laq.params.levels == Params().levels


@pytest.mark.parametrize("name", available_algorithms())
def test_entropy_codable_is_what_the_uploads_are(prob, name, monkeypatch):
    """``entropy_codable`` (what ``entropy_coding`` / ``--entropy-coding`` is refused
    without) says whether the algorithm's uploads are the payloads the entropy coder codes:
    all of them or none (seen with the refusal lifted)."""
    import laqcore.algorithms
    import laqcore.simulator

    codable: list[bool] = []

    def record(payload):
        codable.append(laqcore.entropy.is_codable(payload))
        return codable[-1]

    monkeypatch.setattr(laqcore.simulator, "is_codable", record)
    monkeypatch.setattr(laqcore.algorithms, "check_entropy_codable", lambda *args: None)
    alg = get_algorithm(name, **own_overrides(name, {"local_steps": 5, "batch": 16}))
    simulate(prob, alg, max_iterations=12, record_history=False, entropy_coding=True)
    assert codable and set(codable) == {type(alg).entropy_codable}


def test_a_default_minibatch_covering_every_sample_is_warned_about(prob):
    """SMALL_DIGITS gives every worker fewer samples than the default batch (500): the run
    would silently be full-gradient SGD. A batch that was chosen (the scaling study's
    ``10**9`` asks for full gradients) or that draws samples is not warned about."""
    import warnings

    assert max(w.n for w in prob.workers) < Params().batch
    with pytest.warns(UserWarning, match=r"sgd: the default minibatch \(500\) is at least"):
        simulate(prob, get_algorithm("sgd"), max_iterations=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for alg in (get_algorithm("sgd", batch=10**9), get_algorithm("sgd", batch=8)):
            simulate(prob, alg, max_iterations=2)
        simulate(prob, get_algorithm("laq"), max_iterations=2)  # full gradients by design


def test_a_stochastic_subclass_reads_the_batch():
    """``Worker.gradient`` reads ``batch`` for every stochastic algorithm, so a user's
    stochastic subclass accepts it without declaring it."""
    from laqcore.algorithms.base import CodecSpec, CompressedGradient

    class MySGD(CompressedGradient):
        name = "my-sgd-test"
        codec = CodecSpec("terngrad", seeded=True)
        stochastic = True

    assert MySGD(batch=8).params.batch == 8
    with pytest.raises(TypeError, match="my-sgd-test does not use levels"):
        MySGD(levels=3)
