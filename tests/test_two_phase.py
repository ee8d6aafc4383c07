"""The two-phase exchange (laqcore.distributed.two_phase) at 2 and 4 gloo ranks.

Checks, against a single-process recomputation of the same rounds: every rank ends with the
bit-identical vector; it equals the formula (LAQ: replica of the exact aggregate under double
quantization; QSGD: owner mean re-compressed, unbiased); a skipping rank sends nothing; the
byte counts equal the chunk sizes computed here by hand. Repeated QSGD rounds stay within
QSGD's variance bound of the exact mean (error feedback at the owners made them diverge).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from _two_phase_workers import (  # noqa: E402
    BITS,
    BLOCK,
    DOWN_BITS,
    N_COORDS,
    OVERFLOW_KINDS,
    SEED,
    SLOT_ROUNDS,
    VARIANCE_ROUNDS,
    gradient,
    lazy_overflow_rounds,
    owner_fault_rounds,
    owner_overflow_rounds,
    slot_publication,
    slot_size,
    two_phase_rounds,
    uploads_in,
)
from laqcore import get_compressor, laq_accumulate, laq_apply, laq_quantize  # noqa: E402
from laqcore.distributed import run_processes  # noqa: E402
from laqcore.distributed.slots import SIZE_HEADER, propose_capacity  # noqa: E402
from laqcore.distributed.two_phase import chunk_bounds  # noqa: E402
from laqcore.laq_payload import LAQBlockPayload  # noqa: E402
from laqcore.wire import FRAME_OVERHEAD  # noqa: E402

pytestmark = pytest.mark.distributed


@functools.cache
def _all_runs(world: int, collectives: bool) -> list[dict[str, Any]]:
    """One launch per world size and path runs every codec (process start-up dominates)."""
    outs = run_processes(two_phase_rounds, world, collectives, pg_timeout_s=30, deadline_s=240)
    return [o.result for o in outs]


def _run(world: int, kind: str, collectives: bool = False) -> list[dict[str, Any]]:
    return [r[kind] for r in _all_runs(world, collectives)]


# The two paths: rounds of messages (gloo's) and collectives (NCCL's, run here on gloo).
PATHS = pytest.mark.parametrize("collectives", [False, True], ids=["messages", "collectives"])


def _message_control(world: int, publishes: bool) -> int:
    """Control bytes the rounds of messages add to the control ints of a round: each
    publication's int64 size (the one-time all-gathers of the messages' tags are set-up,
    not counted)."""
    return 8 * (world - 1) * publishes


def _laq_reference(world: int, down_bits: int | None) -> list[bytes]:
    """Whole-vector recomputation: exact aggregate, then one delta quantization of it."""
    q_prev = [np.zeros(N_COORDS, np.float32) for _ in range(world)]
    agg = np.zeros(N_COORDS, np.float32)
    replica = np.zeros(N_COORDS, np.float32)
    outs = []
    for rnd in range(4):
        ups = [r for r in range(world) if uploads_in(rnd, r)]
        for r in ups:
            p = laq_quantize(gradient(r, rnd), q_prev[r], BITS, block_size=BLOCK)
            laq_apply(q_prev[r], p)
            laq_accumulate(agg, p)
        if ups:
            if down_bits is None:
                replica = agg.copy()
            else:
                laq_apply(replica, laq_quantize(agg, replica, down_bits, block_size=BLOCK))
        outs.append((replica / np.float32(world)).tobytes())
    return outs


def _compressor_reference(world: int, name: str) -> list[bytes]:
    """Owner j: mean of chunk j of the uploads' decoded payloads, re-compressed on stream
    N^2 + j (no memory)."""
    bounds = chunk_bounds(N_COORDS, world, 512 if name == "qsgd" else 4)  # bucket; 2-bit codes
    down = [get_compressor(name, seed=SEED, stream=world * world + j) for j in range(world)]
    outs = []
    for rnd in range(4):
        ups = [r for r in range(world) if uploads_in(rnd, r)]
        decoded = []
        for r in ups:
            comp = get_compressor(name, seed=SEED, stream=r)
            decoded.append(comp.decompress(comp.compress(gradient(r, rnd), step=rnd)))
        out = np.zeros(N_COORDS, np.float32)
        for j, (s, e) in enumerate(bounds):
            if not ups or s == e:
                continue
            total = np.zeros(e - s, np.float32)
            for d in decoded:
                total += d[s:e]
            mean = total / np.float32(len(ups))
            out[s:e] = down[j].decompress(down[j].compress(mean, step=rnd))
        outs.append(out.tobytes())
    return outs


def _laq_chunk_bytes(k: int, bits: int) -> int:
    """A blockwise LAQ frame of k coordinates: frame overhead, metadata, radii, codes."""
    if k == 0:
        return 0
    return FRAME_OVERHEAD + LAQBlockPayload.META.size + 4 * -(-k // BLOCK) + -(-k * bits // 8)


@PATHS
@pytest.mark.parametrize("world", [2, 4])
def test_laq_two_phase_replicas_bytes_and_skips(world: int, collectives: bool) -> None:
    res = _run(world, "laq", collectives)
    ref = _laq_reference(world, DOWN_BITS)
    for r in res:  # bit-identical on every rank, and equal to the whole-vector formula
        assert r["outputs"] == ref
        assert r["nonfinite"] == [world - 1] and r["aborted"]
    bounds = res[0]["bounds"]
    assert bounds == chunk_bounds(N_COORDS, world, BLOCK)
    lens = [e - s for s, e in bounds]
    pub = [_laq_chunk_bytes(k, DOWN_BITS) for k in lens]
    for me, r in enumerate(res):
        prev = dict.fromkeys(r["stats"][0], 0)
        # collectives: publications padded to the largest; messages: exact sizes
        down = max(pub) * (world - 1) if collectives else sum(pub) - pub[me]
        for rnd, st in enumerate(r["stats"]):
            d = {k: st[k] - prev[k] for k in st}
            prev = st
            ups = [u for u in range(world) if uploads_in(rnd, u)]
            extra = 0 if collectives else _message_control(world, bool(ups))
            assert d["control_received"] == 8 * (world - 1) + extra
            sent = sum(_laq_chunk_bytes(lens[j], BITS) for j in range(world) if j != me)
            # A rank that skips sends nothing; an uploader sends each other owner its chunk.
            assert d["uplink_sent"] == (sent if me in ups else 0)
            others = [u for u in ups if u != me]
            assert d["uplink_received"] == len(others) * _laq_chunk_bytes(lens[me], BITS)
            assert d["downlink_received"] == (down if ups else 0)
            mine_down = _laq_chunk_bytes(lens[me], DOWN_BITS) * (world - 1)
            assert d["downlink_sent"] == (mine_down if ups else 0)
            assert d["bytes_received"] == sum(
                d[k] for k in ("control_received", "uplink_received", "downlink_received")
            )


def _entropy_frame_bytes(k_bounds: list[tuple[int, int]], p: Any, bits: int) -> list[int]:
    """Bytes of the entropy-coded frame of every chunk of payload ``p``."""
    from laqcore.distributed.slicing import slice_payload
    from laqcore.entropy import entropy_encode

    return [
        len(entropy_encode(slice_payload(p, s, e)).to_bytes()) if e > s else 0 for s, e in k_bounds
    ]


def _slotted_downlink(last: list[int], pub: list[int], world: int) -> tuple[int, int]:
    """(control bytes beyond the control all-gather, downlink bytes) one rank receives for
    publications of sizes ``pub`` after last publications of sizes ``last``: with no
    capacity proposed, an int64 all-gather of the sizes and the publications padded to the
    largest; else a 4-byte header and the capacity per slot, and the longest tail."""
    capacity = max(propose_capacity(v) for v in last)
    if capacity == 0:
        return 8 * (world - 1), max(pub) * (world - 1)
    over = max(max(pub) - capacity, 0)
    return SIZE_HEADER * (world - 1), (capacity + over) * (world - 1)


@PATHS
@pytest.mark.parametrize("world", [2, 4])
def test_laq_two_phase_entropy_is_lossless_and_counts_coded_bytes(
    world: int, collectives: bool
) -> None:
    """entropy=True: the same outputs bit for bit, the uplink sizes and a slot capacity
    proposal travel with the status (2 + N int64 per rank), each owner receives exactly the
    coded frames of its chunk, and the publications travel in slots (their sizes in the
    first round, when no capacity is known yet, by one more all-gather)."""
    res = _run(world, "laq-entropy", collectives)
    assert all(r["outputs"] == _laq_reference(world, DOWN_BITS) for r in res)
    bounds = res[0]["bounds"]
    q_prev = [np.zeros(N_COORDS, np.float32) for _ in range(world)]
    agg = np.zeros(N_COORDS, np.float32)
    replica = np.zeros(N_COORDS, np.float32)
    prev = [dict.fromkeys(r["stats"][0], 0) for r in res]
    last = [0] * world
    for rnd in range(4):
        ups = [r for r in range(world) if uploads_in(rnd, r)]
        up_bytes = {}
        for r in ups:
            p = laq_quantize(gradient(r, rnd), q_prev[r], BITS, block_size=BLOCK)
            laq_apply(q_prev[r], p)
            laq_accumulate(agg, p)
            up_bytes[r] = _entropy_frame_bytes(bounds, p, BITS)
        extra, down, pub = 0, 0, [0] * world
        if ups:
            d = laq_quantize(agg, replica, DOWN_BITS, block_size=BLOCK)
            laq_apply(replica, d)
            pub = _entropy_frame_bytes(bounds, d, DOWN_BITS)
            extra, down = _slotted_downlink(last, pub, world)
            if not collectives:
                extra = _message_control(world, True)
            last = pub
        for me, r in enumerate(res):
            st = r["stats"][rnd]
            got = {k: st[k] - prev[me][k] for k in st}
            prev[me] = st
            assert got["control_received"] == 8 * (world + 2) * (world - 1) + extra
            assert got["uplink_received"] == sum(up_bytes[u][me] for u in ups if u != me)
            if collectives:
                assert got["downlink_received"] == down
            else:  # exact sizes
                assert got["downlink_received"] == sum(pub) - pub[me]


@pytest.mark.parametrize("world", [2, 4])
def test_slotted_publications_arrive_exactly(world: int) -> None:
    """Publications of data-dependent sizes, in the four cases of the slots (the collectives'
    path): sizes exchanged (first round), every publication fits, one outgrows its slot, all
    do. Every rank gets every other owner's bytes exactly, and the counters follow the
    protocol."""
    res = _run(world, "slots", collectives=True)
    capacities = []
    for rnd, pub, me, got in _slot_round_deltas(res, world):
        last = [slot_size(rnd - 1, j) for j in range(world)] if rnd else [0] * world
        if me == 0:
            capacities.append(max(propose_capacity(v) for v in last))
        extra, down = _slotted_downlink(last, pub, world)
        # Fixed uplink sizes: the status and the capacity proposal.
        assert got["control_received"] == 8 * 2 * (world - 1) + extra
        assert got["downlink_received"] == down
        assert got["downlink_sent"] == pub[me] * (world - 1)
        padding = sum(down // (world - 1) - pub[j] for j in range(world) if j != me)
        assert got["padding_received"] == padding
        # The second downlink collective: sizes first (round 0), tails (rounds 2, 3).
        assert (got["sized_rounds"], got["tail_rounds"]) == [(1, 0), (0, 0), (0, 1), (0, 1)][rnd]
    # The schedule reaches every case: no capacity, fits, owner 0 over, all over.
    assert capacities[0] == 0
    assert slot_size(1, world - 1) <= capacities[1]
    assert slot_size(2, 0) > capacities[2] >= slot_size(2, 1)
    assert min(slot_size(3, j) for j in range(world)) > capacities[3]


def _slot_round_deltas(res: list[dict[str, Any]], world: int) -> Any:
    """Per slotted round and rank: (round, the owners' publication sizes, rank, the round's
    counters), once the rank is checked to have received every other owner's publication
    exactly."""
    prev = [dict.fromkeys(r["stats"][0], 0) for r in res]
    for rnd in range(SLOT_ROUNDS):
        pub = [slot_size(rnd, j) for j in range(world)]
        for me, r in enumerate(res):
            want = [b"" if j == me else slot_publication(rnd, j).tobytes() for j in range(world)]
            assert r["received"][rnd] == want
            st = r["stats"][rnd]
            yield rnd, pub, me, {k: st[k] - prev[me][k] for k in st}
            prev[me] = st


@pytest.mark.parametrize("world", [2, 4])
def test_publications_of_data_dependent_sizes_as_messages(world: int) -> None:
    """The same publications by rounds of messages: those within the capacity (twice the
    largest publication seen, the same on every rank) come with their sizes, the others by
    one all-to-all with exact sizes; nothing is padded."""
    res = _run(world, "slots")
    tails = []
    for rnd, pub, me, got in _slot_round_deltas(res, world):
        seen = [slot_size(r, j) for r in range(rnd) for j in range(world)]
        late = int(max(pub) > 2 * max(seen, default=0))
        if me == 0:
            tails.append(late)
        # the status (fixed uplink sizes: the 1-byte chunks come along) and the capacity
        # proposal the collectives' path uses, plus the messages' control
        assert got["control_received"] == 8 * 2 * (world - 1) + _message_control(world, True)
        assert got["downlink_received"] == sum(pub) - pub[me]
        assert got["downlink_sent"] == pub[me] * (world - 1)
        assert got["padding_received"] == 0
        assert (got["sized_rounds"], got["tail_rounds"]) == (0, late)
    # the first publications, owner 0's outgrown one and the last all take the all-to-all
    assert tails == [1, 0, 1, 1]


@pytest.mark.parametrize("world", [2, 4])
def test_chunks_wider_than_a_message_take_the_all_to_all(world: int) -> None:
    """Fixed-size chunks and publications wider than a message may carry (a model of more
    than about 2^25 coordinates per rank at 4 bits; here the widest message is set to 64
    bytes) move by the all-to-all in every round, with the same outputs and bytes."""
    narrow, wide = _run(world, "laq-narrow"), _run(world, "laq")
    ref = _laq_reference(world, DOWN_BITS)
    for n, w in zip(narrow, wide):
        assert n["outputs"] == ref
        for a, b in zip(n["stats"], w["stats"]):
            for key in ("uplink_received", "downlink_received", "control_received"):
                assert a[key] == b[key], key
    publishing = sum(1 for rnd in range(4) if any(uploads_in(rnd, r) for r in range(world)))
    assert narrow[0]["stats"][-1]["tail_rounds"] == publishing
    assert wide[0]["stats"][-1]["tail_rounds"] == 0


def test_laq_two_phase_exact_downlink() -> None:
    res = _run(2, "laq-exact")
    ref = _laq_reference(2, None)
    assert all(r["outputs"] == ref for r in res)


@PATHS
@pytest.mark.parametrize(("world", "name"), [(2, "qsgd"), (4, "qsgd"), (4, "terngrad")])
def test_compressor_two_phase_matches_owner_recompression(
    world: int, name: str, collectives: bool
) -> None:
    res = _run(world, name, collectives)
    ref = _compressor_reference(world, name)
    for r in res:
        assert r["outputs"] == ref
    # The round nobody uploads averages nothing.
    assert not np.frombuffer(ref[1], np.float32).any()
    assert np.frombuffer(ref[0], np.float32).any()


@pytest.mark.parametrize("world", [2, 4])
def test_qsgd_two_phase_stays_within_the_variance_bound(world: int) -> None:
    """QSGD (Alistarh et al., Lemma 3.1; docs/algorithms.md "QSGD"): with s levels and buckets of
    d coordinates, ``E||Q(x) - x||^2 <= omega ||x||^2``, ``omega = min(d / s^2, sqrt(d) / s)``.
    Owner re-compression of the mean m of the uploads gives ``E||out - g||^2 <= omega ||g||^2
    + (1 + omega) U`` with ``U = omega / N^2 sum_i ||g_i||^2`` and g the exact mean. Checked on
    every round's error (mean over rounds, and each round within 4x), and the outputs'
    average over rounds must approach g (unbiased).
    """
    outs = [np.stack(r["qsgd-repeated"]) for r in _all_runs(world, False)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    grads = [gradient(r, 0).astype(np.float64) for r in range(world)]
    g = np.mean(grads, axis=0)
    omega = min(512 / 7**2, np.sqrt(512) / 7)  # QSGD's defaults: 7 levels, buckets of 512
    u = omega / world**2 * sum(float(gi @ gi) for gi in grads)
    bound = omega * float(g @ g) + (1 + omega) * u
    err = ((outs[0] - g) ** 2).sum(axis=1)
    assert err.shape == (VARIANCE_ROUNDS,)
    assert err.mean() <= bound, (err.mean(), bound)
    assert err.max() <= 4 * bound, (err.max(), bound)
    avg = outs[0].mean(axis=0)
    assert float(((avg - g) ** 2).sum()) <= 4 * bound / VARIANCE_ROUNDS


@pytest.mark.parametrize("world", [2, 4])
def test_host_gathers_match_all_gather(world: int) -> None:
    for rank, same in enumerate(r["gather"] for r in _all_runs(world, False)):
        assert same == [True] * 5, rank


def test_chunk_bounds_on_units() -> None:
    assert chunk_bounds(1000, 4, 64) == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert chunk_bounds(100, 4, 64) == [(0, 0), (0, 64), (64, 64), (64, 100)]
    for bad in (0, -1):
        with pytest.raises(ValueError, match="unit"):
            chunk_bounds(10, 2, bad)


@PATHS
@pytest.mark.parametrize("world", [2, 3])
def test_an_owner_whose_sum_overflows_tells_every_rank(world: int, collectives: bool) -> None:
    """Every rank uploads 2e38 on the last owner's chunk: only their sum leaves float32, at
    that owner. Before, it raised there alone after the uplink (LAQ's re-quantization, an
    exact publication of Inf, QSGD/TernGrad's re-compression) and the others waited in the
    downlink. Now its failure marker travels in the downlink's bytes: every rank returns no
    output and names the owner, the codec's state is as before the round, the next round
    equals that of a run without it, and the failed round moves the bytes of a normal one
    (collectives: the marker is padded like a publication; messages: the marker's 8 bytes
    instead of the publication)."""
    outs = run_processes(owner_overflow_rounds, world, collectives, pg_timeout_s=20, deadline_s=180)
    for kind in OVERFLOW_KINDS:
        per_rank = [o.result[kind] for o in outs]
        for got in per_rank:
            run, ref = got["run"]["rounds"], got["reference"]["rounds"]
            assert [r["output"] is None for r in run] == [False, True, False], kind
            assert run[1]["owners"] == [world - 1], kind
            assert run[1]["state"] == run[0]["state"], kind
            assert run[2]["output"] == ref[1]["output"], kind
            assert run[2]["state"] == ref[1]["state"], kind
            if collectives and kind != "laq-entropy":  # the marker in the same bytes
                assert run[1]["bytes"] == run[0]["bytes"], kind
            if not collectives:
                assert run[1]["bytes"] <= run[0]["bytes"], kind
        assert len({got["run"]["rounds"][2]["output"] for got in per_rank}) == 1, kind


@pytest.mark.parametrize("world", [2, 3])
def test_lazy_downlink_publishes_when_the_sum_may_overflow(world: int) -> None:
    """A lazy downlink with a huge factor deferred the round whose uploads overflow the
    owner's exact chunk: that round returned a finite output while the owner's chunk became
    Inf, and every later round failed. Now a round whose chunk bound nears the float32 range
    publishes, the owner reports the overflow in its publication, and the next round works."""
    outs = run_processes(lazy_overflow_rounds, world, pg_timeout_s=20, deadline_s=120)
    for o in outs:
        assert [r is None for r in o.result] == [False, True, False]
    assert len({o.result[2] for o in outs}) == 1


@pytest.mark.parametrize("world", [2, 3])
def test_an_owner_that_cannot_decode_an_upload_fails_every_rank(world: int) -> None:
    """An owner's receive raised on that rank alone (an undecodable frame) while the others
    waited in the downlink. Now it sends a fault marker instead of its publication and every
    rank raises the same OwnerFailureError naming it (the owner's with the cause chained),
    with the codec's state as before the round."""
    outs = run_processes(owner_fault_rounds, world, pg_timeout_s=20, deadline_s=120)
    texts = set()
    for o in outs:
        kind, text, cause = o.result["error"]
        assert kind == "OwnerFailureError" and f"owner rank {world - 1} " in text
        assert cause == ("ValueError" if o.rank == world - 1 else None)
        assert o.result["kept"]
        texts.add(text)
    assert len(texts) == 1


def test_failure_markers_and_the_range_check() -> None:
    """A marker reads back as its code; a wire frame, an exact float32 or float64
    publication, and short or empty publications do not read as one. The owners' range check
    passes finite chunks and refuses Inf and NaN in float32 and float64 (a float64 chunk near
    its maximum is finite: no false alarm from a sum)."""
    from laqcore.distributed.exchange_codecs import check_in_range
    from laqcore.distributed.two_phase import (
        OWNER_FAULT,
        OWNER_RANGE,
        failure_marker,
        read_marker,
    )

    for code in (OWNER_RANGE, OWNER_FAULT):
        assert read_marker(failure_marker(code)) == code
        assert read_marker(np.concatenate([failure_marker(code), np.zeros(40, np.uint8)])) == code
    frame = laq_quantize(np.ones(64, np.float32), None, 4, block_size=64)
    assert read_marker(np.frombuffer(frame.to_bytes(), np.uint8)) == 0
    for exact in (np.full(8, -3e38, np.float32), np.full(4, -1e308)):
        assert read_marker(exact.view(np.uint8)) == 0
    assert read_marker(failure_marker(OWNER_RANGE)[:7]) == 0
    assert read_marker(np.empty(0, np.uint8)) == 0
    check_in_range(np.full(8, 3e38, np.float32), 0)
    check_in_range(np.full(8, 1.7e308), 0)
    for bad in (np.float32(np.inf), np.float32(np.nan), np.inf, np.nan):
        chunk = np.ones(8, np.asarray(bad).dtype)
        chunk[5] = bad
        with pytest.raises(OverflowError, match="owner 3: its chunk of the aggregate"):
            check_in_range(chunk, 3)
