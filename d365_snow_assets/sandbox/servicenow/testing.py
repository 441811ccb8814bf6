"""Serve the fake ServiceNow alone (tests of this package, benchmarks of the sandbox ceiling).

:func:`start_snow_server` prefers the full :class:`SandboxServer`; when the rest of the sandbox cannot be imported
it serves only this app, over HTTPS on loopback, with F&O data from the sandbox's DuckDB generator.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import uvicorn

from ..config import SandboxConfig
from ..tls import TlsFiles, make_tls_files
from ..tokens import TokenRegistry
from .app import build_snow_app
from .state import SnowState


class DuckD365:
    """``read(sql, params)`` over the sandbox's generated F&O tables, without the F&O service around it."""

    def __init__(self, config: SandboxConfig) -> None:
        from ..d365 import data

        self.conn = duckdb.connect()
        data.create_tables(self.conn)
        data.generate(self.conn, config.data)
        self._lock = threading.Lock()

    def read(self, sql: str, params: list | None = None) -> list[dict]:
        with self._lock:
            cur = self.conn.execute(sql, params or [])
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


class SnowWorld:
    """The slice of ``SandboxWorld`` the fake ServiceNow uses."""

    def __init__(self, config: SandboxConfig, d365: Any) -> None:
        self.config = config
        self.tokens = TokenRegistry()
        self.snow = SnowState(config, d365)
        self.token_lifetime_override: int | None = None

    def token_lifetime(self, service: str, default: int) -> int:
        return self.token_lifetime_override or default


class StandaloneSnowServer:
    """The fake ServiceNow on a loopback HTTPS port (same attributes as SandboxServer: world, tls, snow_url)."""

    def __init__(self, config: SandboxConfig | None = None, d365: Any = None) -> None:
        self.config = config or SandboxConfig()
        self.world = SnowWorld(self.config, d365 if d365 is not None else DuckD365(self.config))
        self._tmp = tempfile.TemporaryDirectory(prefix="d365snow-snow-")
        self.tls: TlsFiles = make_tls_files(Path(self._tmp.name) / "tls")
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> StandaloneSnowServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(build_snow_app(self.world), ssl_certfile=str(self.tls.cert_chain_pem),
                                ssl_keyfile=str(self.tls.key_pem), log_level="warning", lifespan="off",
                                access_log=False, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[sock])),  # type: ignore[union-attr]
                                        daemon=True, name="d365snow-snow-standalone")
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake ServiceNow did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True
        if self._thread:
            self._thread.join(timeout=15)
        self._sock.close()
        self._tmp.cleanup()

    @property
    def snow_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> StandaloneSnowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_snow_server(config: SandboxConfig | None = None) -> Any:
    """A started server exposing ``world`` (with ``.snow`` and ``.tokens``), ``tls.ca_pem``, ``snow_url``, ``stop()``:
    the full SandboxServer when the whole sandbox imports, else :class:`StandaloneSnowServer`."""
    try:
        from ..server import SandboxServer
    except ImportError:
        return StandaloneSnowServer(config).start()
    return SandboxServer(config).start()
