"""Serve the sandbox over HTTPS on loopback: one uvicorn server per service, each in its own thread."""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from .config import SandboxConfig
from .d365 import build_d365_app
from .entra import build_entra_app
from .faults import ConnectionResetFault, ErrorResponder, FaultMiddleware, FaultProfile
from .servicenow import build_snow_app
from .tls import TlsFiles, make_tls_files
from .world import SERVICES, SandboxWorld


def _entra_error(status: int, retry_after: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = {"error": "temporarily_unavailable" if status != 429 else "too_many_requests",
            "error_description": "AADSTS50196: The server terminated an operation because it encountered a "
                                 "client request loop or the service is temporarily unavailable.",
            "error_codes": [50196]}
    return orjson.dumps(body), [(b"retry-after", str(retry_after).encode())]


def _d365_error(status: int, retry_after: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    if status == 429:
        # reference/d365.md §5: resource-based throttling message; body shape is an inference.
        message = ("This request could not be processed at this time due to system experiencing high "
                   "resource utilization.")
        return (orjson.dumps({"error": {"code": "", "message": message}}),
                [(b"retry-after", str(retry_after).encode()), (b"odata-version", b"4.0")])
    return orjson.dumps({"error": {"code": "", "message": "An error has occurred."}}), [(b"odata-version", b"4.0")]


def _snow_error(status: int, retry_after: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    if status == 429:
        body = {"error": {"message": "Rate limit exceeded",
                          "detail": "Rate limit of 1000 requests per hour for Table API exceeded"},
                "status": "failure"}
        return orjson.dumps(body), [(b"retry-after", str(retry_after).encode())]
    body = {"error": {"message": "Internal server error", "detail": None}, "status": "failure"}
    return orjson.dumps(body), []


_RESPONDERS: dict[str, ErrorResponder] = {"entra": _entra_error, "d365": _d365_error, "snow": _snow_error}


class _QuietResets(logging.Filter):
    """Expected noise stays out of the server log: injected connection resets, and clients that still hold a
    keep-alive connection when the sandbox stops (uvicorn then cancels them after the graceful timeout)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ConnectionResetFault):
            return False
        return "timeout graceful shutdown exceeded" not in record.getMessage()


def _service_app(world: SandboxWorld, service: str) -> ASGIApp:
    builders = {"entra": build_entra_app, "d365": build_d365_app, "snow": build_snow_app}
    injector = world.faults[service]

    async def faults_endpoint(request: Request) -> Response:
        if request.method == "POST":
            injector.set(FaultProfile.model_validate_json(await request.body()))
        return JSONResponse({"profile": injector.profile.model_dump(), "counters": injector.counters.as_dict()})

    app = Starlette(routes=[Route("/admin/faults", faults_endpoint, methods=["GET", "POST"]),
                            Mount("", app=builders[service](world))])
    return FaultMiddleware(app, injector, _RESPONDERS[service])


class SandboxServer:
    """The three fake services on loopback HTTPS ports.

    Use as a context manager, or ``start()`` / ``stop()``. ``ports`` fixes the ports (0 = any free port).
    """

    def __init__(self, config: SandboxConfig | None = None, *, state_dir: Path | None = None,
                 host: str = "127.0.0.1", ports: dict[str, int] | None = None) -> None:
        self.world = SandboxWorld(config)
        self.host = host
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="d365snow-sandbox-")
        self.state_dir = Path(state_dir or self._tmp.name)  # type: ignore[union-attr]
        self.tls: TlsFiles = make_tls_files(self.state_dir / "tls")
        self._ports = {s: (ports or {}).get(s, 0) for s in SERVICES}
        self._servers: dict[str, uvicorn.Server] = {}
        self._sockets: dict[str, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> SandboxServer:
        logging.getLogger("uvicorn.error").addFilter(_QuietResets())
        for service in SERVICES:
            # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose protocol says
            # TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM,
                                 socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.host, self._ports[service]))
            sock.listen(512)
            sock.set_inheritable(True)
            self._sockets[service] = sock
            self._ports[service] = sock.getsockname()[1]
            config = uvicorn.Config(_service_app(self.world, service), ssl_certfile=str(self.tls.cert_chain_pem),
                                    ssl_keyfile=str(self.tls.key_pem), log_level="warning", lifespan="off",
                                    access_log=False, timeout_keep_alive=30,
                                    timeout_graceful_shutdown=2)
            self._servers[service] = uvicorn.Server(config)
        # One thread and event loop per service, so a service busy encoding a large page never stalls another.
        for name in SERVICES:
            thread = threading.Thread(target=self._run, args=(name,), name=f"d365snow-sandbox-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        deadline = time.monotonic() + 30
        while not all(srv.started for srv in self._servers.values()):
            if self._errors or time.monotonic() > deadline or not all(t.is_alive() for t in self._threads):
                self.stop()
                raise RuntimeError(f"the sandbox did not start: {self._errors[:1]!r}")
            time.sleep(0.01)
        return self

    def _run(self, name: str) -> None:
        try:
            asyncio.run(self._servers[name].serve(sockets=[self._sockets[name]]))
        except BaseException as exc:  # surfaced to start()'s caller
            self._errors.append(exc)

    def stop(self) -> None:
        for srv in self._servers.values():
            srv.should_exit = True
        for thread in self._threads:
            thread.join(timeout=15)
        for sock in self._sockets.values():
            sock.close()
        if self._tmp:
            self._tmp.cleanup()

    def serve_forever(self) -> None:
        """Block until interrupted (for ``d365-snow sandbox serve``)."""
        try:
            while all(t.is_alive() for t in self._threads):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- addresses and settings ------------------------------------------------------------------------------
    def url(self, service: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self._ports[service]}"

    @property
    def entra_url(self) -> str:
        return self.url("entra")

    @property
    def d365_url(self) -> str:
        return self.url("d365")

    @property
    def snow_url(self) -> str:
        return self.url("snow")

    def env(self) -> dict[str, str]:
        """The ``D365SNOW_*`` settings (DESIGN.md §3) that point the connector at this sandbox."""
        creds = self.world.config.credentials
        return {
            "D365SNOW_D365_URL": self.d365_url,
            "D365SNOW_D365_TENANT_ID": creds.tenant_id,
            "D365SNOW_D365_AUTHORITY": self.entra_url,
            "D365SNOW_D365_CLIENT_ID": creds.d365_client_id,
            "D365SNOW_D365_CLIENT_SECRET": creds.d365_client_secret,
            "D365SNOW_LEGAL_ENTITIES": ",".join(self.world.config.data.legal_entities),
            "D365SNOW_SNOW_URL": self.snow_url,
            "D365SNOW_SNOW_AUTH": "auto",
            "D365SNOW_SNOW_CLIENT_ID": creds.snow_client_id,
            "D365SNOW_SNOW_CLIENT_SECRET": creds.snow_client_secret,
            "D365SNOW_SNOW_USERNAME": creds.snow_username,
            "D365SNOW_SNOW_PASSWORD": creds.snow_password,
            "D365SNOW_CA_BUNDLE": str(self.tls.ca_pem),
        }

    def set_faults(self, service: str, profile: FaultProfile) -> None:
        self.world.faults[service].set(profile)

    def clear_faults(self) -> None:
        for service in SERVICES:
            self.world.faults[service].set(FaultProfile())
