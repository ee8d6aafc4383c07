"""What the bench-only LAQ quantizer prototypes share (bench_adaptive_zero_grid.py,
bench_adaptive_blockwidths.py): a payload that carries its decoded innovation, and the
injection that makes the simulator apply it.

A prototype's payload is a :class:`DecodedPayload`, a ``LAQPayload`` whose ``dq`` holds the
innovation it decodes to; inside :func:`decoded_payloads`, ``laqcore.laq._accumulate`` (what the
worker's ``q_prev += dQ`` and the server's ``aggregate += dQ`` call) adds ``dq`` for such
payloads and decodes every other one as before, so the worker and the server move alike. None
of this is library code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import laqcore.laq as laq_module
from laqcore.laq_payload import LAQPayload

PAPER_QUANTIZE = laq_module.laq_quantize
PAPER_ACCUMULATE = laq_module._accumulate


class DecodedPayload(LAQPayload):
    """A prototype's LAQ payload; ``dq`` is its decoded innovation (float32, read-only)."""

    dq: np.ndarray[Any, np.dtype[np.float32]]


def decoded_payload(
    cls: type[DecodedPayload],
    grad: np.ndarray,
    prev: np.ndarray,
    dq: np.ndarray,
    packed: np.ndarray,
    radius: float,
    bits: int,
) -> Any:
    """A ``cls`` payload of ``dq`` (float32) for ``grad`` against ``prev``: its err_sq from
    the float32 reconstruction ``prev + dq``, as the native quantizer computes it, and its
    innov_sq = ||dq||^2; ``packed`` and ``radius`` fill LAQ's fields."""
    err = (prev + dq) - grad
    packed.flags.writeable = False
    radii = np.array([radius], dtype=np.float32)
    radii.flags.writeable = False
    payload = cls._trusted(
        packed,
        radii,
        bits,
        grad.shape[0],
        None,
        float(np.dot(err.astype(np.float64), err)),
        float(np.dot(dq.astype(np.float64), dq)),
    )
    dq.flags.writeable = False
    payload.dq = dq
    return payload


def _accumulate(out: Any, p: LAQPayload, weight: float) -> None:
    if isinstance(p, DecodedPayload):
        out += np.float32(weight) * p.dq
    else:
        PAPER_ACCUMULATE(out, p, weight)


@contextlib.contextmanager
def decoded_payloads(quantize: Callable[..., Any] | None = None) -> Iterator[None]:
    """Inside: the simulator applies :class:`DecodedPayload` s by their ``dq``, and, with
    ``quantize``, quantizes every innovation with it instead of ``laq_quantize``."""
    laq_module._accumulate = _accumulate
    if quantize is not None:
        laq_module.laq_quantize = quantize
    try:
        yield
    finally:
        laq_module.laq_quantize = PAPER_QUANTIZE
        laq_module._accumulate = PAPER_ACCUMULATE
