"""A user's own compressor, payload and data, plugged in through the public API: every
mistake in one is refused with an error that names it, before or at its first use, never a
silent wrong run (a decompressed vector of the wrong length used to be broadcast into the
server's sum)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

import laqcore
from laqcore.algorithms.base import CodecSpec, CompressedGradient
from laqcore.compressors import base as compressor_base
from laqcore.simulator import simulate
from laqcore.wire import Payload, body_array, expect_body_size, payload_from_bytes

N = 16


class TwoBitPayload(Payload):
    """A user's frame: one float32 scale, 2-bit codes (a kind of the user range)."""

    KIND: ClassVar[int] = 201
    META: ClassVar[struct.Struct] = struct.Struct("<f")

    def __init__(self, n: int, scale: float, packed: np.ndarray) -> None:
        self.n = n
        self.scale = float(scale)
        self.packed = packed

    def _meta_values(self) -> tuple[Any, ...]:
        return (self.scale,)

    def _body(self) -> tuple[np.ndarray, ...]:
        return (self.packed,)

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> TwoBitPayload:
        size = (2 * n + 7) // 8
        expect_body_size(body, size)
        return cls(n, meta[0], body_array(body, 0, size, np.uint8, "codes"))


class TwoBit:
    """A deterministic 2-bit quantizer on the max-norm grid {-1, -1/3, 1/3, 1} * scale."""

    name = "user_two_bit"

    def compress(self, x: Any, *, step: int | None = None) -> Payload:
        v = np.asarray(x, dtype=np.float32)
        scale = float(np.abs(v).max()) or 1.0
        codes = np.clip(np.round((v / scale + 1) * 1.5), 0, 3).astype(np.uint8)
        return TwoBitPayload(v.shape[0], scale, laqcore.pack_bits(codes, bits=2))

    def decompress(self, payload: Any) -> np.ndarray:
        codes = laqcore.unpack_bits(payload.packed, 2, payload.n).astype(np.float32)
        return (codes / np.float32(1.5) - 1) * np.float32(payload.scale)

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> Payload:
        return TwoBitPayload.from_bytes(buf, expected_n=expected_n)


class NoDecompress:
    name = "user_no_decompress"

    def compress(self, x: Any, *, step: int | None = None) -> Payload:
        return TwoBit().compress(x)

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> Payload:
        return TwoBit().from_bytes(buf)


class OneValue(TwoBit):
    """decompress returns one value: numpy broadcast it to every coordinate of the sum."""

    def decompress(self, payload: Any) -> np.ndarray:
        return super().decompress(payload)[:1]


class Column(TwoBit):
    def decompress(self, payload: Any) -> np.ndarray:
        return super().decompress(payload)[:, None]


class BareArray(TwoBit):
    """compress returns the array itself: its ``nbytes`` was counted as a frame's."""

    def compress(self, x: Any, *, step: int | None = None) -> Any:
        return np.asarray(x, dtype=np.float32)

    def decompress(self, payload: Any) -> np.ndarray:
        return np.asarray(payload)


@pytest.fixture
def register() -> Iterator[Any]:
    """Register user compressors for one test, and remove them after it."""
    added: list[str] = []

    def add(name: str, factory: Any) -> str:
        laqcore.register_compressor(name, factory)
        added.append(name)
        return name

    yield add
    for name in added:
        del compressor_base._REGISTRY.entries[name]


def _algorithm(codec: str) -> CompressedGradient:
    """GD whose workers upload ``codec(gradient)`` (the template for a user's compressor)."""
    cls = type("UserGD", (CompressedGradient,), {"name": "user-gd", "codec": CodecSpec(codec)})
    return cls()


@pytest.fixture(scope="module")
def problem() -> laqcore.problems.Problem:
    return laqcore.make_problem("digits", workers=2, max_samples=60)


def test_user_compressor_runs_by_name(register: Any, problem: Any) -> None:
    name = register("user_two_bit", TwoBit)
    comp = laqcore.get_compressor(name)
    x = np.linspace(-1, 1, N, dtype=np.float32)
    frame = comp.compress(x).to_bytes()
    assert comp.decompress(comp.from_bytes(frame, expected_n=N)).shape == (N,)
    assert isinstance(payload_from_bytes(frame), TwoBitPayload)
    r = simulate(problem, _algorithm(name), max_iterations=3, f_star=0.0)
    codes = np.zeros((2 * problem.dim + 7) // 8, dtype=np.uint8)
    frame_bits = 8 * TwoBitPayload(problem.dim, 1.0, codes).nbytes
    assert r.uploads == 6 and r.bits == 6 * frame_bits


def test_incomplete_compressor_is_refused_where_it_is_built(register: Any) -> None:
    name = register("user_no_decompress", NoDecompress)
    with pytest.raises(TypeError, match=r"'user_no_decompress' must provide decompress\(\)"):
        laqcore.get_compressor(name)
    with pytest.raises(TypeError, match=r"must provide decompress\(\)"):
        laqcore.ErrorFeedback(NoDecompress())  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [OneValue, Column])
def test_decompress_of_the_wrong_shape_is_refused(register: Any, problem: Any, cls: Any) -> None:
    name = register(f"user_{cls.__name__.lower()}", cls)
    with pytest.raises(ValueError, match=rf"{cls.__name__}.decompress returned shape"):
        simulate(problem, _algorithm(name), max_iterations=3, f_star=0.0)
    with pytest.raises(ValueError, match=rf"{cls.__name__}.decompress returned shape .* n = {N}:"):
        laqcore.ErrorFeedback(cls()).compress(np.ones(N, dtype=np.float32))


def test_an_upload_that_is_not_a_payload_is_refused(register: Any, problem: Any) -> None:
    name = register("user_bare_array", BareArray)
    with pytest.raises(TypeError, match="worker 0's step returned a ndarray, not a laqcore.wire"):
        simulate(problem, _algorithm(name), max_iterations=3, f_star=0.0)
    with pytest.raises(TypeError, match="BareArray.compress returned a ndarray"):
        laqcore.ErrorFeedback(BareArray()).compress(np.ones(N, dtype=np.float32))


@pytest.mark.parametrize("kind", [0, 9, 128, 256, "qsgd", True, 2.0])
def test_payload_kind_outside_the_user_range_is_refused(kind: Any) -> None:
    # 9 is PayloadKind.ENTROPY's byte: a user class took it when laqcore.entropy was not
    # imported yet, and that import then failed with "registered twice".
    with pytest.raises(TypeError, match=r"KIND must be a PayloadKind .* 129\.\.255"):
        type("BadKind", (Payload,), {"KIND": kind, "META": struct.Struct("<f")})


def test_kind_mismatch_names_the_user_payload() -> None:
    sign = laqcore.get_compressor("sign").compress(np.ones(N, dtype=np.float32)).to_bytes()
    with pytest.raises(ValueError, match=r"holds payload kind SIGN, expected TwoBitPayload \(kind"):
        TwoBitPayload.from_bytes(sign)
    mine = TwoBit().compress(np.ones(N, dtype=np.float32)).to_bytes()
    with pytest.raises(
        ValueError, match=r"holds payload kind TwoBitPayload \(kind 201\), expected"
    ):
        laqcore.compressors.SignPayload.from_bytes(mine)


@pytest.mark.parametrize("model", ["softmax", "logistic", "least-squares"])
def test_float_class_labels_run_as_their_integer_ids(model: str) -> None:
    # Whole-number float labels pass the Dataset and Problem checks; the softmax then
    # indexed with them (IndexError) and accuracy() read them as regression targets.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    runs = []
    for labels in (y, y.astype(np.float64)):
        data = laqcore.problems.Dataset("user", X, labels, 2)
        prob = laqcore.make_problem(data, model=model, workers=2)
        r = simulate(prob, laqcore.get_algorithm("gd"), max_iterations=3, f_star=0.0)
        runs.append((r.final_loss, r.test_accuracy, r.train_accuracy))
    assert runs[0] == runs[1]
    assert 0.0 <= runs[1][1] <= 1.0


def test_a_payload_class_defined_again_replaces_itself() -> None:
    # A notebook cell run twice defines the class again: "registered twice" stopped it.
    def define(name: str) -> type[Payload]:
        return type(name, (Payload,), {"KIND": 202, "META": struct.Struct("<f")})

    first = define("Redefined")
    second = define("Redefined")
    from laqcore import wire

    assert wire._REGISTRY[202] is second and second is not first
    with pytest.raises(RuntimeError, match=r"kind 202 registered twice \(Redefined has it\)"):
        define("Another")


def test_a_builtin_registered_under_another_name_is_entropy_coded(register: Any) -> None:
    # register_compressor's own example: "my_sign" builds a SignCompressor, whose payloads
    # entropy coding takes; the registry name alone refused it.
    name = register("user_my_sign", laqcore.compressors.SignCompressor)
    coded = laqcore.get_compressor(name, entropy=True)
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    plain = laqcore.get_compressor("sign")
    frame = coded.compress(x).to_bytes()
    received = coded.from_bytes(frame, expected_n=64)
    np.testing.assert_array_equal(coded.decompress(received), plain.decompress(plain.compress(x)))
    mine = register("user_two_bit_coded", TwoBit)
    with pytest.raises(ValueError, match="'user_two_bit_coded' cannot be entropy-coded"):
        laqcore.get_compressor(mine, entropy=True)
