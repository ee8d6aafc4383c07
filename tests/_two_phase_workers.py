"""Rank bodies of tests/test_two_phase.py (a module of their own so ``spawn`` can import them)."""

from __future__ import annotations

from typing import Any

import numpy as np

N_COORDS = 1000  # 16 blocks of 64 (the last one ragged): chunks of 4 blocks at 4 ranks
BLOCK = 64
BITS = 4
DOWN_BITS = 6
SEED = 11


def uploads_in(rnd: int, rank: int) -> bool:
    """Round 0 and 3: everyone; round 1: nobody; round 2: odd ranks only."""
    return {0: True, 1: False, 2: rank % 2 == 1, 3: True}[rnd]


def gradient(rank: int, rnd: int) -> np.ndarray:
    rng = np.random.default_rng([SEED, rank, rnd])
    return (rng.standard_normal(N_COORDS) * (1.0 + rank)).astype(np.float32)


def make_codec(kind: str) -> Any:
    from laqcore.distributed.exchange_codecs import CompressorChunkCodec, LAQChunkCodec

    if kind == "laq":
        return LAQChunkCodec(BITS, BLOCK, DOWN_BITS)
    if kind == "laq-exact":
        return LAQChunkCodec(BITS, BLOCK, None)
    if kind == "laq-entropy":
        return LAQChunkCodec(BITS, BLOCK, DOWN_BITS, entropy=True)
    return CompressorChunkCodec(kind, seed=SEED)


KINDS = ("laq", "laq-exact", "laq-entropy", "qsgd", "terngrad")


VARIANCE_ROUNDS = 24


def exchange_on(codec: Any, collectives: bool, **kwargs: Any) -> Any:
    """A TwoPhaseExchange over ``N_COORDS`` on gloo; ``collectives``: the path of other
    devices (NCCL: control all-gather, uplink all-to-all, downlink all-gather) instead of
    the rounds of messages."""
    from laqcore.distributed.two_phase import TwoPhaseExchange

    ex = TwoPhaseExchange(N_COORDS, codec, **kwargs)
    if collectives:
        ex._host_messages = False
    return ex


def two_phase_rounds(rank: int, world: int, collectives: bool = False) -> dict[str, Any]:
    """Four rounds of the pattern above for every codec kind; outputs and per-round stats;
    and ``VARIANCE_ROUNDS`` QSGD rounds of one fixed gradient per rank. On the messages'
    path also LAQ with messages too narrow for the chunks and publications (``laq-narrow``:
    a model whose fixed-size chunks exceed the widest message, scaled down)."""
    out: dict[str, Any] = {kind: _rounds(rank, world, kind, collectives) for kind in KINDS}
    if not collectives:
        from laqcore.distributed import two_phase

        widest = two_phase.MAX_WIDTH
        two_phase.MAX_WIDTH = 64  # the control ints fit, no chunk or publication does
        try:
            out["laq-narrow"] = _rounds(rank, world, "laq", collectives)
        finally:
            two_phase.MAX_WIDTH = widest
    out["qsgd-repeated"] = _repeated(rank, "qsgd", collectives)
    out["slots"] = _slotted_rounds(rank, collectives)
    out["gather"] = _host_gathers(rank, world)
    return out


def _host_gathers(rank: int, world: int) -> list[bool]:
    """The exchange's host gathers (an all-to-all of copies) against ``dist.all_gather``:
    int64 and uint8 rows of rank-dependent content, sizes changing between calls."""
    import torch
    import torch.distributed as dist

    from laqcore.distributed.two_phase import TwoPhaseExchange

    ex = TwoPhaseExchange(N_COORDS, make_codec("laq"))
    same = []
    for size, dtype in [
        (3, np.int64),
        (5, np.int64),
        (77, np.uint8),
        (1, np.uint8),
        (77, np.uint8),
    ]:
        send = np.random.default_rng([SEED, rank, size]).integers(0, 200, size).astype(dtype)
        whole = torch.empty(world * size, dtype=torch.from_numpy(send).dtype)
        got = ex._gather.into(whole, send, "test gather").copy()
        want = [torch.empty(size, dtype=whole.dtype) for _ in range(world)]
        dist.all_gather(want, torch.from_numpy(send))
        same.append(bool(np.array_equal(got, torch.stack(want).numpy())))
    return same


SLOT_ROUNDS = 4


def slot_size(rnd: int, owner: int) -> int:
    """Publication sizes in the slotted rounds: the first round exchanges the sizes, the
    second fits the slots, in the third only owner 0 outgrows its slot, in the fourth all."""
    return (100 + 10 * owner, 99 + 10 * owner, 400 if owner == 0 else 50, 1000 + 40 * owner)[rnd]


def slot_publication(rnd: int, owner: int) -> np.ndarray:
    """The bytes owner ``owner`` publishes in slotted round ``rnd``."""
    size = slot_size(rnd, owner)
    return ((np.arange(size) * (owner + 3) + 7 * rnd) % 251).astype(np.uint8)


class SizedCodec:
    """A codec whose publications have data-dependent sizes (``slot_publication``): every
    rank records the publications it receives."""

    unit = 8

    def bind(self, bounds: list[tuple[int, int]], rank: int, world: int) -> None:
        self.rank, self.world, self.n = rank, world, bounds[-1][1]
        self.received: list[list[bytes]] = []
        self.round = 0

    def uplink_size(self, j: int) -> int | None:
        return 1

    def downlink_size(self, j: int) -> int | None:
        return None

    def start_round(self) -> None:
        self.received.append([b""] * self.world)

    def split(self, upload: Any, step: int) -> list[np.ndarray]:
        one = np.array([self.rank], np.uint8)
        return [np.empty(0, np.uint8) if j == self.rank else one for j in range(self.world)]

    def own_chunk(self, upload: Any) -> Any:
        return None

    def receive(self, chunks: list[Any], step: int) -> None:
        return None

    def publish(self, step: int) -> np.ndarray:
        return slot_publication(step, self.rank)

    def apply(self, j: int, data: np.ndarray) -> None:
        self.received[-1][j] = data.tobytes()

    def result(self, out: np.ndarray | None = None) -> np.ndarray:
        return np.zeros(self.n, np.float32)


def _slotted_rounds(rank: int, collectives: bool) -> dict[str, Any]:
    codec = SizedCodec()
    ex = exchange_on(codec, collectives)
    stats = []
    for rnd in range(SLOT_ROUNDS):
        ex.round(np.zeros(1, np.uint8), step=rnd)
        stats.append(ex.stats.as_dict())
    return {"received": codec.received, "stats": stats}


def _repeated(rank: int, kind: str, collectives: bool) -> list[np.ndarray]:
    """Every rank uploads ``gradient(rank, 0)`` in every round: the outputs, round by round."""
    from laqcore import get_compressor

    ex = exchange_on(make_codec(kind), collectives)
    comp = get_compressor(kind, seed=SEED, stream=rank)
    g = gradient(rank, 0)
    outs = []
    for rnd in range(VARIANCE_ROUNDS):
        res = ex.round(comp.compress(g, step=rnd), step=rnd)
        assert res.output is not None
        outs.append(res.output.copy())
    return outs


def _rounds(rank: int, world: int, kind: str, collectives: bool) -> dict[str, Any]:
    from laqcore import get_compressor, laq_apply, laq_quantize

    ex = exchange_on(make_codec(kind), collectives)
    comp = get_compressor(kind, seed=SEED, stream=rank) if not kind.startswith("laq") else None
    q_prev = np.zeros(N_COORDS, np.float32)
    outputs, stats = [], []
    for rnd in range(4):
        upload: Any = None
        if uploads_in(rnd, rank):
            g = gradient(rank, rnd)
            if comp is None:
                upload = laq_quantize(g, q_prev, BITS, block_size=BLOCK)
                laq_apply(q_prev, upload)
            else:
                upload = comp.compress(g, step=rnd)
        res = ex.round(upload, step=rnd, tag=f"round {rnd}")
        assert res.output is not None
        outputs.append(res.output.tobytes())
        stats.append(ex.stats.as_dict())
    # A non-finite gradient on the last rank: nothing moves, everyone learns who.
    res = ex.round(None, step=4, nonfinite=(rank == world - 1))
    return {
        "outputs": outputs,
        "stats": stats,
        "bounds": ex.bounds,
        "nonfinite": res.nonfinite_ranks,
        "aborted": res.output is None,
    }


GATHER_CASES = [(3, "int64"), (5, "int64"), (77, "uint8"), (1, "uint8"), (77, "uint8"), (9, "f4")]


def gather_send(rank: int, size: int, dtype: str) -> np.ndarray:
    """What ``rank`` contributes to the host-gather case ``(size, dtype)``."""
    return np.random.default_rng([SEED, rank, size]).integers(0, 200, size).astype(dtype)


def host_gather_cases(rank: int, world: int) -> dict[str, Any]:
    """:class:`~laqcore.distributed.gather.HostGather` (``into``, ``rows``, ``ints``, with a
    guard that logs the names) beside ``dist.all_gather`` of the same arrays."""
    import torch
    import torch.distributed as dist

    from laqcore.distributed.gather import HostGather

    names: list[str] = []

    def guard(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        names.append(what)
        return fn(*args, **kwargs)

    g = HostGather(None, world, "cpu", guard)
    got, ring = [], []
    for i, (size, dtype) in enumerate(GATHER_CASES):
        send = gather_send(rank, size, dtype)
        if i % 2:
            got.append(g.rows(send, f"rows {i}").copy())
        else:
            whole = torch.empty(world * size, dtype=torch.from_numpy(send).dtype)
            got.append(g.into(whole, send, f"into {i}").copy())
        want = [torch.empty(size, dtype=torch.from_numpy(send).dtype) for _ in range(world)]
        dist.all_gather(want, torch.from_numpy(send))
        ring.append(torch.stack(want).numpy())
    ints = [g.ints([rank, -rank, 7], "ints"), g.ints([rank * 10], "int")]
    return {"got": got, "ring": ring, "ints": ints, "names": names}


OVERFLOW_KINDS = ("laq", "laq-exact", "laq-entropy", "qsgd", "terngrad")


def _overflow_codec(kind: str) -> Any:
    from laqcore.distributed.exchange_codecs import CompressorChunkCodec

    if kind == "qsgd":  # the max norm: a bucket of 2e38 is finite at the uploader
        return CompressorChunkCodec(kind, seed=SEED, norm="max")
    return make_codec(kind)


def _overflow_run(
    rank: int, kind: str, grads: list[np.ndarray], collectives: bool
) -> dict[str, Any]:
    """One exchange, a round per gradient (every rank uploads); a round whose output is
    ``None`` commits nothing (as the hooks do). Per round: the output (or ``None``), the
    overflowing owners, the bytes received and the codec's state after it."""
    from laqcore import get_compressor, laq_apply, laq_quantize

    ex = exchange_on(_overflow_codec(kind), collectives)
    kw = {"norm": "max"} if kind == "qsgd" else {}
    comp = None if kind.startswith("laq") else get_compressor(kind, seed=SEED, stream=rank, **kw)
    q_prev = np.zeros(N_COORDS, np.float32)
    rounds, step = [], 0
    for g in grads:
        if comp is None:
            upload: Any = laq_quantize(g, q_prev, BITS, block_size=BLOCK)
        else:
            upload = comp.compress(g, step=step)
        before = ex.stats.bytes_received
        res = ex.round(upload, step=step)
        if res.output is not None:
            step += 1
            if comp is None:
                laq_apply(q_prev, upload)
        rounds.append(
            {
                "output": None if res.output is None else res.output.tobytes(),
                "owners": res.overflow_owners,
                "bytes": ex.stats.bytes_received - before,
                "state": {k: v.tobytes() for k, v in ex.codec.state_dict().items()},
            }
        )
    return {"rounds": rounds, "bounds": ex.bounds}


def owner_overflow_rounds(rank: int, world: int, collectives: bool) -> dict[str, Any]:
    """Per codec kind: rounds 0 and 2 ordinary, round 1 with every rank's gradient at 2e38 on
    the last owner's chunk (so only the sum overflows, there); and the reference run without
    round 1."""
    from laqcore.distributed.two_phase import chunk_bounds

    out: dict[str, Any] = {}
    for kind in OVERFLOW_KINDS:
        codec = _overflow_codec(kind)
        bounds = chunk_bounds(N_COORDS, world, codec.unit)
        s, e = bounds[max(j for j, (a, b) in enumerate(bounds) if b > a)]
        big = gradient(rank, 1)
        big[s:e] = 2e38
        first, last = gradient(rank, 0), gradient(rank, 2)
        out[kind] = {
            "run": _overflow_run(rank, kind, [first, big, last], collectives),
            "reference": _overflow_run(rank, kind, [first, last], collectives),
        }
    return out


def lazy_overflow_rounds(rank: int, world: int) -> list[bytes | None]:
    """A lazy downlink that defers whatever the uploads (factor 1e60): every rank puts 1e18
    in one coordinate of the last owner's chunk in round 0, 2e38 in round 1 (their sum
    overflows float32) and 2e18 in round 2. The outputs (``None``: a dropped round)."""
    from laqcore import laq_apply, laq_quantize
    from laqcore.distributed.exchange_codecs import LAQChunkCodec
    from laqcore.distributed.lazy_downlink import LazyDownlink
    from laqcore.distributed.two_phase import TwoPhaseExchange

    codec = LAQChunkCodec(BITS, BLOCK, DOWN_BITS)
    ex = TwoPhaseExchange(N_COORDS, codec, lazy_downlink=LazyDownlink(codec, 1e60, 4, 1.0))
    where = ex.bounds[-1][1] - 1
    q_prev = np.zeros(N_COORDS, np.float32)
    outputs: list[bytes | None] = []
    for value in (1e18, 2e38, 2e18):
        g = np.zeros(N_COORDS, np.float32)
        g[where] = value
        upload = laq_quantize(g, q_prev, BITS, block_size=BLOCK)
        res = ex.round(upload, step=len(outputs))
        if res.output is not None:
            laq_apply(q_prev, upload)
        outputs.append(None if res.output is None else res.output.tobytes())
    return outputs


def owner_fault_rounds(rank: int, world: int) -> dict[str, Any]:
    """The last owner cannot decode what it received in round 1 (a stand-in for a corrupt
    frame: its codec raises ``ValueError``). Per rank: the error it raised (type, text,
    type of the chained cause), and whether its codec's state is that of round 0."""
    from laqcore import laq_apply, laq_quantize
    from laqcore.distributed.exchange_codecs import LAQChunkCodec
    from laqcore.distributed.two_phase import TwoPhaseExchange

    class Undecodable(LAQChunkCodec):
        def receive(self, chunks: list[Any], step: int) -> None:
            super().receive(chunks, step)  # changes ``owned``: discard must undo it
            if step == 1 and self.rank == self.world - 1:
                raise ValueError("frame CRC mismatch")

    codec = Undecodable(BITS, BLOCK, DOWN_BITS)
    ex = TwoPhaseExchange(N_COORDS, codec)
    q_prev = np.zeros(N_COORDS, np.float32)
    upload = laq_quantize(gradient(rank, 0), q_prev, BITS, block_size=BLOCK)
    ex.round(upload, step=0)
    laq_apply(q_prev, upload)
    kept = {k: v.tobytes() for k, v in codec.state_dict().items()}
    try:
        ex.round(laq_quantize(gradient(rank, 1), q_prev, BITS, block_size=BLOCK), step=1)
    except Exception as err:  # noqa: BLE001 - the test inspects it
        cause = None if err.__cause__ is None else type(err.__cause__).__name__
        now = {k: v.tobytes() for k, v in codec.state_dict().items()}
        return {"error": (type(err).__name__, str(err), cause), "kept": now == kept}
    return {"error": None}
