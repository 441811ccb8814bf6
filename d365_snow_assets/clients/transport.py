"""The one transport policy both clients share (DESIGN.md §6): timeouts, Retry-After, backoff, 401 refresh,
per-host concurrency, verified TLS, and logs without secrets.

Why a hand-written loop rather than tenacity: the wait depends on the *response* (Retry-After, X-RateLimit-Reset),
a 401 changes state (evict the token) instead of waiting, and whether a failure may be retried depends on whether
the request could have been processed (a lost POST answer is not "failed"). Expressed in tenacity that is three
custom callbacks sharing mutable state; as a loop it is one screen that reads top to bottom.
"""

from __future__ import annotations

import functools
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import orjson

from ..redaction import get_logger
from .errors import AuthError, ConfigurationError, MaybeWrittenError, ThrottledError, TransientError

log = get_logger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
"""PATCH is listed because every PATCH this connector sends sets absolute values (never increments), so sending it
twice leaves the same state. DELETE repeated answers 404, which callers treat as done."""

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport failures that happen before a byte of the request reached the server: always safe to retry."""


def is_tls_verification_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a certificate that could not be verified."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def tls_failure_message(service: str, host: str) -> str:
    return (f"{service} at {host} presented a TLS certificate that could not be verified; if it uses a private CA, "
            f"set D365SNOW_CA_BUNDLE to that CA's PEM file (verification cannot be turned off).")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop. Defaults suit both services; tests shrink the waits through ``sleep``."""

    max_attempts: int = 6                 # for 5xx, connection errors and cancelled transactions
    max_throttled_attempts: int = 60      # 429s: the server says when to come back, so more patience is right
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_cap_s: float = 300.0      # a Retry-After beyond this is treated as this (guards a bad header)
    throttle_budget_s: float = 1800.0     # total time one call may spend waiting on 429s
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0         # F&O pages of 10,000 wide rows take tens of seconds on a busy AOS
    write_timeout_s: float = 60.0
    max_concurrency_per_host: int = 8     # F&O's user-based limit was 52 concurrent; ServiceNow semaphores are
                                          # per node and far smaller, so stay well below both


class Authenticator(Protocol):
    """What the transport needs from a credential: headers to send, and a way to drop a rejected token."""

    def auth_headers(self) -> dict[str, str]: ...

    def on_unauthorized(self, rejected: Mapping[str, str]) -> bool:
        """Forget the credential in ``rejected`` (the headers that got a 401); True when a retry may succeed."""
        ...


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP-date); None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        seconds = float(value)  # not RFC 9110, but some gateways send "1.5"
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN guard
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def throttle_wait(response: httpx.Response, now: float) -> float | None:
    """The server's requested wait for a 429/503: Retry-After, else ServiceNow's X-RateLimit-Reset (epoch s).

    When both are present and agree to within Retry-After's whole-second rounding, the reset instant is used: it
    says when the window reopens to the sub-second, where Retry-After rounds up and so idles up to a second of
    every window (bench/: push under a rate limit). A reset that disagrees (clock skew) is ignored.
    """
    wait = parse_retry_after(response.headers.get("retry-after"), now)
    reset = response.headers.get("x-ratelimit-reset", "").strip()
    if not reset.isdigit():
        return wait
    until_reset = max(0.0, int(reset) - now)
    if wait is None or wait - 1.0 <= until_reset <= wait:
        return until_reset
    return wait


def build_ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """System trust store plus ``ca_bundle`` (D365SNOW_CA_BUNDLE). Verification is never turned off.

    Every run builds several clients, and reading the system trust store costs tens of milliseconds each time: the
    context is shared while the bundle file is unchanged (an edited or replaced bundle gives a new one)."""
    version: tuple[int, int, int] | None = None
    if ca_bundle is not None:
        try:
            stat = ca_bundle.stat()
            version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            pass  # unreadable: _ssl_context reports it as a configuration error
    return _ssl_context(ca_bundle, version)


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_bundle: Path | None, _version: tuple[int, int, int] | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"D365SNOW_CA_BUNDLE ({ca_bundle}) could not be read as a PEM CA bundle: "
                                     f"{exc.__class__.__name__}.") from None
    return context


def json_object(content: bytes, system: str) -> dict[str, Any]:
    """A response body as a JSON object; a body that is not one is a transient failure (a cut-off answer)."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise TransientError(f"{system} answered with a body that is not JSON; the answer was cut off.",
                             system=system) from None
    if not isinstance(data, dict):
        raise TransientError(f"{system} answered with an unexpected JSON shape.", system=system)
    return data


@dataclass
class CallStats:
    """Counters of one transport, for tests and progress output."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    refreshes: int = 0
    waits: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)


FinalCheck = Callable[[httpx.Response], bool]
"""Given a 5xx response, True when it is a definite business answer (e.g. an F&O write failure with an infolog),
not an outage: it is returned to the caller instead of being retried."""

TransientCheck = Callable[[httpx.Response], str | None]
"""Given a 2xx response, what went wrong when it is really a failure to retry (ServiceNow's cancelled transaction,
a read cut off on the way), else None. The text ends up in the retry log line and the final error."""


def cut_off_read(response: httpx.Response) -> str | None:
    """A 2xx answer to a GET whose JSON body stops before its closing bracket: the rest of the stream was lost on
    the way (a proxy or gateway that still sent a complete HTTP response). Only reads are checked: a POST whose
    answer was cut off may have been written, and its caller resolves that by lookup. The check looks at the last
    byte only, so large pages are not parsed twice; a body that is complete-looking but malformed inside still
    fails in the caller's parser, which reports it as transient."""
    if response.request.method != "GET" or "json" not in response.headers.get("content-type", ""):
        return None
    body = response.content.rstrip()
    if body and not body.endswith((b"}", b"]")):
        return f"the answer was cut off after {len(response.content):,} bytes"
    return None


class Transport:
    """A thread-safe ``httpx.Client`` with the shared retry policy. One instance per service."""

    def __init__(self, service: str, *, ca_bundle: Path | None = None, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 final_error: FinalCheck | None = None, transient_success: TransientCheck | None = None,
                 rng: random.Random | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.service = service
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.stats = CallStats()
        self._final_error = final_error
        self._transient_success = transient_success
        self._rng = rng or random.Random()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}
        self._sem_lock = threading.Lock()
        p = self.policy
        self.client = httpx.Client(
            verify=build_ssl_context(ca_bundle),
            timeout=httpx.Timeout(connect=p.connect_timeout_s, read=p.read_timeout_s, write=p.write_timeout_s,
                                  pool=p.connect_timeout_s),
            limits=httpx.Limits(max_connections=p.max_concurrency_per_host * 4,
                                max_keepalive_connections=p.max_concurrency_per_host * 2),
            headers={"User-Agent": "d365-snow-connector/0.1", **(headers or {})},
            follow_redirects=False,  # a redirect to a login page must surface, not be followed with the token
        )

    def close(self) -> None:
        self.client.close()

    def _semaphore(self, host: str) -> threading.BoundedSemaphore:
        with self._sem_lock:
            sem = self._semaphores.get(host)
            if sem is None:
                sem = self._semaphores[host] = threading.BoundedSemaphore(self.policy.max_concurrency_per_host)
            return sem

    def _backoff(self, failures: int) -> float:
        p = self.policy
        ceiling = min(p.backoff_max_s, p.backoff_initial_s * (2 ** (failures - 1)))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # "equal jitter": never 0, never above the cap

    def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                content: bytes | None = None, headers: Mapping[str, str] | None = None,
                auth: Authenticator | None = None, retry_unsafe: bool = False) -> httpx.Response:
        """Send with retries and return the final response, whatever its status (callers map 4xx to errors).

        Raises :class:`ThrottledError` / :class:`TransientError` when retries run out, :class:`MaybeWrittenError`
        when a non-idempotent request (POST unless ``retry_unsafe``) may have been processed but its answer was
        lost (any 5xx, a reset or timeout after sending), and :class:`AuthError` when the service answers 401 again
        right after a token refresh. A POST is re-sent only after a 429 or a failure before it was sent.
        """
        method = method.upper()
        may_resend = method in IDEMPOTENT_METHODS or retry_unsafe
        body = content
        send_headers: dict[str, str] = dict(headers or {})
        if json is not None:
            body = orjson.dumps(json)
            send_headers.setdefault("Content-Type", "application/json")
        parts = urlsplit(url)
        host, path = parts.netloc, parts.path  # the query string is never logged (it may carry business data)
        p = self.policy
        failures = throttled = 0
        throttle_waited = 0.0
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            all_headers = dict(send_headers)
            if auth is not None:
                all_headers.update(auth.auth_headers())
            started = time.monotonic()
            self.stats.add(requests=1)
            try:
                with self._semaphore(host):
                    response = self.client.request(method, url, params=params, content=body, headers=all_headers)
            except httpx.TransportError as exc:
                self.stats.add(transport_errors=1)
                kind = exc.__class__.__name__
                if is_tls_verification_failure(exc):
                    # Not transient: retrying cannot make an untrusted certificate trusted.
                    raise ConfigurationError(tls_failure_message(self.service, host)) from None
                if not isinstance(exc, _NOT_SENT) and not may_resend:
                    log.warning("%s %s %s: %s after sending; not re-sent (it may have been processed)",
                                method, host, path, kind,
                                extra={"http": {"method": method, "host": host, "path": path, "error": kind,
                                                "attempt": attempt}})
                    raise MaybeWrittenError(
                        f"{self.service}: the connection failed after {method} {path} was sent ({kind}); the write "
                        f"may have happened, so look the record up before sending it again.",
                        system=self.service) from None
                failures += 1
                if failures >= p.max_attempts:
                    raise TransientError(f"{self.service} at {host} could not be reached after {failures} attempts "
                                         f"({kind}); check the URL, the network and the service status.",
                                         system=self.service) from None
                self._wait(method, host, path, None, attempt, self._backoff(failures), kind)
                continue
            status = response.status_code
            elapsed_ms = round((time.monotonic() - started) * 1000)
            log.debug("%s %s%s -> %s (attempt %s, %s ms)", method, host, path, status, attempt, elapsed_ms,
                      extra={"http": {"method": method, "host": host, "path": path, "status": status,
                                      "attempt": attempt, "elapsed_ms": elapsed_ms}})
            if status == 401 and auth is not None:
                if refreshed or not auth.on_unauthorized(all_headers):
                    raise AuthError(f"{self.service} answered 401 Unauthorized for {method} {path} even with a "
                                    f"freshly issued token; check that the app registration / integration user is "
                                    f"allowed to use this API.", status=401, system=self.service)
                refreshed = True
                self.stats.add(refreshes=1)
                log.info("%s %s%s -> 401: token refreshed, retrying once", method, host, path,
                         extra={"http": {"method": method, "host": host, "path": path, "status": 401,
                                         "attempt": attempt}})
                continue
            if status == 429:
                self.stats.add(throttled=1)
                throttled += 1
                wait = throttle_wait(response, self.clock())
                wait = self._backoff(throttled) if wait is None else min(wait, p.retry_after_cap_s)
                if throttled >= p.max_throttled_attempts or throttle_waited + wait > p.throttle_budget_s:
                    raise ThrottledError(f"{self.service} kept answering 429 Too Many Requests for {method} {path} "
                                         f"({throttled} times, {throttle_waited:.0f} s waited); lower the "
                                         f"connector's concurrency or ask the admin about rate limit rules.",
                                         status=429, system=self.service)
                throttle_waited += wait
                self._wait(method, host, path, status, attempt, wait, "throttled")
                continue
            if status >= 500:
                if self._final_error is not None and self._final_error(response):
                    return response
                self.stats.add(server_errors=1)
                # Any 5xx may follow a commit, 503 included: a gateway answers it when the server behind it is
                # slow or restarting, whether or not the write went through. Only the caller can tell (by a
                # lookup, or because the write coalesces), so a request it did not mark safe is never re-sent.
                if not may_resend:
                    raise MaybeWrittenError(
                        f"{self.service} answered {status} to {method} {path}; the write may have happened, so "
                        f"look the record up before sending it again.", status=status, system=self.service)
                failures += 1
                if failures >= p.max_attempts:
                    raise TransientError(f"{self.service} kept answering {status} for {method} {path} after "
                                         f"{failures} attempts; the service is failing, try again later.",
                                         status=status, system=self.service)
                hinted = throttle_wait(response, self.clock())
                wait = min(hinted, p.retry_after_cap_s) if hinted is not None else self._backoff(failures)
                self._wait(method, host, path, status, attempt, wait, "server error")
                continue
            broken = self._transient_success(response) if 200 <= status < 300 and self._transient_success else None
            if broken is not None:
                self.stats.add(server_errors=1)
                failures += 1
                if failures >= p.max_attempts:
                    raise TransientError(f"{self.service} answered {method} {path} with 200 but {broken}, "
                                         f"{failures} times; try again later.", status=status, system=self.service)
                self._wait(method, host, path, status, attempt, self._backoff(failures), broken)
                continue
            return response

    def _wait(self, method: str, host: str, path: str, status: int | None, attempt: int, wait: float,
              reason: str) -> None:
        self.stats.add(retries=1)
        self.stats.waited(wait)
        log.warning("%s %s%s -> %s (%s, attempt %s); retrying in %.2f s", method, host, path,
                    status if status is not None else "no response", reason, attempt, wait,
                    extra={"http": {"method": method, "host": host, "path": path, "status": status,
                                    "attempt": attempt, "wait_s": round(wait, 3), "reason": reason}})
        if wait > 0:
            self.sleep(wait)
