"""The invoice round trip end to end through `d365-snow sync` (real sockets, real Dagster, exact end state):
approved ServiceNow invoices → F&O pending invoices → posted status and payments back → the month-end
reconciliation (job reconcile_invoices, one run per legal entity and month)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import dagster as dg

from d365_snow_assets.commands.runs import launch, load_definitions, open_instance
from d365_snow_assets.settings import load_settings
from d365_snow_assets.warehouse import Warehouse

from . import outbound
from .conftest import Connector


def _outbound(connector: Connector) -> dict[str, dict[str, Any]]:
    return outbound.invoices(connector)


def _fno_key(le: str, account: str, number: str) -> tuple[str, str, str]:
    return le.lower(), account, number.casefold()


def _money(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _reconcile(connector: Connector) -> dict[tuple[str, str], int]:
    """Run reconcile_invoices for every legal entity and month with processed invoices: mismatches per partition,
    each partition's no_mismatches check agreeing with its count."""
    months = {(r["legal_entity"].lower(), r["invoice_date"][:7] + "-01")
              for r in outbound.of(connector, status="processed")}
    instance, definitions = open_instance(load_settings()), load_definitions()
    found = {}
    for le, month in sorted(months):
        result = launch(definitions, instance, "reconcile_invoices",
                        partition=dg.MultiPartitionKey({"legal_entity": le, "month": month}))
        assert result.success
        [materialization] = result.asset_materializations_for_node("invoices__reconciliation")
        [evaluation] = result.get_asset_check_evaluations()
        found[(le, month)] = materialization.metadata["mismatches"].value
        assert evaluation.passed == (found[(le, month)] == 0)
    return found


def test_round_trip_posts_rejects_and_brings_status_and_payments_back(connector: Connector) -> None:
    summary = connector.sync()
    assert summary["ok"]
    assert not any(_reconcile(connector).values())
    invoices = _outbound(connector)
    invalid = connector.server.world.snow.invalid_invoices
    processed = {s: r for s, r in invoices.items() if r["status"] == "processed"}
    errors = {s: r for s, r in invoices.items() if r["status"] == "error"}
    assert set(processed) | set(errors) == set(invoices)  # nothing left new / in_progress
    assert set(invalid) <= set(errors)
    assert all(r["message"].strip() for r in errors.values())
    # The CLI summary tells the same story as ServiceNow.
    assert summary["invoices"] == {"created": len(processed), "reused": 0, "posted": 0, "skipped": 0,
                                   "rejected": len(errors), "error": 0, "retry_next_run": 0}

    # Exactly one pending F&O invoice per processed ServiceNow invoice, and none for the rejected ones.
    headers = connector.fno('SELECT * FROM "VendorInvoiceHeaders"')
    by_key = Counter(_fno_key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"]) for h in headers)
    assert all(n == 1 for n in by_key.values())
    assert len(headers) == len(processed)
    header_of = {_fno_key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"]): h for h in headers}
    fno_lines = connector.fno('SELECT * FROM "VendorInvoiceLines"')
    for inv in processed.values():
        h = header_of[_fno_key(inv["legal_entity"], inv["supplier"], inv["supplier_invoice_number"])]
        assert inv["erp_number"] == h["HeaderReference"]
        assert h["DocumentNumber"] == inv["number"]
        assert _money(h["ImportedAmount"]) == _money(inv["amount_invoiced"])
        expected = [(n, _money(li["amount"]), Decimal(li["quantity"] or 0))
                    for n, li in enumerate(inv["line_details"], start=1)]
        actual = sorted((int(fl["InvoiceLineNumber"]), _money(fl["Amount"]), Decimal(str(fl["InventNow"] or 0)))
                        for fl in fno_lines if fl["HeaderReference"] == h["HeaderReference"]
                        and fl["dataAreaId"] == h["dataAreaId"])
        assert actual == expected, inv["number"]
    for inv in errors.values():
        assert _fno_key(inv["legal_entity"], inv["supplier"], inv["supplier_invoice_number"]) not in header_of

    audit = Warehouse(connector.home / "warehouse.duckdb")
    with audit.reader() as con:
        rejected = {r[0] for r in con.execute(
            "SELECT business_key FROM audit WHERE asset_key = 'invoices/posting' AND outcome = 'rejected'").fetchall()}
    assert len(rejected) == len(errors)

    # F&O posts every pending invoice and pays two of them: one in full, one partially.
    world = connector.server.world
    world.d365.post_invoices()
    ordered = sorted(processed.values(), key=lambda r: r["number"])
    full, partial = ordered[0], ordered[1]
    paid = world.d365.pay_invoices([
        {"InvoiceId": full["supplier_invoice_number"], "dataAreaId": full["legal_entity"].lower(),
         "InvoiceAccount": full["supplier"]},
        {"InvoiceId": partial["supplier_invoice_number"], "dataAreaId": partial["legal_entity"].lower(),
         "InvoiceAccount": partial["supplier"], "Amount": 10},
    ])
    assert len(paid["paid"]) == 2, paid

    summary = connector.sync()
    assert summary["ok"]
    assert not any(_reconcile(connector).values())
    jour = {_fno_key(j["dataAreaId"], j["InvoiceAccount"], j["InvoiceId"]): j
            for j in connector.fno('SELECT * FROM "VendInvoiceJourBiEntities"')}
    after = _outbound(connector)
    for sys_id in processed:
        inv = after[sys_id]
        j = jour[_fno_key(inv["legal_entity"], inv["supplier"], inv["supplier_invoice_number"])]
        assert inv["erp_number"] == j["LedgerVoucher"]
        assert inv["erp_posting_date"] == str(j["InvoiceDate"])[:10]
    assert outbound.shop_invoice(connector, full["sys_id"])["state"] == "paid"
    partial_invoice = outbound.shop_invoice(connector, partial["sys_id"])
    assert partial_invoice["state"] == "pending_payment"
    assert _money(partial_invoice["amount_paid"]) == Decimal("10.00")
    others = [outbound.shop_invoice(connector, s)["state"] for s in processed
              if s not in (full["sys_id"], partial["sys_id"])]
    assert set(others) == {"pending_payment"}

    # A third sync with nothing changed sends nothing again and still reconciles.
    imports_before = len(connector.snow("sys_import_set_row"))
    summary = connector.sync()
    assert summary["ok"] and not any(_reconcile(connector).values())
    assert len(connector.snow("sys_import_set_row")) == imports_before

    # An invoice changed in ServiceNow behind the connector's back is reported by its month's reconciliation only.
    changed = after[ordered[2]["sys_id"]]
    outbound.update(connector, changed["sys_id"], {"Amount invoiced": str(_money(changed["amount_invoiced"]) + 1)})
    assert connector.sync()["ok"]
    mismatches = _reconcile(connector)
    assert {k: v for k, v in mismatches.items() if v} == {
        (changed["legal_entity"].lower(), changed["invoice_date"][:7] + "-01"): 1}


def test_a_month_is_reconciled_from_that_month_alone(connector: Connector) -> None:
    connector.sync()
    assert not any(_reconcile(connector).values())
    # A month without invoices costs one ServiceNow query and nothing of F&O: the work follows the month.
    d365 = connector.server.world.faults["d365"].counters
    before = d365.requests
    result = launch(load_definitions(), open_instance(load_settings()), "reconcile_invoices",
                    partition=dg.MultiPartitionKey({"legal_entity": "usmf", "month": "2025-01-01"}))
    assert result.success
    [materialization] = result.asset_materializations_for_node("invoices__reconciliation")
    assert materialization.metadata["dagster/row_count"].value == 0
    assert d365.requests == before
