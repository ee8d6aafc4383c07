"""LAQ with a bit width per block (formula: cpp/include/laqcore/laq_widths.hpp)."""

from collections.abc import Sequence
from typing import SupportsFloat, SupportsIndex

import numpy as np
import numpy.typing as npt

WIDTH_FIELDS: int
WIDTH_FIELD_BITS: int
EXPONENT_BITS: int
MAX_BLOCK: int

def quantize(
    grad: npt.NDArray[np.float32],
    prev: npt.NDArray[np.float32] | None,
    block: SupportsIndex,
    widths: Sequence[SupportsIndex],
    budget: SupportsFloat,
    cap: SupportsFloat,
) -> tuple[npt.NDArray[np.uint8], float, float, float]: ...
def check(
    body: npt.NDArray[np.uint8],
    n: SupportsIndex,
    block: SupportsIndex,
    widths: Sequence[SupportsIndex],
    r_max: SupportsFloat,
) -> None: ...
def fields(
    body: npt.NDArray[np.uint8],
    n: SupportsIndex,
    block: SupportsIndex,
    widths: Sequence[SupportsIndex],
    r_max: SupportsFloat,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float32]]: ...
def dequantize(
    body: npt.NDArray[np.uint8],
    n: SupportsIndex,
    block: SupportsIndex,
    widths: Sequence[SupportsIndex],
    r_max: SupportsFloat,
) -> npt.NDArray[np.float32]: ...
def accumulate(
    inout: npt.NDArray[np.float32],
    body: npt.NDArray[np.uint8],
    n: SupportsIndex,
    block: SupportsIndex,
    widths: Sequence[SupportsIndex],
    r_max: SupportsFloat,
    weight: SupportsFloat = 1.0,
) -> None: ...
def innov_sq(
    body: npt.NDArray[np.uint8],
    n: SupportsIndex,
    block: SupportsIndex,
    widths: Sequence[SupportsIndex],
    r_max: SupportsFloat,
) -> float: ...
def radius_scale(e: SupportsIndex) -> float: ...
