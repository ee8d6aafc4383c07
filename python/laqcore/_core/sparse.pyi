"""top-k / rand-k selection and scatter (rules: cpp/include/laqcore/sparse.hpp)."""

from typing import SupportsIndex

import numpy as np
import numpy.typing as npt

def check_indices(indices: npt.NDArray[np.uint32], n: SupportsIndex) -> None: ...
def dense_copy(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]: ...
def randk(
    x: npt.NDArray[np.float32], k: SupportsIndex, key: SupportsIndex
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
def scatter(
    indices: npt.NDArray[np.uint32], values: npt.NDArray[np.float32], n: SupportsIndex
) -> npt.NDArray[np.float32]: ...
def topk(
    x: npt.NDArray[np.float32], k: SupportsIndex
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.float32]]: ...
