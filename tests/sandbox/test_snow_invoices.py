"""Approved invoices on the documented schema: planned from F&O, materialized only once every record they reference
exists in ServiceNow, three per second; the APO rules Approved → Pending payment → Paid (reference §7)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.d365 import D365State
from d365_snow_assets.sandbox.servicenow import SnowState

from .snow_world import fno_records, push_in_process

OUT = "sn_spend_intg_outbound_invoice"
LINES = "sn_spend_intg_outbound_invoice_line"
INVOICE = "sn_shop_invoice"
PAYMENT_STAGE = "sn_spend_intg_imp_invoice_payment_detail"
NEW, PROCESSED, ERROR = "10", "30", "40"


def test_invoices_appear_only_once_every_record_they_reference_exists(server):
    snow = server.world.snow
    snow.set_switches(invoices_per_second=1_000)
    records = fno_records(server.world.d365, server.world.config.data.legal_entities)
    assert snow.dump(OUT) == [] and snow.invoices_waiting() == 20
    for staging, rows in records.items():
        if staging != "sn_fcms_intg_imp_order_line":
            snow.import_records(staging, rows)
    assert snow.dump(OUT) == [] and snow.invoices_waiting() == 20  # no PO line exists yet
    snow.import_records("sn_fcms_intg_imp_order_line", records["sn_fcms_intg_imp_order_line"])
    assert len(snow.dump(OUT)) == 20 and snow.invoices_waiting() == 0
    assert len(snow.dump(INVOICE)) == 20 and len(snow.dump("sn_fin_base_invoice")) == 20
    # Nothing appears twice when the master data is pushed again.
    push_in_process(server.world)
    assert len(snow.dump(OUT)) == 20


@pytest.mark.parametrize("per_second", [3, 7])
def test_invoices_appear_a_few_per_second_from_the_moment_their_references_exist(per_second: int) -> None:
    now = [1_800_000_000.0]
    config = SandboxConfig(data=SandboxDataSize.small(), snow_invoices_per_second=per_second)
    snow = SnowState(config, D365State(config), clock=lambda: now[0])
    for staging, rows in fno_records(snow.d365, config.data.legal_entities).items():
        snow.import_records(staging, rows)
    assert len(snow.dump(OUT)) == per_second and snow.invoices_scheduled() == 20 - per_second
    assert {r["sys_created_on"] for r in snow.dump(OUT)} == {"2027-01-15 08:00:00"}
    now[0] += 2
    assert len(snow.dump(OUT)) == min(3 * per_second, 20)
    now[0] += 60
    stamps = Counter(r["sys_updated_on"] for r in snow.dump(OUT))
    assert sorted(stamps.values()) == sorted([20 % per_second] * bool(20 % per_second) + [per_second] * (
        20 // per_second))
    assert snow.invoices_waiting() == 0


def test_outbound_invoices_hold_references_to_the_pushed_records(invoices):
    snow = invoices.world.snow
    f_and_o = {(r["dataAreaId"].upper(), r["PurchaseOrderNumber"]): r
               for r in snow.d365.read("SELECT * FROM PurchaseOrderHeadersV2")}
    headers = snow.dump(OUT)
    assert {r["integration_status"] for r in headers} == {NEW} and {r["erp_source"] for r in headers} == {"D365FO"}
    for out in headers:
        row = snow.select(OUT, f"sys_id={out['sys_id']}")[0]
        le = snow.tables["sn_fin_legal_entity"].rows[row["legal_entity"]]["erp_company_code"]
        po = snow.tables["sn_shop_purchase_order"].rows[row["purchase_order"]]
        supplier = snow.tables["sn_fin_supplier"].rows[row["supplier"]]
        fo = f_and_o[(le, po["erp_number"])]
        assert supplier["erp_company_code"] == fo["InvoiceVendorAccountNumber"]
        assert snow.tables["sn_shop_payment_term"].rows[row["payment_terms"]]["name"] == fo["PaymentTermsName"]
        lines = snow.dump(LINES, f"invoice={out['sys_id']}")
        assert lines and {x["integration_status"] for x in lines} == {NEW}
        for line in lines:
            po_line = snow.tables["sn_shop_purchase_order_line"].rows[line["purchase_order_line"]]
            assert po_line["purchase_order"] == out["purchase_order"]
        invoice = snow.tables[INVOICE].rows[snow.apo.invoice_of_outbound[out["sys_id"]]]
        assert invoice["state"] == "approved" and invoice["invoice_amount"] == out["amount_invoiced"]
        assert invoice["supplier"] == out["supplier"] and invoice["purchase_order"] == out["purchase_order"]
    # Item lines without a main account and lines without a cost center reach invoices as blank references.
    lines = snow.dump(LINES)
    assert any(x["gl_account"] == "" for x in lines) and any(x["cost_center"] == "" for x in lines)


def test_invalid_invoices_are_invalid_for_exactly_the_recorded_reasons(invoices):
    snow = invoices.world.snow
    d365 = snow.d365
    accounts = {r["MainAccountId"]: r["IsSuspended"] for r in d365.read("SELECT * FROM MainAccounts")}
    centers = {(r["LegalEntityId"].upper(), r["DimensionValue"]): r["IsSuspended"] for r in d365.read(
        "SELECT * FROM FinancialDimensionValues WHERE FinancialDimension = 'CostCenter'")}
    holds = {(r["dataAreaId"].upper(), r["VendorAccountNumber"]): r["OnHoldStatus"]
             for r in d365.read("SELECT * FROM VendorsV2")}
    tables = snow.tables
    assert Counter(k for kinds in snow.invalid_invoices.values() for k in kinds) == Counter(
        {"unknown_gl_account": 1, "suspended_cost_center": 1, "vendor_on_hold": 1, "amount_mismatch": 1})
    for out in snow.dump(OUT):
        le = tables["sn_fin_legal_entity"].rows[out["legal_entity"]]["erp_company_code"]
        supplier = tables["sn_fin_supplier"].rows[out["supplier"]]["erp_company_code"]
        problems = set()
        if holds[(le, supplier)] in ("All", "Invoice"):
            problems.add("vendor_on_hold")
        total = Decimal(out["tax_amount"])
        for line in snow.dump(LINES, f"invoice={out['sys_id']}"):
            total += Decimal(line["line_amount_invoiced"])
            if line["gl_account"]:
                account = tables["sn_fin_gl_account"].rows[line["gl_account"]]
                if account["erp_source"] != "D365FO" or accounts.get(account["gl_account"], "Yes") == "Yes":
                    problems.add("unknown_gl_account")
                    assert account["gl_account"] not in accounts and account["sys_created_by"] == "ap.admin"
            if line["cost_center"]:
                code = tables["cmn_cost_center"].rows[line["cost_center"]]["code"]
                if (centers.get((le, code)) or centers.get(("", code))) != "No":
                    problems.add("suspended_cost_center")
        if total != Decimal(out["amount_invoiced"]):
            problems.add("amount_mismatch")
        assert problems == set(snow.invalid_invoices.get(out["sys_id"], [])), out["number"]


def test_approving_creates_invoices_at_once_when_their_references_exist(server):
    snow = server.world.snow
    assert snow.approve_invoices(2) == [] and snow.invoices_waiting() == 22
    push_in_process(server.world)
    created = snow.approve_invoices(3)
    assert len(created) == 3 and len(snow.dump(OUT)) == 25
    assert not set(created) & set(snow.invalid_invoices)


def pay(client, snow: SnowState, erp_number: str, supplier_code: str, amount: str, ref: str,
        source: str = "D365FO") -> dict:
    """A payment detail by LABEL through insertMultiple (the documented default mapping), transformed at once."""
    snow.set_insert_multiple(PAYMENT_STAGE, "label", "synchronous")
    record = {"ERP Source": source, "ERP invoice number": erp_number, "ERP supplier code": supplier_code,
              "Currency": "USD", "Payment amount": amount, "Payment date": "2026-01-31",
              "Payment method": "bank_transfer", "Payment reference ID": ref, "Scheduled payment date": "2026-02-01"}
    body = client.post(f"/api/now/import/{PAYMENT_STAGE}/insertMultiple", json={"records": [record]}).json()
    return body["result"][0]


def _invoice(snow, out: dict) -> dict:
    return snow.tables[INVOICE].rows[snow.apo.invoice_of_outbound[out["sys_id"]]]


def test_processed_moves_the_invoice_to_pending_payment_and_its_payments_to_paid(invoices, client):
    snow = invoices.world.snow
    out = next(r for r in snow.dump(OUT) if "'" in r["supplier_invoice_number"])
    code = snow.tables["sn_fin_supplier"].rows[out["supplier"]]["erp_company_code"]
    r = client.patch(f"/api/now/table/{OUT}/{out['sys_id']}",
                     json={"integration_status": PROCESSED, "erp_number": "APINV-000123",
                           "erp_posting_date": "2026-01-15"})
    assert r.status_code == 200
    inv = _invoice(snow, out)
    assert inv["state"] == "pending_payment" and inv["erp_number"] == "APINV-000123"
    assert inv["erp_posting_date"] == "2026-01-15"

    total = Decimal(inv["invoice_amount"])
    part = (total / 3).quantize(Decimal("0.01"))
    first = pay(client, snow, "APINV-000123", code, str(part), "PAY-0001")
    assert first["status"] == "inserted" and first["table"] == "sn_shop_invoice_payment_detail"
    assert _invoice(snow, out)["state"] == "pending_payment"
    # Re-sent: ignored, not paid twice.
    assert pay(client, snow, "APINV-000123", code, str(part), "PAY-0001")["status"] == "ignored"
    assert pay(client, snow, "APINV-000123", "SOMEONE-ELSE", str(total), "PAY-X")["status"] == "inserted"
    assert pay(client, snow, "APINV-000123", code, str(total), "PAY-Y", source="SAP")["status"] == "inserted"
    assert _invoice(snow, out)["state"] == "pending_payment"  # another supplier's or ERP's payment is not this one
    pay(client, snow, "APINV-000123", code, str(total - part), "PAY-0002")
    final = _invoice(snow, out)
    assert final["state"] == "paid" and final["payment_date"] == "2026-01-31"
    detail = client.get("/api/now/table/sn_shop_invoice_payment_detail",
                        params={"sysparm_query": "payment_reference_id=PAY-0002"}).json()["result"][0]
    assert detail["invoice"]["value"] == final["sys_id"]


def test_payment_before_posting_waits_for_the_erp_number_and_error_does_not_move(invoices, client):
    snow = invoices.world.snow
    outs = snow.dump(OUT)
    inv = _invoice(snow, outs[0])
    code = snow.tables["sn_fin_supplier"].rows[outs[0]["supplier"]]["erp_company_code"]
    pay(client, snow, "APINV-EARLY", code, inv["invoice_amount"], "PAY-EARLY")
    assert _invoice(snow, outs[0])["state"] == "approved"
    # Posting confirmed afterwards with that voucher: the payment already covers it.
    client.patch(f"/api/now/table/{OUT}/{outs[0]['sys_id']}",
                 json={"integration_status": PROCESSED, "erp_number": "APINV-EARLY"})
    assert _invoice(snow, outs[0])["state"] == "paid"
    client.patch(f"/api/now/table/{OUT}/{outs[1]['sys_id']}",
                 json={"integration_status": ERROR, "processing_message": "Vendor on hold"})
    assert _invoice(snow, outs[1])["state"] == "approved"


@pytest.mark.parametrize("seed", [1, 7, 42, 99, 542253])
def test_planned_valid_invoice_numbers_fit_f_and_o(seed: int) -> None:
    """The chaos suite varies the data seed; F&O's InvoiceNumber holds 20 characters, and a "valid" invoice the
    real F&O would refuse would make the end-state assertions lie."""
    config = SandboxConfig(data=SandboxDataSize.small(seed=seed))
    plans = SnowState(config, D365State(config)).apo.plans
    assert len(plans) == 20 and sum(1 for p in plans if p.kinds) == 4
    valid = [p for p in plans if not p.kinds]
    assert valid and all(len(p.supplier_invoice_number) <= 20 for p in valid)
