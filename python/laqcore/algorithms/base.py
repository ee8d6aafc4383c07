"""The step interface shared by every algorithm, the simulator and the distributed engine.

One iteration of any algorithm is split into a *server* side and a *worker* side that only
talk through two kinds of objects:

* :class:`Message` (server -> worker m): the point to evaluate at, the lazy-rule threshold,
  and flags (``request``, ``reset``); ``nbytes`` is its downlink size.
* a :class:`~laqcore.wire.Payload` (worker -> server), or ``None`` when the worker skips.

Per iteration the driver does::

    for m in workers: msg = server.message(m); payload[m] = worker[m].step(msg)
    server.apply({m: p for m, p in payload.items() if p is not None})

The simulator runs this loop in one process; the distributed engine runs one worker per
rank and a server *replica* on every rank (all replicas apply the same gathered payloads, so
they stay identical). Nothing else is shared: a worker holds only its own
:class:`~laqcore.problems.LocalObjective` and state, the server only the model and aggregates.
Communication is counted from ``payload.nbytes`` (uplink) and ``Message.nbytes`` (downlink).

Hyper-parameters live in one :class:`Params` (defaults from the official LAQ code,
docs/algorithms.md "Default hyper-parameters"); each algorithm overrides a few defaults
(``DEFAULTS``), e.g. SLAQ's ``alpha=0.008, bits=3``, and declares the fields it reads
(``USES``): an override of any other field is refused, so a setting the algorithm would
ignore (QSGD given a momentum) is an error instead of a silent no-op.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from .._typing import F64
from .._validate import (
    check_block_size,
    check_bool,
    check_levels,
    check_uint64,
    check_width_options,
)
from ..compressors import get_compressor
from ..compressors.base import Compressor, decoded
from ..lazy import IterateHistory
from ..wire import Payload
from .param_sets import COMMON_PARAMS

if TYPE_CHECKING:
    from ..problems import LocalObjective

__all__ = [
    "Algorithm",
    "Batch",
    "CodecSpec",
    "CompressedGradient",
    "Message",
    "Params",
    "Server",
    "StateVector",
    "SumServer",
    "Worker",
    "WorkerSite",
    "theta_message_nbytes",
]


def __dir__() -> list[str]:
    return __all__


#: A batch of uploads (worker id -> payload), and a server's folded state vector.
Batch = dict[int, Payload]
StateVector = npt.NDArray[np.floating[Any]]


@dataclass
class Params:
    """Every algorithm's hyper-parameters (each uses the ones it needs).

    Attributes
    ----------
    alpha : float
        Step size (official LAQ: 0.02; SLAQ and the stochastic baselines but the AsyLPG
        family: 0.008).
    bits : int
        Bits per coordinate of the LAQ quantizer (LAQ/QGD: 4, SLAQ: 3) and of AsyLPG's
        gradient quantizer (8).
    block_size : int or None
        LAQ quantizer (LAQ, SLAQ, QGD, random selection): one radius per block of this many
        coordinates (a multiple of 8, see :func:`laqcore.laq_quantize`). ``None`` (default):
        the paper's single radius, as in the reproduction.
    adaptive_bits : float or None
        LAQ family: pick the bit width per upload, the smallest b in 1..8 whose
        quantization-error term ``err_coef ||eps_b||^2`` (QGD: ``3 ||eps_b||^2``) is at most
        ``adaptive_bits`` times the rule's iterate-difference term
        (:class:`laqcore.lazy_state.LazyUploader`); ``bits`` is then the width of the first
        (forced) upload only. ``None`` (default): fixed ``bits``.
    width_block : int or None
        LAQ family, with ``adaptive_bits = F``: a width per block of this many coordinates
        (0, 2, 3 or 4 bits, each block its own radius; :mod:`laqcore.laq_widths`) meeting the
        same error budget with the fewest bits. Not with ``block_size``. ``None`` (default):
        off.
    D, ck : int, float
        Lazy rule: ``xi_d = ck / D`` with the official warm-up ``ck / k`` for ``k <= D``.
    xi : float or None
        Explicit constant ``xi_d`` instead of the ck schedule (``0`` disables the iterate term).
    t_bar : int
        Forced upload after ``t_bar`` skipped iterations (100); ``0`` uploads every iteration.
    err_coef : float
        LAQ and SLAQ: weight of the quantization-error term of the upload rule,
        ``err_coef (||eps||^2 + ||eps_hat||^2)`` (SLAQ scales it by 0.5); the official code's
        3 (default). The DDP hook's default is 1 (``LAQState(err_coef=...)``): at 2 bits 3
        makes the threshold exceed most innovations (docs/results_compression.md, "The
        error weight").
    lag_forced : bool
        LAG-WK also forces an upload after ``t_bar`` skipped iterations, as the LAG-WK of the
        reference LAQ code's comparison does (default True); False = the LAG paper's rule
        alone (a worker may then skip forever).
    batch : int
        Minibatch size per worker and iteration for the stochastic algorithms (500).
    levels, bucket_size : int
        QSGD levels s (LAQ.py's baseline: 10) and bucket size.
    ratio : float
        Fraction of coordinates kept by the sparsifiers (SSGD, top-k, sparse+quantized).
    period : int
        PQASGD: local steps between quantized averaging rounds.
    max_delay : int
        AsyLPG family: bound tau on the staleness of the model a worker reads.
    epoch : int
        AsyLPG family: iterations per SVRG epoch (snapshot refresh).
    model_bits : int
        AsyLPG family: bits of the downlink model quantizer.
    momentum : float
        Acc-AsyLPG momentum weight.
    upload_rate : float
        Random worker selection: probability that a worker uploads in an iteration.
    local_steps : int
        One-shot averaging: local steps before the single upload.
    threshold : float
        Dynamic averaging: divergence ``||x_m - r||^2`` that triggers a synchronisation.
    seed : int
        Seeds every random choice (minibatches, stochastic rounding, selection, delays).
    """

    alpha: float = 0.02
    bits: int = 4
    block_size: int | None = None
    adaptive_bits: float | None = None
    width_block: int | None = None
    D: int = 10
    ck: float = 0.8
    xi: float | None = None
    t_bar: int = 100
    err_coef: float = 3.0
    lag_forced: bool = True
    batch: int = 500
    levels: int = 10
    bucket_size: int = 512
    ratio: float = 0.1
    period: int = 10
    max_delay: int = 4
    epoch: int = 50
    model_bits: int = 8
    momentum: float = 0.3
    upload_rate: float = 0.2
    local_steps: int = 500
    threshold: float = 0.01
    seed: int = 0

    def replace(self, **changes: Any) -> Params:
        return dataclasses.replace(self, **changes)

    def validate(self) -> Params:
        """Raise ``ValueError`` naming the first out-of-range field (``TypeError`` for one of
        the wrong type); return self."""
        self._check_types()
        if not (np.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"alpha must be a finite number > 0, got {self.alpha}")
        if not 1 <= self.bits <= 8:
            raise ValueError(f"bits must be in 1..8, got {self.bits}")
        check_block_size(self.block_size)
        check_uint64(self.seed, "seed")  # numpy's own message names no parameter
        if self.adaptive_bits is not None and not (
            np.isfinite(self.adaptive_bits) and self.adaptive_bits >= 0
        ):
            raise ValueError(
                f"adaptive_bits must be a finite number >= 0, got {self.adaptive_bits}"
            )
        check_width_options(self.width_block, self.adaptive_bits, self.block_size)
        check_levels(self.levels)  # the QSGD compressor's range, before any data is loaded
        for name in ("D", "batch", "bucket_size", "period", "epoch", "local_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("t_bar", "max_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "D",
            "t_bar",
            "batch",
            "bucket_size",
            "period",
            "max_delay",
            "epoch",
            "local_steps",
        ):
            # sizes and counters the native code and deque(maxlen=...) hold in 64 bits: a
            # larger one was an OverflowError traceback once the run had started
            if getattr(self, name) >= 2**62:
                raise ValueError(f"{name} must be < 2**62, got {getattr(self, name)}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if not 0 < self.upload_rate <= 1:
            raise ValueError(f"upload_rate must be in (0, 1], got {self.upload_rate}")
        if not 2 <= self.model_bits <= 8:
            raise ValueError(f"model_bits must be in 2..8, got {self.model_bits}")
        for name in ("ck", "xi"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.ck < 0 or (self.xi is not None and self.xi < 0):
            raise ValueError("ck and xi must be >= 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (np.isfinite(self.err_coef) and self.err_coef >= 0):
            raise ValueError(f"err_coef must be a finite number >= 0, got {self.err_coef}")
        if not (np.isfinite(self.threshold) and self.threshold >= 0):  # NaN: never synced
            raise ValueError(f"threshold must be a finite number >= 0, got {self.threshold}")
        return self

    #: Fields that must be integers and real numbers (None allowed where the default is None).
    INTEGER_FIELDS: ClassVar[tuple[str, ...]] = (
        "bits",
        "D",
        "t_bar",
        "batch",
        "levels",
        "bucket_size",
        "period",
        "max_delay",
        "epoch",
        "model_bits",
        "local_steps",
    )
    REAL_FIELDS: ClassVar[tuple[str, ...]] = (
        "alpha",
        "adaptive_bits",
        "ck",
        "xi",
        "err_coef",
        "ratio",
        "momentum",
        "upload_rate",
        "threshold",
    )

    def _check_types(self) -> None:
        """A float count (``period=nan``, ``local_steps=2.5``), a string step or a truthy
        string flag (``lag_forced="no"``) was accepted here and either ran silently (a
        period of NaN never averaged) or failed mid-run with a message naming no field."""
        for name in self.INTEGER_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        for name in self.REAL_FIELDS:
            value = getattr(self, name)
            if value is None and name in ("adaptive_bits", "xi"):
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {value!r}")
        check_bool(self.lag_forced, "lag_forced")

    def history(self, num_terms: int | None = None) -> IterateHistory:
        """The iterate-difference history of the lazy rule these parameters describe."""
        return IterateHistory(self.D, self.xi, self.ck, num_terms)


@dataclass
class Message:
    """What the server sends worker m in one iteration.

    Attributes
    ----------
    k : int
        Iteration number (0-based); stochastic workers key their randomness on it.
    theta : ndarray
        The point the worker evaluates at (the current model, or a delayed / quantized one).
    rhs : float
        ``(1/(alpha^2 M^2)) sum_d xi_d ||theta^{k+1-d} - theta^{k-d}||^2`` for lazy rules.
    request : bool
        False when the server tells the worker to stay idle (LAG-PS, random selection).
    reset : bool
        True when the worker must replace its local model by ``theta`` (local-step methods).
    nbytes : int
        Downlink size of this message in bytes.
    extra : dict
        Algorithm-specific fields (e.g. AsyLPG's snapshot flag).
    """

    k: int
    theta: F64
    rhs: float = 0.0
    request: bool = True
    reset: bool = False
    nbytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def theta_message_nbytes(dim: int) -> int:
    """Downlink bytes of a full-precision model broadcast: the float64 vector and 8 bytes
    of header (iteration number / lazy-rule scalar), as the simulator actually sends it."""
    return 8 * dim + 8


class WorkerSite(NamedTuple):
    """Where one worker runs: its index ``m``, its local objective, the run's parameters
    and the number of workers (what every :class:`Worker` constructor takes first)."""

    m: int
    objective: LocalObjective
    params: Params
    num_workers: int


class Worker:
    """Worker side of one algorithm: ``step(msg) -> Payload | None`` (None = skip)."""

    def __init__(self, site: WorkerSite) -> None:
        self.m = site.m
        self.f = site.objective
        self.params = site.params
        self.num_workers = site.num_workers
        # One generator per worker, keyed on (seed, m): minibatches do not depend on the
        # order in which workers are stepped, or on how many processes run them.
        self.rng = np.random.default_rng([site.params.seed, site.m])

    def gradient(self, theta: F64, stochastic: bool) -> F64:
        """Full local gradient, or a minibatch one (``params.batch`` samples)."""
        if not stochastic:
            return self.f.grad(theta)
        return self.f.minibatch_grad(theta, self.f.sample(self.rng, self.params.batch))

    def step(self, msg: Message) -> Payload | None:
        raise NotImplementedError  # abstract: every algorithm's worker overrides it


class Server:
    """Server side: holds the model; ``message(m)`` then ``apply(uploads)`` per iteration."""

    def __init__(self, params: Params, x0: F64, num_workers: int) -> None:
        self.params = params
        self.theta = np.array(x0, dtype=np.float64)
        self.num_workers = num_workers
        self.k = 0
        #: Set by algorithms that end on their own (one-shot averaging).
        self.done = False

    @property
    def dim(self) -> int:
        return int(self.theta.shape[0])

    def message(self, m: int) -> Message:
        return Message(self.k, self.theta, nbytes=theta_message_nbytes(self.dim))

    def apply(self, uploads: dict[int, Payload]) -> None:
        raise NotImplementedError  # abstract: every algorithm's server overrides it

    #: Whether :meth:`apply` is ``commit(fold(...))`` coordinate by coordinate, so that the
    #: engine's owner-chunk exchange can fold each chunk at its owner
    #: (:mod:`laqcore.distributed.engine_exchange`).
    chunkable: ClassVar[bool] = False
    #: Whether the folded state carries over between rounds (the lazy aggregate) or is
    #: rebuilt from each round's uploads (a sum).
    state_persists: ClassVar[bool] = False

    def fold(self, uploads: Batch, s: int, e: int, base: StateVector | None = None) -> StateVector:
        """Coordinates ``[s, e)`` of the state vector :meth:`apply` would compute from these
        uploads (each one the payload of those coordinates only); chunkable servers only.
        ``base``: the chunk of the state to fold into when it persists (default the
        server's own), e.g. an owner's exact chunk when the replicas hold a quantized one."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold chunks of its uploads")

    def commit(self, uploaders: list[int], state: StateVector) -> None:
        """Finish the round from the whole folded state vector: ``apply(uploads)`` is
        ``commit(sorted(uploads), fold(uploads, 0, dim))``, bit for bit."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold chunks of its uploads")

    def _move(self, theta_new: F64) -> None:
        """Replace the model and advance the iteration counter."""
        self.theta = theta_new
        self.k += 1


class SumServer(Server):
    """``theta -= alpha * sum_m decompress(upload_m)`` (GD, SGD and compressed SGD), or,
    with ``scaled=True``, ``theta -= sum_m decompress(upload_m)`` for workers that already
    multiplied by the step (error feedback)."""

    def __init__(
        self,
        params: Params,
        x0: F64,
        num_workers: int,
        compressor: Compressor,
        *,
        scaled: bool = False,
    ) -> None:
        super().__init__(params, x0, num_workers)
        self.compressor = compressor
        self.scale = 1.0 if scaled else params.alpha

    chunkable = True

    def fold(self, uploads: Batch, s: int, e: int, base: StateVector | None = None) -> F64:
        """The chunk ``[s, e)`` of ``sum_m decompress(upload_m)`` (float64; no ``base``: the
        sum starts from zero every round)."""
        total = np.zeros(e - s)
        for m in sorted(uploads):  # fixed order: float sums independent of arrival order
            total += decoded(self.compressor, uploads[m])
        return total

    def commit(self, uploaders: list[int], state: StateVector) -> None:
        self._move(self.theta - self.scale * state)

    def apply(self, uploads: dict[int, Payload]) -> None:
        self.commit(sorted(uploads), self.fold(uploads, 0, self.dim))


class CompressedWorker(Worker):
    """Uploads ``C(g)`` every iteration: the full gradient (GD) or a minibatch gradient
    (SGD, QSGD, SSGD, TernGrad, sparse+quantized SGD). ``C`` is built per worker with ``stream=m``, so
    stochastic rounding differs across workers and is reproducible from the seed."""

    def __init__(
        self,
        site: WorkerSite,
        compressor: Compressor,
        stochastic: bool,
    ) -> None:
        super().__init__(site)
        self.compressor = compressor
        self.stochastic = stochastic

    def step(self, msg: Message) -> Payload | None:
        g = self.gradient(msg.theta, self.stochastic)
        return self.compressor.compress(g, step=msg.k)


def _no_options(params: Params) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class CodecSpec:
    """How an algorithm builds the compressor of worker m, in one place for every algorithm:
    the registry ``name``, the keyword arguments ``options(params)`` takes from the run's
    parameters and, for a stochastic (``seeded``) compressor, ``seed=params.seed, stream=m``
    so each worker draws independent, reproducible bits."""

    name: str
    options: Callable[[Params], dict[str, Any]] = _no_options
    seeded: bool = False

    def build(self, params: Params, m: int) -> Compressor:
        kwargs = self.options(params)
        if self.seeded:
            kwargs.update(seed=params.seed, stream=m)
        return get_compressor(self.name, **kwargs)


class Algorithm:
    """An algorithm: a name, default parameters, and factories for its two sides.

    Subclasses set ``name``, ``stochastic``, ``DEFAULTS`` and ``USES``, and either
    ``server_type`` / ``worker_type`` (sides built from the parameters alone) or override
    :meth:`make_server` / :meth:`make_worker`.
    """

    name: ClassVar[str] = ""
    #: Whether workers use minibatch gradients (the run then has no exact F* stop).
    stochastic: ClassVar[bool] = False
    #: Overrides of :class:`Params` defaults for this algorithm.
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: The :class:`Params` fields this algorithm reads; overriding any other one is a
    #: ``TypeError`` (a test records the fields each algorithm really reads and compares).
    USES: ClassVar[frozenset[str]] = COMMON_PARAMS
    #: Whether its uploads carry a code stream that entropy coding compresses
    #: (:func:`laqcore.entropy.is_codable`: LAQ, QSGD, TernGrad, sign payloads); the CLI
    #: refuses ``--entropy-coding`` when none of its algorithms has one.
    entropy_codable: ClassVar[bool] = False
    #: Whether :meth:`make_server` needs the workers' smoothness constants (LAG-PS).
    needs_smoothness: ClassVar[bool] = False
    #: What the default :meth:`make_server` builds: ``server_type(params, x0, num_workers)``.
    server_type: ClassVar[type[Server]] = Server
    #: What the default :meth:`make_worker` builds: ``worker_type(site)``.
    worker_type: ClassVar[type[Worker]] = Worker

    def __init__(self, params: Params | None = None, **overrides: Any) -> None:
        unused = sorted(set(overrides) - self.USES)
        if unused:
            raise TypeError(
                f"{self.name} does not use {', '.join(unused)} (its parameters: "
                f"{', '.join(sorted(self.USES, key=str.lower))})"
            )
        if params is not None and not isinstance(params, Params):
            raise TypeError(
                f"params must be a Params (Params(bits=3) or keyword overrides: bits=3), got "
                f"{type(params).__name__}"
            )
        base = Params(**self.DEFAULTS) if params is None else params
        self.params = base.replace(**overrides).validate() if overrides else base.validate()
        # Whether the minibatch was chosen (a Params object or a batch override) rather than
        # left at its default: only a default one is worth a full-batch warning.
        self.batch_chosen = params is not None or "batch" in overrides

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.stochastic and "batch" not in cls.USES:  # Worker.gradient reads it
            cls.USES = cls.USES | {"batch"}

    @classmethod
    def default_params(cls) -> Params:
        return Params(**cls.DEFAULTS)

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return self.server_type(self.params, x0, num_workers)

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return self.worker_type(self.site(m, objective, num_workers))

    def site(self, m: int, objective: LocalObjective, num_workers: int) -> WorkerSite:
        """The :class:`WorkerSite` of worker ``m`` under this algorithm's parameters."""
        return WorkerSite(m, objective, self.params, num_workers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"

    def full_batch_note(self, sample_counts: list[int]) -> str | None:
        """Why this stochastic algorithm would in fact run on full local gradients: its
        default minibatch ``batch`` is at least every worker's number of samples (a minibatch
        of ``min(batch, n)`` distinct samples is then all of them, so no seed changes the
        run); None when that is not the case, or when the batch was chosen (the scaling
        study's ``batch=10**9`` asks for full gradients). The simulator and the engine warn
        with it."""
        if not self.stochastic or self.batch_chosen or not sample_counts:
            return None
        largest = max(sample_counts)
        if self.params.batch < largest:
            return None
        return (
            f"{self.name}: the default minibatch ({self.params.batch}) is at least every worker's "
            f"number of samples ({min(sample_counts)}-{largest}), so every step takes the full "
            "local gradient and the run does not depend on the seed; pass a smaller batch "
            "(--batch) for minibatch gradients"
        )


class CompressedGradient(Algorithm):
    """Template for "every worker uploads C(gradient), server sums": set ``codec``."""

    codec: ClassVar[CodecSpec] = CodecSpec("none")

    def build_compressor(self, m: int) -> Compressor:
        return self.codec.build(self.params, m)

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return SumServer(self.params, x0, num_workers, self.build_compressor(0))

    def make_worker(self, m: int, objective: LocalObjective, num_workers: int) -> Worker:
        return CompressedWorker(
            self.site(m, objective, num_workers), self.build_compressor(m), self.stochastic
        )
