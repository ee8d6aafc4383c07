"""The wire format shared by every payload.

Every message a worker sends is one self-describing frame (all integers little-endian)::

    offset  size  field
    0       2     magic  b"LQ"
    2       1     format version (1)
    3       1     kind (PayloadKind: which compressor made it)
    4       8     n, the length of the vector it encodes (uint64)
    12      m     kind-specific metadata (fixed size per kind, a ``struct`` format)
    12+m    ...   kind-specific body (packed codes, indices, values), sizes implied by
                  (n, metadata)
    end-4   4     CRC-32 (zlib) of every preceding byte

``Payload.nbytes`` is exactly ``len(payload.to_bytes())``: the simulator and the distributed
engine count communication from it. ``from_bytes`` rejects a buffer that is truncated, too
long, of another kind or version, fails the CRC, or whose metadata is inconsistent
(e.g. bits out of range, negative radius), always with ``ValueError``.

Untrusted frames. Decoding itself allocates at most the frame's own size, but the header's
``n`` is whatever the sender wrote, and decompressing allocates ``n`` float32: a sparse frame
of a few dozen bytes can declare ``n = 2**31`` (8 GiB). A receiver decoding frames it does
not trust **should pass** ``expected_n`` (the length it expects, e.g. its own gradient or
bucket size) to :func:`payload_from_bytes`, :meth:`Payload.from_bytes` or a compressor's
``from_bytes``: a frame declaring another ``n`` is then refused with ``ValueError`` right
after the header is read, before anything of body size is allocated or decoded.

Subclasses describe their metadata with ``META`` (a ``struct.Struct``) and implement
``_meta_values``, ``_body`` and ``_from_parts``; the framing lives only here.

Upload bundles. A sender holding several workers (a rank of the distributed engine) sends
their uploads of one iteration as one bundle frame: the same 12-byte header with kind byte
``BUNDLE_KIND`` and ``n`` = the number of items, then per item ``<II`` (worker id, frame
length), then the items' payload frames back to back, then the CRC-32 of every preceding
byte. :func:`pack_uploads` writes it, :func:`bundle_nbytes` is its exact size (the one place
it is computed), :func:`unpack_uploads` checks it (magic, version, kind, CRC, sizes, worker
ids in strictly increasing order, each one a worker the sender owns) before decoding any item.
"""

from __future__ import annotations

import enum
import numbers
import struct
import zlib
from typing import Any, ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "BUNDLE_KIND",
    "FORMAT_VERSION",
    "MAGIC",
    "Payload",
    "PayloadKind",
    "USER_KINDS",
    "bundle_nbytes",
    "check_payload_type",
    "pack_uploads",
    "payload_from_bytes",
    "unpack_uploads",
]

MAGIC = b"LQ"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<2sBBQ")
_CRC = struct.Struct("<I")
FRAME_OVERHEAD = _HEADER.size + _CRC.size

P = TypeVar("P", bound="Payload")


class PayloadKind(enum.IntEnum):
    """Identifies the compressor that produced a frame (byte 3 of the header)."""

    LAQ = 1
    QSGD = 2
    TERNGRAD = 3
    SIGN = 4
    TOPK = 5
    RANDK = 6
    SPARSE_QUANT = 7
    DENSE = 8
    ENTROPY = 9
    LAQ_BLOCK = 10
    ROTATION = 11
    LAQ_WIDTHS = 12


#: The kind bytes left to payload classes outside laqcore (``KIND = 200``): laqcore's own
#: kinds (:class:`PayloadKind`) and ``BUNDLE_KIND`` stay below them.
USER_KINDS = range(129, 256)

_REGISTRY: dict[int, type[Payload]] = {}


class Payload:
    """Base class of everything that goes on the wire.

    Subclasses set ``KIND`` and ``META`` and are registered automatically, so
    :func:`payload_from_bytes` can decode any frame. ``KIND`` is a :class:`PayloadKind` for
    laqcore's payloads; a payload class of your own (a custom compressor's) takes an
    unused integer of :data:`USER_KINDS` (129..255), any other value is a ``TypeError``
    when the class is defined.
    """

    KIND: ClassVar[PayloadKind]
    META: ClassVar[struct.Struct]
    n: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("KIND")
        if kind is not None:
            # The kind is the header's one byte: laqcore's own kinds (PayloadKind) and
            # BUNDLE_KIND are below USER_KINDS. A user's payload with another value failed
            # only when first framed or decoded, or took a kind of a laqcore payload whose
            # module was not imported yet.
            if not isinstance(kind, PayloadKind) and (
                isinstance(kind, bool)
                or not isinstance(kind, numbers.Integral)
                or int(kind) not in USER_KINDS
            ):
                raise TypeError(
                    f"{cls.__name__}.KIND must be a PayloadKind (laqcore's payloads) or, for a "
                    f"payload of your own, an integer in {USER_KINDS.start}..{USER_KINDS.stop - 1}"
                    f", got {kind!r}"
                )
            old = _REGISTRY.get(int(kind))
            # The same class defined again (a notebook cell or a script run twice) replaces
            # itself; another class may not take a kind that is in use.
            if old is not None and (old.__module__, old.__qualname__) != (
                cls.__module__,
                cls.__qualname__,
            ):
                raise RuntimeError(
                    f"payload kind {kind!r} registered twice ({old.__qualname__} has it)"
                )
            _REGISTRY[int(kind)] = cls

    # -- what subclasses provide -------------------------------------------------------
    def _meta_values(self) -> tuple[Any, ...]:
        raise NotImplementedError  # abstract: every concrete payload overrides it

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        raise NotImplementedError  # abstract: every concrete payload overrides it

    @classmethod
    def _from_parts(cls: type[P], n: int, meta: tuple[Any, ...], body: memoryview) -> P:
        raise NotImplementedError  # abstract: every concrete payload overrides it

    @classmethod
    def _from_coded(
        cls: type[P], n: int, meta: tuple[Any, ...], prefix: memoryview, packed: npt.NDArray[Any]
    ) -> P:
        """The payload of an entropy-coded frame (:mod:`laqcore.entropy`): its metadata, the
        body bytes before the codes and the decoded packed codes (a fresh array the payload
        may keep). By default ``_from_parts`` of the joined body; kinds whose body ends
        with the codes may take the array as it is (LAQ), with the same checks."""
        return cls._from_parts(n, meta, memoryview(b"".join((prefix, packed.data))))

    @classmethod
    def _check_unverified_n(cls, n: int, meta: tuple[Any, ...], body: memoryview) -> None:
        """Called before ``_from_parts`` when the receiver gave no ``expected_n``: a kind
        whose decoding allocates more than its body size (entropy-coded frames) bounds that
        allocation here. Most kinds allocate at most the body's size and do nothing."""

    def __eq__(self, other: object) -> bool:
        """Equal wire content: the same payload class and the same frame bytes, so that a
        payload equals its copy decoded from :meth:`to_bytes` (only LAQ payloads compared
        by content before; the others by identity, so that round trip compared unequal)."""
        if not isinstance(other, Payload):
            return NotImplemented
        if self is other:
            return True
        if type(self) is not type(other) or self.n != other.n:
            return False
        return self._frame(check_round_trip=False) == other._frame(check_round_trip=False)

    __hash__ = None  # type: ignore[assignment]  # value type compared by content

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy (``copy.deepcopy``, ``pickle``) keeps its arrays read-only, as the original
        had them: a payload cannot change after it is made (LAQ's :meth:`to_bytes` relies on
        it and skips the round-trip check), where the copy's arrays came back writeable."""
        for value in state.values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        self.__dict__.update(state)

    # -- framing -----------------------------------------------------------------------
    @property
    def body_nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self._body())

    @property
    def nbytes(self) -> int:
        """Exact size of :meth:`to_bytes` in bytes, header and CRC included."""
        return FRAME_OVERHEAD + self.META.size + self.body_nbytes

    #: Payloads whose fields cannot change after a validating constructor (LAQ) skip the
    #: round-trip check of :meth:`to_bytes`.
    _IMMUTABLE: ClassVar[bool] = False

    def to_bytes(self) -> bytes:
        """Serialise to one frame (see the module docstring for the layout).

        Raises ``ValueError`` when the fields no longer form a valid payload (e.g. changed
        after construction: a NaN scale, a bits value out of range, a body array of another
        length or dtype): a frame is written only if :meth:`from_bytes` would decode it to
        the same fields.
        """
        return self._frame(check_round_trip=not self._IMMUTABLE)

    def _frame(self, *, check_round_trip: bool) -> bytes:
        """The frame of :meth:`to_bytes`; ``check_round_trip=False`` only for fields a
        producer has just built from a valid payload (e.g. ``entropy.entropy_frame``)."""
        try:
            header = _HEADER.pack(MAGIC, FORMAT_VERSION, int(self.KIND), int(self.n))
        except (struct.error, TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"{type(self).__name__} fields cannot be serialised: {err}") from None
        parts: list[Any] = [header, self._meta_bytes()]
        body = self._body()
        # The body arrays' bytes as uint8 views: one copy of each (into the frame), not two.
        parts.extend(np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in body)
        if check_round_trip:
            frame = b"".join(parts)
            self._check_round_trip(frame, body)
            return frame + _CRC.pack(zlib.crc32(frame))
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        parts.append(_CRC.pack(crc))
        return b"".join(parts)

    def _meta_bytes(self) -> bytes:
        """The frame's metadata block (after the header, before the body arrays)."""
        try:
            return self.META.pack(*self._meta_values())
        except (struct.error, TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"{type(self).__name__} fields cannot be serialised: {err}") from None

    def _check_round_trip(self, frame: bytes, body: tuple[npt.NDArray[Any], ...]) -> None:
        """Decode ``frame`` (without CRC) as a receiver would; refuse fields it rejects or
        body arrays whose dtype or shape the decoder would read differently."""
        end_meta = _HEADER.size + self.META.size
        meta = self.META.unpack_from(frame, _HEADER.size)
        try:
            decoded = type(self)._from_parts(int(self.n), meta, memoryview(frame)[end_meta:])
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{type(self).__name__} fields do not form a valid payload (changed after "
                f"construction?): {err}"
            ) from None
        for mine, theirs in zip(body, decoded._body()):
            a = np.asarray(mine)
            if a.dtype != theirs.dtype or a.shape != theirs.shape:
                raise ValueError(
                    f"{type(self).__name__} body array of dtype {a.dtype} and shape {a.shape} "
                    f"where the frame holds dtype {theirs.dtype} and shape {theirs.shape}"
                )

    @classmethod
    def from_bytes(cls: type[P], buf: Any, *, expected_n: int | None = None) -> P:
        """Decode a frame made by :meth:`to_bytes`; raise ``ValueError`` if it is not valid.

        ``expected_n``: the vector length the receiver expects; a frame declaring another
        ``n`` is refused before any body-sized work (pass it for untrusted frames, see the
        module docstring).
        """
        kind, n, meta, body = _unframe(buf, expected_n)
        target = _REGISTRY[kind]
        # A class decodes its own kind and those of its subclasses (LAQPayload: both LAQ kinds).
        if not issubclass(target, cls):
            raise ValueError(
                f"frame holds payload kind {_kind_name(kind)}, expected {_kind_name(int(cls.KIND))}"
            )
        if expected_n is None:
            target._check_unverified_n(n, meta, body)
        return target._from_parts(n, meta, body)


def _kind_name(kind: int) -> str:
    """The kind's PayloadKind name; for a kind a user's payload class registered, that
    class's name."""
    try:
        return PayloadKind(kind).name
    except ValueError:
        registered = _REGISTRY.get(kind)
        return (
            f"unknown kind {kind}" if registered is None else f"{registered.__name__} (kind {kind})"
        )


def check_expected_n(expected_n: Any) -> int | None:
    """Validate a receiver's ``expected_n`` argument: None, or an integer >= 1."""
    if expected_n is None:
        return None
    if isinstance(expected_n, bool) or not isinstance(expected_n, numbers.Integral):
        raise TypeError(f"expected_n must be an integer or None, got {expected_n!r}")
    if int(expected_n) < 1:
        raise ValueError(f"expected_n must be >= 1, got {int(expected_n)}")
    return int(expected_n)


def _byte_view(buf: Any, what: str) -> memoryview:
    """The bytes of ``buf`` as a flat memoryview. A strided one is copied in order, as a
    strided uint8 array is (its cast failed: "must be bytes-like, got memoryview")."""
    try:
        view = memoryview(buf)
    except TypeError as err:
        raise TypeError(f"{what} must be bytes-like, got {type(buf).__name__}") from err
    return view.cast("B") if view.c_contiguous else memoryview(view.tobytes())


def _unframe(buf: Any, expected_n: Any = None) -> tuple[int, int, tuple[Any, ...], memoryview]:
    want_n = check_expected_n(expected_n)
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8 or buf.ndim != 1:
            raise TypeError("a frame given as an array must be a 1-D uint8 array")
        view = np.ascontiguousarray(buf).data.cast("B")
    else:
        view = _byte_view(buf, "a frame")
    if len(view) < FRAME_OVERHEAD:
        raise ValueError(
            f"truncated frame: {len(view)} bytes, a frame has at least {FRAME_OVERHEAD}"
        )
    magic, version, kind, n = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError(f"not a laqcore frame (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise ValueError(f"unsupported frame format version {version} (this is {FORMAT_VERSION})")
    if kind not in _REGISTRY:
        raise ValueError(f"frame of {_kind_name(kind)} that this build cannot decode")
    (crc,) = _CRC.unpack_from(view, len(view) - _CRC.size)
    if zlib.crc32(view[: len(view) - _CRC.size]) != crc:
        raise ValueError("corrupt frame: CRC-32 mismatch")
    # Checked here, before any decoder sees n: nothing body-sized has been allocated yet.
    if want_n is not None and n != want_n:
        raise ValueError(
            f"frame declares a vector of length n = {n}, but the receiver expects "
            f"expected_n = {want_n}"
        )
    meta_struct = _REGISTRY[kind].META
    end_meta = _HEADER.size + meta_struct.size
    if len(view) < end_meta + _CRC.size:
        raise ValueError("truncated frame: metadata incomplete")
    meta = meta_struct.unpack_from(view, _HEADER.size)
    return kind, int(n), meta, view[end_meta : len(view) - _CRC.size]


def check_payload_type(obj: Any, who: str) -> Payload:
    """``obj`` if it is a :class:`Payload`, else ``TypeError``: what a compressor or a worker
    step hands on must be a frame with an exact ``nbytes`` (the bits a run counts) and a
    ``to_bytes`` (what the engine sends), not a bare array or another object."""
    if not isinstance(obj, Payload):
        raise TypeError(
            f"{who} returned a {type(obj).__name__}, not a laqcore.wire.Payload (subclass "
            "Payload with KIND, META, _meta_values, _body and _from_parts)"
        )
    return obj


def payload_from_bytes(buf: Any, *, expected_n: int | None = None) -> Payload:
    """Decode any laqcore frame into its payload object (dispatching on the kind byte).

    Pass ``expected_n`` when the frame comes from outside (see the module docstring): a frame
    of another length is refused with ``ValueError`` before it is decoded.
    """
    return Payload.from_bytes(buf, expected_n=expected_n)


def body_array(
    body: memoryview, offset: int, count: int, dtype: npt.DTypeLike, what: str
) -> npt.NDArray[Any]:
    """Read ``count`` items of ``dtype`` at ``offset`` of a frame body (a copy), with a
    clear error if the body is too short. Used by payload ``_from_parts`` implementations."""
    dt = np.dtype(dtype)
    end = offset + count * dt.itemsize
    if count < 0 or end > len(body):
        raise ValueError(
            f"truncated frame: {what} needs {count * dt.itemsize} bytes at offset {offset}, "
            f"body has {len(body)}"
        )
    return np.frombuffer(body[offset:end], dtype=dt).copy()


def expect_body_size(body: memoryview, expected: int) -> None:
    """Raise ``ValueError`` unless the body is exactly ``expected`` bytes long."""
    if len(body) != expected:
        raise ValueError(
            f"frame body has {len(body)} bytes, expected exactly {expected} "
            "(truncated, padded or mis-sized frame)"
        )


#: Kind byte of an upload bundle (outside PayloadKind: a bundle is not a payload).
BUNDLE_KIND = 0x80
_BUNDLE_ITEM = struct.Struct("<II")


def bundle_nbytes(frame_sizes: Any) -> int:
    """Exact size of a bundle of frames of these sizes (header, item table, frames, CRC)."""
    sizes = [int(v) for v in frame_sizes]
    return FRAME_OVERHEAD + _BUNDLE_ITEM.size * len(sizes) + sum(sizes)


def pack_uploads(items: Any) -> bytes:
    """One bundle frame of ``(worker id, payload)`` items (ids strictly increasing, >= 0)."""
    frames: list[tuple[int, bytes]] = []
    for m, payload in items:
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 0 <= int(m) < 2**32:
            raise ValueError(f"worker id must be an integer in [0, 2**32), got {m!r}")
        if frames and int(m) <= frames[-1][0]:
            raise ValueError("worker ids of a bundle must be strictly increasing")
        if not isinstance(payload, Payload):
            raise TypeError(f"bundle items must be payloads, got {type(payload).__name__}")
        frames.append((int(m), payload.to_bytes()))
    parts = [_HEADER.pack(MAGIC, FORMAT_VERSION, BUNDLE_KIND, len(frames))]
    parts.extend(_BUNDLE_ITEM.pack(m, len(f)) for m, f in frames)
    parts.extend(f for _, f in frames)
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def unpack_uploads(
    buf: Any, *, expected_n: int, owned: Any, sender: str = "the sender"
) -> list[tuple[int, Payload]]:
    """Check and decode a bundle made by :func:`pack_uploads`.

    Parameters
    ----------
    buf : bytes-like
        The bundle frame.
    expected_n : int
        Length of every payload's vector (frames declaring another are refused undecoded).
    owned : collection of int
        The worker ids the sender may upload for; any other id (another sender's worker, or
        one out of range) is refused.
    sender : str
        Names the sender in error messages (e.g. ``"rank 2"``).

    Raises
    ------
    ValueError
        Truncated, padded or corrupt bundle (CRC), another kind or version, repeated or
        unordered ids, an id the sender does not own, or an invalid item frame.
    """
    want_n = check_expected_n(expected_n)
    view = _byte_view(buf, "a bundle")
    if len(view) < FRAME_OVERHEAD:
        raise ValueError(f"truncated upload bundle from {sender}: {len(view)} bytes")
    magic, version, kind, count = _HEADER.unpack_from(view, 0)
    if magic != MAGIC or version != FORMAT_VERSION or kind != BUNDLE_KIND:
        raise ValueError(
            f"not an upload bundle of format {FORMAT_VERSION} from {sender} "
            f"(magic {bytes(magic)!r}, version {version}, kind {kind})"
        )
    (crc,) = _CRC.unpack_from(view, len(view) - _CRC.size)
    if zlib.crc32(view[: len(view) - _CRC.size]) != crc:
        raise ValueError(f"corrupt upload bundle from {sender}: CRC-32 mismatch")
    allowed = {int(m) for m in owned}
    table_end = _HEADER.size + _BUNDLE_ITEM.size * count
    if table_end + _CRC.size > len(view):
        raise ValueError(f"truncated upload bundle from {sender}: {count} items declared")
    items = [
        _BUNDLE_ITEM.unpack_from(view, _HEADER.size + _BUNDLE_ITEM.size * i) for i in range(count)
    ]
    if bundle_nbytes(size for _, size in items) != len(view):
        raise ValueError(f"upload bundle from {sender} has a size its item table does not give")
    out: list[tuple[int, Payload]] = []
    pos = table_end
    for m, size in items:
        if m not in allowed:
            raise ValueError(
                f"{sender} sent an upload labelled as worker {m}, which is not one of its "
                f"workers {sorted(allowed)}"
            )
        if out and m <= out[-1][0]:
            raise ValueError(f"upload bundle from {sender} repeats or reorders worker {m}")
        out.append((int(m), payload_from_bytes(view[pos : pos + size], expected_n=want_n)))
        pos += size
    return out
