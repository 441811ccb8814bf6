"""The F&O → ServiceNow asset graph end to end: real sandbox, real CLI, real Dagster runs, exact end state."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg

from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.settings import load_settings
from d365_snow_assets.warehouse import Warehouse
from d365_snow_assets.warehouse.diff import business_key
from tests.chaos.endstate import invalid_line_keys, snow_keys, verify_end_state
from tests.snow_view import ERP, SnowView

from .conftest import Connector

LES = ("usmf", "demf", "gbsi")


def _import_rows(connector: Connector) -> int:
    return len(connector.snow("sys_import_set_row"))


def test_first_sync_creates_exactly_one_record_per_fno_record(connector: Connector) -> None:
    summary = connector.sync()
    assert summary["ok"]
    assert verify_end_state(connector) > 0
    assert invalid_line_keys(connector), "the sandbox seeds lines with suspended accounts or cost centers"
    view = SnowView(connector.server.world.snow)
    # Most item lines carry no GL account, and many lines no cost center: pushed blank, not held back.
    lines = [row for _, row in snow_keys(view, "sn_shop_purchase_order_line")]
    assert sum(1 for r in lines if not view.get("sn_shop_purchase_order_line", r, "General Ledger Account")) > 10
    assert sum(1 for r in lines if not view.get("sn_shop_purchase_order_line", r, "Cost center")) > 10
    # One supplier per vendor account, whatever the number of companies it exists in.
    shared = [r for _, r in snow_keys(view, "sn_fin_supplier")
              if "," in view.get("sn_fin_supplier", r, "Legal entities")]
    assert shared, "the sandbox shares vendor accounts across companies"


def test_a_differently_built_instance_reaches_the_same_end_state(variant_connector: Connector) -> None:
    """u_-prefixed staging columns, renamed target columns, column-name insertMultiple on some tables, numeric
    status values in a column named status, a cost-center map coalescing on Account number: discovery, not the
    defaults, carries the sync, and `fit` is clean."""
    fit = variant_connector.cli("fit", "--json")
    assert fit.exit_code == 0, fit.stdout
    summary = variant_connector.sync()
    assert summary["ok"]
    assert verify_end_state(variant_connector) > 0


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
    view = SnowView(connector.server.world.snow)
    for table in ("sn_fin_legal_entity", "sn_fin_supplier", "sn_shop_purchase_order", "sn_shop_purchase_order_line",
                  "sn_fin_gl_account", "cmn_cost_center"):
        assert by_target[table] == len(snow_keys(view, table)), table


def test_second_sync_without_change_writes_nothing(connector: Connector) -> None:
    connector.sync()
    before = _import_rows(connector)
    summary = connector.sync()
    assert _import_rows(connector) == before
    assert all(_kept(entity, le) for entity in ("PurchaseOrderHeadersV2", "PurchaseOrderLinesV2") for le in LES)
    assert all(sum(counts.get(k, 0) for k in ("inserted", "updated", "ignored", "error")) == 0
               for counts in summary["pushed"].values()), summary["pushed"]


def _extract_meta(entity_set: str, legal_entity: str | None) -> dict[str, dg.MetadataValue]:
    """Metadata of the latest extract of entity_set (for legal_entity, when it is partitioned), from Dagster."""
    records_filter = dg.AssetRecordsFilter(asset_key=dg.AssetKey(["d365", entity_set]),
                                           asset_partitions=[legal_entity] if legal_entity else None)
    records = open_instance(load_settings()).fetch_materializations(records_filter, limit=1).records
    assert records and records[0].asset_materialization is not None
    return records[0].asset_materialization.metadata


def _extract_delta(entity_set: str, legal_entity: str) -> tuple[int, int, int]:
    """(rows, rows written, rows removed) of the latest extract of entity_set for legal_entity."""
    meta = _extract_meta(entity_set, legal_entity)
    return tuple(int(meta[name].value) for name in ("dagster/row_count", "rows_new_or_changed", "rows_removed"))


def _kept(entity_set: str, legal_entity: str | None) -> bool:
    """Whether the latest extract found F&O's answer unchanged and kept the snapshot without parsing it."""
    return bool(_extract_meta(entity_set, legal_entity)["unchanged_since_last_extraction"].value)


def test_sync_after_mutations_changes_exactly_those_records(connector: Connector) -> None:
    connector.sync()
    rows, written, removed = _extract_delta("PurchaseOrderLinesV2", "usmf")
    assert rows == written > 0 and removed == 0 and not _kept("PurchaseOrderLinesV2", "usmf")
    d365 = connector.server.world.d365
    vendor = d365.add_vendor({"dataAreaId": "demf", "VendorOrganizationName": "Neue Lieferant GmbH",
                              "VendorGroupId": "10", "CurrencyCode": "EUR"})
    invalid = invalid_line_keys(connector)
    usmf_lines = connector.fno('SELECT * FROM "PurchaseOrderLinesV2" WHERE "dataAreaId" = \'usmf\' '
                               'ORDER BY "PurchaseOrderNumber", "LineNumber"')
    pushed_lines = [r for r in usmf_lines if ("USMF", r["PurchaseOrderNumber"], str(r["LineNumber"])) not in invalid]
    changed, removed = pushed_lines[0], pushed_lines[-1]
    d365.set_po_line_price("usmf", changed["PurchaseOrderNumber"], changed["LineNumber"],
                           float(changed["PurchasePrice"]) + 1.25)
    d365.remove_po_line("usmf", removed["PurchaseOrderNumber"], removed["LineNumber"])
    center = connector.fno("SELECT * FROM \"FinancialDimensionValues\" WHERE \"FinancialDimension\" = 'CostCenter' "
                           "AND \"IsSuspended\" = 'No' ORDER BY \"DimensionValue\" LIMIT 1")[0]
    d365.update_cost_center(center["DimensionValue"], {"Description": "Renamed ✓ 'center'"},
                            legal_entity=center["LegalEntityId"] or None)

    summary = connector.sync()
    pushed = {target: {k: v for k, v in counts.items() if k in ("inserted", "updated") and v}
              for target, counts in summary["pushed"].items()}
    pos = {changed["PurchaseOrderNumber"], removed["PurchaseOrderNumber"]}
    assert pushed["sn_fin_supplier"] == {"inserted": 1}
    assert pushed["sn_fin_supplier_detail"] == {"inserted": 1}
    assert pushed["cmn_cost_center"] == {"updated": 1}
    # One price change, one deactivation of the removed line.
    assert pushed["sn_shop_purchase_order_line"] == {"updated": 2}
    # PO amount is the sum of the order's lines, so exactly the touched orders change.
    assert pushed["sn_shop_purchase_order"] == {"updated": len(pos)}
    assert not pushed.get("sn_fin_gl_account") and not pushed.get("sn_fin_legal_entity")
    # The usmf PO-line snapshot swapped only what changed: the repriced line (its old row out, its new row in) and
    # the removed line (out); every other line was relabelled, not rewritten.
    assert _extract_delta("PurchaseOrderLinesV2", "usmf") == (rows - 1, 1, 2)
    assert _extract_delta("PurchaseOrderLinesV2", "demf")[1:] == (0, 0)
    # F&O answered byte for byte as before for demf's lines: that snapshot was kept unparsed; the changed ones not.
    assert _kept("PurchaseOrderLinesV2", "demf") and _kept("PurchaseOrderHeadersV2", "gbsi")
    assert not _kept("PurchaseOrderLinesV2", "usmf")

    view = SnowView(connector.server.world.snow)
    suppliers = dict(snow_keys(view, "sn_fin_supplier"))
    new = suppliers[business_key([ERP, vendor["VendorAccountNumber"]])]
    assert view.get("sn_fin_supplier", new, "Legal Name") == "Neue Lieferant GmbH"
    lines = dict(snow_keys(view, "sn_shop_purchase_order_line"))
    gone = lines[business_key([ERP, "USMF", removed["PurchaseOrderNumber"], str(removed["LineNumber"])])]
    assert view.get("sn_shop_purchase_order_line", gone, "Status") == "Canceled"
    repriced = lines[business_key([ERP, "USMF", changed["PurchaseOrderNumber"], str(changed["LineNumber"])])]
    assert Decimal(view.get("sn_shop_purchase_order_line", repriced, "Unit price")) == (
        Decimal(str(changed["PurchasePrice"])) + Decimal("1.25"))
    centers = dict(snow_keys(view, "cmn_cost_center"))
    renamed = centers[business_key([ERP, (center["LegalEntityId"] or "").upper(), center["DimensionValue"]])]
    assert view.get("cmn_cost_center", renamed, "Name") == "Renamed ✓ 'center'"


def test_customer_mapping_override_is_applied_and_a_typo_fails_fast(connector: Connector, tmp_path,
                                                                    monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "d365snow.toml"
    config.write_text('[mapping.sn_fcms_intg_imp_supplier]\n"Legal name" = "VendorSerchName"\n')
    result = connector.cli("sync")
    assert result.exit_code == 2
    assert "VendorSerchName" in result.stderr and "sn_fcms_intg_imp_supplier" in result.stderr
    assert connector.snow("sys_import_set_row") == []

    config.write_text('[mapping.sn_fcms_intg_imp_supplier]\n"Legal name" = "VendorSearchName"\n'
                      'remove = ["Primary phone number"]\n')
    connector.sync()
    search_names = {v["VendorAccountNumber"]: v["VendorSearchName"] for v in connector.fno('SELECT * FROM "VendorsV2"')}
    view = SnowView(connector.server.world.snow)
    suppliers = [row for _, row in snow_keys(view, "sn_fin_supplier")]
    assert suppliers
    assert all(view.get("sn_fin_supplier", s, "Legal Name")
               == search_names[view.get("sn_fin_supplier", s, "ERP company code")] for s in suppliers)
    staged = [r for r in connector.snow("sn_fcms_intg_imp_supplier")]
    phone = connector.server.world.snow.el("sn_fcms_intg_imp_supplier", "Primary phone number")
    assert staged and all(r.get(phone, "") == "" for r in staged)
