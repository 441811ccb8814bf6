"""Fixtures for the sandbox tests: one started sandbox per module, plus an F&O client helper."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer

from .snow_world import push_in_process


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(data=SandboxDataSize.small())).start()
    try:
        yield server
    finally:
        server.stop()


def _ca(server: SandboxServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.tls.ca_pem))


def d365_token(server: SandboxServer) -> str:
    """A token for F&O straight from the fake Entra (msal itself is exercised in test_entra.py)."""
    creds = server.world.config.credentials
    resp = httpx.post(f"{server.entra_url}/{creds.tenant_id}/oauth2/v2.0/token", verify=_ca(server),
                      data={"grant_type": "client_credentials", "client_id": creds.d365_client_id,
                            "client_secret": creds.d365_client_secret, "scope": f"{server.d365_url}/.default"})
    resp.raise_for_status()
    return resp.json()["access_token"]


@pytest.fixture
def d365_bearer(sandbox_server: SandboxServer) -> str:
    """A fresh F&O access token."""
    return d365_token(sandbox_server)


@pytest.fixture
def d365_client(sandbox_server: SandboxServer, d365_bearer: str) -> Iterator[httpx.Client]:
    """An httpx client for F&O with a valid bearer token, base URL = the F&O origin."""
    token = d365_bearer
    with httpx.Client(base_url=sandbox_server.d365_url, verify=_ca(sandbox_server), timeout=30,
                      headers={"Authorization": f"Bearer {token}", "OData-Version": "4.0",
                               "Accept": "application/json"}) as client:
        yield client


@pytest.fixture
def server(sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """The module's sandbox with ServiceNow reset before and after the test (the ServiceNow tests mutate it)."""
    sandbox_server.world.snow.reset()
    yield sandbox_server
    sandbox_server.world.snow.reset()


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    """An httpx client for ServiceNow with basic auth, base URL = the instance."""
    creds = server.world.config.credentials
    with httpx.Client(base_url=server.snow_url, verify=_ca(server), auth=(creds.snow_username, creds.snow_password),
                      timeout=30) as snow:
        yield snow


@pytest.fixture
def invoices(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """The sandbox after F&O's master data was pushed by label an hour ago: every planned invoice has appeared
    (stamped then, so whatever a test writes now is newer, as in any real run)."""
    snow = server.world.snow
    monkeypatch.setattr(snow, "clock", lambda: time.time() - 3600)
    push_in_process(server.world)
    monkeypatch.setattr(snow, "clock", time.time)
    assert snow.invoices_waiting() == 0
    return server
