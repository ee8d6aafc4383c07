"""The engine's owner-chunk exchange (``laqcore launch --exchange two-phase``).

The engine's ranks each hold a group of workers and a replica of the server. With the
all-gather exchange every rank receives every uploader's frame, so the bytes a rank receives
grow with the number of ranks N. Here the vector is split into N chunks
(:func:`~laqcore.distributed.two_phase.chunk_bounds`, boundaries on the uploads' slice unit)
and the round runs on :class:`~laqcore.distributed.two_phase.TwoPhaseExchange`, the DDP
hook's exchange, with :class:`EngineChunkCodec` as its codec:

0. **Control** (the exchange's all-gather, widened): every rank announces, per worker slot,
   ``(worker id, payload bytes)`` of its uploads (``(-1, 0)``: no upload). Every rank checks
   that each rank announced only its own workers (else every rank raises the same
   ``ValueError``) and learns the round's upload decisions and sizes, the simulator's
   counters.
1. **Uplink**: rank r sends owner j one upload bundle (:func:`laqcore.wire.pack_uploads`) of
   the chunk-j slices of its uploads (:func:`~laqcore.distributed.slicing.slice_payload`, no
   re-encoding); owner j checks it (the sender's own workers, exactly the announced ones) and
   folds its chunk of the server's state (:meth:`laqcore.algorithms.base.Server.fold`: the
   chunk of the aggregate, or of the sum, that ``apply`` would compute).
2. **Downlink**: owner j publishes its chunk of that state exactly (float32 or float64, the
   server's dtype), by one all-gather; every rank assembles the whole state vector and calls
   ``server.commit``, which finishes the round as ``server.apply`` would. With
   ``downlink_bits`` (``--downlink delta:laq:B``) the owner keeps its exact chunk and
   publishes it re-quantized against the copy every rank holds
   (:class:`laqcore.downlink.ChunkedStateDownlink`, one LAQ frame per chunk), and every rank
   commits that copy: what the simulator computes with ``downlink_chunks = N``.

``server.apply(uploads)`` is ``commit(fold(uploads, 0, n))`` and every fold is coordinate-wise
(a sum in worker order, a LAQ accumulate, a float32 -> float64 add), so the replicas are
bit-identical to the simulator's server: same iterates, same upload decisions (tested for
GD, LAG-WK and LAQ at 2 and 4 processes).

Which algorithms can: a server with ``chunkable`` (GD, SGD, the compressed SGDs but
sparse+quantized, the LAQ family, LAG-WK, LAG-PS) whose uploads slice (dense, LAQ, QSGD,
TernGrad, scaled sign; not the sparse ones): :func:`upload_unit` says, before any work.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .._validate import check_positive_int
from ..algorithms import uploads_width_frames
from ..downlink import ChunkedStateDownlink, parse_downlink
from ..laq import laq_quantize
from ..laq_payload import LAQPayload
from ..wire import Payload, pack_uploads, unpack_uploads
from .exchange_codecs import check_in_range, compress_in_range
from .slicing import chunk_bounds, slice_payload, slice_unit

if TYPE_CHECKING:
    from ..algorithms.base import Algorithm, Server

__all__ = [
    "EXCHANGES",
    "AnnouncedUpload",
    "EngineChunkCodec",
    "check_exchange",
    "owner_chunks",
    "resolve_exchange",
    "upload_unit",
]


def __dir__() -> list[str]:
    return __all__


#: ``--exchange`` choices: ``auto`` is ``two-phase`` where the algorithm allows it.
EXCHANGES = ("auto", "two-phase", "all-gather")
ByteVector = npt.NDArray[np.uint8]
_EMPTY: ByteVector = np.empty(0, np.uint8)
_NO_WORKER = -1


def _probe(algorithm: Algorithm, dim: int) -> Payload | None:
    """An upload of the kind this algorithm's workers send (zeros), or ``None``."""
    from ..algorithms.base import CompressedGradient
    from ..algorithms.lag import LAGPS, LAGWK
    from ..algorithms.lazy_common import InnovationAlgorithm
    from ..compressors import get_compressor

    zeros = np.zeros(dim, np.float32)
    p = algorithm.params
    if isinstance(algorithm, CompressedGradient):
        return algorithm.build_compressor(0).compress(zeros, step=0)
    if isinstance(algorithm, InnovationAlgorithm):
        return laq_quantize(zeros, None, p.bits, p.block_size)
    if isinstance(algorithm, (LAGWK, LAGPS)):
        return get_compressor("none").compress(zeros)
    return None


def upload_unit(algorithm: Algorithm, server: Server) -> int | None:
    """Chunk boundaries for this algorithm's uploads (a multiple of 8 and of their slice
    unit, so every bit width of adaptive-bits LAQ slices too), or ``None`` if the engine
    cannot run it over the two-phase exchange."""
    if not type(server).chunkable:
        return None
    if uploads_width_frames(algorithm):
        return None  # the first upload slices, the width frames after it do not
    probe = _probe(algorithm, server.dim)
    try:
        return None if probe is None else math.lcm(8, slice_unit(probe))
    except TypeError:  # a payload kind that does not slice (sparse)
        return None


def resolve_exchange(exchange: str, algorithm: Algorithm, server: Server) -> int | None:
    """The chunk unit if the run uses the two-phase exchange, ``None`` for the all-gather;
    ``ValueError`` for an unknown name or ``two-phase`` with an algorithm that cannot."""
    if exchange not in EXCHANGES:
        raise ValueError(f"exchange must be one of {', '.join(EXCHANGES)}, got {exchange!r}")
    if exchange == "all-gather":
        return None
    unit = upload_unit(algorithm, server)
    if unit is None and exchange == "two-phase" and uploads_width_frames(algorithm):
        raise ValueError(
            "--exchange two-phase: the frames of --width-block (a width per block) cannot be "
            "split into owner chunks; use --exchange all-gather or auto"
        )
    if unit is None and exchange == "two-phase":
        raise ValueError(
            f"--exchange two-phase needs an algorithm whose server folds chunks of sliceable "
            f"uploads (gd, sgd, qsgd, terngrad, ef-sign, the LAQ family, lag-wk, lag-ps); "
            f"{algorithm.name} cannot: use --exchange all-gather or auto"
        )
    return unit


def owner_chunks(algorithm: Algorithm, server: Server, chunks: int) -> list[tuple[int, int]]:
    """The ``chunks`` owner chunks of the vector, exactly as the engine's two-phase exchange
    with ``chunks`` processes splits it (the simulator's ``downlink_chunks``)."""
    chunks = check_positive_int(chunks, "downlink_chunks")
    unit = upload_unit(algorithm, server)
    if unit is None:
        raise ValueError(
            f"a chunked downlink needs an algorithm whose server folds chunks of sliceable "
            f"uploads (as --exchange two-phase); {algorithm.name} cannot"
        )
    return chunk_bounds(server.dim, chunks, unit)


def check_exchange(exchange: str, algorithm: Algorithm, downlink: str = "delta") -> bool:
    """The engine's checks of ``exchange`` and ``downlink`` on a small stand-in server of
    this algorithm (the CLI's, before any process starts); returns whether the downlink is
    quantized."""
    server = algorithm.make_server(np.zeros(64), 2, np.ones(2))
    unit = resolve_exchange(exchange, algorithm, server)
    down = parse_downlink(downlink)
    if down.name != "delta" and not (down.kind == "delta" and down.quantized):
        raise ValueError(f"the engine's downlink is delta or delta:laq:B, got {downlink!r}")
    if unit is None and down.quantized:
        raise ValueError(
            f"downlink {down.name} needs the two-phase exchange ({algorithm.name} with exchange "
            f"{exchange!r} runs the all-gather)"
        )
    return down.quantized


class AnnouncedUpload(Payload):
    """Stands for another rank's upload of this round in the engine's batch: the control
    announced its worker and size; its bytes went, chunk by chunk, to the owners only.
    Not a wire kind (no ``KIND``): it cannot be framed."""

    def __init__(self, n: int, nbytes: int) -> None:
        self.n = int(n)
        self._nbytes = int(nbytes)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def __repr__(self) -> str:
        return f"AnnouncedUpload(n={self.n}, nbytes={self.nbytes})"


class EngineChunkCodec:
    """What the engine's ranks exchange in a :class:`TwoPhaseExchange` (module docstring).

    Parameters
    ----------
    server : Server
        This rank's server replica (``chunkable``): owners fold with it.
    owned : list of list of int
        ``owned[r]``: the workers of rank r (increasing).
    unit : int
        Chunk boundaries are multiples of it (:func:`upload_unit`).
    downlink_bits : int or None
        Publish the state re-quantized to this many bits (``None``: exactly).
    """

    def __init__(
        self, server: Server, owned: list[list[int]], unit: int, downlink_bits: int | None = None
    ) -> None:
        self.server = server
        self.downlink_bits = downlink_bits
        self.down: ChunkedStateDownlink | None = None
        self.owned = [list(o) for o in owned]
        self.unit = int(unit)
        self.slots = max(len(o) for o in self.owned)
        self.bounds: list[tuple[int, int]] = []
        self.rank, self.world = 0, 1
        self.dtype: np.dtype[Any] = np.dtype(np.float64)
        self.state: npt.NDArray[Any] = np.zeros(0)
        self._mine: npt.NDArray[Any] = np.zeros(0)
        #: This round's uploaders (rank order) and every announced upload (worker -> bytes).
        self.senders: list[int] = []
        self.announced: dict[int, int] = {}

    # -- layout -----------------------------------------------------------------------
    def bind(self, bounds: list[tuple[int, int]], rank: int, world: int) -> None:
        self.bounds, self.rank, self.world = list(bounds), int(rank), int(world)
        self.dtype = np.asarray(self.server.fold({}, 0, 0)).dtype
        self.state = np.zeros(bounds[-1][1], self.dtype)
        if self.downlink_bits is not None:
            self.down = ChunkedStateDownlink(self.server, self.downlink_bits, self.bounds)

    def uplink_size(self, j: int) -> int | None:
        return None  # bundles: as many items as the sender's uploading workers

    def downlink_size(self, j: int) -> int:
        s, e = self.bounds[j]
        if self.downlink_bits is None or s == e:
            return (e - s) * self.dtype.itemsize
        return laq_quantize(np.zeros(e - s, np.float32), None, self.downlink_bits).nbytes

    # -- control ----------------------------------------------------------------------
    def announce(self, uploads: dict[int, Payload]) -> list[int]:
        """This rank's control ints: ``(worker id, bytes)`` per slot, ``(-1, 0)`` unused."""
        out = [_NO_WORKER, 0] * self.slots
        for i, (m, p) in enumerate(sorted(uploads.items())):
            out[2 * i : 2 * i + 2] = [int(m), int(p.nbytes)]
        return out

    def check_control(self, statuses: list[int], controls: list[list[int]]) -> None:
        """On every rank: each rank announced only its own workers (else ``ValueError``)."""
        announced: dict[int, int] = {}
        for r, ints in enumerate(controls):
            mine = [(m, b) for m, b in zip(ints[::2], ints[1::2]) if m != _NO_WORKER]
            for m, _ in mine:
                if m not in self.owned[r]:
                    raise ValueError(
                        f"rank {r} sent an upload labelled as worker {m}, which is not one of "
                        f"its workers {self.owned[r]}"
                    )
            if statuses[r] != 1:  # skipped, or non-finite: nothing of it is applied
                mine = []
            announced.update(mine)
        self.announced = dict(sorted(announced.items()))
        self.senders = [r for r, s in enumerate(statuses) if s == 1]

    # -- one round --------------------------------------------------------------------
    def start_round(self) -> None:
        """The state is rebuilt from the publications of every round with uploads."""

    def split(self, upload: dict[int, Payload], step: int) -> list[ByteVector]:
        items = sorted(upload.items())
        return [
            _EMPTY
            if j == self.rank or s == e
            else np.frombuffer(
                pack_uploads([(m, slice_payload(p, s, e)) for m, p in items]), np.uint8
            )
            for j, (s, e) in enumerate(self.bounds)
        ]

    def own_chunk(self, upload: dict[int, Payload]) -> dict[int, Payload] | None:
        s, e = self.bounds[self.rank]
        return None if s == e else {m: slice_payload(p, s, e) for m, p in upload.items()}

    def receive(self, chunks: list[Any], step: int) -> None:
        s, e = self.bounds[self.rank]
        if s == e:
            return
        batch: dict[int, Payload] = {}
        for r, data in zip(self.senders, chunks):
            got = (
                dict(data)
                if isinstance(data, dict)
                else dict(
                    unpack_uploads(data, expected_n=e - s, owned=self.owned[r], sender=f"rank {r}")
                )
            )
            want = [m for m in self.announced if m in self.owned[r]]
            if sorted(got) != want:
                raise ValueError(
                    f"rank {r} sent chunks of workers {sorted(got)} but announced {want}"
                )
            batch.update(got)
        if self.down is not None:
            self.down.fold(batch, s, e)
        else:
            self._mine = self.server.fold(batch, s, e)

    def publish(self, step: int) -> ByteVector:
        s, e = self.bounds[self.rank]
        if s == e:
            return _EMPTY
        if self.down is not None:
            down = self.down
            pub = compress_in_range(lambda: down.publish(s, e), down.exact[s:e], self.rank)
            return np.frombuffer(pub.to_bytes(), np.uint8)
        check_in_range(self._mine, self.rank)  # NaN bytes would read as a failure marker
        self.state[s:e] = self._mine
        return self.state[s:e].view(np.uint8)

    def apply(self, j: int, data: ByteVector) -> None:
        s, e = self.bounds[j]
        if s != e and self.down is not None:
            self.down.receive(s, e, LAQPayload.from_bytes(data, expected_n=e - s))
        elif s != e:
            self.state[s:e] = np.frombuffer(data.tobytes(), self.dtype)

    def discard(self) -> None:
        """Nothing to undo: the engine raises on every rank after a failed owner (the run
        ends), so the round's folds are never used."""

    def result(self, out: Any = None) -> npt.NDArray[Any]:
        """The whole state vector (the server's dtype), valid after a round with uploads."""
        return self.state

    def commit(self, uploaders: list[int]) -> int:
        """Finish a round with uploads on the server replica; returns the downlink bytes one
        broadcast of the publications carries (what the simulator counts per worker)."""
        if self.down is None:
            self.server.commit(uploaders, self.state)
            return 0
        self.down.commit(uploaders)
        return sum(self.downlink_size(j) for j, (s, e) in enumerate(self.bounds) if e > s)
