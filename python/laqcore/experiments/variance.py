"""``laqcore variance``: the error of every compressor for a given communication budget.

For each vector source and each compressor setting it measures, over a short sequence of
vectors ``x_0 .. x_{T-1}``:

* bits per coordinate: ``8 * payload.nbytes / n`` (frame header, metadata and CRC included);
* normalised MSE: mean over t of ``||C(x_t) - x_t||^2 / ||x_t||^2``;
* time: median wall time of one compress + decompress, in microseconds (1 thread).

Compressors: QSGD (levels 1, 3, 7, 15, 127; l2 and max norm), TernGrad, scaled sign, top-k
and rand-k (1% and 10%), sparse + quantized (10%, 4 bits), LAQ on innovations (b = 2, 3, 4,
6, 8: the worker quantizes ``x_t - q_{t-1}`` and the reconstruction is ``q_t``), LAQ with a
width per block on innovations (:mod:`laqcore.laq_widths`, blocks of 16, error budget
``rel * ||x_t - q_{t-1}||^2`` for rel = 0.01, 0.03, 0.1, 0.3), and the rotation quantizer
(levels 1, 3, 7, 15); each codable one also entropy-coded (:mod:`laqcore.entropy`; the width
frames are not).

Sources: ``gaussian``, ``student_t3``, ``lognormal`` (n coordinates; x_t = x + 0.1 * sigma *
z_t, a slowly changing vector, so that LAQ's innovations are small as in training), and
``softmax`` / ``mlp``: the local gradients of worker 0 along the first T iterations of GD on
the embedded digits data (the simulator's problems).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._typing import FloatVector
from .._validate import check_output_dir, check_positive_int, check_uint64
from ..serialization import json_safe, write_json
from .plots import pyplot, remove_stale_plots, save_figure

__all__ = ["SOURCES", "add_parser", "best_per_budget", "measure", "settings", "vector_source"]

SOURCES = ("gaussian", "student_t3", "lognormal", "softmax", "mlp")
#: The sources drawn from a generator of ``--n`` coordinates and ``--seed``; the others are
#: the recorded gradients of the digits problems, whose size and values are fixed.
SYNTHETIC = ("gaussian", "student_t3", "lognormal")
DEFAULT_N = 2**16
BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def __dir__() -> list[str]:
    return __all__


def settings() -> list[tuple[str, str, dict[str, Any]]]:
    """(family, registry name, keyword arguments) of every measured setting; ``"laq"`` is
    run on innovations (see the module docstring)."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for norm in ("l2", "max"):
        for s in (1, 3, 7, 15, 127):
            out.append((f"qsgd-{norm}", "qsgd", {"levels": s, "norm": norm}))
    out.append(("terngrad", "terngrad", {}))
    out.append(("sign", "sign", {}))
    for ratio in (0.01, 0.1):
        out.append(("topk", "topk", {"ratio": ratio}))
        out.append(("randk", "randk", {"ratio": ratio, "rescale": True}))
    out.append(("sparse+quant", "sparse_quant", {"ratio": 0.1, "bits": 4}))
    for b in (2, 3, 4, 6, 8):
        out.append(("laq-innovation", "laq", {"bits": b}))
    for rel in (0.01, 0.03, 0.1, 0.3):
        out.append(("laq-widths", "laq_widths", {"rel": rel}))
    for s in (1, 3, 7, 15):
        out.append(("rotation", "rotation", {"levels": s}))
    return out


#: Largest ``n x steps`` of a synthetic source (float32 elements held at once: 1 GiB).
MAX_SYNTHETIC_ELEMENTS = 2**28


def vector_source(name: str, n: int, steps: int, seed: int = 0) -> list[FloatVector]:
    """The sequence of vectors of one source (see the module docstring).

    ``n`` (the length of a synthetic source's vectors; the digits gradients have their own)
    and ``steps`` must be integers >= 1: ``n=0`` gave empty vectors with numpy warnings and
    ``steps=0`` an empty list that :func:`measure` failed on with an IndexError.
    """
    check_positive_int(n, "n")
    check_positive_int(steps, "steps")
    check_uint64(seed, "seed")
    rng = np.random.default_rng(seed)
    if name in ("softmax", "mlp"):
        from ..problems import make_problem

        prob = make_problem("digits", model=name, workers=10)
        theta = prob.initial_point()
        out = []
        for _ in range(steps):
            out.append(prob.workers[0].value_and_grad(theta)[1].astype(np.float32))
            theta = theta - 0.02 * prob.grad(theta)
        return out
    draw: dict[str, Callable[[], npt.NDArray[np.float64]]] = {
        "gaussian": lambda: rng.standard_normal(n),
        "student_t3": lambda: rng.standard_t(3, n),
        "lognormal": lambda: rng.lognormal(0.0, 1.5, n),
    }
    if name not in draw:
        raise ValueError(f"unknown vector source {name!r}; choose from {', '.join(SOURCES)}")
    base = draw[name]()
    sigma = float(np.std(base))
    return [(base + 0.1 * sigma * rng.standard_normal(n)).astype(np.float32) for _ in range(steps)]


#: The width block of the ``laq-widths`` settings (``Params.width_block``'s usual value).
WIDTH_BLOCK = 16


def _laq_innovations(
    vectors: list[FloatVector], entropy: bool, bits: int = 4, rel: float | None = None
) -> Iterator[tuple[FloatVector, int]]:
    """(reconstruction q_t, frame bytes) of a LAQ worker uploading every x_t's innovation:
    ``bits`` bits per coordinate, or with ``rel`` a width per block of :data:`WIDTH_BLOCK`
    meeting ``||dQ - v||^2 <= rel ||v||^2`` (v the innovation; width frames are never
    entropy coded)."""
    from ..entropy import entropy_encode
    from ..laq import InnovationQuantizer

    iq = InnovationQuantizer(vectors[0].size, bits)
    for x in vectors:
        if rel is None:
            p = iq.propose(x)
        else:
            v = (x - iq.q_prev).astype(np.float64)
            p = iq.propose_widths(x, WIDTH_BLOCK, rel * float(np.dot(v, v)), cap=1.0)
        iq.commit(p)
        yield iq.q_prev.copy(), entropy_encode(p).nbytes if entropy else p.nbytes


def measure(
    vectors: list[FloatVector], family: str, name: str, kwargs: dict[str, Any], entropy: bool
) -> dict[str, Any]:
    """One setting on one sequence: bits per coordinate, normalised MSE, time."""
    from .. import get_compressor, num_threads

    if not vectors:
        raise ValueError("vectors must hold at least one vector (see vector_source)")
    if entropy and name == "laq_widths":
        raise ValueError("laq_widths: its frames (LAQ_WIDTHS) are not entropy coded")

    n = vectors[0].size
    errs, sizes, times = [], [], []
    with num_threads(1):
        if name in ("laq", "laq_widths"):
            t0 = time.perf_counter()
            for x, (q, nbytes) in zip(
                vectors, _laq_innovations(vectors, **kwargs, entropy=entropy)
            ):
                errs.append(float(np.sum((q - x) ** 2) / np.sum(x.astype(np.float64) ** 2)))
                sizes.append(nbytes)
            times.append((time.perf_counter() - t0) / len(vectors))
        else:
            seeded = name in ("qsgd", "terngrad", "randk", "sparse_quant", "rotation")
            extra = {"seed": 1} if seeded else {}
            comp = get_compressor(name, entropy=entropy, **kwargs, **extra)
            for t, x in enumerate(vectors):
                t0 = time.perf_counter()
                payload = comp.compress(x, step=t)
                out = comp.decompress(payload)
                times.append(time.perf_counter() - t0)
                err = np.sum((out.astype(np.float64) - x) ** 2)
                errs.append(float(err / np.sum(x.astype(np.float64) ** 2)))
                sizes.append(payload.nbytes)
    return {
        "family": family,
        "compressor": name,
        "kwargs": kwargs,
        "entropy": entropy,
        "n": n,
        "bits_per_coord": 8 * float(np.mean(sizes)) / n,
        "nmse": float(np.mean(errs)),
        "time_us": 1e6 * statistics.median(times),
    }


def best_per_budget(records: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """For each source and budget (bits per coordinate), the setting of lowest error that
    fits, as ``"family kwargs [+entropy]: nmse"``."""
    table: dict[str, dict[str, str]] = {}
    for src in sorted({r["source"] for r in records}):
        row = {}
        for b in BUDGETS:
            fits = [r for r in records if r["source"] == src and r["bits_per_coord"] <= b]
            if fits:
                r = min(fits, key=lambda r: r["nmse"])
                args = ",".join(f"{k}={v}" for k, v in r["kwargs"].items())
                row[str(b)] = (
                    f"{r['family']}({args}){' +entropy' if r['entropy'] else ''}: {r['nmse']:.3g}"
                )
        table[src] = row
    return table


def _plot(records: list[dict[str, Any]], path: Path) -> None:
    plt = pyplot()
    sources = [s for s in SOURCES if any(r["source"] == s for r in records)]
    from matplotlib.ticker import FuncFormatter, NullFormatter

    cols = min(3, len(sources))
    rows = -(-len(sources) // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.2 * rows), squeeze=False)
    axes = grid.ravel()
    for ax in axes[len(sources) :]:
        ax.set_visible(False)
    families = sorted({r["family"] for r in records})
    colors = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    for ax, src in zip(axes, sources):
        for fam in families:
            for ent in (False, True):
                pts = sorted(
                    (r["bits_per_coord"], r["nmse"])
                    for r in records
                    if r["source"] == src and r["family"] == fam and r["entropy"] == ent
                )
                if not pts:
                    continue
                xs, ys = zip(*pts)
                ax.plot(
                    xs,
                    ys,
                    "--" if ent else "-",
                    marker="o" if not ent else "x",
                    color=colors[fam],
                    label=None if ent else fam,
                    lw=1,
                    ms=3,
                )
        # base 2, labelled 0.5, 1, 2, 4, 8 bits: base 10 left a panel whose points all lie
        # between 1 and 10 bits (lognormal at small n) without a single x label
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("||C(x) - x||^2 / ||x||^2")
        ax.set_title(f"{src} (n = {next(r['n'] for r in records if r['source'] == src)})")
        ax.set_xlabel("bits per coordinate (framing included)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left", title="dashed/x: entropy-coded", title_fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _run(args: argparse.Namespace) -> int:
    from ..entropy import CODABLE_COMPRESSORS

    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if not sources:  # ran nothing and printed empty tables
        raise ValueError(f"--sources must name at least one of {', '.join(SOURCES)}")
    check_uint64(args.seed, "--seed")  # numpy's own message names no parameter
    for s in sources:
        if s not in SOURCES:
            raise ValueError(f"unknown source {s!r}; choose from {', '.join(SOURCES)}")
    if args.n < 16 or args.steps < 1:
        raise ValueError("--n must be >= 16 and --steps >= 1")
    if set(sources) & set(SYNTHETIC) and args.n * args.steps > MAX_SYNTHETIC_ELEMENTS:
        # every source's vectors are held at once, and each compressor copies them: say so
        # before minutes of drawing end in a MemoryError
        raise ValueError(
            f"--n x --steps = {args.n * args.steps} float32 elements per source "
            f"({args.n * args.steps * 4 / 2**30:.1f} GiB); at most {MAX_SYNTHETIC_ELEMENTS} "
            "(1 GiB) are held"
        )
    if not set(sources) & set(SYNTHETIC):
        for flag, value, default in (("--n", args.n, DEFAULT_N), ("--seed", args.seed, 0)):
            if value != default:  # would be ignored: the recorded gradients are fixed
                raise ValueError(
                    f"{flag} sets the synthetic sources ({', '.join(SYNTHETIC)}) only; "
                    f"{', '.join(sources)} are recorded digits gradients of a fixed size"
                )
    if args.out:  # before the measurements, so they are never lost to an unwritable --out
        check_output_dir(args.out, "--out")
    records = []
    if not args.quiet:  # the columns were unnamed (what "us" timed, what nmse divides by)
        print(
            "source, compressor, parameters, entropy-coded or not; bits/coord: payload bits "
            "(framing included) / n; nmse: ||C(x) - x||^2 / ||x||^2, mean over the vectors; "
            "us: median compress + decompress time per vector, 1 thread"
        )
    for src in sources:
        vectors = vector_source(src, args.n, args.steps, args.seed)
        for family, name, kwargs in settings():
            for entropy in (False, True) if name in CODABLE_COMPRESSORS else (False,):
                rec = measure(vectors, family, name, kwargs, entropy)
                rec["source"] = src
                records.append(rec)
                if not args.quiet:
                    print(
                        f"{src:10s} {family:15s} {json.dumps(kwargs):32s} "
                        f"{'entropy' if entropy else '':7s} bits/coord {rec['bits_per_coord']:7.3f}"
                        f"  nmse {rec['nmse']:9.3g}  {rec['time_us']:9.1f} us"
                    )
    table = best_per_budget(records)
    print("\nlowest error within a budget (bits per coordinate, framing included):")
    for src, row in table.items():
        print(f"  {src}:")
        for b, best in row.items():
            print(f"    <= {b:>4s}: {best}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        doc = {"config": vars(args) | {"func": None}, "records": records, "best": table}
        write_json(out / "variance.json", json_safe(doc), indent=1)  # whole or not at all
        if not args.no_plots:
            _plot(records, out / "variance.png")
        remove_stale_plots(str(out), ["variance.png"], [] if args.no_plots else ["variance.png"])
        print(f"wrote {out / 'variance.json'}" + ("" if args.no_plots else " and variance.png"))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``variance`` (see :mod:`laqcore.cli`)."""
    p = sub.add_parser("variance", help="normalised MSE vs bits per coordinate of every compressor")
    p.add_argument("--sources", default=",".join(SOURCES), help="comma-separated vector sources")
    p.add_argument("--n", type=int, default=DEFAULT_N, help="length of the synthetic vectors")
    p.add_argument("--steps", type=int, default=4, help="vectors per source (T)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic vectors")
    p.add_argument("--out", default=None, help="directory for variance.json and variance.png")
    p.add_argument("--no-plots", action="store_true", help="do not write variance.png")
    p.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="only the best-per-budget summary, not every setting",
    )
    p.set_defaults(func=_run)
