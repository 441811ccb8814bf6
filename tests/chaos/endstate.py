"""The exact end state a sync cycle must leave, whatever happened on the way (DESIGN §7, issue 7).

``verify_end_state`` compares ServiceNow, F&O and the warehouse record by record and returns how many records it
checked, so the suites can print their figures. ServiceNow is read by documented label (tests/snow_view.py), so the
same check holds on the documented and on the variant instance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from d365_snow_assets.invoices.payloads import HEADER_ENTITY
from d365_snow_assets.warehouse import Warehouse
from d365_snow_assets.warehouse.audit import SUCCESS_OUTCOMES
from d365_snow_assets.warehouse.diff import business_key
from tests.defs.conftest import Connector
from tests.snow_view import ERP, SnowView

OUTBOUND = "sn_spend_intg_outbound_invoice"

# ServiceNow target table → how to read a record's business key there (label paths, references followed), in
# the order of the connector's key (mapping/targets.py).
KEY_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sn_fin_legal_entity": (("ERP Source", "ERP Source"), ("ERP company code",)),
    "sn_fin_supplier": (("ERP source",), ("ERP company code",)),
    "sn_fin_supplier_detail": (("ERP source",), ("Supplier", "ERP company code"), ("Legal entity", "ERP company code")),
    "sn_shop_purchase_order": (("ERP source",), ("Legal entity", "ERP company code"), ("ERP number",)),
    "sn_shop_purchase_order_line": (("ERP source",), ("Purchase order", "Legal entity", "ERP company code"),
                                    ("Purchase order", "ERP number"), ("ERP line number",)),
    "sn_fin_gl_account": (("ERP source",), ("Ledger account",)),
    "cmn_cost_center": (("ERP Source",), ("Legal entity", "ERP company code"), ("Code",)),
}


def _money(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _yes(value: object) -> bool:
    return str(value) == "Yes"


def _cost_center_segment(display: str) -> str:
    """The CostCenter segment (the first; a hyphen inside a value is escaped with a backslash)."""
    return (display or "").replace("\\-", "\x00").split("-")[0].replace("\x00", "-")


def configured(connector: Connector) -> list[str]:
    return [le.lower() for le in connector.env["D365SNOW_LEGAL_ENTITIES"].split(",")]


def invalid_line_keys(connector: Connector) -> set[tuple[str, str, str]]:
    """PO lines naming a GL account or cost center that does not exist or is suspended (a blank one is no
    reference, DESIGN §5.1), computed from F&O directly."""
    accounts = {r["MainAccountId"]: r["IsSuspended"] for r in connector.fno('SELECT * FROM "MainAccounts"')}
    centers = {((r["LegalEntityId"] or "").lower(), r["DimensionValue"]): r["IsSuspended"] for r in connector.fno(
        "SELECT * FROM \"FinancialDimensionValues\" WHERE \"FinancialDimension\" = 'CostCenter'")}
    invalid = set()
    for line in connector.fno('SELECT * FROM "PurchaseOrderLinesV2"'):
        le = line["dataAreaId"].lower()
        gl = line["MainAccountIdDisplayValue"] or ""
        cc = _cost_center_segment(line["DefaultLedgerDimensionDisplayValue"])
        bad_gl = gl != "" and accounts.get(gl) != "No"
        bad_cc = cc != "" and centers.get((le, cc), centers.get(("", cc))) != "No"
        if bad_gl or bad_cc:
            invalid.add((le.upper(), line["PurchaseOrderNumber"], str(line["LineNumber"])))
    return invalid


def conflicting_accounts(connector: Connector) -> set[str]:
    """Vendor accounts that name different parties in the configured companies: held back."""
    parties: dict[str, set[str]] = {}
    for v in connector.fno('SELECT * FROM "VendorsV2"'):
        if v["dataAreaId"].lower() in configured(connector):
            parties.setdefault(v["VendorAccountNumber"], set()).add(v["VendorPartyNumber"])
    return {account for account, found in parties.items() if len(found) > 1}


def expected_keys(connector: Connector) -> dict[str, Counter[str]]:
    """Per ServiceNow table, the business keys F&O says must be there (held-back records excluded)."""
    fno, les = connector.fno, configured(connector)
    invalid, conflicts = invalid_line_keys(connector), conflicting_accounts(connector)
    vendors = [v for v in fno('SELECT * FROM "VendorsV2"') if v["dataAreaId"].lower() in les
               and v["VendorAccountNumber"] not in conflicts]
    lines = Counter(business_key([ERP, r["dataAreaId"].upper(), r["PurchaseOrderNumber"], str(r["LineNumber"])])
                    for r in fno('SELECT * FROM "PurchaseOrderLinesV2"') if r["dataAreaId"].lower() in les
                    and (r["dataAreaId"].upper(), r["PurchaseOrderNumber"], str(r["LineNumber"])) not in invalid)
    return {
        "sn_fin_legal_entity": Counter(business_key([ERP, e["LegalEntityId"].upper()])
                                       for e in fno('SELECT * FROM "LegalEntities"')
                                       if e["LegalEntityId"].lower() in les),
        "sn_fin_supplier": Counter({business_key([ERP, v["VendorAccountNumber"]]): 1 for v in vendors}),
        "sn_fin_supplier_detail": Counter(business_key([ERP, v["VendorAccountNumber"], v["dataAreaId"].upper()])
                                          for v in vendors),
        "sn_shop_purchase_order": Counter(business_key([ERP, o["dataAreaId"].upper(), o["PurchaseOrderNumber"]])
                                          for o in fno('SELECT * FROM "PurchaseOrderHeadersV2"')
                                          if o["dataAreaId"].lower() in les),
        "sn_shop_purchase_order_line": lines,
        "sn_fin_gl_account": Counter(business_key([ERP, a["MainAccountId"]])
                                     for a in fno('SELECT * FROM "MainAccounts"')),
        "cmn_cost_center": Counter(business_key([ERP, (c["LegalEntityId"] or "").upper(), c["DimensionValue"]])
                                   for c in fno("SELECT * FROM \"FinancialDimensionValues\" WHERE "
                                                "\"FinancialDimension\" = 'CostCenter'")
                                   if (c["LegalEntityId"] or "").lower() in ("", *les)),
    }


def snow_keys(view: SnowView, table: str) -> list[tuple[str, dict[str, str]]]:
    """(business key, row) of every record of ``table`` with this connector's ERP source."""
    erp_path, *key_paths = KEY_PATHS[table]
    return [(business_key([ERP, *(view.get(table, row, *path) for path in key_paths)]), row)
            for row in view.ours(table, *erp_path)]


def verify_end_state(connector: Connector, *, invoices: bool = True) -> int:
    """Assert the exact end state; returns the number of records compared."""
    checked = 0
    expected = expected_keys(connector)
    view = SnowView(connector.server.world.snow)
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
    for table in KEY_PATHS:
        records = snow_keys(view, table)
        actual = Counter(key for key, _ in records)
        doubled = {k: n for k, n in actual.items() if n > 1}
        assert not doubled, f"{table}: duplicates in ServiceNow {list(doubled)[:5]}"
        missing, extra = expected[table] - actual, actual - expected[table]
        assert not missing and not extra, f"{table}: missing {list(missing)[:5]}, unexpected {list(extra)[:5]}"
        for key, row in records:
            # Every record in ServiceNow is the one the warehouse says it pushed, and that push is audited.
            assert (table, key) in pushed_by, f"{table} {key}: in ServiceNow without pushed state"
            target_id, _ = pushed_by[(table, key)]
            assert target_id == row["sys_id"], f"{table} {key}: pushed state names {target_id}, not {row['sys_id']}"
            assert (table, key, target_id) in success, f"{table} {key}: no success audit row for {target_id}"
            assert latest[(table, key)] in SUCCESS_OUTCOMES, f"{table} {key}: last audit is {latest[(table, key)]}"
            checked += 1
        assert sum(1 for t, _k in pushed_by if t == table) == len(records), f"{table}: pushed state ≠ ServiceNow"
    # No pushed_state row without its success audit row, for every target (payment details included).
    for (table, key), (target_id, _) in pushed_by.items():
        assert (table, key, target_id) in success, f"{table} {key}: pushed state without an audit row"
    # Held back: audited rejected with a message, never in ServiceNow.
    invalid = {business_key([ERP, *k]) for k in invalid_line_keys(connector)}
    rejected = {k for (e, k), o in latest.items() if e == "sn_shop_purchase_order_line" and o == "rejected"}
    assert rejected == invalid
    conflicts = conflicting_accounts(connector)
    assert {k for (e, k), o in latest.items() if e == "sn_fin_supplier" and o == "rejected"} == {
        business_key([ERP, a]) for a in conflicts}
    assert all(msg for e, _k, o, _t, _a, _r, msg, _ak in audit if o in ("rejected", "error"))
    _verify_field_values(connector, view)
    if invoices:
        checked += _verify_invoices(connector, view, audit)
    return checked


def _by_key(view: SnowView, table: str) -> dict[str, dict[str, str]]:
    return dict(snow_keys(view, table))


def _verify_field_values(connector: Connector, view: SnowView) -> None:
    """A few mapped fields per table, compared with F&O (through the instance's own columns)."""
    def get(table: str) -> Callable[..., Any]:
        return lambda row, *path: view.get(table, row, *path)

    first_company: dict[str, dict[str, Any]] = {}
    for v in connector.fno('SELECT * FROM "VendorsV2" ORDER BY "dataAreaId"'):
        if v["dataAreaId"].lower() in configured(connector):
            rank = configured(connector).index(v["dataAreaId"].lower())
            held = first_company.get(v["VendorAccountNumber"])
            if held is None or rank < configured(connector).index(held["dataAreaId"].lower()):
                first_company[v["VendorAccountNumber"]] = v
    first_by_key = {business_key([ERP, account]): v for account, v in first_company.items()}
    supplier = get("sn_fin_supplier")
    for key, s in _by_key(view, "sn_fin_supplier").items():
        v = first_by_key[key]
        name = (f"{v['PersonFirstName']} {v['PersonLastName']}".strip() if v["VendorPartyType"] == "Person"
                else v["VendorOrganizationName"] or "")  # ServiceNow has no null: an empty F&O value reads ""
        assert supplier(s, "Legal Name") == name, key
    lines = {business_key([ERP, r["dataAreaId"].upper(), r["PurchaseOrderNumber"], str(r["LineNumber"])]): r
             for r in connector.fno('SELECT * FROM "PurchaseOrderLinesV2"')}
    line = get("sn_shop_purchase_order_line")
    for key, r in _by_key(view, "sn_shop_purchase_order_line").items():
        src = lines[key]
        assert Decimal(line(r, "Unit price")) == Decimal(str(src["PurchasePrice"])), key
        assert line(r, "General Ledger Account", "Ledger account") == (src["MainAccountIdDisplayValue"] or ""), key
    accounts = {business_key([ERP, a["MainAccountId"]]): a for a in connector.fno('SELECT * FROM "MainAccounts"')}
    account = get("sn_fin_gl_account")
    for key, a in _by_key(view, "sn_fin_gl_account").items():
        assert account(a, "Account Name") == accounts[key]["Name"]
        assert account(a, "Inactive") == ("true" if _yes(accounts[key]["IsSuspended"]) else "false")


def _verify_invoices(connector: Connector, view: SnowView, audit: list[tuple[Any, ...]]) -> int:
    """Every valid approved invoice once in F&O with all its lines; invalid ones rejected with a message."""
    snow = connector.server.world.snow
    assert snow.invoices_waiting() == 0, "approved invoices still waiting for their references"
    outbound = {inv["sys_id"]: inv for inv in view.outbound_invoices()}
    processed = {s: r for s, r in outbound.items() if r["status"] == "processed"}
    errors = {s: r for s, r in outbound.items() if r["status"] == "error"}
    assert set(processed) | set(errors) == set(outbound), "invoices left new or in_progress"
    wrong = {r["number"]: r["message"] for s, r in errors.items() if s not in snow.invalid_invoices}
    assert not wrong, f"valid invoices rejected: {wrong}"
    assert set(snow.invalid_invoices) <= set(errors), "an invalid invoice was posted"
    assert all(r["message"].strip() for r in errors.values())

    def key(le: str, account: str, number: str) -> tuple[str, str, str]:
        return le.lower(), account, number.casefold()

    headers = connector.fno('SELECT * FROM "VendorInvoiceHeaders"')
    by_key = Counter(key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"]) for h in headers)
    assert all(n == 1 for n in by_key.values()), "an invoice is in F&O twice"
    assert len(headers) == len(processed)
    header_of = {key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"]): h for h in headers}
    fno_lines = connector.fno('SELECT * FROM "VendorInvoiceLines"')
    for inv in processed.values():
        h = header_of[key(inv["legal_entity"], inv["supplier"], inv["supplier_invoice_number"])]
        assert inv["erp_number"] == h["HeaderReference"]
        assert _money(h["ImportedAmount"]) == _money(inv["amount_invoiced"])
        # InvoiceLineNumber is the line's position on the invoice in the order of the lines' Number.
        want = [(n, _money(amount)) for n, amount in enumerate(inv["lines"], start=1)]
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
