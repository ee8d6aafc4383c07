"""Randomized Hadamard rotation + QSGD quantization (cpp/include/laqcore/rotation.hpp)."""

from typing import SupportsIndex

import numpy as np
import numpy.typing as npt

def padded_size(n: SupportsIndex) -> int: ...
def fwht(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
def forward(x: npt.NDArray[np.float32], key: SupportsIndex) -> npt.NDArray[np.float32]: ...
def inverse(
    y: npt.NDArray[np.float32], n: SupportsIndex, key: SupportsIndex
) -> npt.NDArray[np.float32]: ...
def compress(
    x: npt.NDArray[np.float32],
    levels: SupportsIndex,
    bucket_size: SupportsIndex,
    norm: str,
    rotation_key: SupportsIndex,
    rounding_key: SupportsIndex,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]: ...
def decompress(
    packed: npt.NDArray[np.uint8],
    scales: npt.NDArray[np.float32],
    n: SupportsIndex,
    levels: SupportsIndex,
    bucket_size: SupportsIndex,
    rotation_key: SupportsIndex,
) -> npt.NDArray[np.float32]: ...
