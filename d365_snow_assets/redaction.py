"""Keep secrets out of logs, exceptions and CLI output (DESIGN.md §8).

Two defences, because either alone leaks: the clients never format secrets into messages in the first place, and
a logging filter scrubs every known secret value (and anything shaped like a bearer token or a basic-auth header)
from records that reach the ``d365_snow_assets`` loggers, in case a library echoes one back.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable

MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would blank out ordinary words

_PATTERNS = [
    re.compile(r"(?i)(authorization\s*[:=]\s*)(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)((?:client_secret|password|access_token|refresh_token|assertion)[\"']?\s*[:=]\s*[\"']?)"
               r"[^\s&\"',}]+"),
    # JWT-shaped values (three base64url segments): access tokens of Entra and many OAuth servers.
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
]


class SecretRegistry:
    """The secret values known to this process (settings secrets, issued tokens)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= _MIN_SECRET_LEN and value not in self._values:
                    self._values.add(value)
                    self._pattern = None

    def discard(self, value: str) -> None:
        with self._lock:
            self._values.discard(value)
            self._pattern = None

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._values:
                # Longest first so a secret containing another is masked whole.
                alternatives = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in alternatives))
            return self._pattern

    def redact(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(MASK, text)
        for rx in _PATTERNS:
            text = rx.sub(lambda m: (m.group(1) if m.re.groups else "") + MASK, text)
        return text


SECRETS = SecretRegistry()


def register_secrets(values: Iterable[str | None]) -> None:
    """Make ``values`` known to :func:`redact` and the logging filter."""
    SECRETS.add(*values)


def redact(text: str) -> str:
    """``text`` with every known secret and token-shaped value replaced by ``***``."""
    return SECRETS.redact(text)


class RedactingFilter(logging.Filter):
    """Scrubs the final message (and exception text) of each record; attached to the package's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text)
            record.exc_info = None
        return True


_installed_lock = threading.Lock()
_installed: set[str] = set()


def install_redaction(*logger_names: str) -> None:
    """Attach :class:`RedactingFilter` once to each named logger (default: the package and the HTTP libraries,
    whose debug logs include URLs and, for msal, request bodies)."""
    names = logger_names or ("d365_snow_assets", "msal", "httpx", "httpcore", "urllib3", "requests_oauthlib")
    with _installed_lock:
        for name in names:
            if name in _installed:
                continue
            logging.getLogger(name).addFilter(RedactingFilter())
            _installed.add(name)


def get_logger(name: str) -> logging.Logger:
    """A logger with the redacting filter attached.

    Logger filters do not apply to records propagated from child loggers, so each module's own logger gets one.
    """
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
