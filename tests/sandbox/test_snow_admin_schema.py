"""Admin knobs that reshape the instance for `fit` tests (``/admin/snow/schema/...``): columns, mandatory flags,
coalesce fields, insertMultiple mapping, and read denial answered as ServiceNow answers it."""

from __future__ import annotations

import pytest

from .test_snow_import import insert_multiple, legal_entities, rows

SUPPLIER_STAGE = "sn_fcms_intg_imp_supplier"
ORDER_STAGE = "sn_fcms_intg_imp_order"
OUT = "sn_spend_intg_outbound_invoice"


def admin(client, knob: str, **body: object) -> dict:
    r = client.post(f"/admin/snow/schema/{knob}", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def labels(client, table: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows(client, "sys_dictionary", f"name={table}^elementISNOTEMPTY^ORDERBYsys_created_on",
                  "element,column_label"):
        out.setdefault(r["column_label"], []).append(r["element"])
    return out


def test_remove_a_column(client):
    admin(client, "remove_column", table=SUPPLIER_STAGE, element="legal_name")
    assert "Legal name" not in labels(client, SUPPLIER_STAGE)
    assert rows(client, "sys_documentation", f"name={SUPPLIER_STAGE}^element=legal_name") == []
    (staged,) = insert_multiple(client, SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "V-1",
                                                          "Legal name": "Dropped"}])
    assert staged["sys_import_state"] == "inserted" and "legal_name" not in staged
    assert rows(client, "sn_fin_supplier", "", "legal_name") == [{"legal_name": ""}]
    assert client.post("/admin/snow/schema/remove_column",
                       json={"table": SUPPLIER_STAGE, "element": "legal_name"}).status_code == 400


def test_a_second_column_with_a_label_makes_it_ambiguous(client):
    admin(client, "add_column", table=SUPPLIER_STAGE, element="u_legal_name", label="Legal name")
    assert labels(client, SUPPLIER_STAGE)["Legal name"] == ["legal_name", "u_legal_name"]
    (staged,) = insert_multiple(client, SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "V-1",
                                                          "Legal name": "Which one?"}])
    assert (staged["legal_name"], staged["u_legal_name"]) == ("Which one?", "")  # the first column wins
    admin(client, "remove_column", table=SUPPLIER_STAGE, element="legal_name")
    (staged,) = insert_multiple(client, SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "V-2",
                                                          "Legal name": "Now unique"}])
    assert staged["u_legal_name"] == "Now unique"


def test_add_a_typed_mandatory_reference_column_and_flip_mandatory(client):
    admin(client, "add_column", table=ORDER_STAGE, element="u_buyer", label="Buyer", type="reference",
          reference="sys_user", mandatory=True)
    (col,) = rows(client, "sys_dictionary", f"name={ORDER_STAGE}^element=u_buyer",
                  "internal_type,reference,mandatory,column_label,sys_scope.scope")
    assert col == {"internal_type": "reference", "reference": "sys_user", "mandatory": "true",
                   "column_label": "Buyer", "sys_scope.scope": "global"}
    admin(client, "mandatory", table=ORDER_STAGE, element="u_buyer", mandatory=False)
    admin(client, "mandatory", table=ORDER_STAGE, element="po_amount")
    got = {r["element"]: r["mandatory"] for r in rows(client, "sys_dictionary",
                                                      f"name={ORDER_STAGE}^elementINu_buyer,po_amount")}
    assert got == {"u_buyer": "false", "po_amount": "true"}
    bad = client.post("/admin/snow/schema/add_column", json={"table": ORDER_STAGE, "element": "po_amount",
                                                             "label": "Again"})
    assert bad.status_code == 400 and "already has" in bad.json()["error"]


def test_a_narrower_coalesce_collapses_po_numbers_repeated_across_companies(server, client):
    legal_entities(server, "USMF", "DEMF")
    assert admin(client, "coalesce", staging=ORDER_STAGE, fields=["erp_source", "erp_number"])["result"] == [
        "erp_number", "erp_source"]
    orders = [{"ERP source": "D365FO", "Legal entity": le, "ERP PO number": "PO-000001"} for le in ("USMF", "DEMF")]
    assert [r["sys_import_state"] for r in insert_multiple(client, ORDER_STAGE, orders)] == ["inserted", "updated"]
    assert len(rows(client, "sn_shop_purchase_order")) == 1  # the duplicate risk `fit` must name
    assert client.post("/admin/snow/schema/coalesce",
                       json={"staging": ORDER_STAGE, "fields": ["no_such_field"]}).status_code == 400


def test_insert_multiple_column_mapping_knob(client):
    admin(client, "insert_multiple", staging=SUPPLIER_STAGE, column_mapping="column_name")
    (record,) = rows(client, "sys_rest_insert_multiple", "", "source_table,column_mapping,transformation")
    assert record == {"source_table": SUPPLIER_STAGE, "column_mapping": "column_name",
                      "transformation": "asynchronous"}
    staged = insert_multiple(client, SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "V-1"},
                                                      {"erp_source": "D365FO", "erp_company_code": "V-2"}])
    assert [r["sys_import_state"] for r in staged] == ["skipped", "inserted"]
    admin(client, "insert_multiple", staging=SUPPLIER_STAGE, column_mapping="label")
    assert [r["sys_import_state"] for r in insert_multiple(
        client, SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "V-3"}])] == ["inserted"]


def test_denied_reads_answer_as_servicenow_does(invoices, client, monkeypatch):
    out = rows(client, OUT)[0]
    admin(client, "deny_reads", tables=["sys_dictionary", "sn_fin_legal_entity"])
    r = client.get("/api/now/table/sys_dictionary", params={"sysparm_query": "name=sys_user"})
    assert r.status_code == 403
    assert r.json() == {"error": {"message": "Insufficient rights to query records",
                                  "detail": "No permission to read table 'sys_dictionary'"}, "status": "failure"}
    entry = invoices.world.snow.dump("sys_dictionary")[0]["sys_id"]
    assert client.get(f"/api/now/table/sys_dictionary/{entry}").status_code == 404  # a record: not found
    # Dot-walking into a denied table: a query on it is refused, a field through it comes back empty.
    r = client.get(f"/api/now/table/{OUT}", params={"sysparm_query": "legal_entity.erp_company_code=USMF"})
    assert r.status_code == 403 and r.json()["error"]["detail"] == \
        "Field(s) present in the query do not have permission to be read"
    got = client.get(f"/api/now/table/{OUT}/{out['sys_id']}",
                     params={"sysparm_fields": "legal_entity.erp_company_code,legal_entity,number",
                             "sysparm_display_value": "true"}).json()["result"]
    assert got["legal_entity.erp_company_code"] == "" and got["legal_entity"]["display_value"] == ""
    assert got["number"] == out["number"]

    from pysnc import ServiceNowClient
    from pysnc.exceptions import RoleException

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    creds = invoices.world.config.credentials
    sn = ServiceNowClient(invoices.snow_url, (creds.snow_username, creds.snow_password),
                          verify=str(invoices.tls.ca_pem))
    gr = sn.GlideRecord("sys_dictionary")
    with pytest.raises(RoleException):
        gr.query()
    sn.session.close()

    admin(client, "deny_reads", tables=[])
    assert client.get("/api/now/table/sys_dictionary", params={"sysparm_limit": 1}).status_code == 200
