"""Upload bundles (laqcore.wire) and engine checkpoints (laqcore.distributed.checkpoint):
the formats the multi-process engine trusts nothing in (issue 14.15, 14.18, 14.19)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tracemalloc
import zipfile

import numpy as np
import pytest

import laqcore
from driver_cases import trajectory
from laqcore.algorithms import get_algorithm
from laqcore.distributed.checkpoint import (
    CheckpointError,
    encode_state,
    read_checkpoint,
    restore_state,
    state_digest,
    write_checkpoint,
)
from laqcore.wire import FRAME_OVERHEAD, bundle_nbytes, pack_uploads, unpack_uploads


# --- upload bundles ------------------------------------------------------------------------
def _payloads():
    comp = laqcore.get_compressor("topk", k=1)
    return [comp.compress(np.arange(1.0, 6.0), step=0), laqcore.laq_quantize(np.ones(5), None, 3)]


def test_bundle_round_trip_and_size():
    a, b = _payloads()
    buf = pack_uploads([(1, a), (3, b)])
    assert (
        len(buf) == bundle_nbytes([a.nbytes, b.nbytes]) == FRAME_OVERHEAD + 16 + a.nbytes + b.nbytes
    )
    got = unpack_uploads(buf, expected_n=5, owned=[1, 3], sender="rank 1")
    assert [m for m, _ in got] == [1, 3]
    assert got[1][1] == b
    with pytest.raises(ValueError, match=r"n = 5.*expected_n = 6"):
        unpack_uploads(buf, expected_n=6, owned=[1, 3])


def test_bundle_refuses_foreign_or_out_of_range_worker_ids():
    a, _ = _payloads()
    with pytest.raises(ValueError, match="rank 1 sent an upload labelled as worker 0"):
        unpack_uploads(pack_uploads([(0, a)]), expected_n=5, owned=[1, 3], sender="rank 1")
    with pytest.raises(ValueError, match="labelled as worker 999"):
        unpack_uploads(pack_uploads([(999, a)]), expected_n=5, owned=[1, 3], sender="rank 1")
    with pytest.raises(ValueError, match="strictly increasing"):
        pack_uploads([(3, a), (1, a)])


def test_bundle_refuses_corrupt_truncated_and_foreign_buffers():
    a, b = _payloads()
    buf = bytearray(pack_uploads([(1, a), (3, b)]))
    for i in range(len(buf)):  # every single flipped bit is caught (CRC covers every byte)
        bad = bytearray(buf)
        bad[i] ^= 0x10
        with pytest.raises(ValueError, match="CRC-32 mismatch|not an upload bundle"):
            unpack_uploads(bytes(bad), expected_n=5, owned=[1, 3])
    with pytest.raises(ValueError, match="truncated|CRC"):
        unpack_uploads(bytes(buf[:-5]), expected_n=5, owned=[1, 3])
    with pytest.raises(ValueError, match="not an upload bundle"):
        unpack_uploads(a.to_bytes(), expected_n=5, owned=[1, 3])


# --- checkpoints ---------------------------------------------------------------------------
def _laq_state(prob):
    alg = get_algorithm("laq")
    server = alg.make_server(prob.initial_point(), prob.num_workers)
    workers = {m: alg.make_worker(m, prob.workers[m], prob.num_workers) for m in range(2)}
    for _ in range(3):
        ups = {}
        for m, w in workers.items():
            p = w.step(server.message(m))
            if p is not None:
                ups[m] = p
        server.apply(ups)
    return alg, server, workers


def test_checkpoint_round_trip_restores_exactly(prob, tmp_path):
    alg, server, workers = _laq_state(prob)
    skip = (type(prob.workers[0]),)
    tree, arrays = encode_state({"server": server, "workers": workers}, skip=skip)
    path = str(tmp_path / "rank0.ckpt")
    write_checkpoint(path, tree, arrays)
    fresh = alg.make_server(prob.initial_point(), prob.num_workers)
    fresh_w = {m: alg.make_worker(m, prob.workers[m], prob.num_workers) for m in range(2)}
    assert state_digest(fresh) != state_digest(server)
    restore_state({"server": fresh, "workers": fresh_w}, *read_checkpoint(path), skip=skip)
    assert state_digest(fresh) == state_digest(server)
    assert fresh_w[0].f is prob.workers[0]  # the objective is data, kept from the fresh run
    for _ in range(3):  # and the restored run continues exactly
        for srv, ws in ((server, workers), (fresh, fresh_w)):
            ups = {m: p for m, w in ws.items() if (p := w.step(srv.message(m))) is not None}
            srv.apply(ups)
        np.testing.assert_array_equal(fresh.theta, server.theta)


def test_checkpoint_flipped_bit_is_refused_naming_the_file(prob, tmp_path):
    _, server, _ = _laq_state(prob)
    path = str(tmp_path / "rank1.ckpt")
    write_checkpoint(path, *encode_state(server))
    with open(path, "rb") as fh:
        raw = fh.read()
    caught = 0
    for pos in range(0, len(raw), max(1, len(raw) // 97)):
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        with open(path, "wb") as fh:
            fh.write(bytes(bad))
        with pytest.raises(CheckpointError, match="rank1.ckpt"):
            read_checkpoint(path)
        caught += 1
    assert caught > 50


def test_checkpoint_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = str(tmp_path / "rank0.ckpt")
    with open(path, "wb") as fh:
        pickle.dump({"server": Evil()}, fh)
    with pytest.raises(CheckpointError, match="rank0.ckpt"):
        read_checkpoint(path)
    np.save(path, np.array([Evil()], dtype=object), allow_pickle=True)
    os.replace(path + ".npy", path)
    with pytest.raises(CheckpointError, match="rank0.ckpt"):
        read_checkpoint(path)
    # Even with a valid magic and checksum, pickled content is refused, never unpickled.
    buf = io.BytesIO()
    # (no allow_pickle=: numpy 1.x's savez stored it as one more member; True is the default)
    np.savez(buf, **{"state.json": np.array([Evil()], dtype=object)})
    body = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(b"LQCKPT01" + hashlib.sha256(body).digest() + body)
    with pytest.raises(CheckpointError, match="rank0.ckpt.*cannot be decoded"):
        read_checkpoint(path)
    assert not marker.exists()


def test_checkpoint_that_does_not_fit_is_refused(prob, tmp_path):
    _, server, _ = _laq_state(prob)
    tree, arrays = encode_state(server)
    other = get_algorithm("gd").make_server(prob.initial_point(), prob.num_workers)
    with pytest.raises(ValueError, match="QuantizedLazyServer where this run has a SumServer"):
        restore_state(other, tree, arrays)
    with pytest.raises(TypeError, match="object array"):
        encode_state({"x": np.array([object()], dtype=object)})


def test_trajectory_helper_still_drives_every_worker(prob):
    _, masks = trajectory(prob, get_algorithm("gd"), 2)
    assert masks.shape == (2, prob.num_workers) and masks.all()


def _forged_checkpoint(path, members, method=zipfile.ZIP_STORED):
    """A checkpoint of these .npy members with a valid magic and checksum (as if forged)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    body = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(b"LQCKPT01" + hashlib.sha256(body).digest() + body)


def _npy(arr=None, *, shape=None):
    buf = io.BytesIO()
    if shape is None:
        np.save(buf, arr)
    else:  # a header declaring `shape` of float64 and no data
        header = {"descr": "<f8", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def test_forged_checkpoint_is_refused_before_allocating(tmp_path):
    """With a valid checksum, a member whose .npy header declared 2**40 float64 made np.load
    allocate 8 TiB (MemoryError, not CheckpointError), a deflated member could expand to
    any size, and JSON nested 10**5 deep raised RecursionError. Each is now a
    CheckpointError naming the file, before anything of the declared size is allocated."""
    path = str(tmp_path / "rank0.ckpt")
    tree = _npy(np.frombuffer(b'{"a": {"__array__": 0}}', np.uint8))
    _forged_checkpoint(path, {"state.json.npy": tree, "a0.npy": _npy(np.arange(3.0))})
    meta, arrays = read_checkpoint(path)
    assert meta == {"a": {"__array__": 0}}
    np.testing.assert_array_equal(arrays[0], np.arange(3.0))
    deep = np.frombuffer(b"[" * 300 + b"]" * 300, np.uint8)
    cases = [
        ({"state.json.npy": tree, "a0.npy": _npy(shape=(2**40,))}, "promises shape", 0),
        ({"state.json.npy": tree, "a0.npy": _npy(np.zeros(2**22, np.uint8))}, "larger", 1),
        ({"state.json.npy": _npy(np.frombuffer(b"[" * 10**5, np.uint8))}, "recursion", 0),
        ({"state.json.npy": _npy(deep)}, "deeper than 200 levels", 0),
        ({"state.json.npy": tree, "a0": _npy(np.arange(3.0))}, "unexpected members", 0),
    ]
    for members, match, deflate in cases:
        _forged_checkpoint(path, members, zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        tracemalloc.start()
        try:
            with pytest.raises(CheckpointError, match=f"rank0.ckpt.*{match}"):
                read_checkpoint(path)
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert peak < 2**21, (match, peak)


def test_forged_scalar_is_refused_without_allocating():
    """restore_state built any dtype's scalar from a checkpoint: {"__scalar__": "|V1",
    "value": 2**31 - 1} made np.void allocate 2 GiB, and a value out of its dtype's range
    raised OverflowError (the engine expects ValueError), as did a deque's maxlen of 2**70.
    Only the kinds encode_state writes (bool, integer, float, str) are restored now, and an
    overflow is a ValueError."""
    for kind in ("|V1", "(2,)<f8", "<M8[s]", "|S4", "<c16"):
        with pytest.raises(ValueError, match="encode_state writes only"):
            restore_state(None, {"__scalar__": kind, "value": 2**31 - 1}, [])
    # numpy 1.x wrapped the integers (np.int8(1000) == -24) and every numpy makes the float inf
    for kind, value in (("|i1", 1000), ("|u1", -1), ("<i8", 2**63), ("<f4", 1e300)):
        with pytest.raises(ValueError, match="out of range"):
            restore_state(None, {"__scalar__": kind, "value": value}, [])
    with pytest.raises(ValueError, match="out of range"):
        restore_state(None, {"__deque__": [], "maxlen": 2**70}, [])
    values = [np.float32(1.5), np.int64(-3), np.uint8(7), np.bool_(True), np.str_("ab")]
    tree, arrays = encode_state(values)
    back = restore_state(None, tree, arrays)
    assert back == values
    assert [type(v) for v in back] == [type(v) for v in values]
