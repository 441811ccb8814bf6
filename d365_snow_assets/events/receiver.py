"""The HTTP receiver for F&O's HTTPS business-event endpoint type (DESIGN.md §8, reference/d365.md §6).

F&O stores the endpoint URL as a Key Vault secret and POSTs each event to it with no other credentials, so the
caller is authenticated by a secret path segment: ``POST /events/{secret}``.

Responses, and why:

- wrong or missing secret → **404**, the same body as any unknown path: the URL *is* the credential, so a wrong
  URL is simply not found, and a scanner learns nothing (a 401 would confirm the route and invite guessing).
- body over the limit → **413**, decided from ``Content-Length`` before reading anything, or as soon as a chunked
  body passes the limit; nothing is spooled.
- not JSON / not an envelope → **400**; F&O retries 3 times and then keeps it in its error log for a human.
- new event → **200** after the spool commit; a **duplicate** (same EventId, or same BusinessEventId + legal entity
  + ControlNumber) → **200** too, not spooled again: F&O retries on any non-2xx and a duplicate must not be
  retried forever. 200 rather than 202 because some webhook callers only count 200 as delivered.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..redaction import MASK, get_logger, install_redaction, register_secrets
from .spool import EnvelopeError, EventSpool, parse_envelope

DEFAULT_MAX_BODY = 256 * 1024
"""Business events are lightweight stubs (reference §6); real ones are a few hundred bytes."""

MIN_SECRET_LENGTH = 24
_SECRET_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

log = get_logger("d365_snow_assets.events")


class SecretError(ValueError):
    """The configured secret cannot protect the endpoint; the message says what to do."""


def check_secret(secret: str | None) -> str:
    """The secret if it is usable as an unguessable URL path segment, else :class:`SecretError`."""
    hint = "generate one with: python3 -c \"import secrets; print(secrets.token_urlsafe(32))\""
    if not secret:
        raise SecretError(f"D365SNOW_EVENTS_SECRET is not set; {hint}")
    if len(secret) < MIN_SECRET_LENGTH:
        raise SecretError(f"D365SNOW_EVENTS_SECRET is shorter than {MIN_SECRET_LENGTH} characters; {hint}")
    if not set(secret) <= _SECRET_ALPHABET:
        # Anything else would need percent-encoding in the URL F&O stores, and proxies disagree on decoding.
        raise SecretError(f"D365SNOW_EVENTS_SECRET may only hold letters, digits and - _ . ~; {hint}")
    return secret


class _TooLarge(Exception):
    pass


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404)


def build_app(spool: EventSpool, secret: str, *, max_body: int = DEFAULT_MAX_BODY) -> Starlette:
    """The ASGI app: ``POST /events/{secret}`` and ``GET /healthz``."""
    check_secret(secret)
    register_secrets([secret])  # any log line that still carries it (a library's, say) is masked
    expected = secret.encode()

    async def receive_event(request: Request) -> Response:
        given = request.path_params["secret"]
        # Compare bytes: compare_digest on str raises TypeError for non-ASCII input, which would be a 500.
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            _access(request, 404, "wrong secret")
            return _not_found()
        if request.method != "POST":
            _access(request, 405, "method not allowed")
            return PlainTextResponse("Method Not Allowed", status_code=405, headers={"Allow": "POST"})
        try:
            body = await _read_bounded(request, max_body)
        except _TooLarge:
            _access(request, 413, f"body over {max_body} bytes")
            # Connection: close, because the rest of the body was never read and cannot be skipped safely.
            return PlainTextResponse(f"Payload Too Large (limit {max_body} bytes)", status_code=413,
                                     headers={"Connection": "close"})
        except ClientDisconnect:
            _access(request, 400, "client disconnected")
            return PlainTextResponse("Bad Request", status_code=400)
        try:
            event = parse_envelope(orjson.loads(body))
        except orjson.JSONDecodeError:
            _access(request, 400, "body is not JSON")
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        except EnvelopeError as exc:
            _access(request, 400, str(exc))
            return JSONResponse({"error": str(exc)}, status_code=400)
        # SQLite may wait on a lock held by the sensor; do it off the event loop.
        new = await run_in_threadpool(spool.add, event)
        status = "accepted" if new else "duplicate"
        _access(request, 200, f"{status} {event.business_event_id} {event.legal_entity} "
                              f"EventId={event.event_id} ControlNumber={event.control_number}")
        return JSONResponse({"status": status, "eventId": event.event_id})

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def not_found(_: Request, __: Exception) -> Response:
        return _not_found()

    handlers: dict[int | type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found}
    return Starlette(
        routes=[
            # Every method reaches the handler, so a wrong secret is a 404 whatever the method (no 405 leak).
            Route("/events/{secret}", receive_event,
                  methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers=handlers,
    )


async def _read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            pass  # a malformed header: the stream below still enforces the limit
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _access(request: Request, status: int, detail: str) -> None:
    # The request path holds the secret: log the route shape, never request.url.
    client = request.client.host if request.client else "-"
    level = logging.INFO if status == 200 else logging.WARNING
    log.log(level, "%s /events/%s %d from %s: %s", request.method, MASK, status, client, detail)


class _MaskEventPaths(logging.Filter):
    """Masks every ``/events/<segment>`` in a record, not only the configured secret: a caller's near-miss (a
    truncated or rotated secret) is most of a secret too. Attached to uvicorn's loggers, whose access and ASGI
    trace lines print the request path."""

    _PATH = re.compile(r"(/events/)[^\s\"'?#,)}]+")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the record
            message = str(record.msg)
        masked = self._PATH.sub(r"\g<1>" + MASK, message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _mask_uvicorn_logs() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _MaskEventPaths) for f in logger.filters):
            logger.addFilter(_MaskEventPaths())


def make_server(app: Starlette, *, host: str = "127.0.0.1", port: int = 8446, tls_cert: str | None = None,
                tls_key: str | None = None, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for ``app``. uvicorn's access log is off because it prints the request path, which
    holds the secret; the app logs each request itself with the secret masked."""
    install_redaction("d365_snow_assets", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    _mask_uvicorn_logs()
    config = uvicorn.Config(app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                            access_log=False, log_level=log_level, lifespan="off", server_header=False,
                            proxy_headers=False, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)
