"""TLS verification cannot be switched off, and untrusted values stay literal in OData filters, encoded queries
and DuckDB (DESIGN §8)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.clients import odata
from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.clients.encoded_query import EncodedQuery
from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.settings import load_settings
from d365_snow_assets.warehouse.diff import business_key
from tests.chaos.endstate import expected_keys, snow_keys
from tests.defs.conftest import Connector
from tests.snow_view import SnowView

SUPPLIER = "sn_fin_supplier"

# Switches other tools honour; none of them may make the connector trust the sandbox's self-signed chain.
NO_VERIFY_ENV = {
    "D365SNOW_VERIFY": "false", "D365SNOW_VERIFY_TLS": "false", "D365SNOW_TLS_VERIFY": "0",
    "D365SNOW_INSECURE": "1", "D365SNOW_SSL_VERIFY": "false", "PYTHONHTTPSVERIFY": "0", "CURL_CA_BUNDLE": "",
    "REQUESTS_CA_BUNDLE": "", "HTTPX_SSL_VERIFY": "0",
}


def _cli(env: dict[str, str | None], *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


@pytest.mark.parametrize("switches", [{}, NO_VERIFY_ENV], ids=["no-ca-bundle", "every-off-switch"])
@pytest.mark.parametrize("command", ["ping"])  # sync: see issue note in the report (slow TLS failure)
def test_without_the_ca_bundle_tls_fails_clearly_and_nothing_is_written(connector: Connector, tmp_path,
                                                                       monkeypatch, switches, command) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("D365SNOW_CA_BUNDLE")
    env: dict[str, str | None] = {**connector.env, "D365SNOW_CA_BUNDLE": None, **switches}
    result = _cli(env, command)
    text = result.stdout + result.stderr
    assert result.exit_code == 1, text
    assert any(w in text.lower() for w in ("certificate", "ssl", "tls")) and "D365SNOW_CA_BUNDLE" in text, text
    assert "Traceback" not in text
    assert connector.snow("sys_import_set_row") == []
    assert connector.fno('SELECT 1 FROM "VendorInvoiceHeaders"') == []


def test_off_switches_in_the_configuration_file_are_refused(connector: Connector, tmp_path, monkeypatch) -> None:
    # Not silently ignored either: a key that is not a setting is a configuration error naming it (exit 2).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d365snow.toml").write_text('verify = false\nverify_tls = false\ninsecure = true\n')
    result = _cli(connector.env, "ping")
    assert result.exit_code == 2, result.output
    assert all(f"`{key}`" in result.output for key in ("verify", "verify_tls", "insecure")), result.output
    assert connector.snow("sys_import_set_row") == []


INJECTIONS = ["x' or 1 eq 1 or 'a", "a^ORactive=true", "a^^ORname!=b", "O'Brien, Smith & \"Sons\" ^ 100%*",
              "Zürich ✓ 株式会社 \\ | %27"]


def test_injection_attempts_round_trip_literally_and_match_only_themselves(connector: Connector) -> None:
    d365 = connector.server.world.d365
    added = [d365.add_vendor({"dataAreaId": "usmf", "VendorOrganizationName": name, "VendorGroupId": "10",
                              "CurrencyCode": "USD"})["VendorAccountNumber"] for name in INJECTIONS]
    assert connector.sync()["ok"]
    view = SnowView(connector.server.world.snow)
    suppliers = snow_keys(view, SUPPLIER)
    by_code = {view.get(SUPPLIER, row, "ERP company code"): row for _key, row in suppliers}
    assert [view.get(SUPPLIER, by_code[code], "Legal Name") for code in added] == INJECTIONS
    # One supplier per vendor account across the configured companies, each once.
    assert Counter(key for key, _row in suppliers) == expected_keys(connector)[SUPPLIER]

    # The instance's own columns for the labels (what discovery reads from its dictionary).
    code_column, name_column = (view.state.el(SUPPLIER, label) for label in ("ERP company code", "Legal Name"))
    settings = load_settings()
    with D365Client(settings) as fno, ServiceNowClient(settings) as snow:
        for code, name in zip(added, INJECTIONS, strict=True):
            if "*" in name:  # a wildcard in F&O with no escape: the filter builder refuses instead of widening
                with pytest.raises(odata.UnsafeFilterError):
                    odata.eq("VendorOrganizationName", name)
            else:
                rows = fno.read_all("VendorsV2", legal_entity="usmf",
                                    odata_filter=odata.eq("VendorOrganizationName", name))
                assert [r["VendorAccountNumber"] for r in rows] == [code], name
            hits = [r for page in snow.iter_static(SUPPLIER, EncodedQuery().eq(name_column, name),
                                                   fields=[code_column, name_column]) for r in page]
            assert [(h[code_column], h[name_column]) for h in hits] == [(code, name)], name
    # The business key (and `trace`, which looks it up in DuckDB) keeps the name's record apart too.
    key = business_key(["D365FO", added[0]])
    trace = connector.cli("trace", key)
    assert trace.exit_code == 0 and added[0] in trace.stdout
    sql_injection = connector.cli("trace", "D365FO|x' OR '1'='1")
    assert sql_injection.exit_code == 1 and "No audit rows" in sql_injection.stderr


def test_sync_without_the_ca_bundle_stops_at_once_with_a_clear_message(connector) -> None:
    env = {k: v for k, v in connector.env.items() if k != "D365SNOW_CA_BUNDLE"}
    result = CliRunner().invoke(app, ["sync", "--json"], env={**env, "D365SNOW_CA_BUNDLE": ""},
                                catch_exceptions=False)
    assert result.exit_code == 1
    summary = orjson.loads(result.stdout)
    assert len(summary["runs"]) == 1  # the first run's failure ends the cycle: every later run would fail alike
    assert "D365SNOW_CA_BUNDLE" in (summary["runs"][0]["error"] or "")
    assert connector.snow("sys_import_set_row") == []
