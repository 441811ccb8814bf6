"""Writes, duplicates, read-only entities, $batch, posting and business events (reference §2, §4, §6)."""

from __future__ import annotations

import http.server
import json
import threading

import pytest


def _vendor(sandbox_server, le="usmf", hold="No"):
    return sandbox_server.world.d365.read(
        "SELECT VendorAccountNumber v FROM VendorsV2 WHERE dataAreaId = ? AND OnHoldStatus = ? ORDER BY 1 LIMIT 1",
        [le, hold])[0]["v"]


def _header(vendor, number, **extra):
    return {"dataAreaId": "usmf", "InvoiceNumber": number, "InvoiceAccount": vendor, "Currency": "USD",
            "InvoiceDate": "2025-05-01T12:00:00Z", "Date": "2025-05-01T12:00:00Z",
            "DueDate": "2025-05-31T12:00:00Z", "ImportedAmount": 1250.00, "ImportedSalesTax": 0, **extra}


@pytest.fixture(autouse=True)
def _duplicate_mode_reset(sandbox_server):
    yield
    sandbox_server.world.d365.set_duplicate_check("NoDuplicate")


def test_post_patch_delete_and_key_errors(d365_client, sandbox_server):
    vendor = _vendor(sandbox_server)
    resp = d365_client.post("/data/VendorInvoiceHeaders", json=_header(vendor, "W-1"))
    assert resp.status_code == 201, resp.text
    head = resp.json()
    ref = head["HeaderReference"]
    assert ref and head["@odata.context"].endswith("#VendorInvoiceHeaders/$entity") and head["ImportedAmount"] == 1250
    key = f"/data/VendorInvoiceHeaders(dataAreaId='usmf',HeaderReference='{ref}')"
    line = {"dataAreaId": "usmf", "HeaderReference": ref, "InvoiceLineNumber": 1, "MainAccountDisplayValue": "600100",
            "InventNow": 2, "UnitPrice": 625, "Amount": 1250, "LineDescription": "O'Brien's bolts ^ ü"}
    assert d365_client.post("/data/VendorInvoiceLines", json=line).status_code == 201
    line_key = f"/data/VendorInvoiceLines(dataAreaId='usmf',HeaderReference='{ref}',InvoiceLineNumber=1)"
    assert d365_client.get(line_key).json()["LineDescription"] == "O'Brien's bolts ^ ü"
    orphan = d365_client.post("/data/VendorInvoiceLines", json={**line, "HeaderReference": "NOPE"})
    assert orphan.status_code == 400
    assert d365_client.patch(key, json={"InvoiceDescription": "changed"}).status_code == 204
    assert d365_client.get(key).json()["InvoiceDescription"] == "changed"
    assert d365_client.patch(f"/data/VendorInvoiceHeaders(HeaderReference='{ref}')", json={}).status_code == 400
    missing = d365_client.patch("/data/VendorInvoiceHeaders(dataAreaId='usmf',HeaderReference='NOPE')", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == ""
    dup_pk = d365_client.post("/data/VendorInvoiceHeaders", json=_header(vendor, "W-1b", HeaderReference=ref))
    assert "The record already exists" in dup_pk.json()["error"]["innererror"]["message"]
    unknown = d365_client.post("/data/VendorInvoiceHeaders", json={**_header(vendor, "W-1c"), "Nope": 1})
    assert unknown.status_code == 400
    assert d365_client.delete(key).status_code == 204
    assert d365_client.get(key).status_code == 404
    assert d365_client.get(line_key).status_code == 404


def test_duplicate_invoice_per_vendor_parameters(d365_client, sandbox_server):
    vendor = _vendor(sandbox_server)
    assert d365_client.post("/data/VendorInvoiceHeaders", json=_header(vendor, "DUP-1")).status_code == 201
    dup = d365_client.post("/data/VendorInvoiceHeaders", json=_header(vendor, "DUP-1"))
    assert dup.status_code == 400
    err = dup.json()["error"]
    assert err["message"] == "An error has occurred."
    assert err["innererror"]["type"].endswith("AxODataWriteException")
    assert err["innererror"]["message"].startswith("Write failed for table row of type 'VendorInvoiceHeaderEntity'")
    # A posted invoice also counts.
    posted = sandbox_server.world.d365.read("SELECT InvoiceId, InvoiceAccount FROM VendInvoiceJourBiEntities "
                                            "WHERE dataAreaId = 'usmf' LIMIT 1")[0]
    assert d365_client.post("/data/VendorInvoiceHeaders", json=_header(
        posted["InvoiceAccount"], posted["InvoiceId"])).status_code == 400
    # NoDuplicateInYear: another year is fine.
    sandbox_server.world.d365.set_duplicate_check("NoDuplicateInYear", "usmf")
    other_year = _header(vendor, "DUP-1", InvoiceDate="2024-02-01T12:00:00Z")
    assert d365_client.post("/data/VendorInvoiceHeaders", json=other_year).status_code == 201
    resp = d365_client.post("/admin/d365/parameters/duplicate-check", json={"mode": "AcceptDuplicate"})
    assert resp.status_code == 200
    assert d365_client.post("/data/VendorInvoiceHeaders", json=_header(vendor, "DUP-1")).status_code == 201


def test_bi_entities_are_read_only(d365_client):
    row = d365_client.get("/data/VendTransBiEntities", params={"$top": "1"}).json()["value"][0]
    key = f"/data/VendTransBiEntities(dataAreaId='{row['dataAreaId']}',SourceKey={row['SourceKey']})"
    resp = d365_client.patch(key, json={"Txt": "hacked"})
    assert resp.status_code == 400 and "read-only" in resp.json()["error"]["innererror"]["message"]
    assert d365_client.post("/data/VendInvoiceJourBiEntities", json={"InvoiceId": "X"}).status_code == 400


def _batch(parts_changeset, boundary="batch_1", cs="changeset_1"):
    lines = [f"--{boundary}", f"Content-Type: multipart/mixed; boundary={cs}", ""]
    for i, (method, url, body) in enumerate(parts_changeset, start=1):
        lines += [f"--{cs}", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
                  f"Content-ID: {i}", "", f"{method} {url} HTTP/1.1", "Content-Type: application/json", "",
                  json.dumps(body)]
    lines += [f"--{cs}--", f"--{boundary}", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
              "", "GET VendorParameters?$select=dataAreaId HTTP/1.1", "", f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


def test_batch_changeset_is_atomic(d365_client, sandbox_server):
    vendor = _vendor(sandbox_server)
    ok = [("POST", "VendorInvoiceHeaders", _header(vendor, "B-1", HeaderReference="USMF-B1")),
          ("POST", "VendorInvoiceLines", {"dataAreaId": "usmf", "HeaderReference": "USMF-B1", "InvoiceLineNumber": 1,
                                          "Amount": 1250, "MainAccountDisplayValue": "600100"})]
    resp = d365_client.post("/data/$batch", content=_batch(ok),
                            headers={"Content-Type": "multipart/mixed; boundary=batch_1"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("multipart/mixed")
    assert resp.text.count("HTTP/1.1 201 Created") == 2 and "HTTP/1.1 200 OK" in resp.text
    assert "Content-ID: 1" in resp.text and "Content-ID: 2" in resp.text
    bad = [("POST", "VendorInvoiceHeaders", _header(vendor, "B-2", HeaderReference="USMF-B2")),
           ("POST", "VendorInvoiceHeaders", _header(vendor, "B-1"))]  # duplicate invoice number
    resp = d365_client.post("/data/$batch", content=_batch(bad),
                            headers={"Content-Type": "multipart/mixed; boundary=batch_1"})
    assert resp.status_code == 200 and "HTTP/1.1 500" in resp.text and "201 Created" not in resp.text
    assert not sandbox_server.world.d365.read("SELECT 1 FROM VendorInvoiceHeaders WHERE HeaderReference='USMF-B2'")
    too_many = [("DELETE", "VendorInvoiceHeaders(dataAreaId='usmf',HeaderReference='X')", {})] * 5001
    resp = d365_client.post("/data/$batch", content=_batch(too_many),
                            headers={"Content-Type": "multipart/mixed; boundary=batch_1"})
    assert "A maximum number of '5000' operations" in resp.text


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []  # noqa: RUF012 - shared by the handler instances

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_post_and_pay_fire_business_events(d365_client, sandbox_server):
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    state = sandbox_server.world.d365
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/events/secret"
        assert d365_client.post("/admin/d365/events/endpoints", json={"url": url}).status_code == 200
        vendor = _vendor(sandbox_server)
        head = d365_client.post("/data/VendorInvoiceHeaders", json=_header(vendor, "EV-1", ImportedSalesTax=50,
                                                                             ImportedAmount=1300)).json()
        d365_client.post("/data/VendorInvoiceLines", json={"dataAreaId": "usmf", "HeaderReference":
                                                            head["HeaderReference"], "InvoiceLineNumber": 1,
                                                            "Amount": 1250})
        result = d365_client.post("/admin/d365/invoices/post",
                                  json={"header_references": [head["HeaderReference"]]}).json()
        assert [p["InvoiceId"] for p in result["posted"]] == ["EV-1"]
        jour = d365_client.get("/data/VendInvoiceJourBiEntities", params={
            "$filter": f"InvoiceAccount eq '{vendor}' and InvoiceId eq 'EV-1'"}).json()["value"]
        assert len(jour) == 1 and jour[0]["InvoiceAmount"] == 1300 and jour[0]["LedgerVoucher"]
        key = f"/data/VendorInvoiceHeaders(dataAreaId='usmf',HeaderReference='{head['HeaderReference']}')"
        assert d365_client.get(key).status_code == 404
        paid = state.pay_invoices([{"InvoiceId": "EV-1", "dataAreaId": "usmf", "Amount": 300}])
        assert paid["paid"][0]["Closed"] is False
        state.pay_invoices([{"InvoiceId": "EV-1", "dataAreaId": "usmf"}])
        trans = d365_client.get("/data/VendTransBiEntities", params={"$filter": "Invoice eq 'EV-1'"}).json()["value"]
        assert trans[0]["AmountCur"] == -1300 and trans[0]["SettleAmountCur"] == -1300
        assert trans[0]["Closed"] != "1900-01-01T12:00:00Z" and trans[0]["LastSettleVoucher"]
        state.confirm_po("usmf", state.read("SELECT PurchaseOrderNumber p FROM PurchaseOrderHeadersV2 "
                                            "WHERE dataAreaId='usmf' LIMIT 1")[0]["p"])
        assert state.events.wait_idle(20)
        ids = [e["BusinessEventId"] for e in _Receiver.received]
        assert ids == ["VendorInvoicePostedBusinessEvent", "VendorPaymentPostedBusinessEvent",
                       "VendorPaymentPostedBusinessEvent", "PurchaseOrderConfirmedBusinessEvent"]
        first = _Receiver.received[0]
        assert first["InvoiceId"] == "EV-1" and first["BusinessEventLegalEntity"] == "USMF"
        assert first["EventTime"].startswith("/Date(") and first["EventId"] == first["EventId"].upper()
        controls = [e["ControlNumber"] for e in _Receiver.received]
        assert controls == sorted(controls) and len(set(controls)) == 4
    finally:
        receiver.shutdown()
        state.events.clear()


def test_master_data_mutations(d365_client, sandbox_server):
    state = sandbox_server.world.d365
    line = state.read("SELECT PurchaseOrderNumber p, LineNumber n, OrderedPurchaseQuantity q FROM "
                      "PurchaseOrderLinesV2 WHERE dataAreaId='usmf' LIMIT 1")[0]
    resp = d365_client.post("/admin/d365/purchase-order-lines/price", json={
        "dataAreaId": "usmf", "PurchaseOrderNumber": line["p"], "LineNumber": line["n"], "PurchasePrice": 2.5})
    assert resp.status_code == 200
    got = d365_client.get(f"/data/PurchaseOrderLinesV2(dataAreaId='usmf',PurchaseOrderNumber='{line['p']}',"
                          f"LineNumber={line['n']})").json()
    assert got["LineAmount"] == round(float(line["q"]) * 2.5, 2)
    state.suspend_main_account("600100")
    assert d365_client.get("/data/MainAccounts", params={"$filter": "MainAccountId eq '600100'"}
                           ).json()["value"][0]["IsSuspended"] == "Yes"
    state.suspend_main_account("600100", False)
    dump = d365_client.get("/admin/d365/state/LegalEntities").json()
    assert {r["LegalEntityId"] for r in dump} == {"usmf", "demf", "gbsi"}


def test_new_payment_vouchers_never_reuse_seeded_numbers(sandbox_server) -> None:
    """Seeded vouchers have gaps; a sequence that counted rows reused them, merging two payments in ServiceNow."""
    d365 = sandbox_server.world.d365
    open_invoices = d365.read("SELECT dataAreaId, Invoice, AccountNum FROM VendTransBiEntities "
                              "WHERE Invoice <> '' AND TransType = 'Purch' AND SettleAmountCur = 0")
    assert open_invoices, "the seed has unpaid posted invoices"
    d365.pay_invoices([{"InvoiceId": r["Invoice"], "dataAreaId": r["dataAreaId"], "InvoiceAccount": r["AccountNum"]}
                       for r in open_invoices])
    vouchers = d365.read("SELECT dataAreaId, Voucher, count(*) AS n FROM VendTransBiEntities "
                         "WHERE Voucher LIKE 'APPAY%' GROUP BY ALL HAVING count(*) > 1")
    assert vouchers == []
