"""Entropy coding of code streams: the rANS coder, the ENTROPY frame, the compressors'
``entropy=True`` and the simulator's ``entropy_coding``."""

from __future__ import annotations

import json
import pathlib
import zlib

import numpy as np
import pytest

import laqcore
import reference as ref
from laqcore import _core, runtime
from laqcore.entropy import EntropyPayload, entropy_decode, entropy_encode, is_codable
from laqcore.wire import payload_from_bytes

E = _core.entropy


def _histograms(rng: np.random.Generator, n: int, bits: int) -> dict[str, np.ndarray]:
    """Random and adversarial symbol streams of length n over 2**bits symbols."""
    K = 1 << bits
    skewed = np.minimum(rng.geometric(0.6, n) - 1, K - 1)
    return {
        "uniform_random": rng.integers(0, K, n),
        "skewed": skewed,
        "one_symbol": np.full(n, K - 1),
        "all_equal_frequency": np.arange(n) % K,
        "two_rare": np.where(rng.random(n) < 1e-3, K - 1, 0),
    }


@pytest.mark.parametrize("n", [0, 1, 2, 4095, 4096, 2**17 + 1, 2**20 + 3])
@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_round_trip(rng: np.random.Generator, n: int, bits: int) -> None:
    for name, s in _histograms(rng, n, bits).items():
        symbols = s.astype(np.uint8)
        stream = E.encode(symbols, bits)
        np.testing.assert_array_equal(E.decode(stream, n, bits), symbols, err_msg=name)


@pytest.mark.parametrize("n", [1, 5, 700, 4100])
@pytest.mark.parametrize("bits", [1, 2, 4])
def test_matches_reference_decoder(rng: np.random.Generator, n: int, bits: int) -> None:
    for name, s in _histograms(rng, n, bits).items():
        stream = E.encode(s.astype(np.uint8), bits)
        assert ref.entropy_decode(stream.tobytes(), n, bits) == s.tolist(), name


def test_reference_decoder_multi_chunk(rng: np.random.Generator) -> None:
    s = np.tile(np.minimum(rng.geometric(0.5, 3000), 3).astype(np.uint8), 44)
    stream = E.encode(s, 2)  # 132000 symbols: two chunks of the kernel's 2**17
    assert ref.entropy_decode(stream.tobytes(), s.size, 2) == s.tolist()


LEVELS = runtime.simd_levels()  # scalar first: the reference of the bulk loops


@pytest.mark.parametrize("n", [1, 5, 4095, 4100, 20007])
@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_encoder_matches_reference(rng: np.random.Generator, n: int, bits: int) -> None:
    # Same table (read back from the stream): the reference encoder gives the same bytes,
    # on every SIMD level.
    for name, s in _histograms(rng, n, bits).items():
        symbols = s.astype(np.uint8)
        for level in LEVELS:
            with runtime.simd(level):
                stream = E.encode(symbols, bits).tobytes()
            m, freq = ref.entropy_table(stream, bits)
            assert stream == ref.entropy_encode(symbols.tolist(), bits, m, freq), (name, level)


@pytest.mark.parametrize("m", [9, 12, 13, 15])
@pytest.mark.parametrize("n", [300, 5003])
def test_decodes_any_precision(rng: np.random.Generator, m: int, n: int) -> None:
    # The encoder picks m <= 12; valid streams up to m = 15 decode too (the bulk loops'
    # packed table covers m <= 12, the checked steps the rest).
    s = np.minimum(rng.geometric(0.2, n) - 1, 15)
    freq = ref.entropy_normalise(np.bincount(s, minlength=16).tolist(), m)
    stream = np.frombuffer(ref.entropy_encode(s.tolist(), 4, m, freq), dtype=np.uint8)
    for level in LEVELS:
        with runtime.simd(level):
            np.testing.assert_array_equal(E.decode(stream, n, 4), s, err_msg=level)


@pytest.mark.parametrize("chunks", [1, 2, 3, 4, 5, 9])
def test_simd_levels_and_threads_identical(rng: np.random.Generator, chunks: int) -> None:
    # The bulk loops code up to 4 chunks together: every run length, a short last chunk
    # (and its tail of n mod 8 symbols), bytes identical to the scalar path for any thread
    # count, and each level decodes every level's stream.
    n = (chunks - 1) * 2**17 + 40_003
    symbols = np.minimum(rng.geometric(0.35, n) - 1, 255).astype(np.uint8)
    streams = {}
    for level in LEVELS:
        for threads in (1, 2):
            with runtime.simd(level), laqcore.num_threads(threads):
                streams[level, threads] = E.encode(symbols, 8)
    expected = streams["scalar", 1]
    for key, stream in streams.items():
        np.testing.assert_array_equal(stream, expected, err_msg=str(key))
    for level in LEVELS:
        with runtime.simd(level):
            np.testing.assert_array_equal(E.decode(expected, n, 8), symbols, err_msg=level)


def _decode_outcome(stream: np.ndarray, n: int, bits: int) -> object:
    try:
        return E.decode(stream, n, bits).tobytes()
    except ValueError as e:
        return f"rejected: {str(e).split(':')[0]}"


def test_corrupt_many_lane_streams(rng: np.random.Generator) -> None:
    # Truncated or altered 8-lane streams (two chunks, bulk loops): every level rejects the
    # same streams and decodes the others to the same symbols, inside the alphabet.
    n = 2**17 + 5000
    symbols = np.minimum(rng.geometric(0.4, n) - 1, 15).astype(np.uint8)
    stream = E.encode(symbols, 4)
    cases = [stream[:cut].copy() for cut in rng.integers(0, stream.size, 12)]
    for i in rng.integers(0, stream.size, 40):
        bad = stream.copy()
        bad[i] ^= np.uint8(1 << int(rng.integers(0, 8)))
        cases.append(bad)
    for case in cases:
        outcomes = set()
        for level in LEVELS:
            with runtime.simd(level):
                outcomes.add(_decode_outcome(case, n, 4))
        assert len(outcomes) == 1
        (outcome,) = outcomes
        if isinstance(outcome, str):
            assert outcome == "rejected: corrupt entropy-coded stream"
        else:
            assert max(outcome) <= 15  # type: ignore[call-overload]


def test_entropy_close_to_optimal(rng: np.random.Generator) -> None:
    n = 200_000
    s = np.minimum(rng.geometric(0.3, n) - 1, 15).astype(np.uint8)
    p = np.bincount(s, minlength=16) / n
    h = -(p[p > 0] * np.log2(p[p > 0])).sum()
    assert 8 * E.encode(s, 4).size <= n * h * 1.01 + 400


@pytest.mark.parametrize("m", [1, 4, 8, 12, 15])
def test_normalise_matches_reference(rng: np.random.Generator, m: int) -> None:
    for _ in range(20):
        K = int(rng.integers(1, 1 << min(m, 8), endpoint=True))
        counts = [int(c) for c in rng.integers(0, 1000, K) * (rng.random(K) < 0.7)]
        if sum(counts) == 0:
            counts[0] = 1
        freq = E.normalise(counts, m)
        assert freq == ref.entropy_normalise(counts, m)
        assert sum(freq) == 1 << m
        assert [f > 0 for f in freq] == [c > 0 for c in counts]


@pytest.mark.parametrize("m", [8, 9, 12])
def test_normalise_many_raised_symbols_and_tied_largest(rng: np.random.Generator, m: int) -> None:
    """A byte histogram's shape: a few large counts, some tied, and many symbols so rare that
    they are raised to 1 by taking units from the then-largest (the heap of the C++ code
    against the reference's repeated argmax, lowest symbol first among ties)."""
    for _ in range(10):
        counts = [int(c) for c in rng.integers(1, 4, 256) * (rng.random(256) < 0.9)]
        big = rng.choice(256, 4, replace=False)
        for s in big:
            counts[int(s)] = 50_000 if s != big[0] else 60_000
        freq = E.normalise(counts, m)
        assert freq == ref.entropy_normalise(counts, m)
        assert [f > 0 for f in freq] == [c > 0 for c in counts]


def test_thread_count_invariant(rng: np.random.Generator) -> None:
    x = rng.standard_normal(2**20 + 3).astype(np.float32)
    p = laqcore.laq_quantize(x, None, 4)
    frames = []
    for threads in (1, 2):
        with laqcore.num_threads(threads):
            frames.append(entropy_encode(p).to_bytes())
            assert entropy_decode(frames[-1]) == p
    assert frames[0] == frames[1]


@pytest.mark.parametrize("bits", range(1, 9))
def test_packed_modes(rng: np.random.Generator, bits: int) -> None:
    for n in (1, 9, 5000):
        codes = np.minimum(rng.geometric(0.4, n) - 1, (1 << bits) - 1).astype(np.uint8)
        packed = laqcore.pack_bits(codes, bits)
        mode, stream = E.encode_packed(packed, n, bits)
        np.testing.assert_array_equal(E.decode_packed(stream, n, bits, mode), packed)


@pytest.mark.parametrize("bits", range(1, 9))
def test_uniform_codes_are_stored_never_longer(rng: np.random.Generator, bits: int) -> None:
    # Uniform codes do not shrink: the stream is the packed bytes themselves (mode 2), and
    # no stream, skewed or not, is longer than the packed codes.
    for n in (1, 7, 4096, 20001):
        codes = rng.integers(0, 1 << bits, n).astype(np.uint8)
        packed = laqcore.pack_bits(codes, bits)
        mode, stream = E.encode_packed(packed, n, bits)
        if n >= 4096:
            assert mode == 2
        if mode == 2:
            np.testing.assert_array_equal(stream, packed)
        assert stream.size <= packed.size
        np.testing.assert_array_equal(E.decode_packed(stream, n, bits, mode), packed)
        skewed = np.minimum(rng.geometric(0.5, n) - 1, (1 << bits) - 1).astype(np.uint8)
        packed = laqcore.pack_bits(skewed, bits)
        assert E.encode_packed(packed, n, bits)[1].size <= packed.size


def test_stored_mode_rejects_bad_streams() -> None:
    packed = laqcore.pack_bits(np.array([1, 0, 1], dtype=np.uint8), 1)  # 1 byte, 5 padding bits
    np.testing.assert_array_equal(E.decode_packed(packed, 3, 1, 2), packed)
    for bad in (packed[:0], np.concatenate([packed, packed])):
        with pytest.raises(ValueError, match="stored codes have"):
            E.decode_packed(bad.astype(np.uint8), 3, 1, 2)
    with pytest.raises(ValueError, match="padding"):
        E.decode_packed(np.array([0xFF], dtype=np.uint8), 3, 1, 2)


def test_sign_frame_is_plain_frame_plus_mode(rng: np.random.Generator) -> None:
    x = rng.standard_normal(10000).astype(np.float32)
    p = laqcore.get_compressor("sign").compress(x, step=0)
    coded = entropy_encode(p)
    assert coded.mode == 2
    assert coded.nbytes == p.nbytes + EntropyPayload.META.size
    frame = coded.to_bytes()
    assert entropy_decode(frame, expected_n=x.size) == p
    for cut in range(len(frame)):
        with pytest.raises(ValueError, match="truncated|corrupt|magic"):
            EntropyPayload.from_bytes(frame[:cut])


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="outside the alphabet"):
        E.encode(np.array([0, 4], dtype=np.uint8), 2)
    with pytest.raises(ValueError, match="alphabet_bits"):
        E.encode(np.zeros(3, dtype=np.uint8), 9)
    stream = E.encode(np.array([0, 1, 1, 2], dtype=np.uint8), 2)
    for cut in range(stream.size):
        with pytest.raises(ValueError, match="corrupt entropy-coded stream"):
            E.decode(stream[:cut].copy(), 4, 2)
    with pytest.raises(ValueError, match="does not decode exactly"):
        E.decode(np.concatenate([stream, [0, 0]]).astype(np.uint8), 4, 2)
    with pytest.raises(ValueError, match="corrupt entropy-coded stream"):
        E.decode(stream, 5, 2)  # wrong count
    with pytest.raises(ValueError, match="mode"):
        E.decode_packed(stream, 4, 2, 7)


def _refresh_crc(frame: bytearray) -> bytes:
    frame[-4:] = zlib.crc32(bytes(frame[:-4])).to_bytes(4, "little")
    return bytes(frame)


def test_frame_rejects_truncated_and_corrupt(rng: np.random.Generator) -> None:
    x = rng.standard_normal(300).astype(np.float32)
    p = laqcore.laq_quantize(x, None, 4)
    frame = entropy_encode(p).to_bytes()
    for cut in range(len(frame)):
        with pytest.raises(ValueError, match="truncated|corrupt|magic"):
            EntropyPayload.from_bytes(frame[:cut])
    # Every single-byte change with a valid CRC: rejected, or decoded to a valid LAQ payload.
    for i in range(4, len(frame) - 4):
        bad = bytearray(frame)
        bad[i] ^= 0x5A
        try:
            decoded = EntropyPayload.from_bytes(_refresh_crc(bad))
        except ValueError:
            continue
        assert isinstance(decoded.inner, laqcore.LAQPayload)
    with pytest.raises(ValueError, match="expected_n"):
        EntropyPayload.from_bytes(frame, expected_n=301)


CODABLE = [
    ("laq", {"bits": 3}),
    ("qsgd", {"levels": 5, "bucket_size": 100, "seed": 3}),
    ("qsgd", {"levels": 1, "norm": "max", "seed": 3}),
    ("terngrad", {"seed": 3}),
    ("sign", {}),
]


@pytest.mark.parametrize(("name", "kwargs"), CODABLE)
def test_compressor_entropy_same_values(
    rng: np.random.Generator, name: str, kwargs: dict[str, object]
) -> None:
    x = rng.standard_t(3, 3001).astype(np.float32)
    coded = laqcore.get_compressor(name, entropy=True, **kwargs)
    plain = laqcore.get_compressor(name, **kwargs)
    payload = coded.compress(x, step=4)
    frame = payload.to_bytes()
    assert len(frame) == payload.nbytes
    received = coded.from_bytes(frame, expected_n=x.size)
    expected = plain.decompress(plain.compress(x, step=4))
    np.testing.assert_array_equal(coded.decompress(received), expected)
    assert isinstance(payload_from_bytes(frame), EntropyPayload)
    assert is_codable(received.inner)


def test_compressor_entropy_bad_args() -> None:
    with pytest.raises(ValueError, match="cannot be entropy-coded"):
        laqcore.get_compressor("topk", entropy=True)
    with pytest.raises(TypeError, match="entropy"):
        laqcore.get_compressor("qsgd", entropy="yes")
    with pytest.raises(TypeError, match="cannot be entropy-coded"):
        entropy_encode(laqcore.get_compressor("topk", ratio=0.5).compress(np.ones(4, np.float32)))
    with pytest.raises(TypeError):
        laqcore.get_compressor("qsgd", entropy=True).decompress(
            laqcore.get_compressor("qsgd").compress(np.ones(4, np.float32))
        )


def test_simulator_identical_run_fewer_bits(prob: object) -> None:
    algo = laqcore.get_algorithm("laq")
    plain = laqcore.simulate(prob, algo, max_iterations=60)  # type: ignore[arg-type]
    coded = laqcore.simulate(prob, algo, max_iterations=60, entropy_coding=True)  # type: ignore[arg-type]
    assert coded.history["loss"] == plain.history["loss"]
    assert coded.history["uploads"] == plain.history["uploads"]
    assert coded.bits < plain.bits
    assert coded.entropy_coding and not plain.entropy_coding
    with pytest.raises(TypeError, match="entropy_coding"):
        laqcore.simulate(prob, algo, max_iterations=2, entropy_coding=1)  # type: ignore[arg-type]


def test_simulator_refuses_entropy_coding_with_nothing_to_code(prob: object) -> None:
    """GD's uploads have no code stream: the run recorded ``entropy_coding=True`` for a run
    that coded nothing. Refused before any work, naming the algorithm and the codable ones."""
    gd = laqcore.get_algorithm("gd")
    with pytest.raises(ValueError, match=r"entropy_coding: the uploads of gd carry no code.*qsgd"):
        laqcore.simulate(prob, gd, max_iterations=2, entropy_coding=True)  # type: ignore[arg-type]
    assert not laqcore.simulate(prob, gd, max_iterations=2).entropy_coding  # type: ignore[arg-type]


def test_unverified_n_bounded() -> None:
    # All codes equal: a small frame for a long vector, accepted with or without expected_n.
    p = laqcore.laq_quantize(np.zeros(2**20, dtype=np.float32), None, 1)
    frame = entropy_encode(p).to_bytes()
    assert len(frame) < 400
    assert entropy_decode(frame) == p
    # The same frame with a forged n: refused before anything of size n is allocated.
    forged = bytearray(frame)
    forged[4:12] = (2**40).to_bytes(8, "little")
    with pytest.raises(ValueError, match="pass expected_n"):
        entropy_decode(_refresh_crc(forged))


def test_cli_entropy_coding(
    tmp_path: pathlib.Path, private_cache: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from laqcore import cli

    runs = {}
    for flag in ([], ["--entropy-coding"]):
        out = tmp_path / f"run{len(flag)}"
        args = ["run", "-a", "qsgd", "--batch", "32", "-K", "12", "--out", str(out), "--no-plots"]
        tiny = ["--dataset", "digits", "--workers", "3", "--max-samples", "300", "--quiet"]
        assert cli.main([*args, *tiny, *flag]) == 0
        (runs[len(flag)],) = json.loads((out / "results.json").read_text())["runs"]
    assert runs[1]["entropy_coding"] and not runs[0]["entropy_coding"]
    assert runs[1]["final_loss"] == runs[0]["final_loss"]
    assert runs[1]["bits"] < runs[0]["bits"]


def test_cli_compare_records_the_entropy_coding_each_run_had(
    tmp_path: pathlib.Path, private_cache: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """``compare --entropy-coding`` over GD and QSGD codes QSGD's uploads only: GD's run says
    it was not coded (it said it was), and its bits are those of a run without the flag."""
    from laqcore import cli

    runs: dict[int, dict[str, dict[str, object]]] = {}
    for flag in ([], ["--entropy-coding"]):
        out = tmp_path / f"compare{len(flag)}"
        args = ["compare", "--algorithms", "gd,qsgd", "--batch", "32", "-K", "8", "--out", str(out)]
        tiny = ["--dataset", "digits", "--workers", "3", "--max-samples", "300", "--quiet"]
        assert cli.main([*args, *tiny, "--no-plots", *flag]) == 0
        found = json.loads((out / "results.json").read_text())["runs"]
        runs[len(flag)] = {r["algorithm"]: r for r in found}
    assert not runs[1]["gd"]["entropy_coding"] and runs[1]["qsgd"]["entropy_coding"]
    assert runs[1]["gd"]["bits"] == runs[0]["gd"]["bits"]
    assert runs[1]["qsgd"]["bits"] < runs[0]["qsgd"]["bits"]


def test_launch_has_no_entropy_coding_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """The engine sends its frames uncoded: ``launch --entropy-coding`` was accepted, ignored
    and written to the results' config as ``entropy_coding: true``."""
    from laqcore import cli

    with pytest.raises(SystemExit) as exit_:
        cli.main(["launch", "--entropy-coding"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --entropy-coding" in capsys.readouterr().err


def test_variance_command(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    from laqcore import cli
    from laqcore.experiments.variance import best_per_budget, measure, vector_source

    rc = cli.main(
        [
            "variance",
            "--sources",
            "gaussian",
            "--n",
            "256",
            "--steps",
            "2",
            "-q",
            "--out",
            str(tmp_path),
            "--no-plots",
        ]
    )
    assert rc == 0
    data = json.loads((tmp_path / "variance.json").read_text())
    recs = data["records"]
    assert {r["family"] for r in recs} >= {"qsgd-l2", "rotation", "laq-innovation", "topk"}
    # Entropy coding changes the size, never the error.
    for r in recs:
        if r["entropy"]:
            (plain,) = [
                q
                for q in recs
                if not q["entropy"] and q["family"] == r["family"] and q["kwargs"] == r["kwargs"]
            ]
            assert r["nmse"] == plain["nmse"]
    # The measurement is the formula: the identity costs 32 bits + framing, error 0.
    vecs = vector_source("gaussian", 64, 2)
    rec = measure(vecs, "none", "none", {}, False)
    assert rec["nmse"] == 0.0 and rec["bits_per_coord"] > 32
    assert "gaussian" in best_per_budget([{**rec, "source": "gaussian"}])
    assert cli.main(["variance", "--sources", "nope", "-q"]) == 2


def test_blockwise_laq_payload(rng: np.random.Generator) -> None:
    x = rng.standard_normal(1000).astype(np.float32)
    p = laqcore.laq_quantize(x, None, 4, block_size=64)
    coded = entropy_encode(p)
    assert coded.nbytes < p.nbytes
    assert entropy_decode(coded.to_bytes(), expected_n=1000) == p


def test_entropy_frame_is_the_checked_frame(rng: np.random.Generator) -> None:
    """entropy_frame skips to_bytes' round trip but writes the same bytes, for every
    codable LAQ layout (global and blockwise radius, ragged last block, every width)."""
    from laqcore.entropy import entropy_frame

    x = rng.standard_normal(1001).astype(np.float32)
    for bits in (1, 2, 4, 8):
        for block in (None, 8, 256):
            p = laqcore.laq_quantize(x, None, bits, block_size=block)
            frame = entropy_frame(p)
            assert frame == entropy_encode(p).to_bytes()
            assert entropy_decode(frame, expected_n=x.shape[0]) == p
