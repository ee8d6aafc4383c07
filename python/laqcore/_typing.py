"""The array type aliases of the package, defined once (annotations only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["F64", "ByteVector", "FloatVector"]


def __dir__() -> list[str]:
    return __all__


#: A float32 vector: what compressors take and return, and what goes on the wire.
FloatVector = npt.NDArray[np.float32]
#: A float64 array: models, gradients and iterates of the simulator.
F64 = npt.NDArray[np.float64]
#: Packed codes and frames.
ByteVector = npt.NDArray[np.uint8]
