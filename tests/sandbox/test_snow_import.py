"""Import Set API (single, insertMultiple async/sync, coalesce) and the APO invoice lifecycle, over HTTPS."""

from __future__ import annotations

import time
from decimal import Decimal

SUPPLIER_STAGE = "sn_fcms_intg_imp_supplier"
PAYMENT_STAGE = "sn_spend_intg_imp_invoice_payment_detail"
OUT = "sn_spend_intg_outbound_invoice"


def supplier(code: str, name: str = "Contoso 'Steel' ^ GmbH", le: str = "USMF") -> dict[str, str]:
    return {"erp_source": "D365FO", "legal_entity": le, "supplier_code": code, "name": name, "currency": "USD",
            "active": "true", "on_hold": "No"}


def count(client, table: str, query: str = "") -> int:
    r = client.get(f"/api/now/table/{table}", params={"sysparm_query": query, "sysparm_limit": 1})
    return int(r.headers["X-Total-Count"])


def test_single_import_inserted_ignored_updated_and_never_a_second_insert(server, client):
    r = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-1"))
    assert r.status_code == 201
    body = r.json()
    assert body["import_set"].startswith("ISET") and body["staging_table"] == SUPPLIER_STAGE
    (res,) = body["result"]
    assert res["status"] == "inserted" and res["table"] == "sn_fin_supplier"
    assert res["transform_map"] == "Master data supplier" and res["display_value"] == "Contoso 'Steel' ^ GmbH"
    assert res["record_link"] == f"{server.snow_url}/api/now/table/sn_fin_supplier/{res['sys_id']}"
    target = res["sys_id"]

    (again,) = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-1")).json()["result"]
    assert again["status"] == "ignored" and again["status_message"] == "No field values changed"
    assert again["sys_id"] == target

    changed = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-1", name="Renamed")).json()
    assert changed["result"][0]["status"] == "updated" and changed["result"][0]["sys_id"] == target
    assert changed["import_set"] == body["import_set"]  # single imports share the open import set
    assert count(client, "sn_fin_supplier") == 1
    rec = client.get(f"/api/now/table/sn_fin_supplier/{target}").json()["result"]
    assert rec["name"] == "Renamed" and rec["sys_mod_count"] == "1"
    # Same code in another legal entity is another supplier (coalesce on erp_source, legal_entity, supplier_code).
    other = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-1", le="DEMF")).json()["result"][0]
    assert other["status"] == "inserted" and count(client, "sn_fin_supplier") == 2


def test_skipped_on_missing_coalesce_value_and_error_on_bad_number(client):
    row = supplier("")
    res = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=row).json()["result"][0]
    assert res["status"] == "skipped" and "supplier_code" in res["status_message"]
    staged = client.get(f"/api/now/table/{SUPPLIER_STAGE}/{res['sys_id']}").json()["result"]
    assert staged["sys_import_state"] == "skipped"  # skipped rows report the import set row's sys_id
    assert count(client, "sn_fin_supplier") == 0
    order = {"erp_source": "D365FO", "legal_entity": "USMF", "erp_po_number": "PO-1", "po_amount": "12,50 EUR"}
    res = client.post("/api/now/import/sn_fcms_intg_imp_order", json=order).json()["result"][0]
    assert res["status"] == "error" and res["error_message"]
    assert client.post("/api/now/import/no_such_stage", json=order).status_code == 400


def test_import_row_lookup(client):
    res = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-9")).json()
    row = client.get(f"/api/now/table/{SUPPLIER_STAGE}",
                     params={"sysparm_query": "supplier_code=V-9", "sysparm_exclude_reference_link": "true"})
    row_id = row.json()["result"][0]["sys_id"]
    got = client.get(f"/api/now/import/{SUPPLIER_STAGE}/{row_id}").json()
    assert got["result"][0]["sys_id"] == res["result"][0]["sys_id"] and got["result"][0]["status"] == "inserted"
    assert client.get(f"/api/now/import/{SUPPLIER_STAGE}/{'0' * 32}").status_code == 404


def _wait_processed(client, import_set_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rec = client.get(f"/api/now/table/sys_import_set/{import_set_id}").json()["result"]
        if rec["state"] == "processed":
            return rec
        time.sleep(0.05)
    raise AssertionError("import set never processed")


def test_insert_multiple_async_rows_readable_in_sys_import_set_row(client):
    client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-0"))  # exists, will be ignored
    records = [supplier(f"V-{i}") for i in range(300)] + [supplier("")]
    records[5]["name"] = 42  # a number is coerced to a string, as the Import Set API documents
    r = client.post(f"/api/now/import/{SUPPLIER_STAGE}/insertMultiple", json={"records": records})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"import_set_id", "multi_import_set_id"}
    assert client.get(f"/api/now/table/sys_import_set/{body['import_set_id']}").json()["result"]["state"] in (
        "loading", "processed")
    _wait_processed(client, body["import_set_id"])
    rows = client.get("/api/now/table/sys_import_set_row", params={
        "sysparm_query": f"sys_import_set={body['import_set_id']}^ORDERBYsys_import_row",
        "sysparm_fields": "sys_import_row,sys_import_state,sys_import_state_comment,sys_target_table,"
                          "sys_target_sys_id,sys_row_error,sys_transform_map,supplier_code"}).json()["result"]
    assert len(rows) == 301
    states = [x["sys_import_state"] for x in rows]
    assert states[0] == "ignored" and states[1:300] == ["inserted"] * 299 and states[300] == "skipped"
    assert rows[0]["sys_import_state_comment"] == "No field values changed"
    assert rows[1]["sys_target_table"] == "sn_fin_supplier" and len(rows[1]["sys_target_sys_id"]) == 32
    assert [x["sys_import_row"] for x in rows[:3]] == ["0", "1", "2"]
    assert count(client, "sn_fin_supplier") == 300
    assert client.get("/api/now/table/sn_fin_supplier",
                      params={"sysparm_query": "supplier_code=V-5"}).json()["result"][0]["name"] == "42"
    run = client.get("/api/now/table/sys_import_set_run",
                     params={"sysparm_query": f"set={body['import_set_id']}"}).json()["result"][0]
    assert (run["inserts"], run["ignored"], run["skipped"], run["total"]) == ("299", "1", "1", "301")

    # Re-sending the whole batch changes nothing: every row ignored, still 300 suppliers.
    again = client.post(f"/api/now/import/{SUPPLIER_STAGE}/insertMultiple", json={"records": records[:300]}).json()
    _wait_processed(client, again["import_set_id"])
    assert count(client, "sys_import_set_row", f"sys_import_set={again['import_set_id']}^sys_import_state=ignored") \
        == 300
    assert count(client, "sn_fin_supplier") == 300


def test_insert_multiple_sync_mode_returns_per_row_results(client, server):
    client.post("/admin/snow/settings", json={"insert_multiple_async": False})
    records = [supplier("S-1"), supplier("S-1", name="changed"), supplier("")]
    body = client.post(f"/api/now/import/{SUPPLIER_STAGE}/insertMultiple", json={"records": records}).json()
    assert [x["status"] for x in body["result"]] == ["inserted", "updated", "skipped"]
    assert client.get(f"/api/now/table/sys_import_set/{body['import_set_id']}").json()["result"]["state"] == \
        "processed"


def _post_invoice(snow, invoice_id: str) -> dict:
    out = next(r for r in snow.dump(OUT) if r["invoice"] == invoice_id)
    return out


def pay(client, inv: dict, amount: str, ref: str) -> dict:
    row = {"u_erp_source": inv["erp_source"], "u_legal_entity": inv["legal_entity"],
           "u_erp_invoice_number": inv["supplier_invoice_number"], "u_erp_supplier_code": inv["supplier"],
           "u_currency": inv["currency"], "u_payment_amount": amount, "u_payment_date": "2026-01-31",
           "u_payment_method": "bank_transfer", "u_payment_reference_id": ref,
           "u_scheduled_payment_date": inv["due_date"]}
    return client.post(f"/api/now/import/{PAYMENT_STAGE}", json=row).json()["result"][0]


def test_outbound_processed_moves_invoice_to_pending_payment_then_payments_to_paid(server, client):
    snow = server.world.snow
    out = next(r for r in snow.dump(OUT) if "'" in r["supplier_invoice_number"])
    inv_id = out["invoice"]
    assert snow.tables["sn_shop_invoice"].rows[inv_id]["state"] == "approved"
    r = client.patch(f"/api/now/table/{OUT}/{out['sys_id']}",
                     json={"integration_status": "processed", "erp_number": "APINV-000123",
                           "erp_posting_date": "2026-01-15"})
    assert r.status_code == 200
    inv = client.get(f"/api/now/table/sn_shop_invoice/{inv_id}").json()["result"]
    assert inv["state"] == "pending_payment" and inv["erp_number"] == "APINV-000123"

    total = Decimal(inv["amount_invoiced"])
    part = (total / 3).quantize(Decimal("0.01"))
    first = pay(client, inv, str(part), "PAY-0001")
    assert first["status"] == "inserted" and first["table"] == "sn_shop_invoice_payment_detail"
    assert client.get(f"/api/now/table/sn_shop_invoice/{inv_id}").json()["result"]["state"] == "pending_payment"
    assert pay(client, inv, str(part), "PAY-0001")["status"] == "ignored"  # re-sent, not paid twice
    assert client.get(f"/api/now/table/sn_shop_invoice/{inv_id}").json()["result"]["state"] == "pending_payment"
    pay(client, inv, str(total - part), "PAY-0002")
    final = client.get(f"/api/now/table/sn_shop_invoice/{inv_id}").json()["result"]
    assert final["state"] == "paid" and Decimal(final["amount_paid"]) == total
    detail = client.get("/api/now/table/sn_shop_invoice_payment_detail",
                        params={"sysparm_query": "payment_reference_id=PAY-0002"}).json()["result"][0]
    assert detail["invoice"]["value"] == inv_id


def test_payment_before_posting_keeps_approved_and_error_status_does_not_move(server, client):
    snow = server.world.snow
    outs = snow.dump(OUT)
    inv = client.get(f"/api/now/table/sn_shop_invoice/{outs[0]['invoice']}").json()["result"]
    pay(client, inv, inv["amount_invoiced"], "PAY-EARLY")
    assert client.get(f"/api/now/table/sn_shop_invoice/{inv['sys_id']}").json()["result"]["state"] == "approved"
    # Posting confirmed afterwards: the payment already covers it.
    client.patch(f"/api/now/table/{OUT}/{outs[0]['sys_id']}", json={"integration_status": "processed"})
    assert client.get(f"/api/now/table/sn_shop_invoice/{inv['sys_id']}").json()["result"]["state"] == "paid"
    client.patch(f"/api/now/table/{OUT}/{outs[1]['sys_id']}",
                 json={"integration_status": "error", "processing_message": "Vendor on hold"})
    assert snow.tables["sn_shop_invoice"].rows[outs[1]["invoice"]]["state"] == "approved"


def test_seeded_invalid_invoices_are_recorded(server):
    snow = server.world.snow
    assert len(snow.invalid_invoices) == round(20 * 0.2)
    lines = snow.dump("sn_spend_intg_outbound_invoice_line")
    for sys_id, reasons in snow.invalid_invoices.items():
        out = snow.tables[OUT].rows[sys_id]
        mine = [x for x in lines if x["outbound_invoice"] == sys_id]
        total = sum(Decimal(x["amount"]) for x in mine) + Decimal(out["tax_amount"])
        assert (total != Decimal(out["amount_invoiced"])) == (reasons == ["amount_mismatch"])
    valid = [r for r in snow.dump(OUT) if r["sys_id"] not in snow.invalid_invoices]
    for out in valid:
        mine = [x for x in lines if x["outbound_invoice"] == out["sys_id"]]
        assert sum(Decimal(x["amount"]) for x in mine) + Decimal(out["tax_amount"]) == Decimal(out["amount_invoiced"])
        assert out["erp_source"] == "D365FO" and out["integration_status"] == "new"


def test_seeded_invoices_reference_real_f_and_o_data(server):
    snow = server.world.snow
    d365 = snow.d365
    accounts = {r["MainAccountId"]: r["IsSuspended"]
                for r in d365.read("SELECT MainAccountId, IsSuspended FROM MainAccounts")}
    centers = {(r["LegalEntityId"].upper(), r["DimensionValue"]): r["IsSuspended"] for r in d365.read(
        "SELECT LegalEntityId, DimensionValue, IsSuspended FROM FinancialDimensionValues "
        "WHERE FinancialDimension = 'CostCenter'")}
    holds = {(r["dataAreaId"].upper(), r["VendorAccountNumber"]): r["OnHoldStatus"]
             for r in d365.read("SELECT dataAreaId, VendorAccountNumber, OnHoldStatus FROM VendorsV2")}
    lines = snow.dump("sn_spend_intg_outbound_invoice_line")
    for out in snow.dump(OUT):
        problems = set()
        if holds.get((out["legal_entity"], out["supplier"])) in ("All", "Invoice"):
            problems.add("vendor_on_hold")
        for line in (x for x in lines if x["outbound_invoice"] == out["sys_id"]):
            if accounts.get(line["gl_account"], "Yes") == "Yes":
                problems.add("unknown_gl_account")
            cc = centers.get((out["legal_entity"], line["cost_center"])) or centers.get(("", line["cost_center"]))
            if cc != "No":
                problems.add("suspended_cost_center")
        expected = set(snow.invalid_invoices.get(out["sys_id"], [])) - {"amount_mismatch"}
        assert problems == expected, (out["number"], problems, expected)
