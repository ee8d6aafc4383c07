"""Batch gradient descent: every worker uploads its full local gradient, uncompressed.

    theta^{k+1} = theta^k - alpha * sum_m grad f_m(theta^k)

The upload is a real ``DensePayload`` (32 bits per coordinate plus the frame), so GD's bits
are counted exactly like every other method's.
"""

from __future__ import annotations

from .base import CompressedGradient

__all__ = ["GD"]


def __dir__() -> list[str]:
    return __all__


class GD(CompressedGradient):
    """Gradient descent (the paper's GD baseline)."""

    name = "gd"
    compressor_name = "none"
