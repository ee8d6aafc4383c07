"""LAQ innovation quantizer (formula and arithmetic: cpp/include/laqcore/laq.hpp)."""

from collections.abc import Sequence
from typing import SupportsFloat, SupportsIndex

import numpy as np
import numpy.typing as npt

# pybind11 gives `prev` a default (None = zeros) but not `bits` after it, which Python
# syntax cannot express; the stub requires `prev` (callers pass it explicitly).
def quantize(
    grad: npt.NDArray[np.float32], prev: npt.NDArray[np.float32] | None, bits: SupportsIndex
) -> tuple[npt.NDArray[np.uint8], float, float, float]: ...
def check_payload(
    packed: npt.NDArray[np.uint8], n: SupportsIndex, bits: SupportsIndex, radius: SupportsFloat
) -> None: ...
def dequantize(
    packed: npt.NDArray[np.uint8], n: SupportsIndex, bits: SupportsIndex, radius: SupportsFloat
) -> npt.NDArray[np.float32]: ...
def accumulate(
    inout: npt.NDArray[np.float32],
    packed: npt.NDArray[np.uint8],
    n: SupportsIndex,
    bits: SupportsIndex,
    radius: SupportsFloat,
    weight: SupportsFloat = 1.0,
) -> None: ...
def accumulate_divide(
    inout: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    packed: npt.NDArray[np.uint8],
    n: SupportsIndex,
    bits: SupportsIndex,
    radius: SupportsFloat,
    divisor: SupportsFloat,
) -> None: ...
def accumulate_all(
    inout: npt.NDArray[np.float32],
    packed: Sequence[npt.NDArray[np.uint8]],
    n: SupportsIndex,
    bits: SupportsIndex,
    radius: npt.NDArray[np.float32],
    weight: SupportsFloat = 1.0,
) -> None: ...
def accumulate_all_blocks(
    inout: npt.NDArray[np.float32],
    packed: Sequence[npt.NDArray[np.uint8]],
    n: SupportsIndex,
    bits: SupportsIndex,
    block_size: SupportsIndex,
    radii: Sequence[npt.NDArray[np.float32]],
    weight: SupportsFloat = 1.0,
) -> None: ...
def innov_sq(
    packed: npt.NDArray[np.uint8], n: SupportsIndex, bits: SupportsIndex, radius: SupportsFloat
) -> float: ...
def kernel_name() -> str: ...
def lut(radius: SupportsFloat, bits: SupportsIndex) -> npt.NDArray[np.float32]: ...
def quantize_blocks(
    grad: npt.NDArray[np.float32],
    prev: npt.NDArray[np.float32] | None,
    bits: SupportsIndex,
    block_size: SupportsIndex,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32], float, float]: ...
def dequantize_blocks(
    packed: npt.NDArray[np.uint8],
    n: SupportsIndex,
    bits: SupportsIndex,
    block_size: SupportsIndex,
    radii: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]: ...
def accumulate_blocks(
    inout: npt.NDArray[np.float32],
    packed: npt.NDArray[np.uint8],
    n: SupportsIndex,
    bits: SupportsIndex,
    block_size: SupportsIndex,
    radii: npt.NDArray[np.float32],
    weight: SupportsFloat = 1.0,
) -> None: ...
def accumulate_divide_blocks(
    inout: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    packed: npt.NDArray[np.uint8],
    n: SupportsIndex,
    bits: SupportsIndex,
    block_size: SupportsIndex,
    radii: npt.NDArray[np.float32],
    divisor: SupportsFloat,
) -> None: ...
def check_blocks_payload(
    packed: npt.NDArray[np.uint8],
    n: SupportsIndex,
    bits: SupportsIndex,
    block_size: SupportsIndex,
    radii: npt.NDArray[np.float32],
) -> None: ...
def innov_sq_blocks(
    packed: npt.NDArray[np.uint8],
    n: SupportsIndex,
    bits: SupportsIndex,
    block_size: SupportsIndex,
    radii: npt.NDArray[np.float32],
) -> float: ...
