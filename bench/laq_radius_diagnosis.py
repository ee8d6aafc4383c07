"""Why LAQ needs more iterations than GD on a problem: the radius and error of its uploads.

For one problem (digits, or a LIBSVM file) and one or more LAQ settings this runs LAQ to the
tolerance and reports, from every upload of every worker after the first:

* ``R / rms(v)``: the single radius over the innovation's rms (how spiky the innovation is);
* ``max|v_intercept| / R`` and ``max|v_features| / R``: which coefficients set the radius
  (the softmax model's last feature row is the intercept, the constant 1);
* ``||eps|| / ||g||`` and ``||eps|| / ||v||``: the quantization error of the upload against
  the gradient and against the innovation it quantized;
* uploads and the iterations at which the residual first reaches 1e-2 .. 1e-6.

The feature rms of the training matrix (median over the columns) is printed with it. No
timing: every number is deterministic.

Usage::

    python bench/laq_radius_diagnosis.py --dataset libsvm:/tmp/syn_d100.svm laq laq:block_size=64
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from laqcore.algorithms import get_algorithm
from laqcore.algorithms.lazy_common import InnovationWorker
from laqcore.problems import make_problem
from laqcore.simulator import simulate

LEVELS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def parse_setting(spec: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value,key=value`` -> (name, parameters)."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=")
        params[key] = float(value) if "." in value else int(value)
    return name, params


def diagnose(problem: Any, name: str, params: dict[str, Any], eps: float) -> dict[str, Any]:
    """Run ``name`` with ``params`` and collect the statistics of the module docstring."""
    K = problem.model.num_outputs
    width = problem.dim // K
    rows: list[tuple[float, ...]] = []
    original = InnovationWorker.step

    def step(self: InnovationWorker, msg: Any) -> Any:
        g = self.gradient(msg.theta, self.stochastic)
        v = np.asarray(g, dtype=np.float64) - self.uploader.q_prev
        out = self.uploader.step(g, msg.rhs)
        if out is not None and self.uploader.uploads > 1:
            R = float(np.abs(v).max())
            table = v.reshape(width, K)
            err = float(np.sqrt(out.err_sq))
            rows.append(
                (
                    R / float(np.sqrt(np.mean(v**2))),
                    float(np.abs(table[-1]).max()) / R,
                    float(np.abs(table[:-1]).max()) / R,
                    err / float(np.linalg.norm(g)),
                    err / float(np.linalg.norm(v)),
                )
            )
        return out

    InnovationWorker.step = step  # type: ignore[method-assign]
    try:
        res = simulate(problem, get_algorithm(name, **params), max_iterations=20000, eps=eps)
    finally:
        InnovationWorker.step = original  # type: ignore[method-assign]
    residual = np.asarray(res.history["residual"])
    reached = [int(np.argmax(residual <= t)) if (residual <= t).any() else None for t in LEVELS]
    med = np.median(np.asarray(rows), axis=0) if rows else [float("nan")] * 5
    return {
        "iterations": res.iterations,
        "uploads": res.uploads,
        "reached": reached,
        "radius_over_rms": float(med[0]),
        "intercept_over_radius": float(med[1]),
        "features_over_radius": float(med[2]),
        "err_over_grad": float(med[3]),
        "err_over_innovation": float(med[4]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="gd, laq, laq:bits=8, laq:block_size=64, ...")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--normalize", default=None, choices=["none", "maxabs", "standard"])
    ap.add_argument("-M", "--workers", type=int, default=10)
    ap.add_argument("--eps", type=float, default=1e-6)
    args = ap.parse_args()
    problem = make_problem(args.dataset, workers=args.workers, normalize=args.normalize)
    cols = np.sqrt((problem.Xb[:, :-1] ** 2).mean(axis=0))
    print(
        f"{args.dataset} (normalize {args.normalize or 'default'}), M = {args.workers}, "
        f"p = {problem.dim}: feature rms median {np.median(cols):.2f}, intercept 1"
    )
    print(
        "iterations to residual "
        + " / ".join(f"{t:.0e}" for t in LEVELS)
        + "; medians over the uploads"
    )
    for spec in args.settings:
        name, params = parse_setting(spec)
        d = diagnose(problem, name, params, args.eps)
        print(
            f"{spec:<22} it {d['iterations']:>5}  uploads {d['uploads']:>5}  reached {d['reached']}"
        )
        if name != "gd":
            print(
                f"{'':<22} R/rms(v) {d['radius_over_rms']:.1f}  max|v_intercept|/R "
                f"{d['intercept_over_radius']:.2f}  max|v_features|/R {d['features_over_radius']:.2f}"
                f"  ||eps||/||g|| {d['err_over_grad']:.3f}  ||eps||/||v|| {d['err_over_innovation']:.2f}"
            )


if __name__ == "__main__":
    main()
