"""The fake ServiceNow over real HTTPS sockets: OAuth, Basic, Table API paging and queries, rate limits, faults."""

from __future__ import annotations

import json
import ssl
import time

import httpx
import pytest

from d365_snow_assets.sandbox.servicenow.encoded_query import escape_value

OUT = "sn_spend_intg_outbound_invoice"
LINES = "sn_spend_intg_outbound_invoice_line"
USERS = "sys_user"  # never empty: the auth tests need a readable row before any invoice exists
NEW = "10"  # the documented instance's "New" integration status


@pytest.fixture
def creds(server):
    return server.world.config.credentials


@pytest.fixture
def admin(server):
    with httpx.Client(base_url=server.snow_url, verify=ssl.create_default_context(cafile=str(server.tls.ca_pem)),
                      timeout=30) as c:
        yield c


def token(admin, creds, **form):
    return admin.post("/oauth_token.do", data={"client_id": creds.snow_client_id,
                                               "client_secret": creds.snow_client_secret, **form})


# -- auth ---------------------------------------------------------------------------------------------------------
def test_client_credentials_grant_and_bearer_use(admin, creds):
    r = token(admin, creds, grant_type="client_credentials")
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] <= 1800 and body["expires_in"] > 1700
    assert "refresh_token" not in body
    r = admin.get(f"/api/now/table/{USERS}?sysparm_limit=1",
                  headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200 and len(r.json()["result"]) == 1
    # A second request while the token is valid returns the same token (reference §3.2).
    assert token(admin, creds, grant_type="client_credentials").json()["access_token"] == body["access_token"]


def test_client_credentials_disabled_gives_documented_401(admin, creds):
    admin.post("/admin/snow/settings", json={"client_credentials_enabled": False})
    r = token(admin, creds, grant_type="client_credentials")
    assert r.status_code == 401
    assert r.json() == {"error_description": "access_denied", "error": "server_error"}


def test_bad_secret_and_json_body_are_denied(admin, creds):
    r = admin.post("/oauth_token.do", data={"grant_type": "client_credentials", "client_id": creds.snow_client_id,
                                            "client_secret": "wrong"})
    assert r.status_code == 401 and r.json()["error_description"] == "access_denied"
    r = admin.post("/oauth_token.do", json={"grant_type": "client_credentials", "client_id": creds.snow_client_id,
                                            "client_secret": creds.snow_client_secret})
    assert r.status_code == 401


def test_password_and_refresh_grants_and_expired_token(server, admin, creds):
    r = token(admin, creds, grant_type="password", username=creds.snow_username, password=creds.snow_password)
    assert r.status_code == 200
    first = r.json()
    assert first["refresh_token"] and first["access_token"] and first["scope"] == "useraccount"
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    assert admin.get(f"/api/now/table/{USERS}?sysparm_limit=1", headers=bearer).status_code == 200

    server.world.tokens.expire_all("snow")
    r = admin.get(f"/api/now/table/{USERS}?sysparm_limit=1", headers=bearer)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="Service-now"'
    assert r.json() == {"error": {"message": "User Not Authenticated",
                                  "detail": "Required to provide Auth information"}, "status": "failure"}

    r = token(admin, creds, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 200
    fresh = r.json()
    assert fresh["access_token"] != first["access_token"]
    r = admin.get(f"/api/now/table/{USERS}?sysparm_limit=1",
                  headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert r.status_code == 200
    assert token(admin, creds, grant_type="refresh_token", refresh_token="nope").status_code == 401
    r = token(admin, creds, grant_type="password", username=creds.snow_username, password="bad")
    assert r.status_code == 401


def test_basic_auth(admin, client, creds):
    assert client.get(f"/api/now/table/{USERS}?sysparm_limit=1").status_code == 200
    r = admin.get(f"/api/now/table/{USERS}", auth=(creds.snow_username, "wrong"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="Service-now"'
    assert admin.get(f"/api/now/table/{USERS}").status_code == 401
    assert admin.post("/api/now/import/sn_fcms_intg_imp_supplier", json={}).status_code == 401


# -- Table API shapes -----------------------------------------------------------------------------------------
def test_values_are_strings_and_references_are_objects(invoices, client):
    r = client.get(f"/api/now/table/{LINES}?sysparm_limit=3")
    assert r.status_code == 200
    refs = ("invoice", "purchase_order_line", "gl_account", "cost_center", "unit")
    for row in r.json()["result"]:
        ref = row["invoice"]
        assert set(ref) == {"link", "value"} and len(ref["value"]) == 32
        assert ref["link"] == f"{invoices.snow_url}/api/now/table/{OUT}/{ref['value']}"
        assert all(isinstance(v, str) for k, v in row.items() if k not in refs)
        assert row["sys_mod_count"] == "0" and len(row["sys_updated_on"]) == 19
    row = client.get(f"/api/now/table/{LINES}?sysparm_limit=1&sysparm_exclude_reference_link=true").json()["result"][0]
    assert isinstance(row["invoice"], str)
    row = client.get(f"/api/now/table/{LINES}?sysparm_limit=1&sysparm_display_value=all"
                     "&sysparm_fields=invoice,line_amount_invoiced,invoice.number").json()["result"][0]
    assert set(row) == {"invoice", "line_amount_invoiced", "invoice.number"}
    assert set(row["invoice"]) == {"display_value", "link", "value"}
    assert row["invoice"]["display_value"].startswith("OBINV")
    assert row["invoice.number"]["value"] == row["invoice"]["display_value"]
    assert set(row["line_amount_invoiced"]) == {"display_value", "value"}


def test_crud_status_codes(server, client):
    r = client.post(f"/api/now/table/{OUT}", json={"supplier_invoice_number": "X-1", "amount_invoiced": 12.5,
                                                   "integration_status": NEW, "bogus": "ignored"})
    assert r.status_code == 201
    rec = r.json()["result"]
    assert rec["amount_invoiced"] == "12.5" and "bogus" not in rec
    assert r.headers["Location"] == f"{server.snow_url}/api/now/table/{OUT}/{rec['sys_id']}"
    r = client.patch(f"/api/now/table/{OUT}/{rec['sys_id']}", json={"processing_message": "hi"})
    assert r.status_code == 200 and r.json()["result"]["sys_mod_count"] == "1"
    assert client.put(f"/api/now/table/{OUT}/{rec['sys_id']}", json={"processing_message": "ho"}).status_code == 200
    assert client.get(f"/api/now/table/{OUT}/{rec['sys_id']}").json()["result"]["processing_message"] == "ho"
    assert client.delete(f"/api/now/table/{OUT}/{rec['sys_id']}").status_code == 204
    r = client.get(f"/api/now/table/{OUT}/{rec['sys_id']}")
    assert r.status_code == 404 and r.json()["error"]["message"] == "No Record found"
    assert client.patch(f"/api/now/table/{OUT}/{'0' * 32}", json={"a": "b"}).status_code == 404
    r = client.get("/api/now/table/no_such_table")
    assert r.status_code == 400 and r.json() == {"error": {"message": "Invalid table no_such_table", "detail": None},
                                                 "status": "failure"}
    assert client.get(f"/api/now/v2/table/{OUT}?sysparm_query=number=nope").json() == {"result": []}
    assert client.get(f"/api/now/v1/table/{OUT}?sysparm_query=number=nope").status_code == 404


def test_paging_link_and_total_count(invoices, client):
    r = client.get(f"/api/now/table/{OUT}?sysparm_limit=7&sysparm_query=ORDERBYnumber")
    assert r.headers["X-Total-Count"] == "20" and len(r.json()["result"]) == 7
    links = dict(reversed(part.split(";rel=")) for part in r.headers["Link"].split(","))
    assert set(links) == {'"first"', '"next"', '"last"'}
    assert "sysparm_offset=7&sysparm_limit=7" in links['"next"'] and "sysparm_offset=14" in links['"last"']
    assert "sysparm_query=ORDERBYnumber" in links['"next"']
    seen = [x["number"] for x in r.json()["result"]]
    next_url = links['"next"'].strip("<>")
    while next_url:
        r = client.get(next_url)
        seen += [x["number"] for x in r.json()["result"]]
        links = dict(reversed(part.split(";rel=")) for part in r.headers["Link"].split(","))
        assert '"prev"' in links
        next_url = links.get('"next"', "").strip("<>")
    assert seen == sorted(seen) and len(seen) == 20
    r = client.get(f"/api/now/table/{OUT}?sysparm_limit=100")
    assert "Link" not in r.headers and r.headers["X-Total-Count"] == "20"
    r = client.get(f"/api/now/table/{OUT}?sysparm_limit=5&sysparm_no_count=true")
    assert "X-Total-Count" not in r.headers
    r = client.get(f"/api/now/table/{OUT}?sysparm_limit=5&sysparm_suppress_pagination_header=true")
    assert "Link" not in r.headers


def test_acl_hidden_rows_make_short_pages_that_are_not_the_end(server, invoices, client, admin):
    admin.post("/admin/snow/settings", json={"acl_hidden_share": 0.3})
    snow = server.world.snow
    hidden = {r["sys_id"] for r in snow.dump(OUT) if snow.is_acl_hidden(OUT, r["sys_id"])}
    assert 0 < len(hidden) < 20
    seen, sizes, offset = [], [], 0
    while True:
        r = client.get(f"/api/now/table/{OUT}?sysparm_limit=5&sysparm_offset={offset}&sysparm_query=ORDERBYsys_id")
        assert r.headers["X-Total-Count"] == "20"
        page = r.json()["result"]
        sizes.append(len(page))
        seen += [x["sys_id"] for x in page]
        if "next" not in r.headers.get("Link", ""):
            break
        offset += 5
    assert any(s < 5 for s in sizes[:-1]), sizes  # a short page came before the end
    assert len(seen) == 20 - len(hidden) and not hidden & set(seen)
    assert client.get(f"/api/now/table/{OUT}/{next(iter(hidden))}").status_code == 404


def test_literal_caret_quote_and_unicode_in_query(server, invoices, client):
    rows = server.world.snow.dump(OUT)
    for needle in ("^", "'", "€"):
        number = next(r["supplier_invoice_number"] for r in rows if needle in r["supplier_invoice_number"])
        query = f"supplier_invoice_number={escape_value(number)}"
        r = client.get(f"/api/now/table/{OUT}", params={"sysparm_query": query})
        assert [x["supplier_invoice_number"] for x in r.json()["result"]] == [number]


def test_or_and_nq_precedence_over_http_on_dot_walked_fields(server, invoices, client):
    snow = server.world.snow
    rows = snow.dump(OUT)
    code = {r["sys_id"]: r["erp_company_code"] for r in snow.dump("sn_fin_legal_entity")}
    les = sorted({code[r["legal_entity"]] for r in rows})
    a, b = les[0], les[1]
    plain = "supplier_invoice_numberSTARTSWITHINV-"  # (amounts are documented as String: they compare as text)

    def plain_number(r: dict) -> bool:
        return r["supplier_invoice_number"].startswith("INV-")

    q = f"legal_entity.erp_company_code={a}^ORlegal_entity.erp_company_code={b}^{plain}"
    got = {x["sys_id"] for x in client.get(f"/api/now/table/{OUT}", params={"sysparm_query": q}).json()["result"]}
    assert got == {r["sys_id"] for r in rows if code[r["legal_entity"]] in (a, b) and plain_number(r)}
    q = f"legal_entity.erp_company_code={a}^NQlegal_entity.erp_company_code={b}^{plain}"
    got = {x["sys_id"] for x in client.get(f"/api/now/table/{OUT}", params={"sysparm_query": q}).json()["result"]}
    assert got == {r["sys_id"] for r in rows if code[r["legal_entity"]] == a
                   or (code[r["legal_entity"]] == b and plain_number(r))}
    assert got and got != {r["sys_id"] for r in rows}


def test_orderby_and_name_value_pairs(server, invoices, client):
    r = client.get(f"/api/now/table/{OUT}", params={"sysparm_query": "ORDERBYDESCamount_invoiced",
                                                    "sysparm_fields": "amount_invoiced"})
    amounts = [x["amount_invoiced"] for x in r.json()["result"]]
    assert amounts == sorted(amounts, reverse=True)  # a String column orders as text
    le = server.world.snow.dump(OUT)[0]["legal_entity"]
    r = client.get(f"/api/now/table/{OUT}", params={"legal_entity": le, "sysparm_fields": "legal_entity",
                                                    "sysparm_exclude_reference_link": "true"})
    assert {x["legal_entity"] for x in r.json()["result"]} == {le}
    assert r.headers["X-Total-Count"] == str(sum(1 for x in server.world.snow.dump(OUT) if x["legal_entity"] == le))


def test_seed_has_same_second_ties(server, invoices):
    stamps = [r["sys_updated_on"] for r in server.world.snow.dump(OUT)]
    assert len(set(stamps)) < len(stamps)


def test_keyset_pagination_survives_a_changing_table(server, invoices, client, admin):
    """The DESIGN §6 keyset loop sees every record still `new` exactly once although records are processed,
    edited and created between pages (offset paging over the same changes would skip rows)."""
    base = f"integration_status={NEW}"
    order = "^ORDERBYsys_updated_on^ORDERBYsys_id"
    query = base + order
    seen: list[str] = []
    processed: set[str] = set()
    page_no = 0
    while True:
        r = client.get(f"/api/now/table/{OUT}", params={"sysparm_query": query, "sysparm_limit": 4,
                                                        "sysparm_fields": "sys_id,sys_updated_on"})
        page = r.json()["result"]
        if not page:
            break
        seen += [x["sys_id"] for x in page]
        page_no += 1
        if page_no <= 3:
            # process the first record of this page, edit a record not yet read, and approve a new invoice
            client.patch(f"/api/now/table/{OUT}/{page[0]['sys_id']}", json={"integration_status": "30"})
            processed.add(page[0]["sys_id"])
            unread = [x for x in server.world.snow.dump(OUT, base) if x["sys_id"] not in seen]
            if unread:
                client.patch(f"/api/now/table/{OUT}/{unread[0]['sys_id']}", json={"processing_message": "edited"})
            admin.post("/admin/snow/approve", json={"count": 1})
        ts, last = page[-1]["sys_updated_on"], page[-1]["sys_id"]
        query = f"{base}^sys_updated_on>{ts}^NQ{base}^sys_updated_on={ts}^sys_id>{last}{order}"
    final_new = {x["sys_id"] for x in server.world.snow.dump(OUT, base)}
    assert final_new <= set(seen)
    assert len(seen) == len(set(seen))
    assert len(final_new) == 20 + 3 - 3


# -- limits and faults --------------------------------------------------------------------------------------------
def test_rate_limit_429_with_headers(client, admin):
    admin.post("/admin/snow/rate_limit", json={"limit": 3, "window_s": 60})
    for _ in range(3):
        r = client.get(f"/api/now/table/{OUT}?sysparm_limit=1")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "3" and len(r.headers["X-RateLimit-Rule"]) == 32
        assert int(r.headers["X-RateLimit-Reset"]) > time.time() - 1
    r = client.get(f"/api/now/table/{OUT}?sysparm_limit=1")
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers["X-RateLimit-Limit"] == "3"
    assert r.json()["error"]["message"] == "Rate limit exceeded"
    assert r.json()["status"] == "failure"
    admin.post("/admin/snow/rate_limit", json={"limit": None})
    r = client.get(f"/api/now/table/{OUT}?sysparm_limit=1")
    assert r.status_code == 200 and "X-RateLimit-Limit" not in r.headers


def test_transaction_cancelled_gives_200_with_broken_json(invoices, client, admin):
    admin.post("/admin/snow/transaction_cancelled", json={"count": 1})
    r = client.get(f"/api/now/table/{OUT}")
    assert r.status_code == 200
    assert "Transaction cancelled: maximum execution time exceeded" in r.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    assert len(client.get(f"/api/now/table/{OUT}").json()["result"]) == 20


def test_admin_dump_counts_and_approve(invoices, admin):
    counts = admin.get("/admin/snow/counts").json()
    assert counts[OUT] == 20
    created = admin.post("/admin/snow/approve", json={"count": 2}).json()["created"]
    dump = admin.get(f"/admin/snow/state/{OUT}").json()
    assert dump["count"] == 22 and {r["sys_id"] for r in dump["rows"]} >= set(created)
    invalid = admin.get("/admin/snow/invalid_invoices").json()
    assert {k[0] for k in invalid.values()} == {"unknown_gl_account", "suspended_cost_center", "vendor_on_hold",
                                                "amount_mismatch"}


def test_pysnc_reads_the_sandbox(server, invoices, creds, monkeypatch):
    from pysnc import ServiceNowClient

    # requests lets these variables override a session's verify= (psf/requests#3829); pysnc sets session.verify.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    sn = ServiceNowClient(server.snow_url, (creds.snow_username, creds.snow_password), verify=str(server.tls.ca_pem))
    gr = sn.GlideRecord(OUT, batch_size=6)
    gr.add_query("integration_status", NEW)
    gr.query()
    numbers = [rec.get_value("number") for rec in gr]
    assert len(numbers) == 20 == len(set(numbers))
    lines = sn.GlideRecord(LINES)
    lines.add_query("invoice", server.world.snow.dump(OUT)[0]["sys_id"])
    lines.query()
    assert lines.get_row_count() >= 1
    for line in lines:
        assert line.get_display_value("invoice").startswith("OBINV")
        assert line.get_display_value("integration_status") == "New"  # a choice's display value is its label
    one = sn.GlideRecord(OUT)
    assert one.get(server.world.snow.dump(OUT)[0]["sys_id"])
    assert one.get_value("integration_status") == NEW
    po = one.get_display_value("purchase_order")
    # Master data the connector pushed, read back by a dot-walked query on a reference.
    lines = sn.GlideRecord("sn_shop_purchase_order_line")
    lines.add_query("purchase_order.erp_number", po)
    lines.add_query("purchase_order", one.get_value("purchase_order"))
    lines.query()
    assert lines.get_row_count() >= 1
    for line in lines:
        assert line.get_display_value("purchase_order") == po and line.get_value("erp_line_number")
    sn.session.close()  # an open keep-alive connection would hold up the server's shutdown
