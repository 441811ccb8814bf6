"""The bad-input catalogue (issue 7): each case with its expected clear outcome, and nothing else affected.

Every case runs through the real CLI (`d365-snow sync`) against the sandbox over HTTPS; after it, the whole end
state is checked as in the chaos suite (``verify_end_state``: every F&O record once in ServiceNow with F&O's
values, every valid invoice once in F&O with all its lines, every invalid one rejected with a message, all of it
audited). The README's RELIABILITY section lists the catalogue with the outcome each case must have.
"""

from __future__ import annotations

from decimal import Decimal

import dagster as dg

from d365_snow_assets.commands.runs import open_instance
from d365_snow_assets.definitions import defs
from d365_snow_assets.settings import load_settings
from tests.chaos.endstate import verify_end_state
from tests.invoice_flow import outbound
from tests.snow_view import SnowView

from .conftest import Connector
from .invoices import clone, outcome, valid_bases

TEN_KB = 10 * 1024
SUPPLIER = "sn_fin_supplier"
GL_ACCOUNT = "sn_fin_gl_account"
COST_CENTER = "cmn_cost_center"


def _no_writes(summary: dict) -> bool:
    return all(sum(c.get(k, 0) for k in ("inserted", "updated", "errors")) == 0 for c in summary["pushed"].values())


def test_pages_cut_off_or_cancelled_on_the_way_are_read_again(connector: Connector) -> None:
    """Malformed and partial JSON from both APIs: a 200 whose JSON stops half-way (F&O and ServiceNow) and
    ServiceNow's "Transaction cancelled" 200 with a truncated page plus an error object. Each is read again."""
    world = connector.server.world
    world.d365.cut_off_next_reads(3)
    world.snow.cut_off_next_gets(2)
    world.snow.cancel_next_gets(2)
    summary = connector.sync()
    assert summary["ok"]
    assert world.d365.cut_off_reads_remaining == 0 and not world.snow.broken_gets, "the broken pages were not served"
    # Read again by the client, not rescued by re-running a whole asset (slower, and each re-run re-reads it all).
    instance = open_instance(load_settings())
    runs = instance.get_runs()
    assert runs
    retried = [entry.step_key for run in runs
               for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)]
    assert not retried, retried
    verify_end_state(connector)


def test_hostile_keys_and_10_kb_values_from_fno_arrive_literally_and_stay_put(connector: Connector) -> None:
    """Quotes, carets, commas, a pipe (the business-key separator), unicode, 10 KB strings and blanks in F&O keys and
    names: they reach ServiceNow unchanged, look-ups by them match only themselves, an invoice for such a vendor
    with such a number posts once, and the next cycle writes nothing."""
    d365 = connector.server.world.d365
    accounts = ["V'Q1", "V^C2^^", "V,C3", "V|P4", "VÜ5-漢字"]
    names = ["O'Brien ^ Sons, Ltd.", "name^ORactive=true", 'Quote "this"', "Ünïcødé 漢字 🚚", "x" * TEN_KB]
    for account, name in zip(accounts, names, strict=True):
        d365.add_vendor({"dataAreaId": "usmf", "VendorAccountNumber": account, "VendorOrganizationName": name,
                         "VendorGroupId": "10", "CurrencyCode": "USD"})
    # Required in F&O's client but not in its OData contract: blank values pass through as blank (F&O is the system
    # of record; the connector does not invent a name or a currency).
    d365.add_vendor({"dataAreaId": "usmf", "VendorAccountNumber": "V-BLANK", "VendorOrganizationName": None,
                     "VendorGroupId": "10", "CurrencyCode": None})
    renamed = d365.read("SELECT DimensionValue FROM FinancialDimensionValues WHERE "
                        "FinancialDimension = 'CostCenter' LIMIT 1")[0]["DimensionValue"]
    description = "Ops, \"EMEA\" ^ 'North' " + "é" * TEN_KB
    assert d365.update_cost_center(renamed, {"Description": description})
    assert connector.sync()["ok"]
    view = SnowView(connector.server.world.snow)
    suppliers = {view.get(SUPPLIER, s, "ERP company code"): s for s in view.ours(SUPPLIER, "ERP source")}
    assert [view.get(SUPPLIER, suppliers[a], "Legal Name") for a in accounts] == names
    assert view.get(SUPPLIER, suppliers["V-BLANK"], "Legal Name") == ""
    names_of_renamed = [view.get(COST_CENTER, c, "Name") for c in view.ours(COST_CENTER, "ERP Source")
                        if view.get(COST_CENTER, c, "Code") == renamed]
    assert names_of_renamed and set(names_of_renamed) == {description}

    base = next(b for b in valid_bases(connector) if b["legal_entity"] == "USMF")
    number = "Q'1^2,3ü\"x|"
    account = next(a for a in view.ours(GL_ACCOUNT, "ERP source") if view.get(GL_ACCOUNT, a, "Inactive") == "false")
    active_centers = {((c["LegalEntityId"] or "").upper(), c["DimensionValue"]) for c in connector.fno(
        "SELECT * FROM \"FinancialDimensionValues\" WHERE \"FinancialDimension\" = 'CostCenter' AND "
        "\"IsSuspended\" = 'No' AND \"LegalEntityId\" IN ('', 'usmf')")}
    center = next(c for c in view.ours(COST_CENTER, "ERP Source") if (
        view.get(COST_CENTER, c, "Legal entity", "ERP company code"), view.get(COST_CENTER, c, "Code"))
        in active_centers)

    def gl_coded(line: dict[str, str]) -> None:  # no PO (it belongs to another vendor): an account-coded line
        line.update(purchase_order_line="", gl_account=account["sys_id"], cost_center=center["sys_id"])

    posted = clone(connector, base, number, {"supplier": suppliers["V'Q1"]["sys_id"], "purchase_order": "",
                                             "currency": "USD"}, gl_coded)
    assert connector.sync()["ok"]
    status, message = outcome(connector, posted)
    assert (status, message) == ("processed", ""), message
    headers = connector.fno('SELECT * FROM "VendorInvoiceHeaders" WHERE "InvoiceNumber" = ?', [number])
    assert [(h["dataAreaId"], h["InvoiceAccount"]) for h in headers] == [("usmf", "V'Q1")]

    again = connector.sync()
    assert again["ok"] and _no_writes(again), again["pushed"]
    assert len(connector.fno('SELECT 1 FROM "VendorInvoiceHeaders" WHERE "InvoiceNumber" = ?', [number])) == 1
    verify_end_state(connector)


def test_bad_invoices_are_rejected_with_their_reason_and_the_rest_post(connector: Connector) -> None:
    """Missing fields, wrong types, negative and zero amounts, an unknown currency, a 10 KB invoice number and an
    invoice against a purchase order canceled in F&O, in one batch with valid invoices (a credit note, a 10 KB
    line description, quotes and unicode in the number): each bad one is rejected with its own sentence, each
    good one is posted once with all its lines."""
    assert connector.sync()["ok"]
    bases = [b for b in valid_bases(connector) if b["purchase_order"]]
    closed, base = bases[0], next(b for b in bases if b["purchase_order"] != bases[0]["purchase_order"])
    connector.server.world.d365.admin_update(
        "PurchaseOrderHeadersV2", {"dataAreaId": closed["legal_entity"].lower(),
                                   "PurchaseOrderNumber": closed["purchase_order"]},
        {"PurchaseOrderStatus": "Canceled"})

    def negate(line: dict[str, str]) -> None:
        for field in ("amount", "tax_amount", "quantity"):
            line[field] = str(-Decimal(line[field]))

    def zero(line: dict[str, str]) -> None:
        line.update(amount="0.00", tax_amount="0.00")

    def long_text(line: dict[str, str]) -> None:
        line["description"] = "Ä, ^ 'quoted' " + "d" * TEN_KB

    total = base["amount_invoiced"]
    cases = {  # sys_id -> the sentence the clerk must see
        clone(connector, base, "BAD-SUPPLIER", {"supplier": ""}, invalid="missing"): "The supplier is missing.",
        clone(connector, base, "BAD-NODATE", {"invoice_date": ""}, invalid="missing"): "The invoice date is missing.",
        clone(connector, base, "BAD-DATE", {"invoice_date": "31/12/2026"}, invalid="type"):
            "The invoice date '31/12/2026' is not a valid date (expected YYYY-MM-DD).",
        clone(connector, base, "BAD-AMOUNT", {"amount_invoiced": "1.250,00"}, invalid="type"):
            "The invoiced amount '1.250,00' is not a number.",
        clone(connector, base, "BAD-QTY", line=lambda li: li.update(quantity="two"), invalid="type"):
            "the quantity 'two' is not a number.",
        clone(connector, base, "BAD-NEGATIVE", {"amount_invoiced": f"-{total}"}, negate, invalid="sign"):
            f"The invoiced amount -{Decimal(total)} must be positive on an invoice.",
        clone(connector, base, "BAD-ZERO", {"amount_invoiced": "0.00", "tax_amount": "0.00"}, zero, invalid="zero"):
            "The invoiced amount 0.00 must be positive on an invoice.",
        clone(connector, base, "BAD-CURRENCY", {"currency": "XYZ"}, invalid="currency"):
            "The currency XYZ is not a known ISO currency code.",
        clone(connector, base, "N" * TEN_KB, invalid="long"): "is longer than the 20 characters Dynamics 365 allows.",
        clone(connector, closed, "BAD-CLOSED-PO", invalid="closed"):
            f"Purchase order {closed['purchase_order']} is canceled in Dynamics 365.",
    }
    credit = clone(connector, base, "CN-1", {"invoice_type": "credit_note", "amount_invoiced": f"-{total}",
                                             "tax_amount": str(-Decimal(base["tax_amount"] or "0")),
                                             "subtotal": str(-Decimal(base["subtotal"] or "0"))}, negate)
    described = clone(connector, base, "LONG-DESC", line=long_text)
    quoted = clone(connector, base, "Ü'^,\"1")
    summary = connector.sync()
    assert summary["ok"]

    for sys_id, sentence in cases.items():
        status, message = outcome(connector, sys_id)
        assert status == "error" and sentence in message, (sentence, message)
        assert len(message) <= 4000
    for sys_id in (credit, described, quoted):
        assert outcome(connector, sys_id) == ("processed", ""), outcome(connector, sys_id)
    erp_number = outbound.invoices(connector)[described]["erp_number"]
    descriptions = [r["LineDescription"] for r in connector.fno(
        'SELECT "LineDescription" FROM "VendorInvoiceLines" WHERE "HeaderReference" = ?', [erp_number])]
    assert descriptions and all(len(d) == 1000 and d.startswith("Ä, ^ 'quoted' d") for d in descriptions)
    verify_end_state(connector)


def test_vendor_deleted_between_extract_and_posting_fails_only_that_invoice(connector: Connector) -> None:
    """F&O refuses the header of an invoice whose vendor was deleted after the snapshot that validated it: that
    invoice ends in `error` with F&O's own words, nothing of it is left in F&O, the others post."""
    assert connector.sync()["ok"]
    snow, d365 = connector.server.world.snow, connector.server.world.d365
    bases = [b for b in valid_bases(connector) if b["legal_entity"] == "USMF"]
    doomed = bases[0]
    other = next(b for b in bases if b["supplier"] != doomed["supplier"])
    lost = clone(connector, doomed, "GONE-1")
    kept = clone(connector, other, "KEPT-1")
    d365.admin_delete("VendorsV2", {"dataAreaId": "usmf", "VendorAccountNumber": doomed["supplier"]})

    # Only the invoice job: the warehouse still holds the snapshot in which the vendor existed.
    instance = open_instance(load_settings())
    job = defs().resolve_job_def("invoice_round_trip")
    result = job.execute_in_process(instance=instance, partition_key="usmf", raise_on_error=False)
    assert result.success

    status, message = outcome(connector, lost)
    assert status == "error" and doomed["supplier"] in message and "not found" in message, message
    assert not d365.read('SELECT 1 FROM "VendorInvoiceHeaders" WHERE "InvoiceNumber" = ?', ["GONE-1"])
    assert outcome(connector, kept) == ("processed", "")
    assert len(d365.read('SELECT 1 FROM "VendorInvoiceHeaders" WHERE "InvoiceNumber" = ?', ["KEPT-1"])) == 1
    snow.drain_imports()

    # Once the vendor is gone from the snapshot too, a fresh invoice for it is rejected before F&O is asked.
    late = clone(connector, doomed, "GONE-2")
    assert connector.sync()["ok"]
    status, message = outcome(connector, late)
    assert status == "error" and f"Supplier {doomed['supplier']} does not exist in Dynamics 365" in message, message
