"""Errors a retry cannot fix end the step at once instead of waiting out its retry policy."""

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import dagster as dg

from ..clients.errors import ApiError, AuthError, ConfigurationError
from ..sync.push import BlockedTargetError

F = TypeVar("F", bound=Callable[..., Any])


def refused_credentials(resources: Iterable[object]) -> AuthError | None:
    """The refusal that stopped one of ``resources``' clients in this step, if any."""
    for resource in resources:
        refused = getattr(resource, "refused_credentials", None)
        error = refused() if callable(refused) else None
        if error is not None:
            return error
    return None


def fail_fast_on_configuration(fn: F) -> F:
    """Turn configuration and credential errors, a mapping that does not fit the instance, and a request the service
    refused as such (4xx: the same request would be refused again), into a non-retryable Dagster failure carrying
    their message.

    A step that caught a client error itself (a push audits every failed chunk and then fails) still fails this
    way when its client's credentials were refused meanwhile: a retry would be refused the same way.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigurationError, AuthError, BlockedTargetError, ApiError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        except Exception:
            refused = refused_credentials(kwargs.values())
            if refused is None:
                raise
            raise dg.Failure(description=refused.message, allow_retries=False) from refused

    return wrapper  # type: ignore[return-value]
