"""The F&O → ServiceNow asset graph end to end: real sandbox, real CLI, real Dagster runs, exact end state."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import dagster as dg

from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.settings import load_settings
from d365_snow_assets.warehouse import Warehouse

from .conftest import Connector

LES = ("usmf", "demf", "gbsi")


def _keys(rows: list[dict[str, str]], *columns: str) -> list[tuple[str, ...]]:
    return [tuple(r[c] for c in columns) for r in rows]


def _import_rows(connector: Connector) -> int:
    return len(connector.snow("sys_import_set_row"))


def _invalid_line_keys(connector: Connector) -> set[tuple[str, str, str]]:
    """PO lines naming a GL account or cost center that is missing or suspended, computed from F&O directly (a
    blank one is no reference, DESIGN §5.1)."""
    lines = connector.fno('SELECT "dataAreaId", "PurchaseOrderNumber", "LineNumber", "MainAccountIdDisplayValue", '
                          '"DefaultLedgerDimensionDisplayValue" FROM "PurchaseOrderLinesV2"')
    accounts = {r["MainAccountId"]: r["IsSuspended"] for r in connector.fno('SELECT * FROM "MainAccounts"')}
    centers: dict[tuple[str, str], str] = {}
    for r in connector.fno("SELECT * FROM \"FinancialDimensionValues\" WHERE \"FinancialDimension\" = 'CostCenter'"):
        centers[((r["LegalEntityId"] or "").lower(), r["DimensionValue"])] = r["IsSuspended"]
    invalid = set()
    for line in lines:
        le = line["dataAreaId"].lower()
        # The cost center is the first segment; a hyphen inside a value is escaped with a backslash.
        display = (line["DefaultLedgerDimensionDisplayValue"] or "").replace("\\-", "\x00")
        cc = display.split("-")[0].replace("\x00", "-")
        cc_state = centers.get((le, cc), centers.get(("", cc)))
        gl = line["MainAccountIdDisplayValue"]
        if (gl and accounts.get(gl) != "No") or (cc and cc_state != "No"):
            invalid.add((le.upper(), line["PurchaseOrderNumber"], str(line["LineNumber"])))
    return invalid


def test_first_sync_creates_exactly_one_record_per_fno_record(connector: Connector) -> None:
    summary = connector.sync()
    assert summary["ok"]

    vendors = connector.fno('SELECT "dataAreaId", "VendorAccountNumber" FROM "VendorsV2"')
    suppliers = connector.snow("sn_fin_supplier", "erp_source=D365FO")
    assert Counter(_keys(suppliers, "legal_entity", "supplier_code")) == Counter(
        (v["dataAreaId"].upper(), v["VendorAccountNumber"]) for v in vendors)

    orders = connector.fno('SELECT "dataAreaId", "PurchaseOrderNumber" FROM "PurchaseOrderHeadersV2"')
    pushed_orders = connector.snow("sn_shop_purchase_order", "erp_source=D365FO")
    assert Counter(_keys(pushed_orders, "legal_entity", "erp_po_number")) == Counter(
        (o["dataAreaId"].upper(), o["PurchaseOrderNumber"]) for o in orders)

    invalid = _invalid_line_keys(connector)
    lines = connector.fno('SELECT "dataAreaId", "PurchaseOrderNumber", "LineNumber" FROM "PurchaseOrderLinesV2"')
    expected_lines = Counter((r["dataAreaId"].upper(), r["PurchaseOrderNumber"], str(r["LineNumber"])) for r in lines)
    for key in invalid:
        del expected_lines[key]
    assert invalid, "the sandbox seeds lines with suspended accounts or cost centers; the test needs some"
    pushed_lines = connector.snow("sn_shop_purchase_order_line", "erp_source=D365FO")
    assert Counter(_keys(pushed_lines, "legal_entity", "erp_po_number", "erp_po_line_number")) == expected_lines

    accounts = connector.fno('SELECT "ChartOfAccounts", "MainAccountId" FROM "MainAccounts"')
    assert Counter(_keys(connector.snow("sn_fin_gl_account", "erp_source=D365FO"), "chart_of_accounts", "gl_account")) \
        == Counter((a["ChartOfAccounts"], a["MainAccountId"]) for a in accounts)

    centers = connector.fno("SELECT \"LegalEntityId\", \"DimensionValue\" FROM \"FinancialDimensionValues\" "
                            "WHERE \"FinancialDimension\" = 'CostCenter'")
    assert Counter(_keys(connector.snow("cmn_cost_center", "erp_source=D365FO"), "legal_entity", "code")) == Counter(
        ((c["LegalEntityId"] or "").upper(), c["DimensionValue"]) for c in centers)

    # Field values follow the mapping, including awkward names (quotes, carets, unicode) and person vendors.
    fno_vendor = {(v["dataAreaId"].upper(), v["VendorAccountNumber"]): v
                  for v in connector.fno('SELECT * FROM "VendorsV2"')}
    for supplier in suppliers:
        source = fno_vendor[(supplier["legal_entity"], supplier["supplier_code"])]
        expected_name = (f"{source['PersonFirstName']} {source['PersonLastName']}".strip()
                         if source["VendorPartyType"] == "Person" else source["VendorOrganizationName"])
        assert supplier["name"] == expected_name
        assert supplier["active"] == ("false" if source["OnHoldStatus"] == "All" else "true")
        assert supplier["currency"] == source["CurrencyCode"]

    # Invalid lines were held back and audited as rejected, once each.
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    with warehouse.reader() as con:
        rejected = con.execute("SELECT business_key, message FROM audit WHERE outcome = 'rejected' "
                                   "AND direction = 'd365_to_snow'").fetchall()
    assert len(rejected) == len(invalid)
    assert all(message for _, message in rejected)


def test_every_pushed_record_is_audited_and_metadata_matches(connector: Connector) -> None:
    summary = connector.sync()
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    with warehouse.reader() as con:
        by_target = dict(con.execute(
            "SELECT entity, count(*) FROM audit WHERE outcome IN ('inserted','updated','ignored') GROUP BY entity"
        ).fetchall())
        errors = con.execute("SELECT count(*) FROM audit WHERE outcome = 'error'").fetchone()[0]
    assert errors == 0
    for target, counts in summary["pushed"].items():
        assert by_target.get(target, 0) == sum(counts.get(k, 0) for k in ("inserted", "updated", "ignored")), target
    for table in ("sn_fin_supplier", "sn_shop_purchase_order", "sn_shop_purchase_order_line", "sn_fin_gl_account",
                  "cmn_cost_center"):
        assert by_target[table] == len(connector.snow(table, "erp_source=D365FO")), table


def test_second_sync_without_change_writes_nothing(connector: Connector) -> None:
    connector.sync()
    before = _import_rows(connector)
    summary = connector.sync()
    assert _import_rows(connector) == before
    assert all(_kept(entity, le) for entity in ("VendorsV2", "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2")
               for le in LES)
    assert all(sum(counts.get(k, 0) for k in ("inserted", "updated", "ignored", "error")) == 0
               for counts in summary["pushed"].values()), summary["pushed"]


def _extract_meta(entity_set: str, legal_entity: str) -> dict[str, dg.MetadataValue]:
    """Metadata of the latest extract of entity_set for legal_entity, from Dagster."""
    records = open_instance(load_settings()).fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["d365", entity_set]), asset_partitions=[legal_entity]),
        limit=1).records
    assert records and records[0].asset_materialization is not None
    return records[0].asset_materialization.metadata


def _extract_delta(entity_set: str, legal_entity: str) -> tuple[int, int, int]:
    """(rows, rows written, rows removed) of the latest extract of entity_set for legal_entity."""
    meta = _extract_meta(entity_set, legal_entity)
    return tuple(int(meta[name].value) for name in ("dagster/row_count", "rows_new_or_changed", "rows_removed"))


def _kept(entity_set: str, legal_entity: str) -> bool:
    """Whether the latest extract found F&O's answer unchanged and kept the snapshot without parsing it."""
    return bool(_extract_meta(entity_set, legal_entity)["unchanged_since_last_extraction"].value)


def test_sync_after_mutations_changes_exactly_those_records(connector: Connector) -> None:
    connector.sync()
    rows, written, removed = _extract_delta("PurchaseOrderLinesV2", "usmf")
    assert rows == written > 0 and removed == 0 and not _kept("PurchaseOrderLinesV2", "usmf")
    d365 = connector.server.world.d365
    vendor = d365.add_vendor({"dataAreaId": "demf", "VendorOrganizationName": "Neue Lieferant GmbH",
                              "VendorGroupId": "10", "CurrencyCode": "EUR"})
    invalid = _invalid_line_keys(connector)
    usmf_lines = connector.fno('SELECT * FROM "PurchaseOrderLinesV2" WHERE "dataAreaId" = \'usmf\' '
                               'ORDER BY "PurchaseOrderNumber", "LineNumber"')
    pushed_lines = [r for r in usmf_lines if ("USMF", r["PurchaseOrderNumber"], str(r["LineNumber"])) not in invalid]
    changed, removed = pushed_lines[0], pushed_lines[-1]
    d365.set_po_line_price("usmf", changed["PurchaseOrderNumber"], changed["LineNumber"],
                           float(changed["PurchasePrice"]) + 1.25)
    d365.remove_po_line("usmf", removed["PurchaseOrderNumber"], removed["LineNumber"])
    center = connector.fno("SELECT * FROM \"FinancialDimensionValues\" WHERE \"FinancialDimension\" = 'CostCenter' "
                           "ORDER BY \"DimensionValue\" LIMIT 1")[0]
    d365.update_cost_center(center["DimensionValue"], {"Description": "Renamed ✓ 'center'"},
                            legal_entity=center["LegalEntityId"] or None)

    summary = connector.sync()
    pushed = {target: {k: v for k, v in counts.items() if k in ("inserted", "updated") and v}
              for target, counts in summary["pushed"].items()}
    pos = {changed["PurchaseOrderNumber"], removed["PurchaseOrderNumber"]}
    assert pushed["sn_fin_supplier"] == {"inserted": 1}
    assert pushed["cmn_cost_center"] == {"updated": 1}
    # One price change, one deactivation of the removed line.
    assert pushed["sn_shop_purchase_order_line"] == {"updated": 2}
    # po_amount is the sum of the order's lines, so exactly the touched orders change.
    assert pushed["sn_shop_purchase_order"] == {"updated": len(pos)}
    assert not pushed.get("sn_fin_gl_account")
    # The usmf PO-line snapshot swapped only what changed: the repriced line (its old row out, its new row in) and
    # the removed line (out); every other line was relabelled, not rewritten.
    assert _extract_delta("PurchaseOrderLinesV2", "usmf") == (rows - 1, 1, 2)
    assert _extract_delta("PurchaseOrderLinesV2", "demf")[1:] == (0, 0)
    # F&O answered byte for byte as before for demf's lines: that snapshot was kept unparsed; the changed ones not.
    assert _kept("PurchaseOrderLinesV2", "demf") and _kept("PurchaseOrderHeadersV2", "gbsi")
    assert not any(_kept(entity, le) for entity, le in (("PurchaseOrderLinesV2", "usmf"), ("VendorsV2", "demf")))

    supplier = connector.snow("sn_fin_supplier", f"supplier_code={vendor['VendorAccountNumber']}")
    assert [s["name"] for s in supplier] == ["Neue Lieferant GmbH"]
    gone = connector.snow("sn_shop_purchase_order_line",
                          f"erp_po_number={removed['PurchaseOrderNumber']}^erp_po_line_number={removed['LineNumber']}")
    assert [g["line_status"] for g in gone] == ["Canceled"]
    repriced = connector.snow("sn_shop_purchase_order_line",
                              f"erp_po_number={changed['PurchaseOrderNumber']}^erp_po_line_number={changed['LineNumber']}")
    assert [Decimal(r["unit_price"]) for r in repriced] == [
        Decimal(str(changed["PurchasePrice"])) + Decimal("1.25")]
    renamed = connector.snow("cmn_cost_center", f"code={center['DimensionValue']}^legal_entity="
                                                f"{(center['LegalEntityId'] or '').upper()}")
    assert [r["name"] for r in renamed] == ["Renamed ✓ 'center'"]


def test_customer_mapping_override_is_applied_and_a_typo_fails_fast(connector: Connector, tmp_path,
                                                                    monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "d365snow.toml"
    config.write_text('[mapping.sn_fcms_intg_imp_supplier]\nname = "VendorSerchName"\n')
    result = connector.cli("sync")
    assert result.exit_code == 2
    assert "VendorSerchName" in result.stderr and "sn_fcms_intg_imp_supplier" in result.stderr
    assert connector.snow("sys_import_set_row") == []

    config.write_text('[mapping.sn_fcms_intg_imp_supplier]\nname = "VendorSearchName"\nremove = ["phone"]\n')
    connector.sync()
    search_names = {(v["dataAreaId"].upper(), v["VendorAccountNumber"]): v["VendorSearchName"]
                    for v in connector.fno('SELECT * FROM "VendorsV2"')}
    suppliers = connector.snow("sn_fin_supplier", "erp_source=D365FO")
    assert len(suppliers) == len(search_names)
    assert all(s["name"] == search_names[(s["legal_entity"], s["supplier_code"])] for s in suppliers)
    assert all(s.get("phone", "") == "" for s in suppliers)
