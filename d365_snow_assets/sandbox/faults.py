"""Fault injection shared by the three fake services.

A :class:`FaultProfile` is set per service (``entra``, ``d365``, ``snow``) at run time through
``POST /admin/faults`` or :meth:`SandboxServer.set_faults`. The middleware applies it to every request except the
admin routes and, unless ``include_auth`` is set, the token endpoints (a fault there would be cached by msal for
``Retry-After`` seconds, which is msal's documented behaviour but rarely what a test means).

Besides the random shares, a profile can lose the answers of the next few writes *after* they were committed
(``lose_answers``): the request is processed, then answered 503 or the connection is reset, as a gateway does when
the server behind it was slow. That is the answer a client must not take for "not written" (DESIGN §6).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

AUTH_PATH_MARKERS = ("/oauth2/", "/oauth_token.do", "/.well-known/")


class FaultProfile(BaseModel):
    """How badly a service behaves. Shares are probabilities per request, drawn from a seeded RNG."""

    latency_ms: float = Field(default=0.0, ge=0)
    share_429: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: int = Field(default=1, ge=0)
    share_5xx: float = Field(default=0.0, ge=0, le=1)
    share_reset: float = Field(default=0.0, ge=0, le=1)
    token_lifetime_s: int | None = Field(default=None, ge=1)
    include_auth: bool = False
    seed: int = 0
    # The next `lose_answers` writes (any method but GET) are committed, then answered 503 or reset: a
    # deterministic switch, drawn before the shares above.
    lose_answers: int = Field(default=0, ge=0)
    lose_answer_as: Literal["503", "reset"] = "503"
    # Every fault above applies only to requests with one of these methods (empty: any) whose path contains
    # `path_contains`, e.g. only the PATCHes of one table; the others pass untouched and are not counted.
    methods: list[str] = Field(default_factory=list)
    path_contains: str = ""


@dataclass
class FaultCounters:
    requests: int = 0
    throttled: int = 0
    server_errors: int = 0
    resets: int = 0
    lost_answers: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "throttled": self.throttled,
                "server_errors": self.server_errors, "resets": self.resets, "lost_answers": self.lost_answers}


ErrorResponder = Callable[[int, int], tuple[bytes, list[tuple[bytes, bytes]]]]
"""(status, retry_after_s) -> (JSON body, extra headers): each service's own error shape."""


@dataclass
class FaultInjector:
    """The live fault state of one service."""

    service: str
    profile: FaultProfile = field(default_factory=FaultProfile)
    counters: FaultCounters = field(default_factory=FaultCounters)
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _answers_to_lose: int = 0

    def set(self, profile: FaultProfile) -> None:
        with self._lock:
            self.profile = profile
            self._rng = random.Random(f"{self.service}:{profile.seed}")
            self.counters = FaultCounters()
            self._answers_to_lose = profile.lose_answers

    def _in_scope(self, method: str, path: str) -> bool:
        p = self.profile
        return (not p.methods or method in p.methods) and p.path_contains in path

    def lose_answer(self, method: str, path: str) -> str | None:
        """``"503"`` or ``"reset"`` when this write is to be committed and its answer lost, else None."""
        with self._lock:
            if self._answers_to_lose <= 0 or method == "GET" or not self._in_scope(method, path):
                return None
            self._answers_to_lose -= 1
            self.counters.lost_answers += 1
            return self.profile.lose_answer_as

    def draw(self, method: str, path: str) -> str | None:
        """Decide this request's fate: ``None``, ``"429"``, ``"5xx"`` or ``"reset"``."""
        with self._lock:
            p = self.profile
            if not self._in_scope(method, path):
                return None
            self.counters.requests += 1
            if not p.include_auth and any(m in path for m in AUTH_PATH_MARKERS):
                return None
            roll = self._rng.random()
            if roll < p.share_reset:
                self.counters.resets += 1
                return "reset"
            roll -= p.share_reset
            if roll < p.share_429:
                self.counters.throttled += 1
                return "429"
            roll -= p.share_429
            if roll < p.share_5xx:
                self.counters.server_errors += 1
                return "5xx"
            return None


class ConnectionResetFault(Exception):
    """Fallback when the server's transport is out of reach: raised after the response head, so the client sees
    the connection close mid-response."""


def _abort_connection(send: Send) -> bool:
    """Reset the TCP connection under this request (RST, no response), as a load balancer or a dying node does.

    ASGI offers no way to do this, so it reaches uvicorn's per-request cycle (the owner of ``send``) for its
    transport; it returns False when that is not possible and the caller falls back.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns the close into a RST instead of an orderly FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    return True


class FaultMiddleware:
    """Pure ASGI middleware applying a service's :class:`FaultInjector`."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, responder: ErrorResponder) -> None:
        self.app = app
        self.injector = injector
        self.responder = responder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/admin/"):
            await self.app(scope, receive, send)
            return
        profile = self.injector.profile
        if profile.latency_ms:
            await asyncio.sleep(profile.latency_ms / 1000)
        lost = self.injector.lose_answer(scope["method"], scope["path"])
        if lost is not None:
            await self.app(scope, receive, _discard)  # processed and committed; its answer goes nowhere
            if lost == "reset":
                await _reset(send, scope["path"])
            else:
                await self._error(send, 503, profile.retry_after_s)
            return
        fate = self.injector.draw(scope["method"], scope["path"])
        if fate == "reset":
            await _reset(send, scope["path"])
            return
        if fate is None:
            await self.app(scope, receive, send)
            return
        await _drain(receive)
        await self._error(send, 429 if fate == "429" else self.injector._rng.choice((500, 502, 503)),
                          profile.retry_after_s)

    async def _error(self, send: Send, status: int, retry_after_s: int) -> None:
        body, headers = self.responder(status, retry_after_s)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": body})


async def _reset(send: Send, path: str) -> None:
    if _abort_connection(send):
        # Let the loop deliver connection_lost first, so uvicorn sees a client gone, not an app bug.
        for _ in range(3):
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100000")]})
    raise ConnectionResetFault(path)


async def _discard(message: dict) -> None:
    """An ASGI ``send`` that drops the response (of a write whose answer the fault loses)."""


async def _drain(receive: Callable[[], Awaitable[dict]]) -> None:
    """Read the request body so the connection stays usable for keep-alive."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return
