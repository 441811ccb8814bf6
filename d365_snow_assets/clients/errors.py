"""Exceptions raised by the connector's HTTP clients.

Every message is one sentence an operator can act on. Messages may carry the F&O infolog or a ServiceNow error
message (business text, not secret) but never a credential, token or Authorization header.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every client error."""

    def __init__(self, message: str, *, status: int | None = None, system: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.system = system
        self.detail = detail  # F&O infolog / ServiceNow error detail: business text, kept for audit rows


class ConfigurationError(ConnectorError):
    """The client cannot be built from the settings (missing URL, unreadable CA bundle, …)."""


class AuthError(ConnectorError):
    """A token could not be obtained, or the service still answered 401 after one token refresh."""

    def __init__(self, message: str, *, status: int | None = None, system: str | None = None,
                 detail: str | None = None, code: str | None = None) -> None:
        super().__init__(message, status=status, system=system, detail=detail)
        self.code = code  # e.g. "AADSTS7000215" or "access_denied"


class CredentialsRefusedError(AuthError):
    """The service refused the configured credentials themselves (a refused token request, or basic credentials
    answered 401). Asking again cannot help, so the client refuses every further call without sending it; the
    message names the variables to fix."""


class TransientError(ConnectorError):
    """5xx, connection failures or a cancelled transaction that persisted through every retry."""


class ThrottledError(TransientError):
    """429 answers persisted through every retry."""


class MaybeWrittenError(TransientError):
    """A non-idempotent write was sent but its answer was lost (connection dropped, timeout, 5xx).

    The write may have happened (DESIGN.md §6): look the record up by its natural key before re-sending it.
    """


class ApiError(ConnectorError):
    """The service refused the request (4xx, or an F&O write failure); retrying the same request will not help."""


class ValidationError(ApiError):
    """The service rejected the values (F&O validateField / validateWrite, ServiceNow 400)."""


class DuplicateError(ApiError):
    """A record with the same key (or the same vendor invoice number) already exists."""


class ReadOnlyError(ApiError):
    """The entity is read-only (BI entities) or the record may not be changed."""


class NotFoundError(ApiError):
    """The record or entity set does not exist (or ServiceNow's ACLs hide it)."""


class ConflictError(ApiError):
    """The record changed since it was read (ETag mismatch, 412)."""


class ForbiddenError(ApiError):
    """The caller is authenticated but not allowed to do this (403)."""
