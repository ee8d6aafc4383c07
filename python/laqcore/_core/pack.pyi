"""Bit packing of 1..8-bit codes (layout: see cpp/include/laqcore/pack.hpp)."""

from typing import SupportsIndex

import numpy as np
import numpy.typing as npt

def packed_size(n: SupportsIndex, bits: SupportsIndex) -> int: ...
def pack_bits(codes: npt.NDArray[np.uint8], bits: SupportsIndex) -> npt.NDArray[np.uint8]: ...
def unpack_bits(
    packed: npt.NDArray[np.uint8], bits: SupportsIndex, n: SupportsIndex
) -> npt.NDArray[np.uint8]: ...
