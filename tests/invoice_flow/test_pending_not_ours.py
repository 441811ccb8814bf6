"""A pending F&O invoice with the same natural key that is not this ServiceNow invoice's (DESIGN §5.2 step 2): an
AP clerk keyed it by hand (blank DocumentNumber) or another ServiceNow invoice made it. F&O is left untouched and
ServiceNow gets `error` naming the pending invoice; through `d365-snow sync` against the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.invoices.adapters import D365Ledger
from d365_snow_assets.settings import load_settings

from . import outbound
from .conftest import Connector


def _approved_valid_invoice(connector: Connector) -> dict[str, Any]:
    invalid = connector.server.world.snow.invalid_invoices
    return next(r for r in sorted(outbound.of(connector, "usmf", "new"), key=lambda r: r["number"])
                if r["sys_id"] not in invalid)


@pytest.mark.parametrize("document_number", ["", "OBINV-KEYED-ELSEWHERE"])
def test_a_pending_invoice_that_is_not_ours_is_a_conflict_and_f_and_o_is_untouched(connector: Connector,
                                                                                  document_number: str) -> None:
    world = connector.server.world
    outbound.sync_without_invoices(connector)
    invoice = _approved_valid_invoice(connector)
    # The clerk types the number in another case: F&O's key comparison ignores case, so it is the same invoice.
    by_hand = world.d365.admin_insert("VendorInvoiceHeaders", {
        "dataAreaId": "usmf", "InvoiceAccount": invoice["supplier"],
        "InvoiceNumber": invoice["supplier_invoice_number"].lower(), "DocumentNumber": document_number,
        "Currency": "USD", "InvoiceDate": "2026-05-01"})
    reference = by_hand["HeaderReference"]
    with D365Client(load_settings()) as client:
        found = D365Ledger(client).find_pending("usmf", invoice["supplier"], invoice["supplier_invoice_number"])
    assert found is not None and found.header_reference == reference
    assert found.document_number == document_number  # what posting decides on: blank stays blank, never "unknown"
    before = connector.fno('SELECT * FROM "VendorInvoiceHeaders" WHERE "HeaderReference" = ?', [reference])

    summary = connector.sync()

    assert summary["ok"]  # a conflict is for the clerk to resolve: a business outcome, not a failed cycle
    assert connector.fno('SELECT * FROM "VendorInvoiceHeaders" WHERE "HeaderReference" = ?', [reference]) == before
    assert connector.fno('SELECT * FROM "VendorInvoiceLines" WHERE "HeaderReference" = ?', [reference]) == []
    same_key = [h for h in connector.fno('SELECT * FROM "VendorInvoiceHeaders" WHERE "dataAreaId" = ? AND '
                                         '"InvoiceAccount" = ?', ["usmf", invoice["supplier"]])
                if h["InvoiceNumber"].casefold() == invoice["supplier_invoice_number"].casefold()]
    assert [h["HeaderReference"] for h in same_key] == [reference]
    after = outbound.invoices(connector)[invoice["sys_id"]]
    assert after["status"] == "error"
    assert reference in after["message"]
    assert (document_number or "a manual entry") in after["message"]
    # Every other valid invoice went through as usual.
    invalid = world.snow.invalid_invoices
    others = [r for r in outbound.invoices(connector).values()
              if r["sys_id"] != invoice["sys_id"] and r["sys_id"] not in invalid]
    assert others and {r["status"] for r in others} == {"processed"}
