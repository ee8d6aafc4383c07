"""QSGD bucketed stochastic quantization (formulas: cpp/include/laqcore/qsgd.hpp)."""

from typing import SupportsIndex

import numpy as np
import numpy.typing as npt

def code_bits(levels: SupportsIndex) -> int: ...
def dequantize(
    packed: npt.NDArray[np.uint8],
    scales: npt.NDArray[np.float32],
    n: SupportsIndex,
    levels: SupportsIndex,
    bucket_size: SupportsIndex,
) -> npt.NDArray[np.float32]: ...
def num_buckets(n: SupportsIndex, bucket_size: SupportsIndex) -> int: ...
def quantize(
    x: npt.NDArray[np.float32],
    levels: SupportsIndex,
    bucket_size: SupportsIndex,
    norm: str,
    key: SupportsIndex,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]: ...
