"""The failures the F&O side of the invoice flow can report (DESIGN §6), taken from the HTTP clients.

``posting.py`` understands these names; they are the clients' own classes, so a real
:class:`~d365_snow_assets.clients.d365` call raises exactly what the algorithm catches. ``LedgerError`` is the
clients' base class: any failure of one call, known to have written nothing unless it is a ``MaybeWrittenError``.
"""

from __future__ import annotations

from d365_snow_assets.clients.errors import (
    ApiError,
    DuplicateError,
    MaybeWrittenError,
    NotFoundError,
    TransientError,
    ValidationError,
)
from d365_snow_assets.clients.errors import ConnectorError as LedgerError


def detail(exc: BaseException) -> str:
    """The business text of a failure: the F&O infolog when the client kept it, else the message."""
    return (getattr(exc, "detail", None) or str(exc) or type(exc).__name__).strip()


def is_retryable(exc: BaseException) -> bool:
    """A refusal (4xx: forbidden, read-only, …) stays a refusal; outages and throttling may pass."""
    return not isinstance(exc, ApiError)


__all__ = ["ApiError", "DuplicateError", "LedgerError", "MaybeWrittenError", "NotFoundError", "TransientError",
           "ValidationError", "detail", "is_retryable"]
