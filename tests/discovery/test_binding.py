"""Label resolution, binding and the coalesce comparison on hand-made instance schemas (pure logic)."""

from datetime import UTC, datetime

import polars as pl
import pytest

from d365_snow_assets.discovery import documented as doc
from d365_snow_assets.discovery.binding import bind, coalesce_findings
from d365_snow_assets.discovery.model import Column, InstanceSchema, TableSchema, TransformEntry, TransformMap
from d365_snow_assets.discovery.resolve import resolve
from d365_snow_assets.mapping.targets import COST_CENTER, GL_ACCOUNT, ORDER, SUPPLIER


def table(name: str, *columns: tuple[str, str], mandatory: tuple[str, ...] = ()) -> TableSchema:
    return TableSchema(name, tuple(Column(element, label, mandatory=element in mandatory, table=name)
                                   for element, label in columns))


def documented_table(name: str, prefix: str = "") -> TableSchema:
    """The staging table as the docs describe it, elements optionally prefixed (a global-scope customisation)."""
    return table(name, *((prefix + f.element, f.label) for f in doc.STAGING[name]))


def schema_with(*tables: TableSchema, maps: dict[str, list[TransformMap]] | None = None,
                modes: dict[str, str] | None = None) -> InstanceSchema:
    return InstanceSchema("https://x.service-now.com", datetime.now(UTC), {t.name: t for t in tables},
                          key_modes=dict(modes or {}), transform_maps=maps)


def test_resolution_exact_then_loose_then_override():
    t = table("t", ("u_legal_name", "Legal name"), ("u_erp", "ERP Company Code"), ("a", "Dup"), ("b", "Dup"))
    assert resolve(t, "Legal name").status == "exact"
    loose = resolve(t, "ERP company code")
    assert (loose.status, loose.column.element) == ("loose", "u_erp")
    assert resolve(t, "Dup").status == "ambiguous"
    assert resolve(t, "Nope").status == "missing"
    assert resolve(t, "Dup", "b").column.element == "b"
    assert resolve(t, "Dup", "zz").status == "bad_override"


def test_wire_keys_follow_the_key_mode():
    staging = documented_table(doc.SUPPLIER_STAGE, prefix="u_")
    labels = bind(SUPPLIER, schema_with(staging)).encode([{"ERP company code": "V1", "Legal name": "Acme"}])
    columns = bind(SUPPLIER, schema_with(staging, modes={doc.SUPPLIER_STAGE: "column_name"})).encode(
        [{"ERP company code": "V1", "Legal name": "Acme"}])
    assert labels == [{"ERP company code": "V1", "Legal name": "Acme"}]
    assert columns == [{"u_erp_company_code": "V1", "u_legal_name": "Acme"}]


def test_an_unresolved_field_is_never_sent_and_a_key_field_blocks():
    staging = table(doc.SUPPLIER_STAGE, *((f.element, f.label) for f in doc.STAGING[doc.SUPPLIER_STAGE]
                                          if f.label not in ("Tax id", "ERP company code")))
    bound = bind(SUPPLIER, schema_with(staging))
    assert "Tax id" not in bound.encode([{"Tax id": "X", "Legal name": "A"}])[0]
    codes = {(f.code, f.label, f.severity) for f in bound.findings}
    assert ("missing", "Tax id", "warning") in codes
    assert ("missing", "ERP company code", "blocking") in codes
    assert bound.blocked


def test_same_label_on_two_columns_blocks_a_key_field_in_label_mode():
    staging = documented_table(doc.SUPPLIER_STAGE)
    clash = TableSchema(staging.name, (*staging.columns, Column("u_code2", "ERP company code", table=staging.name)))
    assert bind(SUPPLIER, schema_with(clash)).blocked
    fine = bind(SUPPLIER, schema_with(clash), {"ERP company code": "erp_company_code"})
    assert [f for f in fine.findings if f.code == "ambiguous"] == []


def test_mandatory_unfilled_is_a_warning_unless_the_map_enforces_it():
    staging = table(doc.GL_ACCOUNT_STAGE, *((f.element, f.label) for f in doc.STAGING[doc.GL_ACCOUNT_STAGE]),
                    mandatory=("entity",))
    lax = bind(GL_ACCOUNT, schema_with(staging, maps={doc.GL_ACCOUNT_STAGE: []}))
    strict = bind(GL_ACCOUNT, schema_with(staging, maps={doc.GL_ACCOUNT_STAGE: [
        TransformMap("GL", doc.GL_ACCOUNT_STAGE, doc.GL_ACCOUNT, enforce_mandatory=True)]}))
    assert [f.severity for f in lax.findings if f.code == "mandatory_unfilled"] == ["warning"]
    assert [f.severity for f in strict.findings if f.code == "mandatory_unfilled"] == ["blocking"]


def test_a_release_without_number_keys_gl_accounts_on_gl_account():
    xanadu = table(doc.GL_ACCOUNT_STAGE, ("erp_source", "ERP source"), ("gl_account", "GL account"))
    bound = bind(GL_ACCOUNT, schema_with(xanadu))
    assert bound.mapping.coalesce == ("ERP source", "GL Account")
    assert dict(bound.mapping.columns)["GL Account"].column == "MainAccountId"
    assert not bound.blocked


def _order_map(*coalesce: str) -> TransformMap:
    entries = tuple(TransformEntry(f.element, f.element, coalesce=f.element in coalesce)
                    for f in doc.STAGING[doc.ORDER_STAGE])
    return TransformMap("Order stage", doc.ORDER_STAGE, doc.PURCHASE_ORDER, entries=entries)


def _orders() -> pl.DataFrame:
    rows = [("D365FO", "USMF", "PO-1"), ("D365FO", "DEMF", "PO-1"), ("D365FO", "USMF", "PO-2")]
    return pl.DataFrame(rows, schema=["ERP source", "Legal entity", "ERP PO number"], orient="row")


def test_a_narrower_coalesce_names_the_records_that_would_collide():
    schema = schema_with(documented_table(doc.ORDER_STAGE),
                         maps={doc.ORDER_STAGE: [_order_map("erp_source", "erp_po_number")]})
    bound = bind(ORDER, schema)
    rows = _orders()
    keys = rows.select(pl.concat_str(pl.all(), separator="|")).to_series()
    [finding] = [f for f in coalesce_findings(bound, schema, rows, keys) if f.code == "coalesce_narrower"]
    assert finding.severity == "blocking"
    assert "D365FO|DEMF|PO-1 vs D365FO|USMF|PO-1" in finding.message
    unique = rows.filter(pl.col("ERP PO number") == "PO-2")
    [risk] = [f for f in coalesce_findings(bound, schema, unique, keys[2:]) if f.code == "coalesce_narrower"]
    assert risk.severity == "warning"


def test_a_wider_coalesce_blocks_and_the_same_key_passes():
    schema = schema_with(documented_table(doc.ORDER_STAGE), maps={doc.ORDER_STAGE: [
        _order_map("erp_source", "legal_entity", "erp_po_number", "payment_term")]})
    assert [f.code for f in coalesce_findings(bind(ORDER, schema), schema)] == ["coalesce_wider"]
    same = schema_with(documented_table(doc.ORDER_STAGE), maps={doc.ORDER_STAGE: [
        _order_map("erp_source", "legal_entity", "erp_po_number")]})
    assert coalesce_findings(bind(ORDER, same), same) == []


def test_a_coalesce_on_a_field_filled_from_the_same_value_is_equivalent():
    """Cost centers coalescing on Account number instead of Code: the connector fills both from DimensionValue."""
    entries = (TransformEntry("erp_source", "erp_source", coalesce=True),
               TransformEntry("legal_entity", "legal_entity", coalesce=True, coalesce_empty=True),
               TransformEntry("account_number", "account_number", coalesce=True),
               TransformEntry("code", "code"))
    schema = schema_with(documented_table(doc.COST_CENTER_STAGE), maps={doc.COST_CENTER_STAGE: [
        TransformMap("Master data cost center", doc.COST_CENTER_STAGE, doc.COST_CENTER, entries=entries)]})
    findings = coalesce_findings(bind(COST_CENTER, schema), schema)
    assert [(f.code, f.severity) for f in findings] == [("coalesce_equivalent", "info")]


@pytest.mark.parametrize(("maps", "code"), [({}, "no_transform_map"), (None, "coalesce_unknown")])
def test_no_map_or_no_access_to_maps(maps, code):
    schema = schema_with(documented_table(doc.ORDER_STAGE), maps=maps)
    assert [f.code for f in coalesce_findings(bind(ORDER, schema), schema)] == [code]
