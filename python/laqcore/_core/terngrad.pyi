"""TernGrad ternarization (formulas and code mapping: cpp/include/laqcore/terngrad.hpp)."""

from typing import SupportsFloat, SupportsIndex

import numpy as np
import numpy.typing as npt

def dequantize(
    packed: npt.NDArray[np.uint8], n: SupportsIndex, scaler: SupportsFloat
) -> npt.NDArray[np.float32]: ...
def quantize(
    x: npt.NDArray[np.float32],
    clip_factor: SupportsFloat,
    shared_scaler: SupportsFloat,
    key: SupportsIndex,
) -> tuple[float, npt.NDArray[np.uint8]]: ...
def scaler(x: npt.NDArray[np.float32], clip_factor: SupportsFloat) -> tuple[float, float]: ...
