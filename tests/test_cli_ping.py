"""`d365-snow ping` against the sandbox: passes, and fails with a clear sentence per broken check."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def server():
    srv = SandboxServer(SandboxConfig(data=SandboxDataSize.small())).start()
    try:
        yield srv
    finally:
        srv.stop()


def ping(server, tmp_path, **overrides):
    env = {**server.env(), "D365SNOW_HOME": str(tmp_path / "home"), "COLUMNS": "250", **overrides}
    return CliRunner().invoke(app, ["ping"], env=env)


def test_ping_passes_and_writes_nothing(server, tmp_path):
    before = len(server.world.d365.read("SELECT * FROM VendorInvoiceHeaders"))
    result = ping(server, tmp_path)
    assert result.exit_code == 0, result.output
    assert "All checks passed" in result.output and "FAIL" not in result.output
    assert len(server.world.d365.read("SELECT * FROM VendorInvoiceHeaders")) == before


def test_wrong_secret(server, tmp_path):
    result = ping(server, tmp_path, D365SNOW_D365_CLIENT_SECRET="bad-secret-xyz")
    assert result.exit_code == 1
    assert "AADSTS7000215" in result.output and "client secret" in result.output
    assert "bad-secret-xyz" not in result.output


def test_unreachable_host(server, tmp_path):
    result = ping(server, tmp_path, D365SNOW_SNOW_URL="https://127.0.0.1:9")
    assert result.exit_code == 1
    assert "could not be reached" in result.output


def test_client_credentials_grant_disabled(server, tmp_path):
    server.world.snow.set_switches(client_credentials_enabled=False)
    try:
        result = ping(server, tmp_path)
        assert result.exit_code == 1
        assert "client-credentials grant" in result.output and "fell back to basic auth" in result.output
        result = ping(server, tmp_path, D365SNOW_SNOW_AUTH="oauth")
        assert result.exit_code == 1 and "glide.oauth.inbound.client.credential" in result.output
    finally:
        server.world.snow.reset()


def test_missing_settings_are_a_configuration_problem_named_at_once(server, tmp_path):
    env = {k: "" for k in server.env()}
    result = CliRunner().invoke(app, ["ping"], env={**env, "D365SNOW_HOME": str(tmp_path / "h"),
                                                        "COLUMNS": "250"})
    assert result.exit_code == 2, result.output  # the same code as `sync` for the same problem
    assert "D365SNOW_D365_URL, D365SNOW_D365_TENANT_ID, D365SNOW_D365_CLIENT_ID, D365SNOW_D365_CLIENT_SECRET, " \
           "D365SNOW_LEGAL_ENTITIES and D365SNOW_SNOW_URL are not set" in result.output
    assert "Traceback" not in result.output
