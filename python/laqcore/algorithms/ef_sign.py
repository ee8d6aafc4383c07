"""EF-signSGD (Karimireddy et al. 2019): scaled sign ``(||p||_1 / n) sign(p)`` of the
error-compensated step ``p = alpha g + e``; about 1 bit per coordinate."""

from __future__ import annotations

from .ef_common import ErrorFeedbackSGD

__all__ = ["EFSign"]


def __dir__() -> list[str]:
    return __all__


class EFSign(ErrorFeedbackSGD):
    """Error-feedback scaled-sign SGD."""

    name = "ef-sign"
    compressor_name = "sign"
