"""What moves in a :class:`~laqcore.distributed.two_phase.TwoPhaseExchange`, and how owners
aggregate it.

* :class:`LAQChunkCodec` - LAQ (lazy aggregation of quantized innovations). An upload is a
  :class:`~laqcore.LAQBlockPayload` (blockwise radius) of the whole vector; its chunk j is a slice
  (:func:`~laqcore.distributed.slicing.slice_payload`: the codes and radii of the chunk's
  blocks, no re-encoding). Owner j keeps its chunk of the exact aggregate ``sum_m Q_m`` and
  publishes the aggregate's innovation against the replica, quantized with the same
  blockwise LAQ quantizer (:func:`laqcore.downlink.requantize`, also the simulator's
  ``--downlink delta:laq:B``:
  double quantization as in AsyLPG, the residual stays in ``owned - replica`` and is sent
  with the next innovation, so it never accumulates; ``downlink_bits=None``: the chunk as
  float32, exact). Every rank's replica is the same; the averaged gradient is ``replica / N``.
* :class:`CompressorChunkCodec` - QSGD, TernGrad: an upload is the compressor's payload of
  the whole gradient; owner j decodes its chunk of every upload, averages them, and
  re-compresses the mean with the same unbiased compressor, on fresh randomness and *without*
  error feedback. The averaged gradient is the decoded publications: unbiased, with variance
  at most ``omega (||mean||^2 + ...)`` (docs/ddp.md, "The two-phase exchange").
  Error feedback is only stable for a contractive compressor
  (``||C(x) - x||^2 <= (1 - delta) ||x||^2``); QSGD at 7 levels in buckets of 512 has
  ``E||C(x) - x||^2 ~ 1.6 ||x||^2``, so its memory grew without bound and training diverged.

Every chunk that crosses the wire travels as a laqcore wire frame (header and CRC: 24 bytes
per chunk) and every receiver applies the *decoded* bytes, so the replicas cannot differ; an
owner's own chunk of its upload never leaves the process and is applied from the payload
itself (the slice whose frame the owner would have decoded). The publications (downlink)
are decoded by every rank but their owner, which applies what it encoded directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from .._validate import as_float_vector, check_bits, check_block_size, check_bool
from ..compressors.base import ScaledCodesPayload
from ..compressors.qsgd import QSGDPayload
from ..entropy import EntropyPayload, entropy_frame
from ..laq import laq_accumulate_all, laq_apply_average, laq_quantize
from ..laq_payload import LAQPayload
from ..wire import Payload
from .slicing import slice_payload, slice_unit

__all__ = [
    "CompressorChunkCodec",
    "LAQChunkCodec",
    "check_in_range",
    "compress_in_range",
    "laq_frame",
]


def __dir__() -> list[str]:
    return __all__


FloatVector = npt.NDArray[np.float32]
ByteVector = npt.NDArray[np.uint8]
_EMPTY: ByteVector = np.empty(0, np.uint8)
_DOWN_BLOCK = 256  # publications of global-radius uploads
T = TypeVar("T")


def _frame(payload: Payload) -> ByteVector:
    return np.frombuffer(payload.to_bytes(), np.uint8)


def check_in_range(chunk: npt.NDArray[Any], owner: int) -> None:
    """``OverflowError`` unless every value of owner ``owner``'s ``chunk`` of the aggregate is
    finite: the uploads are finite, so only their sum can have left the float type's range
    (the accumulations do not check it). Exact for any float type, and the cheapest test
    measured (a float64 sum of 2M float32 took 15 times as long)."""
    if not bool(np.isfinite(chunk).all()):
        raise OverflowError(
            f"owner {owner}: its chunk of the aggregate (the sum of the ranks' uploads) leaves "
            f"the range of {chunk.dtype}"
        )


def compress_in_range(compress: Callable[[], T], chunk: npt.NDArray[Any], owner: int) -> T:
    """``compress()`` (an owner's publication of its ``chunk`` of the aggregate). The kernels
    reject an Inf in their input as bad input (``ValueError``); here it means the sum of the
    uploads overflowed, so it becomes the ``OverflowError`` of :func:`check_in_range`. Any
    other ``ValueError`` (a finite chunk) is raised as it is."""
    try:
        return compress()
    except OverflowError:  # the kernels' FloatRangeError: already a range error
        raise
    except ValueError:
        check_in_range(chunk, owner)
        raise


def laq_frame(data: bytes | ByteVector | LAQPayload, n: int) -> LAQPayload:
    """A LAQ frame of ``n`` coordinates (global or blockwise radius, plain or entropy-coded),
    else ``ValueError``; an owner's own chunk comes as the payload itself. The DDP hook's
    all-gather exchange decodes its frames with it too."""
    if isinstance(data, LAQPayload):
        return data
    p = Payload.from_bytes(data, expected_n=n)
    if isinstance(p, EntropyPayload):
        p = p.inner
    if not isinstance(p, LAQPayload):
        raise ValueError(f"expected a LAQ frame, got {type(p).__name__}")
    return p


class _Chunked:
    """Bounds bookkeeping shared by the codecs."""

    unit = 8

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

    def _split(self, payload: Payload) -> list[ByteVector]:
        """The frames of the chunks for the other owners (this rank's own entry is empty)."""
        if int(getattr(payload, "n", -1)) != self.n:
            raise ValueError(
                f"upload encodes {getattr(payload, 'n', '?')} coordinates, "
                f"the exchange expects {self.n}"
            )
        return [
            _EMPTY if s == e or j == self.rank else self._encode(slice_payload(payload, s, e))
            for j, (s, e) in enumerate(self.bounds)
        ]

    def _encode(self, payload: Payload) -> ByteVector:
        """The wire frame of one chunk."""
        return _frame(payload)

    def own_chunk(self, upload: Payload) -> Payload | None:
        """This rank's own chunk of its (already split) upload, unframed; ``None`` if empty."""
        s, e = self.bounds[self.rank]
        return None if s == e else slice_payload(upload, s, e)


class LAQChunkCodec(_Chunked):
    """LAQ uploads, exact aggregate at the owners, quantized (or exact) replica everywhere.

    Parameters
    ----------
    bits : int
        Bits per coordinate of the uploads (the hook's ``bits``).
    block_size : int or None
        The uploads' block size (a multiple of 8), or ``None`` for global-radius uploads.
    downlink_bits : int or None
        Bits of the owners' publications (double quantization), or ``None`` to publish the
        aggregate's chunk exactly as float32.
    downlink_block_size : int, optional
        Block size of the publications; default ``block_size``, or 256 for global-radius
        uploads. Chunk boundaries are multiples of both block sizes, so quantizing chunk by
        chunk is quantizing the whole vector blockwise.
    entropy : bool, default False
        Entropy-code the codes of every chunk that crosses the wire, uplink and downlink
        (:func:`laqcore.entropy.entropy_encode`: lossless, so the replicas, the average and
        every decision are the same as without it; only the bytes change). Frame sizes then
        depend on the data and travel with the control values
        (:class:`~laqcore.distributed.two_phase.TwoPhaseExchange`).
    """

    def __init__(
        self,
        bits: int,
        block_size: int | None,
        downlink_bits: int | None,
        downlink_block_size: int | None = None,
        entropy: bool = False,
    ) -> None:
        super().__init__()
        self.entropy = check_bool(entropy, "entropy")
        self.bits = check_bits(bits)
        self.block_size = check_block_size(block_size)
        down = check_block_size(downlink_block_size or self.block_size or _DOWN_BLOCK)
        self.downlink_block_size: int = down or _DOWN_BLOCK
        self.unit = math.lcm(self.block_size or 8, self.downlink_block_size)
        self.downlink_bits = None if downlink_bits is None else check_bits(downlink_bits)
        self.replica: FloatVector = np.zeros(0, np.float32)
        self.owned: FloatVector = np.zeros(0, np.float32)
        self._sizes: list[tuple[int, int]] = []
        # This round's publications by owner, applied to the replica in ``result`` (fused
        # with the average, :func:`~laqcore.laq.laq_apply_average`): one pass, not two.
        self._pending: dict[int, LAQPayload] = {}
        # ``owned`` before this round's uploads, restored by ``discard`` (a failed owner).
        self._owned_before: FloatVector = np.zeros(0, np.float32)
        self._exact_own = False  # an exact publication of ``owned`` awaits ``result``
        self._received = False  # ``_owned_before`` holds this round's ``owned``

    def _bound(self) -> None:
        self.replica = np.zeros(self.n, np.float32)
        s, e = self.bounds[self.rank]
        self.owned = np.zeros(e - s, np.float32)
        self._owned_before = np.zeros(e - s, np.float32)
        # Frame sizes are fixed by (length, bits, block size): no size exchange needed.
        sizes = {}
        for k in {e - s for s, e in self.bounds if e > s}:
            zero = np.zeros(k, np.float32)
            up = laq_quantize(zero, None, self.bits, self.block_size).nbytes
            b, down_bs = self.downlink_bits, self.downlink_block_size
            down = 4 * k if b is None else laq_quantize(zero, None, b, down_bs).nbytes
            sizes[k] = (up, down)
        self._sizes = [sizes.get(e - s, (0, 0)) for s, e in self.bounds]

    def uplink_size(self, j: int) -> int | None:
        return None if self.entropy else self._sizes[j][0]

    def downlink_size(self, j: int) -> int | None:
        return None if self.entropy and self.downlink_bits is not None else self._sizes[j][1]

    def _encode(self, payload: Payload) -> ByteVector:
        if self.entropy:
            return np.frombuffer(entropy_frame(payload), np.uint8)
        return _frame(payload)

    def start_round(self) -> None:
        """The replica persists across rounds; no publication is pending."""
        self._pending.clear()
        self._exact_own = False
        self._received = False

    def split(self, upload: Any, step: int) -> list[ByteVector]:
        if not isinstance(upload, LAQPayload):
            raise TypeError(f"a LAQ upload must be a LAQPayload, got {type(upload).__name__}")
        if (upload.bits, upload.block_size) != (self.bits, self.block_size):
            raise ValueError(
                f"upload has bits={upload.bits}, block_size={upload.block_size}; the "
                f"exchange expects {self.bits}, {self.block_size}"
            )
        return self._split(upload)

    def receive(self, chunks: list[ByteVector | LAQPayload], step: int) -> None:
        k = self.owned.shape[0]
        if k and chunks:  # rank order: the same sums on every run; one pass over the chunk
            frames = [laq_frame(data, k) for data in chunks]
            np.copyto(self._owned_before, self.owned)
            self._received = True
            laq_accumulate_all(self.owned, frames)

    def publish(self, step: int) -> ByteVector:
        s, e = self.bounds[self.rank]
        if s == e:
            return _EMPTY
        if self.downlink_bits is None:
            check_in_range(self.owned, self.rank)
            self._exact_own = True  # the replica takes it in ``result``, not before
            return self.owned.view(np.uint8).copy()
        # requantize(owned, replica[s:e]) in place: the same two kernels, no copies; the
        # apply waits for ``result``, which fuses it with the average.
        held = self.replica[s:e]
        bits, bs = self.downlink_bits, self.downlink_block_size
        p = compress_in_range(
            lambda: laq_quantize(self.owned, held, bits, bs), self.owned, self.rank
        )
        self._pending[self.rank] = p
        return self._encode(p)

    def apply(self, j: int, data: ByteVector) -> None:
        s, e = self.bounds[j]
        if s == e:
            return
        if self.downlink_bits is None:
            self.replica[s:e] = data.view(np.float32)
        else:  # decoded (and checked) now, applied in ``result``
            self._pending[j] = laq_frame(data, e - s)

    def result(self, out: FloatVector | None = None) -> FloatVector:
        """``replica / N``, after applying this round's publications to the replica: each
        chunk with a publication in one pass (:func:`~laqcore.laq.laq_apply_average`,
        bit-identical to the apply and then the divide), the others by a plain divide."""
        avg = np.empty(self.n, np.float32) if out is None else out
        world = np.float32(self.world)
        if self._exact_own:
            s, e = self.bounds[self.rank]
            self.replica[s:e] = self.owned
            self._exact_own = False
        for j, (s, e) in enumerate(self.bounds):
            p = self._pending.get(j)
            if p is not None:
                laq_apply_average(self.replica[s:e], p, self.world, avg[s:e])
            elif e > s:
                np.divide(self.replica[s:e], world, out=avg[s:e])
        self._pending.clear()
        return avg

    def discard(self) -> None:
        """Undo this round: ``owned`` as before its uploads, nothing pending (the replica is
        only written in ``result``)."""
        if self._received:
            np.copyto(self.owned, self._owned_before)
        self.start_round()

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
    """Compressed uploads, averaged at the owners and re-compressed (unbiased, no memory).

    The owner's publication is ``C(mean)`` with ``C`` the uploads' unbiased compressor, so the
    result is an unbiased estimate of the mean of the uploaded gradients (TernGrad: up to its
    clipping). No error feedback: with a non-contractive compressor (QSGD, TernGrad:
    ``E||C(x) - x||^2 >= ||x||^2`` is common) the residual ``e <- x + e - C(x + e)`` grows
    every round.

    Parameters
    ----------
    name : str
        A :func:`laqcore.get_compressor` name whose payloads slice (``"qsgd"``,
        ``"terngrad"``).
    seed : int
        Base seed of the owners' re-compression: owner j draws on stream ``N^2 + j`` (the
        hooks' uploads use stream ``rank``), keyed on the step, so a resumed run draws the
        same noise.
    **kwargs
        The compressor's hyper-parameters (the same as the uploads').
    """

    def __init__(self, name: str, seed: int = 0, **kwargs: Any) -> None:
        super().__init__()
        self.name, self.seed, self.kwargs = name, seed, dict(kwargs)
        self._decoder = self._make(0)  # also validates the hyper-parameters now
        self.unit = slice_unit(self._decoder.compress(np.ones(1, np.float32), step=0))
        self._down: Any = None
        self._sizes: list[int | None] = []
        self.out: FloatVector = np.zeros(0, np.float32)
        self._mean: FloatVector = np.zeros(0, np.float32)

    def _make(self, stream: int) -> Any:
        from ..compressors import get_compressor

        return get_compressor(self.name, seed=self.seed, stream=stream, **self.kwargs)

    def _bound(self) -> None:
        self._down = self._make(self.world * self.world + self.rank)
        self.out = np.zeros(self.n, np.float32)
        # QSGD and TernGrad frames have a size fixed by the chunk's length (scales and packed
        # codes of fixed widths): no size exchange. Another payload kind exchanges sizes.
        sizes: dict[int, int | None] = {}
        for k in {e - s for s, e in self.bounds if e > s}:
            probe = self._decoder.compress(np.zeros(k, np.float32), step=0)
            fixed = isinstance(probe, (QSGDPayload, ScaledCodesPayload))
            sizes[k] = int(probe.nbytes) if fixed else None
        self._sizes = [sizes.get(e - s, 0) for s, e in self.bounds]

    def uplink_size(self, j: int) -> int | None:
        return self._sizes[j]

    def downlink_size(self, j: int) -> int | None:
        return self._sizes[j]

    def start_round(self) -> None:
        self.out.fill(0.0)  # a round without uploads averages nothing

    def split(self, upload: Any, step: int) -> list[ByteVector]:
        if not isinstance(upload, Payload):
            raise TypeError(f"an upload must be a Payload, got {type(upload).__name__}")
        frames = self._split(upload)
        for j, f in enumerate(frames):
            want = self._sizes[j]
            if j != self.rank and want is not None and f.shape[0] != want:
                raise ValueError(
                    f"chunk {j} of the upload is a frame of {f.shape[0]} bytes, the exchange "
                    f"expects {want} (an upload made with other {self.name} parameters?)"
                )
        return frames

    def _decode(self, data: ByteVector | Payload, n: int) -> FloatVector:
        dec = self._decoder
        p = data if isinstance(data, Payload) else dec.from_bytes(data, expected_n=n)
        return np.asarray(dec.decompress(p))

    def receive(self, chunks: list[ByteVector | Payload], step: int) -> None:
        s, e = self.bounds[self.rank]
        total = np.zeros(e - s, np.float32)
        for data in chunks if e > s else []:
            total += self._decode(data, e - s)
        self._mean = total / np.float32(max(len(chunks), 1))

    def publish(self, step: int) -> ByteVector:
        s, e = self.bounds[self.rank]
        if s == e or self._down is None:
            return _EMPTY
        down, mean = self._down, self._mean
        p = compress_in_range(lambda: down.compress(mean, step=step), mean, self.rank)
        self.out[s:e] = self._decode(p, e - s)  # what the others decode from its frame
        return _frame(p)

    def apply(self, j: int, data: ByteVector) -> None:
        s, e = self.bounds[j]
        if s != e:
            self.out[s:e] = self._decode(data, e - s)

    def result(self, out: FloatVector | None = None) -> FloatVector:
        if out is None:
            return self.out.copy()
        np.copyto(out, self.out)
        return out

    def discard(self) -> None:
        """Nothing to undo: nothing persists between rounds."""

    def state_dict(self) -> dict[str, Any]:
        """Nothing persists between rounds (the randomness is keyed on the step)."""
        return {}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Nothing to restore; the ``memory`` of checkpoints written before the owners' error
        feedback was removed is ignored."""
