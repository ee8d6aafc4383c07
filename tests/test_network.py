"""The link/time model on hand-computed cases, the downlink modes and their bit counts."""

from __future__ import annotations

import numpy as np
import pytest

from laqcore.algorithms import get_algorithm
from laqcore.downlink import parse_downlink, requantize
from laqcore.network import Link, TrafficTrace, make_link, round_times
from laqcore.network.trace import stratified_median
from laqcore.simulator import simulate

pytestmark = pytest.mark.usefixtures("private_cache")


def _trace(M: int, sizes: list[dict[int, int]], down: list[tuple[int, int]]) -> TrafficTrace:
    """A trace with the given per-iteration upload sizes {worker: bytes} and downlink."""
    t = TrafficTrace(M)
    for ups, (bcast, delivered) in zip(sizes, down):
        t.up_count.append(len(ups))
        t.up_bytes.append(sum(ups.values()))
        t.up_max.append(max(ups.values(), default=0))
        t.down_broadcast.append(bcast)
        t.down_delivered.append(delivered)
        flags = np.zeros(M, dtype=bool)
        flags[list(ups)] = True
        t.masks.append(np.packbits(flags).tobytes())
    return t


def test_presets_are_the_issue_values():
    edge = make_link("edge")
    assert (edge.uplink_bps, edge.downlink_bps, edge.latency_s) == (5e6, 50e6, 0.02)
    dc = make_link("datacenter")
    assert (dc.uplink_bps, dc.downlink_bps, dc.latency_s) == (10e9, 10e9, 0.05e-3)
    c1 = make_link("cluster-1g")
    assert (c1.uplink_bps, c1.downlink_bps, c1.latency_s) == (1e9, 1e9, 0.2e-3)
    custom = make_link(None, uplink_mbps=2, downlink_mbps=8, latency_ms=5, topology="allreduce")
    assert (custom.uplink_bps, custom.downlink_bps, custom.latency_s) == (2e6, 8e6, 0.005)


def test_one_parameter_server_iteration_by_hand():
    # 4 workers, 3 upload 1000 bytes each; the downlink is their frames: one broadcast
    # carries 3000 bytes, unicast delivers 4 * 3000 - 3000 = 9000 bytes.
    t = _trace(4, [{0: 1000, 1: 1000, 3: 1000}], [(3000, 9000)])
    link = Link(1e6, 1e7, 0.01, topology="ps")
    # up: 10 ms + 24000 bit / 1 Mbit/s = 34 ms; down: 10 ms + 72000 bit / 10 Mbit/s = 17.2 ms
    assert round_times(t, link, compute_s=0.005)[0] == pytest.approx(0.005 + 0.034 + 0.0172)
    bcast = link.with_(broadcast=True)
    assert round_times(t, bcast, compute_s=0.0)[0] == pytest.approx(0.034 + 0.0124)
    # the peer-to-peer topologies have no server downlink: a broadcast medium changes nothing
    with pytest.raises(ValueError, match="broadcast applies to the ps and two-phase"):
        link.with_(topology="allreduce", broadcast=True)


def test_ps_round_without_upload_costs_two_latencies():
    t = _trace(3, [{}], [(0, 0)])
    assert round_times(t, Link(1e6, 1e6, 0.02), compute_s=0.0)[0] == pytest.approx(0.04)


def test_one_ring_allreduce_by_hand():
    # N = 4 nodes reduce a 1000-byte vector: 2 (N-1) = 6 steps of L + (1000/4) bytes / B.
    t = _trace(4, [{0: 1000, 1: 1000, 2: 1000, 3: 1000}], [(4000, 12000)])
    link = Link(1e6, 4e6, 0.001, topology="allreduce")  # B = min = 1 Mbit/s
    assert round_times(t, link, compute_s=0.0)[0] == pytest.approx(6 * (0.001 + 0.002))
    # two workers per node: compute is two worker steps, the vector is still 1000 bytes
    t.worker_seconds, t.worker_steps = 0.004, 4
    assert round_times(t, link, nodes=2)[0] == pytest.approx(0.002 + 2 * (0.001 + 0.004))


def test_allgather_is_the_engine_exchange():
    link = Link(1e6, 1e6, 0.001, topology="allgather")
    # 2 nodes, both upload 500 bytes: control (L + 64 bit / B) + one padded all-gather of
    # the 512-byte frames (500 + 4 + 8).
    t = _trace(2, [{0: 500, 1: 500}], [(1000, 1000)])
    expect = (0.001 + 64e-6) + (0.001 + 8 * 512 / 1e6)
    assert round_times(t, link, compute_s=0.0)[0] == pytest.approx(expect)
    # 3 nodes, only node 1 uploads: control + one binomial-tree broadcast (gloo's): 2
    # rounds, node 1 sends to one peer, then both holders send on (one of them to nobody)
    t = _trace(3, [{1: 500}], [(500, 1000)])
    expect = 2 * (0.001 + 64e-6) + 2 * (0.001 + 8 * 512 / 1e6)
    assert round_times(t, link, compute_s=0.0)[0] == pytest.approx(expect)
    # 4 nodes, nodes 0 and 3 upload: two broadcasts of 2 rounds each (log2 4 = 2)
    t = _trace(4, [{0: 500, 3: 500}], [(1000, 3000)])
    expect = 3 * (0.001 + 64e-6) + 2 * 2 * (0.001 + 8 * 512 / 1e6)
    assert round_times(t, link, compute_s=0.0)[0] == pytest.approx(expect)


def test_link_rejects_bad_values():
    with pytest.raises(ValueError, match="uplink_bps"):
        Link(0.0, 1e6, 0.0)
    with pytest.raises(ValueError, match="topology"):
        Link(1e6, 1e6, 0.0, topology="mesh")
    with pytest.raises(ValueError, match="--network"):
        make_link("lan")
    with pytest.raises(ValueError, match="all of"):
        make_link(None, uplink_mbps=1.0)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_downlink_quantizer_error_bound(bits, rng):
    for _ in range(5):
        target = rng.normal(size=300)
        held = rng.normal(size=300).astype(np.float32)
        payload, new = requantize(target, held, bits)
        radius = np.abs(target.astype(np.float32) - held).max()
        assert payload.radius == pytest.approx(radius, rel=1e-6)
        err = np.abs(new.astype(np.float64) - target).max()
        assert err <= radius / (2**bits - 1) * (1 + 1e-5) + 1e-6
        # the next round starts from the new copy: its innovation is only the residual
        p2, newer = requantize(target, new, bits)
        assert p2.radius <= radius / (2**bits - 1) * (1 + 1e-5) + 1e-6
        assert np.abs(newer - target).max() <= err + 1e-6


def test_parse_downlink():
    assert parse_downlink("delta").name == "delta"
    assert parse_downlink("model").encoding == "f64"
    assert parse_downlink("delta:laq:4").bits == 4
    assert parse_downlink("model:f32").name == "model:f32"
    for bad in ("up", "delta:laq:9", "delta:f64", "model:frames", "delta:laq"):
        with pytest.raises(ValueError, match="downlink mode|bits"):
            parse_downlink(bad)


@pytest.mark.parametrize("name", ["gd", "lag-wk", "laq"])
def test_totals_are_the_sum_of_the_parts(prob, name):
    res = simulate(prob, get_algorithm(name), max_iterations=40, eps=0.0, eval_every=40)
    assert res.uplink_bits == res.bits
    assert res.total_bits == res.uplink_bits + res.downlink_bits
    assert res.trace is not None
    assert res.trace.totals() == {
        "uplink_bits": res.bits,
        "downlink_bits": res.downlink_bits,
        "total_bits": res.total_bits,
    }
    # default delta: every worker receives the other uploaders' frames, nothing else
    assert res.downlink_bits == (prob.num_workers - 1) * res.bits
    idle = np.asarray(res.trace.up_count) == 0
    assert np.all(np.asarray(res.trace.down_delivered)[idle] == 0)
    assert res.summary()["total_bits"] == res.total_bits and "trace" not in res.summary()


def test_lazy_run_has_rounds_where_nothing_moves(prob):
    res = simulate(prob, get_algorithm("laq"), max_iterations=60, eps=0.0, eval_every=60)
    assert res.trace is not None
    idle = np.asarray(res.trace.up_count) == 0
    assert idle.any()
    model = simulate(
        prob, get_algorithm("laq"), max_iterations=60, eps=0.0, eval_every=60, downlink="model"
    )
    assert model.downlink_bits == 8 * 60 * prob.num_workers * (8 * prob.dim + 16)
    assert model.downlink_bits > 10 * res.downlink_bits


def test_time_to_tolerance_is_the_modelled_time(prob):
    link = make_link("edge")
    res = simulate(prob, get_algorithm("gd"), max_iterations=3000, eps=1e-3, link=link)
    assert res.reached_tolerance and res.trace is not None
    times = round_times(res.trace, link)
    assert res.time_to_tolerance == pytest.approx(times[: res.iterations].sum())
    assert res.history["time"][-1] == pytest.approx(res.time_to_tolerance)
    short = simulate(prob, get_algorithm("gd"), max_iterations=5, eps=1e-3, link=link)
    assert short.time_to_tolerance is None and short.time_s is not None


@pytest.mark.parametrize("name", ["gd", "lag-wk", "laq"])
def test_quantized_downlink_still_converges(prob, name):
    kw = {"max_iterations": 4000, "eps": 1e-4, "eval_every": 4000}
    exact = simulate(prob, get_algorithm(name), **kw)
    quant = simulate(prob, get_algorithm(name), downlink="delta:laq:8", **kw)
    assert exact.reached_tolerance and quant.reached_tolerance
    assert quant.iterations <= 1.5 * exact.iterations
    # an 8-bit downlink moves one LAQ frame per round with an upload: less than the other
    # uploaders' float32 frames (LAQ's own 4-bit frames are smaller than it)
    if name != "laq":
        assert quant.downlink_bits < exact.downlink_bits / 2


def test_quantized_downlink_needs_a_step_server(prob):
    with pytest.raises(ValueError, match="keeps other model copies"):
        simulate(prob, get_algorithm("asylpg", batch=16), max_iterations=2, downlink="delta:laq:4")


def test_chunked_is_the_hooks_owner_chunk_exchange():
    link = Link(1e6, 2e6, 0.001, topology="chunked")  # B = 1 Mbit/s
    # 2 nodes (one worker each) both upload 1000 bytes; the owners publish 400 bytes.
    # control L + 64/B; all-to-all: each sends half its frame (4000 bit / U = 4 ms) and
    # receives half of the other's (4000 bit / D = 2 ms): L + 4 ms; all-gather of the
    # 200-byte owner chunks: L + 1600 bit / B.
    t = _trace(2, [{0: 1000, 1: 1000}], [(400, 400)])
    expect = (0.001 + 64e-6) + (0.001 + 0.004) + (0.001 + 0.0016)
    assert round_times(t, link, compute_s=0.0)[0] == pytest.approx(expect)
    # 4 nodes, only node 2 uploads: it sends 3/4 of its frame, the others receive 1/4
    # (bounded by the sender); published change 800 bytes in 4 chunks.
    t = _trace(4, [{2: 1000}], [(800, 2400)])
    expect = 3 * (0.001 + 64e-6) + (0.001 + 0.75 * 8000 / 1e6) + 3 * (0.001 + 1600 / 1e6)
    assert round_times(t, link, compute_s=0.0)[0] == pytest.approx(expect)
    # a round where nobody uploads costs the control all-gather only
    t = _trace(4, [{}], [(0, 0)])
    assert round_times(t, link, compute_s=0.0)[0] == pytest.approx(3 * (0.001 + 64e-6))
    # Time per node does not grow with N beyond the (N - 1)/N share any bandwidth-optimal
    # collective receives: 2 vs 8 nodes, everyone uploads the same frame
    two = _trace(2, [{0: 1000, 1: 1000}], [(400, 400)])
    eight = _trace(8, [dict.fromkeys(range(8), 1000)], [(400, 2800)])
    fast = link.with_(latency_s=0.0)
    ratio = round_times(eight, fast, compute_s=0.0)[0] / round_times(two, fast, compute_s=0.0)[0]
    share = (7 / 8) / (1 / 2)
    assert ratio / share < 1.15  # the frames' all-gather would give 7x / share = 4x


def test_round_compute_sample_by_hand():
    # 5 steps: two uploaders (1 s, 3 s) and three idle workers (2, 10, 2 s), 0.5 s of
    # messages: the round's sample is (0.5 + 2 * median(1, 3) + 3 * median(2, 10, 2)) / 5.
    t = TrafficTrace(5)
    t.record_compute(
        [(1.0, True), (2.0, False), (3.0, True), (10.0, False), (2.0, False)], 0.5, 7.0
    )
    assert t.worker_round_s == [pytest.approx((0.5 + 2 * 2.0 + 3 * 2.0) / 5)]
    assert (t.worker_seconds, t.worker_steps) == (pytest.approx(18.5), 5)
    assert (t.server_seconds, t.server_steps, t.server_round_s) == (7.0, 1, [7.0])


def test_stratified_median_by_hand():
    # strata 0: medians of (1, 1, 9) = 1 over 3 rounds; stratum 2: 3 over 1 round
    assert stratified_median([1.0, 1.0, 9.0, 3.0], [0, 0, 0, 2]) == pytest.approx(1.5)
    assert stratified_median([], []) == 0.0
    with pytest.raises(ValueError, match="one length"):
        stratified_median([1.0, 2.0], [0])


def test_charged_compute_ignores_preempted_rounds(tmp_path):
    # 6 rounds with 2 uploaders each, one worker step 1 ms; in round 3 the whole round was
    # preempted (every step took 50 ms): the charged step is 1 ms, the mean is not.
    t = _trace(2, [{0: 100, 1: 100}] * 6, [(200, 200)] * 6)
    for k in range(6):
        step = 0.05 if k == 3 else 0.001
        t.record_compute([(step, True), (step, True)], 0.0, 0.002 if k != 1 else 0.2)
    assert t.worker_step_s == pytest.approx(0.001)
    assert t.server_step_s == pytest.approx(0.002)
    assert t.worker_mean_s == pytest.approx((5 * 0.001 + 0.05) / 6)
    link = Link(1e6, 1e6, 0.0)
    # one round: compute 1 ms + 2 ms, up 200 bytes / 1 Mbit/s, down 200 bytes / 1 Mbit/s
    assert round_times(t, link)[0] == pytest.approx(0.003 + 2 * 8 * 200 / 1e6)
    # the per-round samples survive a save / load; a trace without them charges the means
    t.save(tmp_path / "t.npz")
    back = TrafficTrace.load(tmp_path / "t.npz")
    assert back.worker_round_s == t.worker_round_s and back.server_round_s == t.server_round_s
    assert back.worker_step_s == pytest.approx(0.001)
    back.worker_round_s, back.server_round_s = [], []
    assert back.worker_step_s == pytest.approx(t.worker_mean_s)


def test_lazy_server_rounds_are_weighted_by_upload_count():
    # a lazy server's update costs more in rounds with uploads: 3 rounds without (1 ms),
    # 1 round with one upload (5 ms), so the charge is the weighted (3 * 1 + 5) / 4 ms
    t = _trace(2, [{}, {}, {0: 10}, {}], [(0, 0), (0, 0), (10, 10), (0, 0)])
    for k in range(4):
        t.record_compute([(0.001, k == 2), (0.001, False)], 0.0, 0.005 if k == 2 else 0.001)
    assert t.server_step_s == pytest.approx((3 * 0.001 + 0.005) / 4)
    assert t.worker_step_s == pytest.approx(0.001)


class _FakeClock:
    """A stand-in for the simulator's ``time`` module: time moves only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_simulator_charges_the_typical_worker_step(prob, monkeypatch):
    # Every worker step takes 1 ms of (fake) time, except worker 0's in every 8th round,
    # which a busy machine stretches to 1 s: the charged step is 1 ms, the mean is not.
    import laqcore.simulator as sim

    clock = _FakeClock()
    monkeypatch.setattr(sim, "time", clock)
    alg = get_algorithm("gd")
    make_worker = alg.make_worker

    def slow_worker(m, objective, num_workers):
        worker = make_worker(m, objective, num_workers)
        real = worker.step

        def step(msg):
            clock.now += 1.0 if (m == 0 and msg.k % 8 == 0) else 0.001
            return real(msg)

        worker.step = step
        return worker

    monkeypatch.setattr(alg, "make_worker", slow_worker)
    res = simulate(prob, alg, max_iterations=40, eps=0.0, eval_every=40)
    trace = res.trace
    assert trace is not None and len(trace.worker_round_s) == res.iterations == 40
    assert trace.worker_step_s == pytest.approx(0.001)
    M = prob.num_workers
    assert trace.worker_mean_s == pytest.approx((40 * M * 0.001 + 5 * 0.999) / (40 * M))
    assert res.apply_link(make_link("edge")).compute_s == pytest.approx(0.001)


def test_entropy_coding_is_charged_to_the_uploader_and_the_server(prob, monkeypatch):
    # (fake) coding takes 1 s per upload, decoding 0.5 s; nothing else takes time: QGD
    # uploads every round, so a worker step is charged 1 s and the server M * 0.5 s.
    import laqcore.simulator as sim

    clock = _FakeClock()
    monkeypatch.setattr(sim, "time", clock)
    encode, decode = sim.entropy_encode, sim.entropy_decode

    def slow_encode(payload):
        clock.now += 1.0
        return encode(payload)

    def slow_decode(data, **kw):
        clock.now += 0.5
        return decode(data, **kw)

    monkeypatch.setattr(sim, "entropy_encode", slow_encode)
    monkeypatch.setattr(sim, "entropy_decode", slow_decode)
    res = simulate(
        prob, get_algorithm("qgd"), max_iterations=5, eps=0.0, eval_every=5, entropy_coding=True
    )
    assert res.trace is not None
    assert res.trace.worker_step_s == pytest.approx(1.0)
    assert res.trace.server_step_s == pytest.approx(0.5 * prob.num_workers)
