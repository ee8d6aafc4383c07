"""Top-k SGD with memory (Stich, Cordonnier & Jaggi 2018): each worker sends the ``ratio``
fraction of largest-magnitude coordinates of ``alpha g + m_t`` and remembers the rest."""

from __future__ import annotations

from typing import Any

from .ef_common import ErrorFeedbackSGD

__all__ = ["TopKEF"]


def __dir__() -> list[str]:
    return __all__


class TopKEF(ErrorFeedbackSGD):
    """Top-k sparsified SGD with error feedback."""

    name = "topk-ef"
    compressor_name = "topk"

    def compressor_kwargs(self, m: int) -> dict[str, Any]:
        return {"ratio": self.params.ratio}
