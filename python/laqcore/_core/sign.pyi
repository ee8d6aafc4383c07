"""Scaled sign compression (layout: cpp/include/laqcore/sign.hpp)."""

from typing import SupportsFloat, SupportsIndex

import numpy as np
import numpy.typing as npt

def compress(x: npt.NDArray[np.float32]) -> tuple[float, npt.NDArray[np.uint8]]: ...
def decompress(
    packed: npt.NDArray[np.uint8], n: SupportsIndex, scale: SupportsFloat
) -> npt.NDArray[np.float32]: ...
