"""Errors a retry cannot fix end the step at once instead of waiting out its retry policy."""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from ..clients.errors import AuthError, ConfigurationError
from ..sync.push import BlockedTargetError

F = TypeVar("F", bound=Callable[..., Any])


def fail_fast_on_configuration(fn: F) -> F:
    """Turn configuration and credential errors, and a mapping that does not fit the instance, into a
    non-retryable Dagster failure carrying their message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigurationError, AuthError, BlockedTargetError) as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    return wrapper  # type: ignore[return-value]
