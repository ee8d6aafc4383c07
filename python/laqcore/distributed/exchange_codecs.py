"""What moves in a :class:`~laqcore.distributed.two_phase.TwoPhaseExchange`, and how owners
aggregate it.

* :class:`LAQChunkCodec` - LAQ (lazy aggregation of quantized innovations). An upload is a
  blockwise :class:`~laqcore.LAQPayload` of the whole vector; its chunk j is a slice (the
  codes and radii of the chunk's blocks, no re-encoding). Owner j keeps its chunk of the
  exact aggregate ``sum_m Q_m`` and publishes the aggregate's innovation against the replica
  with :func:`laqcore.downlink.delta_quantize` (``downlink_bits=None``: as float32, exact).
  Every rank's replica is the same; the averaged gradient is ``replica / N``.
* :class:`CompressorChunkCodec` - QSGD, TernGrad (any stateless compressor): every uploader
  compresses each chunk of its gradient; owner j decodes and averages its chunk, and
  re-compresses the mean with error feedback (what the second compression drops is added
  back at the owner's next publication). The averaged gradient is the decoded publications.

Chunk layout on the wire (no frame header: sizes and meaning are fixed by the exchange):
LAQ ``radii (float32 LE, one per block) + packed codes``; compressors: their wire frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .._validate import as_float_vector, check_bits, check_positive_int
from ..downlink import delta_apply, delta_quantize
from ..error_feedback import ErrorFeedback
from ..laq import LAQPayload, laq_accumulate
from ..packing import packed_size

__all__ = ["CompressorChunkCodec", "LAQChunkCodec"]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
ByteVector = npt.NDArray[np.uint8]
_EMPTY: ByteVector = np.empty(0, np.uint8)


class _Chunked:
    """Bounds bookkeeping shared by the codecs."""

    def __init__(self) -> None:
        self.bounds: list[tuple[int, int]] = []
        self.rank = 0
        self.world = 1
        self.n = 0

    def bind(self, bounds: list[tuple[int, int]], rank: int, world: int) -> None:
        self.bounds, self.rank, self.world = list(bounds), int(rank), int(world)
        self.n = bounds[-1][1]
        self._bound()

    def _bound(self) -> None:
        """Allocate state once the layout is known."""

    def length(self, j: int) -> int:
        s, e = self.bounds[j]
        return e - s

    def start_round(self) -> None:
        """Nothing to reset by default."""


def _laq_chunk_bytes(payload: LAQPayload, s: int, e: int, block_size: int) -> ByteVector:
    """Radii then codes of coordinates [s, e) (s a multiple of the block size)."""
    if s == e:
        return _EMPTY
    b = payload.bits
    radii = np.ascontiguousarray(payload.radii[s // block_size : -(-e // block_size)])
    codes = payload.packed[s * b // 8 : -(-e * b // 8)]
    return np.concatenate([radii.view(np.uint8), codes])


def _laq_from_chunk(data: ByteVector, n: int, bits: int, block_size: int) -> LAQPayload:
    """Inverse of :func:`_laq_chunk_bytes` (the payload validates radii and padding)."""
    k = 4 * (-(-n // block_size))
    if data.shape[0] != k + packed_size(n, bits):
        raise ValueError(f"LAQ chunk of {n} coordinates has {data.shape[0]} bytes")
    radii = data[:k].copy().view(np.float32)
    return LAQPayload.from_blocks(data[k:].copy(), radii, bits, n, block_size)


class LAQChunkCodec(_Chunked):
    """LAQ uploads, exact aggregate at the owners, quantized (or exact) replica everywhere.

    Parameters
    ----------
    bits : int
        Bits per coordinate of the uploads (the hook's ``bits``).
    block_size : int
        The uploads' block size; chunk boundaries must be multiples of it.
    downlink_bits : int or None
        Bits of the owners' publications (double quantization), or ``None`` to publish the
        aggregate's chunk exactly as float32.
    """

    def __init__(self, bits: int, block_size: int, downlink_bits: int | None) -> None:
        super().__init__()
        self.bits = check_bits(bits)
        self.block_size = check_positive_int(block_size, "block_size")
        self.downlink_bits = None if downlink_bits is None else check_bits(downlink_bits)
        self.replica: FloatVector = np.zeros(0, np.float32)
        self.owned: FloatVector = np.zeros(0, np.float32)

    def _bound(self) -> None:
        for s, _ in self.bounds:
            if s % self.block_size:
                raise ValueError(f"chunk start {s} is not a multiple of {self.block_size}")
        self.replica = np.zeros(self.n, np.float32)
        self.owned = np.zeros(self.length(self.rank), np.float32)

    def _radii_bytes(self, j: int) -> int:
        return 4 * (-(-self.length(j) // self.block_size))

    def uplink_size(self, j: int) -> int:
        k = self.length(j)
        return 0 if k == 0 else self._radii_bytes(j) + packed_size(k, self.bits)

    def downlink_size(self, j: int) -> int:
        k = self.length(j)
        if k == 0:
            return 0
        if self.downlink_bits is None:
            return 4 * k
        return self._radii_bytes(j) + packed_size(k, self.downlink_bits)

    def split(self, upload: Any, step: int) -> list[ByteVector]:
        if not isinstance(upload, LAQPayload):
            raise TypeError(f"a LAQ upload must be a LAQPayload, got {type(upload).__name__}")
        if (upload.n, upload.bits, upload.block_size) != (self.n, self.bits, self.block_size):
            raise ValueError(
                f"upload has n={upload.n}, bits={upload.bits}, block_size={upload.block_size}; "
                f"the exchange expects {self.n}, {self.bits}, {self.block_size}"
            )
        return [_laq_chunk_bytes(upload, s, e, self.block_size) for s, e in self.bounds]

    def receive(self, frames: list[ByteVector], step: int) -> None:
        k = self.length(self.rank)
        if k == 0:
            return
        for data in frames:  # rank order: the same sums on every run
            laq_accumulate(self.owned, _laq_from_chunk(data, k, self.bits, self.block_size))

    def publish(self, step: int) -> ByteVector:
        s, e = self.bounds[self.rank]
        if s == e:
            return _EMPTY
        if self.downlink_bits is None:
            self.replica[s:e] = self.owned
            return self.owned.view(np.uint8).copy()
        p = delta_quantize(self.owned, self.replica[s:e], self.downlink_bits, self.block_size)
        data = _laq_chunk_bytes(p, 0, e - s, self.block_size)
        delta_apply(self.replica[s:e], p)
        return data

    def apply(self, j: int, data: ByteVector) -> None:
        s, e = self.bounds[j]
        if s == e:
            return
        if self.downlink_bits is None:
            self.replica[s:e] = data.copy().view(np.float32)
            return
        delta_apply(
            self.replica[s:e], _laq_from_chunk(data, e - s, self.downlink_bits, self.block_size)
        )

    def result(self) -> FloatVector:
        return self.replica / np.float32(self.world)

    def state_dict(self) -> dict[str, Any]:
        return {"replica": self.replica.copy(), "owned": self.owned.copy()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        replica = as_float_vector(sd["replica"], "replica")
        owned = as_float_vector(sd["owned"], "owned", allow_empty=True)
        if replica.shape != self.replica.shape or owned.shape != self.owned.shape:
            raise ValueError(
                f"checkpoint holds a replica of {replica.shape[0]} and an owned chunk of "
                f"{owned.shape[0]} coordinates; this exchange has {self.n} and "
                f"{self.owned.shape[0]} (another model or world size?)"
            )
        self.replica, self.owned = replica.copy(), owned.copy()


class CompressorChunkCodec(_Chunked):
    """Stateless compressor uploads, averaged and re-compressed with error feedback.

    Parameters
    ----------
    name : str
        A :func:`laqcore.get_compressor` name (``"qsgd"``, ``"terngrad"``).
    seed : int
        Base seed. Rank r compresses chunk j on stream ``r + N j``; owner j re-compresses on
        stream ``N^2 + j``: every draw is independent, and reproducible from (seed, step).
    **kwargs
        The compressor's hyper-parameters.
    """

    def __init__(self, name: str, seed: int = 0, **kwargs: Any) -> None:
        super().__init__()
        self.name, self.seed, self.kwargs = name, seed, dict(kwargs)
        self._decoder = self._make(0)  # also validates the hyper-parameters now
        self._up: list[Any] = []
        self._down: ErrorFeedback | None = None
        self.out: FloatVector = np.zeros(0, np.float32)
        self._mean: FloatVector = np.zeros(0, np.float32)

    def _make(self, stream: int) -> Any:
        from ..compressors import get_compressor

        return get_compressor(self.name, seed=self.seed, stream=stream, **self.kwargs)

    def _bound(self) -> None:
        w = self.world
        self._up = [self._make(self.rank + w * j) for j in range(w)]
        self._down = ErrorFeedback(self._make(w * w + self.rank))
        self.out = np.zeros(self.n, np.float32)

    def uplink_size(self, j: int) -> None:
        return None

    def downlink_size(self, j: int) -> None:
        return None

    def start_round(self) -> None:
        self.out.fill(0.0)  # a round without uploads averages nothing

    def split(self, upload: Any, step: int) -> list[ByteVector]:
        g = as_float_vector(upload, "grad")
        if g.shape[0] != self.n:
            raise ValueError(f"grad has length {g.shape[0]}, the exchange expects {self.n}")
        out = []
        for (s, e), comp in zip(self.bounds, self._up):
            frame = b"" if s == e else comp.compress(g[s:e], step=step).to_bytes()
            out.append(np.frombuffer(frame, np.uint8))
        return out

    def _decode(self, data: ByteVector, n: int) -> FloatVector:
        dec = self._decoder
        return np.asarray(dec.decompress(dec.from_bytes(data.tobytes(), expected_n=n)))

    def receive(self, frames: list[ByteVector], step: int) -> None:
        k = self.length(self.rank)
        total = np.zeros(k, np.float32)
        if k:
            for data in frames:
                total += self._decode(data, k)
        self._mean = total / np.float32(max(len(frames), 1))

    def publish(self, step: int) -> ByteVector:
        s, e = self.bounds[self.rank]
        if s == e or self._down is None:
            return _EMPTY
        payload = self._down.compress(self._mean, step=step)
        data = np.frombuffer(payload.to_bytes(), np.uint8)
        self.out[s:e] = self._decode(data, e - s)
        return data

    def apply(self, j: int, data: ByteVector) -> None:
        s, e = self.bounds[j]
        if s != e:
            self.out[s:e] = self._decode(data, e - s)

    def result(self) -> FloatVector:
        return self.out.copy()

    def state_dict(self) -> dict[str, Any]:
        mem = None if self._down is None else self._down.memory
        return {"memory": None if mem is None else mem.copy()}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        if self._down is not None:
            mem = sd["memory"]
            self._down.memory = None if mem is None else as_float_vector(mem, "memory").copy()
