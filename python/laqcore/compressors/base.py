"""The Compressor protocol, the registry of compressors, and helpers they share.

Every compressor turns a float vector into a :class:`~laqcore.wire.Payload` (the exact bytes
that go on the wire) and back::

    comp = laqcore.get_compressor("qsgd", levels=7, bucket_size=512, seed=0)
    payload = comp.compress(grad, step=k)      # Payload; payload.nbytes = wire size
    frame = payload.to_bytes()                 # what a worker sends
    approx = comp.decompress(comp.from_bytes(frame))

Randomness. Stochastic compressors draw every random number from the counter-based RNG of
``cpp/include/laqcore/rng.hpp`` with ``key = make_key(seed, step, stream)``: the output is a
pure function of (input, seed, step, stream), identical for any thread count. ``step=None``
uses (and advances) an internal call counter; an explicit ``step`` leaves the counter alone.
``stream`` separates independent users of one seed (e.g. the worker id). Streams are
limited to ``[0, 2**62)`` because a compressor that needs two independent draws in one step
(rand-k selection and rounding) uses ``stream + 2**62`` for the second.

The registry maps a name to a factory (a class or function taking keyword arguments only);
:func:`get_compressor` checks the keyword arguments against the factory's signature and
reports a bad one with the accepted names.
"""

from __future__ import annotations

import inspect
import struct
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from .. import _core
from .._registry import Registry
from .._typing import FloatVector
from .._validate import check_bool, check_step, check_uint64, registry_key
from ..wire import Payload, body_array, expect_body_size

__all__ = [
    "Compressor",
    "PayloadCompressor",
    "SeededCompressor",
    "available_compressors",
    "check_compressor",
    "compressor_parameters",
    "decoded",
    "get_compressor",
    "register_compressor",
]

P = TypeVar("P", bound=Payload)
SP = TypeVar("SP", bound="ScaledCodesPayload")

#: Offset added to ``stream`` for a compressor's second independent random draw.
SECOND_DRAW = 2**62


def __dir__() -> list[str]:
    return __all__


@runtime_checkable
class Compressor(Protocol):
    """What every compressor provides (structural: no inheritance needed).

    Attributes
    ----------
    name : str
        The registry name (e.g. ``"qsgd"``).

    Methods
    -------
    compress(x, *, step=None) -> Payload
        Compress a 1-D float vector (float32 native, float64 converted).
    decompress(payload) -> numpy.ndarray of float32
        The vector the receiver reconstructs (a new array).
    from_bytes(buf, *, expected_n=None) -> Payload
        Decode a frame made by ``payload.to_bytes()``; raises ``ValueError`` if it is
        truncated, corrupt or of another kind, or (when ``expected_n`` is given) declares a
        vector length other than ``expected_n``, checked before anything of body size is
        allocated. A receiver of untrusted frames passes ``expected_n`` (:mod:`laqcore.wire`).
    """

    name: str

    def compress(self, x: Any, *, step: int | None = None) -> Payload: ...

    def decompress(self, payload: Payload) -> FloatVector: ...

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> Payload: ...


#: The methods of :class:`Compressor` (``isinstance(obj, Compressor)`` also needs ``name``).
PROTOCOL_METHODS = ("compress", "decompress", "from_bytes")


def check_compressor(obj: Any, who: str) -> None:
    """TypeError unless ``obj`` has every method of the :class:`Compressor` protocol, so a
    user's incomplete class is refused where it is built, not when a run first calls it."""
    missing = [m for m in PROTOCOL_METHODS if not callable(getattr(obj, m, None))]
    if missing:
        raise TypeError(
            f"{who} must provide {', '.join(m + '()' for m in missing)} (the Compressor "
            f"protocol), got {type(obj).__name__}"
        )


def decoded(compressor: Any, payload: Payload) -> FloatVector:
    """``compressor.decompress(payload)``, checked to be the 1-D vector of ``payload.n``
    values the frame describes: a user's compressor returning another shape would otherwise
    be broadcast into the sum it is added to (a length-1 result to every coordinate)."""
    out: FloatVector = compressor.decompress(payload)
    shape = getattr(out, "shape", None)
    if shape != (payload.n,):
        raise ValueError(
            f"{type(compressor).__name__}.decompress returned "
            f"{'shape ' + str(shape) if shape is not None else type(out).__name__} for a "
            f"payload of n = {payload.n}: it must return a 1-D array of n values"
        )
    return out


# -- checks of payloads and frames shared by the compressors ----------------------------
def check_payload(payload: Any, cls: type[P], who: str) -> P:
    """Return ``payload`` if it is a ``cls``; else TypeError naming what was given."""
    if not isinstance(payload, cls):
        raise TypeError(f"{who}.decompress expects a {cls.__name__}, got {type(payload).__name__}")
    return payload


def readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Mark a payload array read-only, so a payload cannot change after it is made."""
    a.setflags(write=False)
    return a


def check_n(n: int, kind: str) -> None:
    """Frames of every compressor here describe a non-empty vector."""
    if n < 1:
        raise ValueError(f"corrupt {kind} frame: vector length n = {n} (must be >= 1)")


class ScaledCodesPayload(Payload):
    """Frame shared by TernGrad and scaled sign: one float32 scale as the metadata (``<f``)
    and ``n`` codes of ``CODE_BITS`` bits packed with :func:`laqcore.pack_bits`' layout as the
    body. Subclasses set ``KIND``, ``CODE_BITS`` and ``SCALE_NAME`` (the public name of the
    scale, exposed as a property) and keep their own constructor signature."""

    META: ClassVar[struct.Struct] = struct.Struct("<f")
    CODE_BITS: ClassVar[int]
    SCALE_NAME: ClassVar[str]

    def __init__(self, n: int, scale: float, packed: npt.NDArray[np.uint8]) -> None:
        self.n = n
        self._scale = float(np.float32(scale))
        self.packed = readonly(packed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={self.n}, {self.SCALE_NAME}={self._scale}, "
            f"nbytes={self.nbytes})"
        )

    def _meta_values(self) -> tuple[Any, ...]:
        return (self._scale,)

    def _body(self) -> tuple[npt.NDArray[Any], ...]:
        return (self.packed,)

    @classmethod
    def _from_parts(cls: type[SP], n: int, meta: tuple[Any, ...], body: memoryview) -> SP:
        (scale,) = meta
        kind = cls.KIND.name
        check_n(n, kind)
        if not (np.isfinite(scale) and scale >= 0):
            raise ValueError(
                f"corrupt {kind} frame: {cls.SCALE_NAME} {scale} (must be finite and >= 0)"
            )
        nbytes = (cls.CODE_BITS * n + 7) // 8
        expect_body_size(body, nbytes)
        return cls(n, float(scale), body_array(body, 0, nbytes, np.uint8, "packed codes"))


class PayloadCompressor(Generic[P]):
    """What the built-in compressors share: the one payload class each makes and accepts
    (``payload_type``), :meth:`from_bytes`, the payload check of ``decompress``, and a
    ``__repr__`` that shows the constructor arguments named in ``REPR_FIELDS``."""

    name: str
    payload_type: type[P]
    REPR_FIELDS: ClassVar[tuple[str, ...]] = ()

    def from_bytes(self, buf: Any, *, expected_n: int | None = None) -> P:
        """Decode a frame of this compressor's payload kind (see :class:`Compressor`)."""
        return self.payload_type.from_bytes(buf, expected_n=expected_n)

    def _own(self, payload: Any) -> P:
        """``payload`` if it is this compressor's payload type, else ``TypeError``."""
        return check_payload(payload, self.payload_type, type(self).__name__)

    def _repr_args(self) -> list[str]:
        return [f"{f}={getattr(self, f)!r}" for f in self.REPR_FIELDS]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._repr_args())})"


class SeededCompressor(PayloadCompressor[P]):
    """Base of the stochastic compressors: holds ``seed``/``stream`` and the call counter.

    Parameters
    ----------
    seed : int
        Any integer in ``[0, 2**64)``.
    stream : int
        Separates independent users of one seed (e.g. the worker id), ``[0, 2**62)``.
    """

    def __init__(self, *, seed: int = 0, stream: int = 0) -> None:
        self.seed = check_uint64(seed, "seed")
        self.stream = check_uint64(stream, "stream", maximum=SECOND_DRAW - 1)
        self._calls = 0

    def _step(self, step: int | None) -> int:
        """The step of this call: ``step``, or the call counter when it is None. The counter
        advances only in :meth:`_done`, so a call that raises does not consume a step."""
        checked = check_step(step)
        return self._calls if checked is None else checked

    def _done(self, step: int | None) -> None:
        if step is None:
            self._calls += 1

    def _key(self, step: int, draw: int = 0) -> int:
        """RNG key of this call; ``draw`` = 0 or 1 selects one of two independent draws."""
        return int(_core.runtime.make_key(self.seed, step, self.stream + draw * SECOND_DRAW))


# -- registry ----------------------------------------------------------------------------
_REGISTRY: Registry[Callable[..., Compressor]] = Registry("compressor", sorted_names=True)
_FACTORIES = _REGISTRY.entries
_ALIASES = _REGISTRY.aliases


def register_compressor(
    name: str,
    factory: Callable[..., Compressor],
    *,
    aliases: Iterable[str] = (),
    deprecated_aliases: Iterable[str] = (),
    replace: bool = False,
) -> None:
    """Register ``factory`` (called with keyword arguments) under ``name`` and ``aliases``.

    Names are case-insensitive and ``-`` equals ``_`` (:class:`laqcore._registry.Registry`,
    which resolves algorithm names too). ``deprecated_aliases`` resolve to ``name`` as well,
    but :func:`get_compressor` warns (``DeprecationWarning``) that ``name`` is the one name.
    Registering a taken name raises ``ValueError`` unless ``replace=True``; the built-in
    names and aliases (:func:`available_compressors` at import) raise it even then: the
    algorithms, the DDP hooks (:mod:`laqcore.torch`) and the ``launch`` engine build them
    by name, and a replacement would silently change what those run.

    Examples
    --------
    >>> import laqcore
    >>> from laqcore.compressors import SignCompressor
    >>> laqcore.register_compressor("my_sign", SignCompressor)
    >>> laqcore.get_compressor("my_sign").name
    'sign'
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {factory!r}")
    _REGISTRY.add(
        registry_key(name),
        factory,
        aliases=aliases,
        deprecated_aliases=deprecated_aliases,
        replace=replace,
    )


def available_compressors() -> list[str]:
    """Sorted canonical names accepted by :func:`get_compressor` (aliases not listed).

    Examples
    --------
    >>> import laqcore
    >>> "qsgd" in laqcore.available_compressors()
    True
    """
    return _REGISTRY.names()


def compressor_parameters(name: str) -> list[str] | None:
    """The keyword parameters compressor ``name`` accepts, in its signature's order
    (``None`` when its factory has no signature to read).

    Examples
    --------
    >>> compressor_parameters("terngrad")
    ['clip_factor', 'seed', 'stream']
    """
    try:
        sig = inspect.signature(_FACTORIES[_REGISTRY.resolve(name)])
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in sig.parameters.values() if p.kind in kinds]


def get_compressor(name: str, *, entropy: bool = False, **kwargs: Any) -> Compressor:
    """Build a compressor by registry name.

    Parameters
    ----------
    name : str
        One of :func:`available_compressors` or an alias (``"top-k"``, ``"scaled-sign"``, ...).
    entropy : bool, default False
        Entropy-code the payloads' codes (:class:`laqcore.entropy.EntropyCodedCompressor`;
        LAQ, QSGD, TernGrad and sign only): same decoded values, fewer bytes.
    **kwargs
        The compressor's own parameters (see each class).

    Raises
    ------
    ValueError
        Unknown name (the message lists the available ones) or a bad parameter value.
    TypeError
        A parameter the compressor does not accept, or of the wrong type; or the factory
        (a class given to :func:`register_compressor`) built an object without a method of
        the :class:`Compressor` protocol.

    Examples
    --------
    >>> import numpy as np, laqcore
    >>> comp = laqcore.get_compressor("qsgd", levels=7, bucket_size=512, seed=0)
    >>> payload = comp.compress(np.ones(1000, dtype=np.float32), step=0)
    >>> comp.decompress(payload).shape
    (1000,)
    """
    key = _REGISTRY.resolve(name)
    factory = _FACTORIES[key]
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        sig = None
    if sig is not None:
        try:
            sig.bind(**kwargs)
        except TypeError as err:
            accepted = compressor_parameters(key) or []
            takes = f"accepted parameters: {', '.join(accepted)}" if accepted else "it takes none"
            raise TypeError(f"compressor {key!r}: {err}; {takes}") from None
    if check_bool(entropy, "entropy"):
        from ..entropy import CODABLE_COMPRESSORS

        # A class's own name decides, not the name it was registered under: a SignCompressor
        # registered as "my_sign" (register_compressor's example) makes sign payloads.
        # Function factories ("laq") have no name of their own: their key decides.
        if getattr(factory, "name", key) not in CODABLE_COMPRESSORS:
            raise ValueError(
                f"compressor {key!r} cannot be entropy-coded; codable: "
                f"{', '.join(CODABLE_COMPRESSORS)}"
            )
    built = factory(**kwargs)
    check_compressor(built, f"compressor {key!r}")
    if entropy:
        from ..entropy import EntropyCodedCompressor

        return EntropyCodedCompressor(built)
    return built
