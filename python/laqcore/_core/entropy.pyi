"""Entropy coding of code streams (interleaved rANS; cpp/include/laqcore/entropy.hpp)."""

from collections.abc import Sequence
from typing import SupportsIndex

import numpy as np
import numpy.typing as npt

def encode(
    symbols: npt.NDArray[np.uint8], alphabet_bits: SupportsIndex
) -> npt.NDArray[np.uint8]: ...
def decode(
    stream: npt.NDArray[np.uint8], count: SupportsIndex, alphabet_bits: SupportsIndex
) -> npt.NDArray[np.uint8]: ...
def encode_packed(
    packed: npt.NDArray[np.uint8], n: SupportsIndex, bits: SupportsIndex
) -> tuple[int, npt.NDArray[np.uint8]]: ...
def decode_packed(
    stream: npt.NDArray[np.uint8], n: SupportsIndex, bits: SupportsIndex, mode: SupportsIndex
) -> npt.NDArray[np.uint8]: ...
def normalise(counts: Sequence[SupportsIndex], m: SupportsIndex) -> list[int]: ...
