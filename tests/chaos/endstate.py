"""The exact end state a sync cycle must leave, whatever happened on the way (DESIGN §7, issue 7).

``verify_end_state`` compares ServiceNow, F&O and the warehouse record by record and returns how many records it
checked, so the suites can print their figures.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from d365_snow_assets.invoices.payloads import HEADER_ENTITY
from d365_snow_assets.warehouse import Warehouse
from d365_snow_assets.warehouse.audit import SUCCESS_OUTCOMES
from d365_snow_assets.warehouse.diff import business_key
from tests.defs.conftest import Connector
from tests.defs.test_sync_cycle import _invalid_line_keys

OUTBOUND = "sn_spend_intg_outbound_invoice"
ERP = "D365FO"
# ServiceNow table → its coalesce columns (mapping/targets.py), in business-key order.
TARGETS: dict[str, tuple[str, ...]] = {
    "sn_fin_supplier": ("erp_source", "legal_entity", "supplier_code"),
    "sn_shop_purchase_order": ("erp_source", "legal_entity", "erp_po_number"),
    "sn_shop_purchase_order_line": ("erp_source", "legal_entity", "erp_po_number", "erp_po_line_number"),
    "sn_fin_gl_account": ("erp_source", "chart_of_accounts", "gl_account"),
    "cmn_cost_center": ("erp_source", "legal_entity", "code"),
}


def _money(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def expected_keys(connector: Connector) -> dict[str, Counter[str]]:
    """Per ServiceNow table, the business keys F&O says must be there (held-back PO lines excluded)."""
    fno = connector.fno
    invalid = _invalid_line_keys(connector)
    lines = Counter(business_key([ERP, r["dataAreaId"].upper(), r["PurchaseOrderNumber"], str(r["LineNumber"])])
                    for r in fno('SELECT * FROM "PurchaseOrderLinesV2"')
                    if (r["dataAreaId"].upper(), r["PurchaseOrderNumber"], str(r["LineNumber"])) not in invalid)
    return {
        "sn_fin_supplier": Counter(business_key([ERP, v["dataAreaId"].upper(), v["VendorAccountNumber"]])
                                   for v in fno('SELECT * FROM "VendorsV2"')),
        "sn_shop_purchase_order": Counter(business_key([ERP, o["dataAreaId"].upper(), o["PurchaseOrderNumber"]])
                                          for o in fno('SELECT * FROM "PurchaseOrderHeadersV2"')),
        "sn_shop_purchase_order_line": lines,
        "sn_fin_gl_account": Counter(business_key([ERP, a["ChartOfAccounts"], a["MainAccountId"]])
                                     for a in fno('SELECT * FROM "MainAccounts"')),
        "cmn_cost_center": Counter(business_key([ERP, (c["LegalEntityId"] or "").upper(), c["DimensionValue"]])
                                   for c in fno("SELECT * FROM \"FinancialDimensionValues\" "
                                                "WHERE \"FinancialDimension\" = 'CostCenter'")),
    }


def verify_end_state(connector: Connector, *, invoices: bool = True) -> int:
    """Assert the exact end state; returns the number of records compared."""
    checked = 0
    expected = expected_keys(connector)
    wh = Warehouse(connector.home / "warehouse.duckdb")
    with wh.reader() as con:
        pushed = con.execute("SELECT target, business_key, target_id, deactivated FROM pushed_state").fetchall()
        audit = con.execute(
            "SELECT entity, business_key, outcome, target_id, attempt, run_id, message, asset_key FROM audit "
            "ORDER BY \"at\", attempt").fetchall()
    pushed_count = Counter((t, k) for t, k, _, _ in pushed)
    assert not [k for k, n in pushed_count.items() if n > 1], "pushed_state holds a key twice"
    pushed_by = {(t, k): (tid, deact) for t, k, tid, deact in pushed}
    success = {(e, k, tid) for e, k, o, tid, *_ in audit if o in SUCCESS_OUTCOMES}
    latest: dict[tuple[str, str], str] = {}
    for e, k, o, *_ in audit:
        latest[(e, k)] = o
    for table, columns in TARGETS.items():
        rows = connector.snow(table, f"erp_source={ERP}")
        actual = Counter(business_key([r[c] for c in columns]) for r in rows)
        doubled = {k: n for k, n in actual.items() if n > 1}
        assert not doubled, f"{table}: duplicates in ServiceNow {list(doubled)[:5]}"
        missing, extra = expected[table] - actual, actual - expected[table]
        assert not missing and not extra, f"{table}: missing {list(missing)[:5]}, unexpected {list(extra)[:5]}"
        for row in rows:
            key = business_key([row[c] for c in columns])
            # Every record in ServiceNow is the one the warehouse says it pushed, and that push is audited.
            assert (table, key) in pushed_by, f"{table} {key}: in ServiceNow without pushed state"
            target_id, _ = pushed_by[(table, key)]
            assert target_id == row["sys_id"], f"{table} {key}: pushed state names {target_id}, not {row['sys_id']}"
            assert (table, key, target_id) in success, f"{table} {key}: no success audit row for {target_id}"
            assert latest[(table, key)] in SUCCESS_OUTCOMES, f"{table} {key}: last audit is {latest[(table, key)]}"
            checked += 1
        assert sum(1 for t, _k in pushed_by if t == table) == len(rows), f"{table}: pushed state ≠ ServiceNow"
    # No pushed_state row without its success audit row, for every target (payment details included).
    for (table, key), (target_id, _) in pushed_by.items():
        assert (table, key, target_id) in success, f"{table} {key}: pushed state without an audit row"
    # Held-back lines: audited rejected with a message, never in ServiceNow.
    invalid = {business_key([ERP, *k]) for k in _invalid_line_keys(connector)}
    rejected = {k for (e, k), o in latest.items() if e == "sn_shop_purchase_order_line" and o == "rejected"}
    assert rejected == invalid
    assert all(msg for e, _k, o, _t, _a, _r, msg, _ak in audit if o in ("rejected", "error"))
    _verify_field_values(connector)
    if invoices:
        checked += _verify_invoices(connector, audit)
    return checked


def _verify_field_values(connector: Connector) -> None:
    """A few mapped fields per table, compared with F&O."""
    vendors = {(v["dataAreaId"].upper(), v["VendorAccountNumber"]): v
               for v in connector.fno('SELECT * FROM "VendorsV2"')}
    for s in connector.snow("sn_fin_supplier", f"erp_source={ERP}"):
        v = vendors[(s["legal_entity"], s["supplier_code"])]
        name = (f"{v['PersonFirstName']} {v['PersonLastName']}".strip() if v["VendorPartyType"] == "Person"
                else v["VendorOrganizationName"] or "")  # ServiceNow has no null: an empty F&O value reads ""
        assert (s["name"], s["currency"]) == (name, v["CurrencyCode"] or ""), s["supplier_code"]
        assert s["active"] == ("false" if v["OnHoldStatus"] == "All" else "true")
    lines = {(r["dataAreaId"].upper(), r["PurchaseOrderNumber"], str(r["LineNumber"])): r
             for r in connector.fno('SELECT * FROM "PurchaseOrderLinesV2"')}
    for r in connector.snow("sn_shop_purchase_order_line", f"erp_source={ERP}"):
        src = lines[(r["legal_entity"], r["erp_po_number"], r["erp_po_line_number"])]
        assert Decimal(r["unit_price"]) == Decimal(str(src["PurchasePrice"]))
        assert r["gl_account"] == (src["MainAccountIdDisplayValue"] or "")
    orders = {(o["dataAreaId"].upper(), o["PurchaseOrderNumber"]): o
              for o in connector.fno('SELECT * FROM "PurchaseOrderHeadersV2"')}
    for o in connector.snow("sn_shop_purchase_order", f"erp_source={ERP}"):
        src = orders[(o["legal_entity"], o["erp_po_number"])]
        assert (o["supplier_code"], o["currency"]) == (src["OrderVendorAccountNumber"], src["CurrencyCode"])
    accounts = {a["MainAccountId"]: a for a in connector.fno('SELECT * FROM "MainAccounts"')}
    for a in connector.snow("sn_fin_gl_account", f"erp_source={ERP}"):
        assert a["account_name"] == accounts[a["gl_account"]]["Name"]
        assert a["active"] == ("true" if accounts[a["gl_account"]]["IsSuspended"] == "No" else "false")


def _verify_invoices(connector: Connector, audit: list[tuple[Any, ...]]) -> int:
    """Every valid approved invoice once in F&O with all its lines; invalid ones rejected with a message."""
    outbound = {r["sys_id"]: r for r in connector.snow(OUTBOUND)}
    processed = {s: r for s, r in outbound.items() if r["integration_status"] == "processed"}
    errors = {s: r for s, r in outbound.items() if r["integration_status"] == "error"}
    assert set(processed) | set(errors) == set(outbound), "invoices left new or in_progress"
    wrong = {r["number"]: r["processing_message"] for s, r in errors.items()
             if s not in connector.server.world.snow.invalid_invoices}
    assert not wrong, f"valid invoices rejected: {wrong}"
    assert set(connector.server.world.snow.invalid_invoices) <= set(errors), "an invalid invoice was posted"
    assert all(r["processing_message"].strip() for r in errors.values())

    def key(le: str, account: str, number: str) -> tuple[str, str, str]:
        return le.lower(), account, number.casefold()

    headers = connector.fno('SELECT * FROM "VendorInvoiceHeaders"')
    by_key = Counter(key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"]) for h in headers)
    assert all(n == 1 for n in by_key.values()), "an invoice is in F&O twice"
    assert len(headers) == len(processed)
    header_of = {key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"]): h for h in headers}
    sn_lines = connector.snow("sn_spend_intg_outbound_invoice_line")
    fno_lines = connector.fno('SELECT * FROM "VendorInvoiceLines"')
    for sys_id, inv in processed.items():
        h = header_of[key(inv["legal_entity"], inv["supplier"], inv["supplier_invoice_number"])]
        assert inv["erp_number"] == h["HeaderReference"]
        assert _money(h["ImportedAmount"]) == _money(inv["amount_invoiced"])
        want = sorted((int(li["line_number"]), _money(li["amount"])) for li in sn_lines
                      if li["outbound_invoice"] == sys_id)
        got = sorted((int(fl["InvoiceLineNumber"]), _money(fl["Amount"])) for fl in fno_lines
                     if fl["HeaderReference"] == h["HeaderReference"] and fl["dataAreaId"] == h["dataAreaId"])
        assert got == want, f"invoice {inv['number']}: lines {got} in F&O, {want} in ServiceNow"
    for inv in errors.values():
        assert key(inv["legal_entity"], inv["supplier"], inv["supplier_invoice_number"]) not in header_of
    # Lines have audit rows of their own (their own business keys, for replay); one invoice = its header rows.
    posting = [(k, o, tid) for e, k, o, tid, _a, _r, _m, ak in audit
               if ak == "invoices/posting" and e == HEADER_ENTITY]
    final: dict[str, tuple[str, str]] = {}
    for k, o, tid in posting:
        final[k] = (o, tid)
    assert len(final) == len(outbound), f"{len(final)} invoices audited, {len(outbound)} in ServiceNow"
    assert sorted(tid for o, tid in final.values() if o in SUCCESS_OUTCOMES) == sorted(
        r["erp_number"] for r in processed.values())
    assert sum(1 for o, _ in final.values() if o == "rejected") == len(errors)
    return len(outbound)
