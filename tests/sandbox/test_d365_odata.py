"""OData reads of the fake F&O over real sockets (reference/d365.md §2, §3, §5)."""

from __future__ import annotations

import pytest
import requests

from d365_snow_assets.sandbox.d365.envelope import EnvelopeProfile
from d365_snow_assets.sandbox.faults import FaultProfile

ENUM = "Microsoft.Dynamics.DataEntities"


@pytest.fixture
def small_pages(sandbox_server):
    sandbox_server.world.d365.set_page_size(7)
    yield 7
    sandbox_server.world.d365.set_page_size(sandbox_server.world.config.d365_max_page_size)


def _all(client, url, params=None):
    pages, rows = 0, []
    resp = client.get(url, params=params)
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages += 1
        rows += body["value"]
        if "@odata.nextLink" not in body:
            return rows, pages
        resp = client.get(body["@odata.nextLink"])  # opaque: followed unchanged


def test_service_document_and_metadata(d365_client):
    doc = d365_client.get("/data/").json()
    assert {"VendorsV2", "VendInvoiceJourBiEntities"} <= {e["name"] for e in doc["value"]}
    meta = d365_client.get("/data/$metadata")
    assert meta.status_code == 200
    assert 'Namespace="Microsoft.Dynamics.DataEntities"' in meta.text
    assert 'EntityContainer Name="Resources"' in meta.text
    assert 'EnumType Name="CustVendorBlocked"' in meta.text and "IsReadOnly" in meta.text


def test_next_link_must_be_followed(d365_client, small_pages, sandbox_server):
    params = {"cross-company": "true", "$filter": "dataAreaId eq 'usmf'"}
    rows, pages = _all(d365_client, "/data/VendorsV2", params)
    expected = sandbox_server.world.d365.read("SELECT VendorAccountNumber FROM VendorsV2 WHERE dataAreaId='usmf'")
    keys = [r["VendorAccountNumber"] for r in rows]
    assert pages > 1 and len(keys) == len(set(keys))
    assert set(keys) == {r["VendorAccountNumber"] for r in expected}
    first = d365_client.get("/data/VendorsV2", params=params).json()
    assert len(first["value"]) == small_pages and "$skip=7" in first["@odata.nextLink"]
    assert "cross-company=true" in first["@odata.nextLink"]


def test_top_across_pages(d365_client, small_pages):
    rows, pages = _all(d365_client, "/data/PurchaseOrderLinesV2", {"$top": "10", "$skip": "3"})
    assert len(rows) == 10 and pages == 2


def test_cross_company(d365_client):
    default = d365_client.get("/data/VendorsV2", params={"$select": "dataAreaId"}).json()["value"]
    assert default and {r["dataAreaId"] for r in default} == {"usmf"}
    no_cc = d365_client.get("/data/VendorsV2", params={"$filter": "dataAreaId eq 'demf'"}).json()["value"]
    assert no_cc == []
    demf = d365_client.get("/data/VendorsV2", params={"$filter": "dataAreaId eq 'DEMF'", "cross-company": "true"})
    assert {r["dataAreaId"] for r in demf.json()["value"]} == {"demf"}
    every = d365_client.get("/data/VendorsV2", params={"cross-company": "true", "$select": "dataAreaId"})
    assert {r["dataAreaId"] for r in every.json()["value"]} == {"usmf", "demf", "gbsi"}
    account = demf.json()["value"][0]["VendorAccountNumber"]
    key = f"/data/VendorsV2(dataAreaId='demf',VendorAccountNumber='{account}')"
    assert d365_client.get(key).status_code == 404
    one = d365_client.get(key, params={"cross-company": "true"})
    assert one.status_code == 200 and one.json()["@odata.context"].endswith("#VendorsV2/$entity")


def test_quotes_unicode_wildcards_enums_dates(d365_client, sandbox_server):
    cc = {"cross-company": "true"}
    rows = sandbox_server.world.d365.read("SELECT VendorOrganizationName n FROM VendorsV2 WHERE n LIKE '%''%'")
    name = rows[0]["n"]
    literal = name.replace("'", "''")
    got = d365_client.get("/data/VendorsV2", params={**cc, "$filter": f"VendorOrganizationName eq '{literal}'"})
    assert got.status_code == 200 and got.json()["value"] and got.json()["value"][0]["VendorOrganizationName"] == name
    names = [r["n"] for r in sandbox_server.world.d365.read("SELECT VendorOrganizationName n FROM VendorsV2")]
    uname = next(n for n in names if not n.isascii())
    char = next(c for c in uname if not c.isascii())
    uni = d365_client.get("/data/VendorsV2", params={**cc, "$filter": f"VendorOrganizationName eq '*{char}*'"}).json()
    assert uni["value"] and all(char in r["VendorOrganizationName"] for r in uni["value"])
    exact = d365_client.get("/data/VendorsV2", params={**cc, "$filter": f"VendorOrganizationName eq "
                                                                      f"'{uname.replace(chr(39), chr(39) * 2)}'"})
    assert {r["VendorOrganizationName"] for r in exact.json()["value"]} == {uname}
    caret = d365_client.get("/data/VendorsV2", params={**cc, "$filter": "VendorOrganizationName eq '*^*'"}).json()
    assert caret["value"] and all("^" in r["VendorOrganizationName"] for r in caret["value"])
    starts = d365_client.get("/data/MainAccounts", params={"$filter": "MainAccountId eq '6*'"}).json()["value"]
    assert starts and all(r["MainAccountId"].startswith("6") for r in starts)
    hold = d365_client.get("/data/VendorsV2", params={
        **cc, "$filter": f"OnHoldStatus eq {ENUM}.CustVendorBlocked'All' or OnHoldStatus eq "
                         f"{ENUM}.CustVendorBlocked'Invoice'"}).json()["value"]
    assert hold and {r["OnHoldStatus"] for r in hold} <= {"All", "Invoice"}
    bad_enum = d365_client.get("/data/VendorsV2", params={"$filter": "OnHoldStatus eq 'All'"})
    assert bad_enum.status_code == 400
    gt_enum = d365_client.get("/data/VendorsV2", params={"$filter": f"OnHoldStatus gt {ENUM}.CustVendorBlocked'No'"})
    assert gt_enum.status_code == 400
    dated = d365_client.get("/data/PurchaseOrderHeadersV2", params={
        **cc, "$filter": "AccountingDate ge 2025-01-01T00:00:00Z and not (AccountingDate gt 2025-03-31T23:59:59Z)"})
    values = dated.json()["value"]
    assert values and all("2025-01-01T12:00:00Z" <= r["AccountingDate"] <= "2025-03-31T12:00:00Z" for r in values)
    nulls = d365_client.get("/data/VendTransBiEntities", params={
        **cc, "$filter": "Closed eq 1900-01-01T12:00:00Z and TransType eq Microsoft.Dynamics.DataEntities."
                         "LedgerTransType'Purch'"}).json()["value"]
    assert nulls and all(r["Closed"] == "1900-01-01T12:00:00Z" and r["AmountCur"] < 0 for r in nulls)


@pytest.mark.parametrize("flt", ["VendorAccountNumber in ('A','B')", "OnHoldStatus has "
                                 "Microsoft.Dynamics.DataEntities.CustVendorBlocked'All'", "Nope eq 'x'",
                                 "VendorAccountNumber eq", "contains(VendorOrganizationName,'a')"])
def test_rejected_filters(d365_client, flt):
    resp = d365_client.get("/data/VendorsV2", params={"$filter": flt})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "" and resp.json()["error"]["message"]


def test_select_top_skip_orderby_count(d365_client, sandbox_server):
    cc = {"cross-company": "true"}
    body = d365_client.get("/data/PurchaseOrderLinesV2", params={
        **cc, "$select": "PurchaseOrderNumber,LineNumber,LineAmount", "$top": "5", "$skip": "2",
        "$orderby": "LineAmount desc", "$count": "true"}).json()
    total = sandbox_server.world.d365.read("SELECT count(*) n FROM PurchaseOrderLinesV2")[0]["n"]
    assert body["@odata.count"] == total and len(body["value"]) == 5
    assert body["@odata.context"].endswith("#PurchaseOrderLinesV2(PurchaseOrderNumber,LineNumber,LineAmount)")
    assert set(body["value"][0]) == {"@odata.etag", "PurchaseOrderNumber", "LineNumber", "LineAmount"}
    amounts = [r["LineAmount"] for r in body["value"]]
    assert amounts == sorted(amounts, reverse=True)
    top_amounts = sorted((r["LineAmount"] for r in sandbox_server.world.d365.read(
        "SELECT LineAmount::DOUBLE AS LineAmount FROM PurchaseOrderLinesV2")), reverse=True)
    assert amounts == top_amounts[2:7]
    count = d365_client.get("/data/PurchaseOrderLinesV2/$count", params=cc)
    assert count.status_code == 200 and int(count.text) == total
    assert d365_client.get("/data/VendorsV2", params={"$select": "Bogus"}).status_code == 400
    assert d365_client.get("/data/NoSuchSet").status_code == 404


def test_value_shapes(d365_client):
    line = d365_client.get("/data/PurchaseOrderLinesV2", params={"$top": "1"}).json()["value"][0]
    assert line["RequestedDeliveryDate"].endswith("T12:00:00Z")
    assert isinstance(line["LineAmount"], float | int)
    assert round(line["OrderedPurchaseQuantity"] * line["PurchasePrice"], 2) == line["LineAmount"]
    assert line["@odata.etag"].startswith('W/"')
    vend = d365_client.get("/data/VendorsV2", params={"$top": "1"}).json()["value"][0]
    assert vend["OnHoldStatus"] in {"No", "Invoice", "All", "Payment"}
    assert vend["VendorHoldReleaseDate"] == "1900-01-01T00:00:00Z"
    accts = d365_client.get("/data/MainAccounts", params={"$top": "1"}).json()["value"][0]
    assert "dataAreaId" not in accts and accts["ChartOfAccounts"]


def test_429_with_retry_after(d365_client, sandbox_server):
    sandbox_server.set_faults("d365", FaultProfile(share_429=1.0, retry_after_s=2))
    try:
        resp = d365_client.get("/data/VendorsV2")
    finally:
        sandbox_server.clear_faults()
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"
    assert "resource utilization" in resp.json()["error"]["message"]


def test_concurrency_limit(d365_client, sandbox_server):
    envelope = sandbox_server.world.d365.envelope
    envelope.set(EnvelopeProfile(enabled=True, concurrent_limit=0, request_ms=0, row_ms=0))
    try:
        resp = d365_client.get("/data/VendorsV2")
    finally:
        envelope.set(EnvelopeProfile())
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
    assert resp.json()["error"]["message"] == "Number of concurrent requests exceeded the limit of 0."


def test_python_odata_client_reads(sandbox_server, d365_bearer):
    """An independent OData v4 client from PyPI reflects $metadata and queries VendorsV2."""
    from odata import ODataService

    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox_server.tls.ca_pem)
    session.headers["Authorization"] = f"Bearer {d365_bearer}"
    service = ODataService(f"{sandbox_server.d365_url}/data/", reflect_entities=True, session=session)
    vendor = service.entities["VendorsV2"]
    rows = service.query(vendor).limit(5).all()
    assert len(rows) == 5 and all(r.dataAreaId == "usmf" for r in rows)
    assert rows[0].VendorAccountNumber
    # The client writes F&O's enum literal syntax itself (Microsoft.Dynamics.DataEntities.CustVendorBlocked'All').
    held = service.query(vendor).filter(vendor.OnHoldStatus == vendor.OnHoldStatus.enum_class["All"]).all()
    assert held and all(r.OnHoldStatus.name == "All" for r in held)


def test_a_row_deep_in_the_key_order_follows_writes(d365_client, sandbox_server):
    """``$top=1&$skip=k`` over the key order (how the connector samples key-range boundaries) answers from a kept
    order of the query; a write must show at once, as it does in F&O."""
    params = {"cross-company": "true", "$select": "dataAreaId,PurchaseOrderNumber,LineNumber",
              "$orderby": "dataAreaId,PurchaseOrderNumber,LineNumber", "$top": "2"}

    def at(skip: int) -> list[tuple[str, int]]:
        body = d365_client.get("/data/PurchaseOrderLinesV2", params={**params, "$skip": str(skip)}).json()
        return [(r["PurchaseOrderNumber"], r["LineNumber"]) for r in body["value"]]

    state = sandbox_server.world.d365
    ordered = [(r["PurchaseOrderNumber"], r["LineNumber"]) for r in state.read(
        "SELECT * FROM PurchaseOrderLinesV2 ORDER BY lower(dataAreaId), lower(PurchaseOrderNumber), LineNumber")]
    assert at(100) == ordered[100:102] and at(300) == ordered[300:302]
    first = state.read("SELECT dataAreaId, PurchaseOrderNumber FROM PurchaseOrderLinesV2 "
                       "ORDER BY lower(dataAreaId), lower(PurchaseOrderNumber) LIMIT 1")[0]
    key = {"dataAreaId": first["dataAreaId"], "PurchaseOrderNumber": first["PurchaseOrderNumber"], "LineNumber": 0}
    state.admin_insert("PurchaseOrderLinesV2", {**key, "ItemNumber": "NEW"})  # sorts before everything
    try:
        assert at(100) == ordered[99:101]
    finally:
        state.admin_delete("PurchaseOrderLinesV2", key)
    assert at(100) == ordered[100:102]
