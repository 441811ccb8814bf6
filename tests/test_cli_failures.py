"""`d365-snow sync` against refused credentials, as a user meets it: it stops after a handful of requests (counted
where they arrive, in the sandbox), with one sentence naming the variables to fix, exit 1, and Dagster's log lines
in a log file instead of the terminal."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.clients.d365 import EntraTokenProvider
from d365_snow_assets.clients.errors import CredentialsRefusedError, TransientError
from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.commands.runs import CYCLE_TAG
from d365_snow_assets.defs.automation.fno_poll import fno_poll
from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.faults import FaultProfile
from d365_snow_assets.sandbox.server import SandboxServer
from d365_snow_assets.settings import load_settings

SERVICES = ("entra", "d365", "snow")


@pytest.fixture(scope="module")
def server():
    with SandboxServer(SandboxConfig(data=SandboxDataSize.small())) as srv:
        yield srv


def _requests(server: SandboxServer) -> dict[str, int]:
    return {s: server.world.faults[s].counters.requests for s in SERVICES}


def _sync(server: SandboxServer, home: Path, *args: str, **overrides: str):
    server.clear_faults()  # resets the request counters
    env = {**server.env(), "D365SNOW_HOME": str(home), "COLUMNS": "80", **overrides}
    result = CliRunner().invoke(app, ["sync", *args], env=env, catch_exceptions=False)
    return result, _requests(server)


def _runs(home: Path) -> list[dg.DagsterRun]:
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    return [r.dagster_run for r in instance.get_run_records()]


def test_wrong_servicenow_secret_and_password_stop_the_cycle_at_once(server, tmp_path):
    home = tmp_path / "home"
    result, seen = _sync(server, home, D365SNOW_SNOW_CLIENT_SECRET="wrong-secret-1",
                         D365SNOW_SNOW_PASSWORD="wrong-password-1")
    assert result.exit_code == 1, result.output
    # One token request refused, one basic-auth request refused (two batches may be in flight): then nothing more.
    assert seen["snow"] <= 4, seen
    sentence = ("ServiceNow refused both the OAuth client (D365SNOW_SNOW_CLIENT_ID / D365SNOW_SNOW_CLIENT_SECRET) "
                "and the basic-auth user 'd365.integration' (D365SNOW_SNOW_USERNAME / D365SNOW_SNOW_PASSWORD); fix "
                "either pair.")
    flat = " ".join(result.stderr.split())
    assert f"Stopped: {sentence} Nothing more was sent." in flat, result.stderr
    assert "Traceback" not in result.output and "wrong-secret-1" not in result.output
    # The check before the first run found it: no run was started at all.
    assert not (home / "dagster").exists() or _runs(home) == []


def test_oauth_only_a_refused_token_request_is_the_only_request(server, tmp_path):
    result, seen = _sync(server, tmp_path / "home", "--json", D365SNOW_SNOW_AUTH="oauth",
                         D365SNOW_SNOW_CLIENT_SECRET="wrong-secret-2")
    assert result.exit_code == 1
    summary = orjson.loads(result.stdout)
    assert seen["snow"] == 1, seen
    assert summary["error"]["kind"] == "credentials"
    assert "D365SNOW_SNOW_CLIENT_ID / D365SNOW_SNOW_CLIENT_SECRET" in summary["error"]["message"]
    # Refused before any run started: nothing was extracted, pushed or audited.
    assert "runs" not in summary and not (tmp_path / "home" / "dagster" / "history").exists()


def test_wrong_fno_secret_stops_before_any_fno_or_servicenow_request(server, tmp_path):
    result, seen = _sync(server, tmp_path / "home", D365SNOW_D365_CLIENT_SECRET="wrong-secret-3")
    assert result.exit_code == 1
    # OpenID configuration + one refused token request; the other extract steps of the run ask no more.
    assert seen == {"entra": 2, "d365": 0, "snow": 0}, seen
    flat = " ".join(result.stderr.split())
    assert "Stopped: Entra ID refused the F&O token request (AADSTS7000215:" in flat
    assert "the client secret (D365SNOW_D365_CLIENT_SECRET) is wrong." in flat
    assert "Traceback" not in result.output


def test_verbose_prints_dagsters_lines_too(server, tmp_path, monkeypatch):
    # A step that fails inside a run: F&O refuses the vendors' read of a field its metadata does not have.
    config = tmp_path / "d365snow.toml"
    config.write_text('[mapping.sn_fcms_intg_imp_supplier]\nDuns = "ZZNoSuchField"\n'
                      'extra_source_fields = ["ZZNoSuchField"]\n')
    monkeypatch.setenv("D365SNOW_CONFIG", str(config))
    quiet, _ = _sync(server, tmp_path / "quiet")
    loud, _ = _sync(server, tmp_path / "loud", "--verbose")
    assert quiet.exit_code == loud.exit_code == 1
    assert "STEP_FAILURE" not in quiet.stderr
    assert "STEP_FAILURE" in loud.stderr and "ValidationError" in loud.stderr and "ZZNoSuchField" in loud.stderr
    log = re.search(r"Log: (\S+\.log)", " ".join(quiet.stderr.split()))
    assert log and Path(log.group(1)).parent == tmp_path / "quiet" / "logs"
    assert oct(Path(log.group(1)).stat().st_mode & 0o777) == "0o600"
    assert "STEP_FAILURE" in Path(log.group(1)).read_text()


def test_every_run_of_a_cycle_carries_the_cycle_and_the_configuration(server, tmp_path, monkeypatch):
    config = tmp_path / "conf" / "connector.toml"
    config.parent.mkdir()
    config.write_text('erp_source = "D365FO"\n[mapping.sn_fcms_intg_imp_supplier]\n"Legal name" = "VendorSearchName"\n')
    home = tmp_path / "home"
    result, _ = _sync(server, home, "--json", D365SNOW_CONFIG=str(config))
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    runs = _runs(home)
    assert len(runs) == 7 and {r.tags[CYCLE_TAG] for r in runs} == {summary["cycle"]}
    monkeypatch.setenv("D365SNOW_CONFIG", str(config))
    expected = load_settings(require=None).run_tags()
    assert all(r.tags["d365snow/config"] == str(config) and r.tags["d365snow/mapping"] == expected[
        "d365snow/mapping"] != "default" for r in runs)
    assert summary["config"] == {"path": str(config), "mapping": expected["d365snow/mapping"]}


def test_a_client_whose_credentials_were_refused_sends_nothing_more(server, monkeypatch):
    server.clear_faults()
    for name, value in {**server.env(), "D365SNOW_SNOW_AUTH": "basic", "D365SNOW_SNOW_PASSWORD": "nope"}.items():
        monkeypatch.setenv(name, value)
    with ServiceNowClient(load_settings(require=("snow",))) as client:
        for _ in range(3):
            with pytest.raises(CredentialsRefusedError, match="D365SNOW_SNOW_USERNAME and D365SNOW_SNOW_PASSWORD"):
                client.get_page("sn_fin_supplier", limit=1)
        assert client.refused_credentials is not None
    assert server.world.faults["snow"].counters.requests == 1


def test_a_refused_token_is_not_confused_with_an_outage(server, monkeypatch):
    # 5xx on the token endpoint is an outage (retried, then a transient error), not refused credentials.
    server.set_faults("snow", FaultProfile(share_5xx=1.0, include_auth=True))
    for name, value in {**server.env(), "D365SNOW_SNOW_AUTH": "oauth"}.items():
        monkeypatch.setenv(name, value)
    try:
        with ServiceNowClient(load_settings(require=("snow",)), sleep=lambda _s: None) as client:
            with pytest.raises(Exception) as info:
                client.get_page("sn_fin_supplier", limit=1)
            assert not isinstance(info.value, CredentialsRefusedError)
            assert client.refused_credentials is None
    finally:
        server.clear_faults()


def test_entra_throttling_is_not_taken_for_refused_credentials(server, monkeypatch):
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    tokens = EntraTokenProvider(load_settings())
    try:
        assert tokens.token()  # the OpenID configuration is read once, with the first token
        tokens.invalidate(None)
        server.set_faults("entra", FaultProfile(share_429=1.0, include_auth=True))
        with pytest.raises(TransientError, match="could not issue a token right now"):
            tokens.token()
        assert tokens.refused is None
    finally:
        tokens.close()
        server.clear_faults()


def test_sensor_launched_runs_carry_the_configuration_too(tmp_path, monkeypatch):
    config = tmp_path / "d365snow.toml"
    config.write_text('legal_entities = "usmf"\n[mapping.sn_fcms_intg_imp_supplier]\n'
                      '"Legal name" = "VendorSearchName"\n')
    monkeypatch.setenv("D365SNOW_CONFIG", str(config))
    monkeypatch.setenv("D365SNOW_HOME", str(tmp_path / "home"))
    expected = load_settings(require=None).run_tags()
    with dg.instance_for_test() as instance:
        result = fno_poll(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 2
    assert all(r.tags["d365snow/config"] == str(config) and r.tags["d365snow/mapping"] == expected[
        "d365snow/mapping"] != "default" for r in result.run_requests)
