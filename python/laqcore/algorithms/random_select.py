"""Random worker selection: the reviewers' baseline for LAQ's skipping.

Every iteration each worker is selected independently with probability ``upload_rate``
(seeded, drawn by the server); selected workers upload their LAQ-quantized innovation, the
others are reused stale, exactly as in LAQ. Run at LAQ's measured upload rate (``laqcore
compare`` does this with ``--upload-rate auto``), it shows what LAQ's *informed* choice of
uploads is worth over a random one at the same communication budget.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .base import Message, Params, Server
from .lazy_common import InnovationAlgorithm, QuantizedLazyServer

__all__ = ["RandomSelection"]


def __dir__() -> list[str]:
    return __all__


F64 = npt.NDArray[np.float64]


class SelectionServer(QuantizedLazyServer):
    def __init__(self, params: Params, x0: F64, num_workers: int) -> None:
        super().__init__(params, x0, num_workers)
        self.rng = np.random.default_rng([params.seed, 0x5E1EC7])
        self._drawn_for = -1
        self._selected = np.ones(num_workers, dtype=bool)

    def message(self, m: int) -> Message:
        if self._drawn_for != self.k:
            self._selected = self.rng.random(self.num_workers) < self.params.upload_rate
            if self.k == 0:
                self._selected[:] = True  # everyone's first gradient seeds the aggregate
            self._drawn_for = self.k
        msg = super().message(m)
        msg.request = bool(self._selected[m])
        return msg


class RandomSelection(InnovationAlgorithm):
    """Random worker selection at a fixed expected upload rate."""

    name = "random-select"
    upload_mode = "requested"  # the LAQ worker, uploading exactly when selected

    def make_server(self, x0: F64, num_workers: int, smoothness: F64 | None = None) -> Server:
        return SelectionServer(self.params, x0, num_workers)
