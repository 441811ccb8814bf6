"""`d365-snow fit` and the refusal of `sync` against instances changed the way customers' instances differ
(real sandbox, real CLI; the instance is changed through the sandbox's admin knobs)."""

from __future__ import annotations

from typing import Any

import orjson

from d365_snow_assets.warehouse import Warehouse

from .conftest import Connector

SUPPLIER_STAGE = "sn_fcms_intg_imp_supplier"
ORDER_STAGE = "sn_fcms_intg_imp_order"
GL_STAGE = "sn_fcms_intg_gl_account_stage"


def fit(connector: Connector) -> tuple[int, dict[str, Any]]:
    result = connector.cli("fit", "--json")
    return result.exit_code, orjson.loads(result.stdout)


def findings(report: dict[str, Any], table: str | None = None) -> list[dict[str, Any]]:
    found = [f for t in report["servicenow"]["tables"] for f in t["findings"]]
    found += report["servicenow"]["outbound"] + report["servicenow"]["discovery"] + report["d365"]
    return [f for f in found if table is None or f["table"] == table]


def codes(report: dict[str, Any], table: str | None = None) -> set[tuple[str, str]]:
    return {(f["code"], f["severity"]) for f in findings(report, table) if f["severity"] != "info"}


def test_the_documented_instance_fits(connector: Connector) -> None:
    code, report = fit(connector)
    assert code == 0 and report["ok"] and report["blocking"] == 0
    # Only mandatory fields F&O has no source for are left: warnings, listed, not blocking.
    assert {c for c, _ in codes(report)} <= {"mandatory_unfilled"}
    tables = {t["table"]: t for t in report["servicenow"]["tables"]}
    assert tables[SUPPLIER_STAGE]["key_mode"] == "label"
    fields = {f["label"]: f for f in tables[SUPPLIER_STAGE]["fields"]}
    assert fields["Legal name"]["element"] == "legal_name" and fields["Legal name"]["sent_as"] == "Legal name"


def test_the_variant_instance_fits_once_discovery_has_read_it(variant_connector: Connector) -> None:
    """Other columns, column-name mode on some tables and a cost-center map coalescing on Account number: all
    read from the instance, so nothing blocks (the same business end state is test_sync_cycle's)."""
    code, report = fit(variant_connector)
    assert code == 0 and report["ok"] and report["blocking"] == 0
    assert {c for c, _ in codes(report)} <= {"mandatory_unfilled"}
    tables = {t["table"]: t for t in report["servicenow"]["tables"]}
    assert {name for name, t in tables.items() if t["key_mode"] == "column_name"} >= {SUPPLIER_STAGE}
    equivalent = [f for f in findings(report, "sn_fcms_intg_imp_cost_center") if f["code"] == "coalesce_equivalent"]
    assert len(equivalent) == 1 and equivalent[0]["severity"] == "info"


def test_a_missing_key_column_blocks_and_sync_refuses_before_writing(connector: Connector) -> None:
    snow = connector.server.world.snow
    snow.remove_column(SUPPLIER_STAGE, snow.el(SUPPLIER_STAGE, "ERP company code"))
    snow.remove_column(SUPPLIER_STAGE, snow.el(SUPPLIER_STAGE, "Tax id"))
    code, report = fit(connector)
    assert code == 1 and not report["ok"]
    assert {("missing", "blocking"), ("missing", "warning")} <= codes(report, SUPPLIER_STAGE)
    sync = connector.cli("sync")
    assert sync.exit_code == 2
    assert "ERP company code" in sync.stderr and "Nothing was synced" in sync.stderr
    assert connector.snow("sys_import_set_row") == []


def test_an_ambiguous_label_blocks_until_an_override_names_the_column(connector: Connector, tmp_path,
                                                                      monkeypatch) -> None:
    snow = connector.server.world.snow
    snow.add_column(SUPPLIER_STAGE, "u_erp_company_code", "ERP company code")
    code, report = fit(connector)
    assert code == 1
    assert ("ambiguous", "blocking") in codes(report, SUPPLIER_STAGE)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d365snow.toml").write_text(
        f'[mapping.{SUPPLIER_STAGE}.elements]\n"ERP company code" = "erp_company_code"\n')
    code, report = fit(connector)
    # In label mode ServiceNow itself cannot tell the two apart: still blocking, for another reason.
    assert ("label_clash", "blocking") in codes(report, SUPPLIER_STAGE)
    snow.set_insert_multiple(SUPPLIER_STAGE, "column_name")
    code, report = fit(connector)
    assert code == 0, findings(report, SUPPLIER_STAGE)


def test_a_narrower_coalesce_names_the_po_numbers_that_would_merge(connector: Connector) -> None:
    connector.sync()  # snapshots to look for collisions in
    snow = connector.server.world.snow
    target = "sn_shop_purchase_order"
    snow.set_coalesce(ORDER_STAGE, [snow.el(target, "ERP source"), snow.el(target, "ERP number")])
    code, report = fit(connector)
    assert code == 1
    [narrower] = [f for f in findings(report, ORDER_STAGE) if f["code"] == "coalesce_narrower"]
    assert narrower["severity"] == "blocking"
    repeated = connector.fno('SELECT "PurchaseOrderNumber" FROM "PurchaseOrderHeadersV2" GROUP BY 1 '
                             'HAVING count(DISTINCT "dataAreaId") > 1 ORDER BY 1 LIMIT 1')[0]["PurchaseOrderNumber"]
    assert repeated in narrower["message"] and "Legal entity" in narrower["message"]
    # The sync refuses before anything runs; a run launched from the UI or a sensor fails that push instead.
    before = len(connector.snow("sys_import_set_row"))
    assert connector.cli("sync").exit_code == 2
    assert len(connector.snow("sys_import_set_row")) == before


def test_mandatory_fields_without_a_source(connector: Connector) -> None:
    snow = connector.server.world.snow
    snow.add_column(SUPPLIER_STAGE, "u_vat_group", "VAT group", mandatory=True)
    code, report = fit(connector)
    assert code == 0
    [unfilled] = [f for f in findings(report, SUPPLIER_STAGE) if f["code"] == "mandatory_unfilled"]
    assert unfilled["label"] == "VAT group" and unfilled["severity"] == "warning"


def test_column_name_mode_sends_columns(connector: Connector) -> None:
    snow = connector.server.world.snow
    snow.set_insert_multiple(GL_STAGE, "column_name")
    code, report = fit(connector)
    assert code == 0
    table = next(t for t in report["servicenow"]["tables"] if t["table"] == GL_STAGE)
    assert table["key_mode"] == "column_name"
    assert {f["label"]: f["sent_as"] for f in table["fields"]}["Number"] == snow.el(GL_STAGE, "Number")
    connector.sync()
    accounts = connector.fno('SELECT "MainAccountId" FROM "MainAccounts"')
    staged = connector.snow(GL_STAGE)
    number = snow.el(GL_STAGE, "Number")
    assert {r[number] for r in staged} == {a["MainAccountId"] for a in accounts}


def test_no_read_access_to_the_dictionary_degrades_with_the_role_named(connector: Connector) -> None:
    snow = connector.server.world.snow
    snow.deny_reads(["sys_dictionary", "sys_choice"])
    code, report = fit(connector)
    warnings = " ".join(f["message"] for f in findings(report) if f["code"] == "discovery")
    assert "personalize_dictionary" in warnings and "personalize_choices" in warnings
    assert report["servicenow"]["access"]["sys_dictionary"].startswith("denied")
    # The documented defaults are this instance's own: the sync still reaches the exact end state.
    assert code == 0
    assert connector.sync()["ok"]
    wh = Warehouse(connector.home / "warehouse.duckdb")
    with wh.reader() as con:
        assert con.execute("SELECT count(*) FROM audit WHERE outcome = 'error'").fetchone()[0] == 0


def test_ping_runs_the_quick_fit_and_never_risks_a_record(connector: Connector, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    result = connector.cli("ping")
    assert result.exit_code == 0, result.stdout
    assert "fit sn_fcms_intg_imp_order" in result.stdout and "import allowed" in result.stdout
    snow = connector.server.world.snow
    target = "sn_fin_gl_account"
    # A map that would match the ping's test row (ERP source alone) on an existing record: the import is skipped.
    snow.set_coalesce(GL_STAGE, [snow.el(target, "ERP source")])
    result = connector.cli("ping")
    assert "does not coalesce on a field the test row leaves empty" in result.stdout
    user = connector.env["D365SNOW_SNOW_USERNAME"]
    assert [r for r in connector.snow(target) if r["sys_created_by"] == user] == []
