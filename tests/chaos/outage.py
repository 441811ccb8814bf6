"""Outages for the chaos suite: one system (F&O or ServiceNow) goes down at a chosen stage of a sync cycle and stays
down until the step that met it has given up for good (all its transport retries and Dagster retries spent), then
comes back. Two ways of being down:

- ``503``: every request is answered ``503 Service Unavailable`` by the gateway in front of the service (an HTML
  page, no Retry-After), the way a load balancer answers when no backend is healthy;
- ``refused``: the gateway stops listening and drops the connections it holds, so every new connection is refused
  (the client's connect fails) and a request in flight loses its connection.

The stage starts at the first request that matches it. A create (an F&O invoice header or line) that starts an outage
is committed first and then answered 503: the answer that may follow a commit (DESIGN §6), on a company that may
accept duplicate invoice numbers. Test-only: installed around the sandbox's service apps and in front of their ports,
never in the connector.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

Mode = Literal["503", "refused"]
OUTBOUND = "sn_spend_intg_outbound_invoice"
PAGE = b"<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>"


@dataclass(frozen=True)
class Request:
    """What a stage's trigger looks at."""

    service: str
    method: str
    path: str
    query: str


@dataclass(frozen=True)
class Stage:
    """One stage of a cycle: the system it needs, the first request that belongs to it, and the step that meets the
    outage there (the prefix of its Dagster step key)."""

    name: str
    service: str  # "d365" or "snow"
    starts: Callable[[Request, Counter[str]], bool]  # (request, what was seen so far this cycle)
    step: str
    commits_first: bool = False


def _odata_filter(request: Request) -> str:
    return " ".join(parse_qs(request.query).get("$filter", []))


STAGES: tuple[Stage, ...] = (
    Stage("extract", "d365", lambda r, _: r.method == "GET" and r.path.startswith("/data/")
          and r.path != "/data/$metadata", "d365__"),
    Stage("push", "snow", lambda r, _: r.method == "POST" and r.path.startswith("/api/now/import/"),
          "servicenow__"),
    Stage("invoice lookup", "d365", lambda r, _: r.method == "GET" and r.path == "/data/VendInvoiceJourBiEntities"
          and "InvoiceId" in _odata_filter(r), "invoices__posting"),
    Stage("header create", "d365", lambda r, _: r.method == "POST" and r.path == "/data/VendorInvoiceHeaders",
          "invoices__posting", commits_first=True),
    Stage("line create", "d365", lambda r, _: r.method == "POST" and r.path == "/data/VendorInvoiceLines",
          "invoices__posting", commits_first=True),
    # The write-back of an invoice: the first status write after F&O took invoice lines in this cycle.
    Stage("write-back", "snow", lambda r, seen: r.method == "PATCH" and r.path.startswith(f"/api/now/table/{OUTBOUND}/")
          and seen["line created"] > 0, "invoices__posting"),
    Stage("status read", "d365", lambda r, _: r.method == "GET" and r.path == "/data/VendInvoiceJourBiEntities"
          and "InvoiceId" not in _odata_filter(r), "d365__VendInvoiceJourBiEntities"),
)


class Gateway:
    """A TCP gateway on loopback in front of one service's port: passes bytes both ways while up; while down it
    does not listen (connections are refused) and has dropped the connections it held."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="outage-gateway", daemon=True)

    def start(self) -> Gateway:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close(drop=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def down(self) -> None:
        self._call(self._close(drop=True))

    def up(self) -> None:
        self._call(self._listen())

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self, *, drop: bool) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if drop:
            for writer in list(self._live):
                writer.transport.abort()
            self._live.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.transport.abort()
            return
        self._live.update((client_writer, upstream_writer))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                if not writer.transport.is_closing():
                    writer.close()
                self._live.discard(writer)

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


@dataclass
class Outage:
    """The outage of one cycle: armed with a stage and a mode, started by the stage's first request, ended when the
    step that met it fails for good (:meth:`step_failed`)."""

    gateways: dict[str, Gateway]
    stage: Stage | None = None
    mode: Mode = "503"
    active: bool = False
    started: bool = False
    failed_step: str | None = None
    seen: Counter[str] = field(default_factory=Counter)
    answered_503: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, stage: Stage, mode: Mode) -> None:
        with self._lock:
            self.stage, self.mode = stage, mode
            self.active = self.started = False
            self.failed_step = None
            self.seen.clear()

    def disarm(self) -> None:
        with self._lock:
            self._end()
            self.stage = None

    def _end(self) -> None:
        if self.active and self.mode == "refused" and self.stage is not None:
            self.gateways[self.stage.service].up()
        self.active = False

    def decide(self, request: Request) -> tuple[Literal["pass", "503", "commit-then-503"], bool]:
        """What the gate does with this request, and whether the request starts the outage."""
        with self._lock:
            stage = self.stage
            if stage is None or request.service != stage.service:
                self._note(request)
                return "pass", False
            if self.active:
                if self.mode == "refused":
                    return "pass", False  # only what was already in flight gets here
                self.answered_503 += 1
                return "503", False
            if not self.started and stage.starts(request, self.seen):
                self.active = self.started = True
                self.answered_503 += 1
                return ("commit-then-503" if stage.commits_first else "503"), True
            self._note(request)
            return "pass", False

    def _note(self, request: Request) -> None:
        if request.method == "POST" and request.path == "/data/VendorInvoiceLines":
            self.seen["line created"] += 1

    def answered(self) -> None:
        """The request that started the outage has had its answer: from now on the system refuses connections."""
        with self._lock:
            if self.active and self.mode == "refused" and self.stage is not None:
                self.gateways[self.stage.service].down()

    def step_failed(self, step_key: str) -> None:
        with self._lock:
            if self.active and self.failed_step is None:
                self.failed_step = step_key
                self._end()


class OutageGate:
    """ASGI middleware in front of one sandbox service: applies :meth:`Outage.decide`."""

    def __init__(self, app: ASGIApp, service: str, outage: Outage) -> None:
        self.app, self.service, self.outage = app, service, outage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/admin/"):
            await self.app(scope, receive, send)
            return
        request = Request(self.service, scope["method"], scope["path"], scope.get("query_string", b"").decode())
        verdict, starts = self.outage.decide(request)
        if verdict == "pass":
            await self.app(scope, receive, send)
            return
        if verdict == "commit-then-503":
            await self.app(scope, receive, _discard)
        else:
            while (await receive()).get("more_body"):
                pass
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(PAGE)).encode())]})
        await send({"type": "http.response.body", "body": PAGE})
        if starts:
            self.outage.answered()


async def _discard(message: Message) -> None:
    """The service's own answer to a committed write, which the gateway replaces with its 503."""


class StepFailures(logging.Handler):
    """Tells the outage when a Dagster step has failed for good (the run logger's STEP_FAILURE events)."""

    def __init__(self, outage: Outage) -> None:
        super().__init__(level=logging.DEBUG)
        self.outage = outage

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_event", None)
        if event is not None and event.event_type_value == "STEP_FAILURE":
            self.outage.step_failed(event.step_key or "")
