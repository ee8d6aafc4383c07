"""Lossless entropy coding of code streams: the ``ENTROPY`` frame kind.

The codes that LAQ (single or blockwise radius), QSGD, the rotation quantizer, TernGrad and
scaled sign put on the wire are far from uniform
(on the README's digits run the 4-bit LAQ codes carry about 2.6 bits of information each).
:func:`entropy_encode` re-codes a payload's packed codes with the interleaved rANS coder of
``cpp/include/laqcore/entropy.hpp`` (a static frequency table per frame, chosen by the
encoder, sent in the frame) and :func:`entropy_decode` restores the *identical* payload:
same metadata, same codes, so the receiver computes exactly the same values and a run's
iterates and upload decisions do not change, only its bit count.

Frame (``PayloadKind.ENTROPY``, see :mod:`laqcore.wire`): metadata ``<BB`` = (kind of the
inner payload, symbol mode: 0 = one rANS symbol per code, 1 = one per packed byte, i.e. a
group of ``8 / bits`` codes, 2 = the packed codes stored as they are); body = the inner
payload's metadata bytes, then the inner body up to its packed codes (QSGD's float32 scales;
empty for the others), then the rANS stream of the codes (mode 2: the packed codes).
Decoding rebuilds the inner frame and decodes it with the inner payload's own ``from_bytes``,
so an ENTROPY frame is checked like the frame it carries: a truncated, corrupt or
inconsistent frame raises ``ValueError``.

Untrusted frames: a coded frame of a few dozen bytes can legitimately describe millions of
equal codes, and decoding it allocates the packed codes. Receivers pass ``expected_n`` (as
:mod:`laqcore.wire` asks for every kind; the distributed engine does); without it an ENTROPY
frame may declare at most ``max(2**24, 2**12 * body bytes)`` codes (``ValueError``
otherwise): decoding allocates one byte per code at most, so a forged header cannot make a
receiver allocate more than that.

A coded frame is only worth it when the codes are skewed: for near-uniform codes (scaled
sign, TernGrad on flat vectors) the table and the coder's 4 bytes of state per lane would
make it larger than the plain frame, so the encoder then stores the packed codes (mode 2)
and the frame is exactly 2 bytes (its own metadata) longer than the plain one.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from . import _core
from .wire import _HEADER, _REGISTRY, Payload, PayloadKind

__all__ = [
    "CODABLE_COMPRESSORS",
    "EntropyCodedCompressor",
    "EntropyPayload",
    "entropy_decode",
    "entropy_encode",
    "entropy_frame",
    "is_codable",
]


def __dir__() -> list[str]:
    return __all__


#: Registry names of the compressors whose payloads can be entropy-coded.
CODABLE_COMPRESSORS = ("laq", "qsgd", "rotation", "terngrad", "sign")

# The payload kinds with a code stream. Their classes are looked up in the wire registry
# (this module sits below the compressors, which import it lazily for entropy=True).
_CODABLE = (
    int(PayloadKind.LAQ),
    int(PayloadKind.QSGD),
    int(PayloadKind.TERNGRAD),
    int(PayloadKind.SIGN),
    int(PayloadKind.ROTATION),
    int(PayloadKind.LAQ_BLOCK),
)
_QSGD_MAX_LEVELS = 127
FloatVector = npt.NDArray[np.float32]
_MODES = (0, 1, 2)  # codes, packed bytes, stored (cpp/include/laqcore/entropy.hpp)
#: Without ``expected_n``, an ENTROPY frame may declare at most
#: ``max(UNVERIFIED_MAX_BYTES, UNVERIFIED_MAX_EXPANSION * body bytes)`` codes.
UNVERIFIED_MAX_BYTES = 1 << 24
UNVERIFIED_MAX_EXPANSION = 1 << 12


def is_codable(payload: Payload) -> bool:
    """True for the payload kinds :func:`entropy_encode` accepts."""
    kind = int(payload.KIND)
    return kind in _CODABLE and type(payload) is _REGISTRY.get(kind)


def _code_layout(kind: int, meta: tuple[Any, ...], n: int) -> tuple[int, int, int]:
    """(bytes of the inner body before the packed codes, bits per code, number of codes) of
    an inner frame, from its metadata; ``ValueError`` for metadata no valid frame has."""
    if n < 1:
        raise ValueError(f"corrupt ENTROPY frame: vector length n = {n} (must be >= 1)")
    if kind in (PayloadKind.LAQ, PayloadKind.LAQ_BLOCK):
        bits = int(meta[0])
        if not 1 <= bits <= 8:
            raise ValueError(f"corrupt ENTROPY frame: LAQ bits = {bits}, must be in [1, 8]")
        if kind == PayloadKind.LAQ:
            return 0, bits, n
        block_size = int(meta[3])  # the blockwise radii precede the codes
        if block_size < 1:
            raise ValueError(f"corrupt ENTROPY frame: LAQ block_size = {block_size}")
        return 4 * (-(-n // block_size)), bits, n
    if kind in (PayloadKind.QSGD, PayloadKind.ROTATION):
        levels, bucket_size = int(meta[0]), int(meta[2])
        if not 1 <= levels <= _QSGD_MAX_LEVELS or bucket_size < 1 or n > 2**62:
            raise ValueError(
                f"corrupt ENTROPY frame: levels = {levels}, bucket_size = {bucket_size}, n = {n}"
            )
        count = n if kind == PayloadKind.QSGD else int(_core.rotation.padded_size(n))
        return 4 * (-(-count // bucket_size)), int(_core.qsgd.code_bits(levels)), count
    return 0, 2 if kind == PayloadKind.TERNGRAD else 1, n


class EntropyPayload(Payload):
    """An entropy-coded payload.

    Attributes
    ----------
    inner : Payload
        The payload it carries (a LAQ, QSGD, TernGrad or sign payload); after
        :meth:`from_bytes` this is the decoded, validated inner payload.
    mode : int
        0: one rANS symbol per code; 1: one per packed byte; 2: the packed codes, stored.
    stream : numpy.ndarray of uint8
        The rANS stream, or in mode 2 the packed codes (read-only).
    n : int
        Length of the encoded vector.
    """

    KIND: ClassVar[PayloadKind] = PayloadKind.ENTROPY
    META: ClassVar[struct.Struct] = struct.Struct("<BB")

    def __init__(
        self, inner: Payload, mode: int, head: bytes, stream: npt.NDArray[np.uint8]
    ) -> None:
        self.inner = inner
        self.n = inner.n
        self.mode = mode
        self._head = head  # inner metadata + inner body before the codes
        self.stream = stream
        self.stream.flags.writeable = False

    def __repr__(self) -> str:
        return (
            f"EntropyPayload(inner={type(self.inner).__name__}, n={self.n}, mode={self.mode}, "
            f"nbytes={self.nbytes}, inner_nbytes={self.inner.nbytes})"
        )

    def _meta_values(self) -> tuple[Any, ...]:
        return (int(self.inner.KIND), self.mode)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (np.frombuffer(self._head, dtype=np.uint8), self.stream)

    @classmethod
    def _check_unverified_n(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> None:
        # A coded frame can declare any n in a few bytes (e.g. all codes equal), and decoding
        # allocates the packed codes: without expected_n that is bounded here.
        limit = max(UNVERIFIED_MAX_BYTES, UNVERIFIED_MAX_EXPANSION * len(body))
        if n > limit:
            raise ValueError(
                f"ENTROPY frame of {len(body)} body bytes declares n = {n} codes; without "
                f"expected_n a receiver decodes at most max({UNVERIFIED_MAX_BYTES}, "
                f"{UNVERIFIED_MAX_EXPANSION} x body bytes) codes (pass expected_n)"
            )

    @classmethod
    def _from_parts(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> EntropyPayload:
        kind, mode = int(meta[0]), int(meta[1])
        if kind not in _CODABLE or kind not in _REGISTRY:
            raise ValueError(f"corrupt ENTROPY frame: inner kind {kind} cannot be entropy-coded")
        if mode not in _MODES:
            raise ValueError(f"corrupt ENTROPY frame: symbol mode {mode} (0, 1 or 2)")
        inner_cls = _REGISTRY[kind]
        meta_size = inner_cls.META.size
        if len(body) < meta_size:
            raise ValueError("truncated ENTROPY frame: inner metadata incomplete")
        inner_meta = inner_cls.META.unpack_from(body, 0)
        prefix, bits, count = _code_layout(kind, inner_meta, n)
        head_size = meta_size + prefix
        if len(body) < head_size + 1:
            raise ValueError(
                f"truncated ENTROPY frame: body has {len(body)} bytes, needs at least "
                f"{head_size + 1}"
            )
        head = bytes(body[:head_size])
        stream = np.frombuffer(body[head_size:], dtype=np.uint8).copy()
        packed = _core.entropy.decode_packed(stream, count, bits, mode)
        # The inner payload from its metadata, body prefix and codes, checked by its own
        # decoder (the outer frame's CRC covers these bytes: no inner frame and CRC to rebuild).
        inner = inner_cls._from_coded(n, inner_meta, memoryview(head)[meta_size:], packed)
        return cls(inner, mode, head, stream)


def entropy_encode(payload: Payload) -> EntropyPayload:
    """Entropy-code the packed codes of a LAQ, QSGD, TernGrad or sign payload.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> from laqcore.entropy import entropy_encode, entropy_decode
    >>> x = np.random.default_rng(0).standard_normal(10000).astype(np.float32)
    >>> p = laqcore.laq_quantize(x, None, 4)
    >>> coded = entropy_encode(p)
    >>> coded.nbytes < 0.8 * p.nbytes
    True
    >>> entropy_decode(coded.to_bytes()) == p
    True
    """
    if not isinstance(payload, Payload):
        raise TypeError(f"entropy_encode expects a Payload, got {type(payload).__name__}")
    if not is_codable(payload):
        raise TypeError(
            f"{type(payload).__name__} cannot be entropy-coded (codable: the payloads of "
            f"{', '.join(CODABLE_COMPRESSORS)})"
        )
    head, packed, bits, count = _code_parts(payload)
    mode, stream = _core.entropy.encode_packed(packed, count, bits)
    return EntropyPayload(payload, int(mode), head, stream)


def _code_parts(payload: Payload) -> tuple[bytes, npt.NDArray[np.uint8], int, int]:
    """(inner metadata + inner body before the codes, the packed codes, bits per code,
    number of codes) of a codable payload.

    A payload whose fields its constructor validated and that cannot change (LAQ: the
    ``_IMMUTABLE`` kinds) gives them from its fields: its frame holds exactly these bytes
    (metadata, then its body arrays, the codes last), so building the frame and its CRC
    only to cut them out again would be wasted. The others are framed first, which checks
    that their fields still form a valid payload.
    """
    meta_size = payload.META.size
    kind = int(payload.KIND)
    if payload._IMMUTABLE:
        body = payload._body()
        prefix, bits, count = _code_layout(kind, payload._meta_values(), payload.n)
        parts = [payload._meta_bytes()]  # the frame's own metadata block (wire.Payload)
        parts.extend(np.ascontiguousarray(a).tobytes() for a in body[:-1])
        head = b"".join(parts)
        codes = np.ascontiguousarray(body[-1]).view(np.uint8).reshape(-1)
        if len(head) == meta_size + prefix:
            return head, codes, bits, count
    frame = memoryview(payload.to_bytes())
    meta = payload.META.unpack_from(frame, _HEADER.size)
    prefix, bits, count = _code_layout(kind, meta, payload.n)
    start = _HEADER.size
    head = bytes(frame[start : start + meta_size + prefix])
    packed = np.frombuffer(frame[start + meta_size + prefix : len(frame) - 4], dtype=np.uint8)
    return head, packed, bits, count


def entropy_frame(payload: Payload) -> bytes:
    """``entropy_encode(payload).to_bytes()`` without the decode round trip of
    :meth:`~laqcore.wire.Payload.to_bytes` (about a third of the cost on 4-bit LAQ frames):
    the frame is built from fields the encoder has just produced from a valid payload, the
    case where that check finds nothing. A receiver still decodes and checks it in full.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> from laqcore.entropy import entropy_encode, entropy_frame
    >>> p = laqcore.laq_quantize(np.arange(64, dtype=np.float32), None, 4, block_size=16)
    >>> entropy_frame(p) == entropy_encode(p).to_bytes()
    True
    """
    return entropy_encode(payload)._frame(check_round_trip=False)


def entropy_decode(buf: Any, *, expected_n: int | None = None) -> Payload:
    """The payload an ENTROPY frame carries (``ValueError`` for a bad frame; pass
    ``expected_n`` for untrusted frames, see :mod:`laqcore.wire`)."""
    return EntropyPayload.from_bytes(buf, expected_n=expected_n).inner


class EntropyCodedCompressor:
    """A compressor whose payloads go on the wire entropy-coded
    (``get_compressor(name, entropy=True)``).

    ``compress`` returns an :class:`EntropyPayload` (its ``nbytes`` is the coded size);
    ``decompress`` gives exactly the inner compressor's result.

    Parameters
    ----------
    inner : Compressor
        A LAQ, QSGD, TernGrad or sign compressor.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("qsgd", levels=3, seed=0, entropy=True)
    >>> x = np.random.default_rng(1).standard_normal(4096).astype(np.float32)
    >>> p = comp.compress(x, step=0)
    >>> plain = laqcore.get_compressor("qsgd", levels=3, seed=0)
    >>> bool(np.array_equal(comp.decompress(p), plain.decompress(plain.compress(x, step=0))))
    True
    """

    def __init__(self, inner: Any) -> None:
        if not all(hasattr(inner, a) for a in ("name", "compress", "decompress")):
            raise TypeError(f"inner must be a Compressor, got {type(inner).__name__}")
        if inner.name not in CODABLE_COMPRESSORS:
            raise ValueError(
                f"compressor {inner.name!r} has no code stream to entropy-code (codable: "
                f"{', '.join(CODABLE_COMPRESSORS)})"
            )
        self.inner = inner
        self.name = inner.name

    def __repr__(self) -> str:
        return f"EntropyCodedCompressor({self.inner!r})"

    def compress(self, x: Any, *, step: int | None = None) -> EntropyPayload:
        return entropy_encode(self.inner.compress(x, step=step))

    def decompress(self, payload: Payload) -> FloatVector:
        if not isinstance(payload, EntropyPayload):
            raise TypeError(
                f"EntropyCodedCompressor.decompress expects an EntropyPayload, got "
                f"{type(payload).__name__}"
            )
        out: FloatVector = self.inner.decompress(payload.inner)
        return out

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> EntropyPayload:
        return EntropyPayload.from_bytes(buf, expected_n=expected_n)
