"""How outbound invoices are read on an instance: paths through references, status values by choice label."""

from datetime import UTC, datetime

from d365_snow_assets.discovery import documented as doc
from d365_snow_assets.discovery.model import Choice, Column, InstanceSchema, TableSchema, TransformEntry, TransformMap
from d365_snow_assets.discovery.outbound import DOCUMENTED_STATUS, resolve_outbound
from d365_snow_assets.mapping import DEFAULT_MAPPINGS


def _table(name: str, overrides: dict[str, str] | None = None) -> TableSchema:
    """A table as documented, with some elements renamed and reference targets as documented."""
    overrides = overrides or {}
    fields = doc.ALL_TABLES[name]
    return TableSchema(name, tuple(Column(overrides.get(f.label, f.element), f.label, f.type, f.reference,
                                          table=name) for f in fields))


def _schema(tables: list[TableSchema], maps: dict[str, list[TransformMap]] | None = None,
            choices: dict[str, list[Choice]] | None = None) -> InstanceSchema:
    return InstanceSchema("https://x", datetime.now(UTC), {t.name: t for t in tables}, transform_maps=maps,
                          choices=choices or {})


def test_documented_defaults_read_through_the_documented_labels():
    schema = _schema([_table(t) for t in doc.ALL_TABLES])
    out = resolve_outbound(schema, DEFAULT_MAPPINGS)
    assert out.header["legal_entity"] == "legal_entity.erp_company_code"
    assert out.header["supplier"] == "supplier.erp_company_code"
    assert out.line["purchase_order"] == "purchase_order_line.purchase_order.erp_number"
    assert out.line["gl_account"] == "gl_account.gl_account"
    assert out.status_values == DOCUMENTED_STATUS
    assert not out.blocked


def test_a_reference_leads_to_the_field_the_instances_transform_map_fills():
    """The supplier map writes the staging "ERP company code" into u_vendor_no on sn_fin_supplier: that is where
    the invoice's supplier code is read, whatever the label of that field."""
    supplier = TableSchema(doc.SUPPLIER, (Column("u_vendor_no", "Vendor number", table=doc.SUPPLIER),))
    staging = _table(doc.SUPPLIER_STAGE)
    maps = {doc.SUPPLIER_STAGE: [TransformMap("Master data supplier", doc.SUPPLIER_STAGE, doc.SUPPLIER,
                                              entries=(TransformEntry("erp_company_code", "u_vendor_no", True),))]}
    tables = [_table(t) for t in doc.ALL_TABLES if t not in (doc.SUPPLIER, doc.SUPPLIER_STAGE)]
    out = resolve_outbound(_schema([*tables, supplier, staging], maps), DEFAULT_MAPPINGS)
    assert out.header["supplier"] == "supplier.u_vendor_no"


def test_status_values_by_choice_label_and_synonyms():
    tables = [_table(t, {"Integration status": "status"}) if t == doc.OUTBOUND_INVOICE else _table(t)
              for t in doc.ALL_TABLES]
    choices = {f"{doc.OUTBOUND_INVOICE}.status": [Choice("1", "New"), Choice("2", "In process"),
                                                  Choice("3", "Processed"), Choice("4", "Failed")]}
    out = resolve_outbound(_schema(tables, choices=choices), DEFAULT_MAPPINGS)
    assert out.element("integration_status") == "status"
    assert out.status_values == {"new": "1", "in_progress": "2", "processed": "3", "error": "4"}
    row = out.to_header({"sys_id": "s", "status": "2", "supplier.erp_company_code": "V1"})
    assert (row["integration_status"], row["supplier"]) == ("in_progress", "V1")


def test_an_unrecognised_status_choice_blocks_the_invoice_flow():
    choices = {f"{doc.OUTBOUND_INVOICE}.integration_status": [Choice("1", "New"), Choice("9", "Sent")]}
    out = resolve_outbound(_schema([_table(t) for t in doc.ALL_TABLES], choices=choices), DEFAULT_MAPPINGS)
    assert out.blocked
    assert any("in progress" in f.message for f in out.findings)


def test_lines_are_numbered_by_their_number_within_each_invoice():
    out = resolve_outbound(_schema([_table(t) for t in doc.ALL_TABLES]), DEFAULT_MAPPINGS)
    rows = [{"sys_id": "c", "invoice": "H1", "number": "L0003"}, {"sys_id": "a", "invoice": "H1", "number": "L0001"},
            {"sys_id": "b", "invoice": "H2", "number": "L0002"}]
    lines = out.to_lines(rows)
    assert {(li["outbound_invoice"], li["sys_id"], li["line_number"]) for li in lines} == {
        ("H1", "a", "1"), ("H1", "c", "2"), ("H2", "b", "1")}


def test_a_missing_required_field_blocks():
    tables = [TableSchema(doc.OUTBOUND_INVOICE, tuple(c for c in _table(doc.OUTBOUND_INVOICE).columns
                                                      if c.label != "Legal entity"))]
    tables += [_table(t) for t in doc.ALL_TABLES if t != doc.OUTBOUND_INVOICE]
    out = resolve_outbound(_schema(tables), DEFAULT_MAPPINGS)
    assert out.blocked and "legal_entity" not in out.header
