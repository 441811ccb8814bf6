"""Behind a corporate proxy: the Entra token requests take the proxy like every other call (HTTPS_PROXY, NO_PROXY),
REQUESTS_CA_BUNDLE stays ignored, and the combined CA file is private to the connector home. A real forwarding
proxy (HTTP CONNECT) on loopback sees the requests."""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import stat
import tempfile
import threading
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.clients.d365 import CA_FILE, EntraTokenProvider
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer
from d365_snow_assets.settings import load_settings

PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


class _Tunnel(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.targets.append(target)  # type: ignore[attr-defined]
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port))) as upstream:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
            pump.start()
            _copy(self.request, upstream)
            pump.join(timeout=10)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):  # either side closing ends the tunnel
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class ConnectProxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small())) as srv:
        yield srv


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    srv = ConnectProxy()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def env(server, tmp_path, monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in {**server.env(), "D365SNOW_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(name, value)
    # requests would let this replace the CA bundle; the token client must keep ignoring it (reference §1.2).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "no-such-bundle.pem"))
    return monkeypatch


def _port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def test_token_requests_go_through_https_proxy(server, proxy, env, tmp_path):
    env.setenv("HTTPS_PROXY", proxy.url)
    before = set(os.listdir(tempfile.gettempdir()))
    tokens = EntraTokenProvider(load_settings())
    try:
        assert tokens.token()
    finally:
        tokens.close()
    entra = f"127.0.0.1:{_port(server.entra_url)}"
    assert proxy.targets and set(proxy.targets) == {entra}
    ca_file = tmp_path / "home" / CA_FILE
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o600
    assert not {n for n in set(os.listdir(tempfile.gettempdir())) - before if "ca" in n and n.endswith(".pem")}


def test_no_proxy_lets_token_requests_go_direct(server, proxy, env):
    env.setenv("HTTPS_PROXY", proxy.url)
    env.setenv("NO_PROXY", "example.com,127.0.0.1")
    tokens = EntraTokenProvider(load_settings())
    try:
        assert tokens.token()
    finally:
        tokens.close()
    assert proxy.targets == []


def test_ping_through_the_proxy_reaches_all_three_services(server, proxy, env):
    env.setenv("HTTPS_PROXY", proxy.url)
    result = CliRunner().invoke(app, ["ping"], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {t.rsplit(":", 1)[1] for t in proxy.targets} == {_port(server.entra_url), _port(server.d365_url),
                                                            _port(server.snow_url)}
