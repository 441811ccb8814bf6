"""Import Set API on the documented schema: label-keyed insertMultiple, column-name mode, single imports, and
transforms driven by the sys_transform_map / sys_transform_entry records (reference/servicenow-s2p-schema.md §2)."""

from __future__ import annotations

import time

SUPPLIER_STAGE = "sn_fcms_intg_imp_supplier"
LE_STAGE = "sn_fcms_intg_legal_entity_stage"
GL_STAGE = "sn_fcms_intg_gl_account_stage"
ORDER_STAGE = "sn_fcms_intg_imp_order"
LINE_STAGE = "sn_fcms_intg_imp_order_line"
CC_STAGE = "sn_fcms_intg_imp_cost_center"


def supplier(code: str, name: str = "Contoso 'Steel' ^ GmbH", source: str = "D365FO") -> dict[str, str]:
    """A supplier staging row by column NAME (the single-row API's keys)."""
    return {"erp_source": source, "erp_company_code": code, "legal_name": name, "status": "active"}


def count(client, table: str, query: str = "") -> int:
    r = client.get(f"/api/now/table/{table}", params={"sysparm_query": query, "sysparm_limit": 1})
    return int(r.headers["X-Total-Count"])


def rows(client, table: str, query: str = "", fields: str = "") -> list[dict]:
    return client.get(f"/api/now/table/{table}", params={"sysparm_query": query, "sysparm_fields": fields,
                                                         "sysparm_exclude_reference_link": "true"}).json()["result"]


def wait_processed(client, import_set_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rec = client.get(f"/api/now/table/sys_import_set/{import_set_id}").json()["result"]
        if rec["state"] == "processed":
            return rec
        time.sleep(0.05)
    raise AssertionError("import set never processed")


def insert_multiple(client, staging: str, records: list[dict]) -> list[dict]:
    """insertMultiple, then the staging rows of its import set in row order."""
    body = client.post(f"/api/now/import/{staging}/insertMultiple", json={"records": records}).json()
    wait_processed(client, body["import_set_id"])
    return rows(client, staging, f"sys_import_set={body['import_set_id']}^ORDERBYsys_import_row")


def legal_entities(server, *codes: str) -> None:
    server.world.snow.import_records(LE_STAGE, [{"ERP company code": c, "ERP source": "D365FO"} for c in codes])


def test_single_import_takes_column_names_inserted_ignored_updated(server, client):
    r = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-1"))
    assert r.status_code == 201
    body = r.json()
    assert body["import_set"].startswith("ISET") and body["staging_table"] == SUPPLIER_STAGE
    (res,) = body["result"]
    assert res["status"] == "inserted" and res["table"] == "sn_fin_supplier"
    assert res["transform_map"] == "Master data supplier" and res["display_value"] == "Contoso 'Steel' ^ GmbH"
    assert res["display_name"] == "legal_name"
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
    assert rec["legal_name"] == "Renamed" and rec["sys_mod_count"] == "1" and rec["number"].startswith("SUP")
    # The same code under another ERP source is another supplier (coalesce: ERP source + ERP company code).
    other = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-1", source="SAP")).json()["result"][0]
    assert other["status"] == "inserted" and count(client, "sn_fin_supplier") == 2
    # Labels are not column names: the single-row API drops them like any unknown key.
    (label_keyed,) = client.post(f"/api/now/import/{SUPPLIER_STAGE}",
                                 json={"ERP source": "D365FO", "ERP company code": "V-2"}).json()["result"]
    assert label_keyed["status"] == "skipped"


def test_skipped_on_missing_coalesce_value_and_errors_with_their_codes(server, client):
    res = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("")).json()["result"][0]
    assert res["status"] == "skipped" and "erp_company_code" in res["status_message"]
    staged = client.get(f"/api/now/table/{SUPPLIER_STAGE}/{res['sys_id']}").json()["result"]
    assert staged["sys_import_state"] == "skipped"  # skipped rows report the import set row's sys_id
    assert count(client, "sn_fin_supplier") == 0
    order = {"erp_source": "D365FO", "legal_entity": "USMF", "erp_po_number": "PO-1", "po_amount": "12,50 EUR"}
    res = client.post(f"/api/now/import/{ORDER_STAGE}", json=order).json()["result"][0]
    assert res["status"] == "error" and "USMF" in res["error_message"]  # the legal entity must exist: rejected
    legal_entities(server, "USMF")
    res = client.post(f"/api/now/import/{ORDER_STAGE}", json=order).json()["result"][0]
    assert res["status"] == "error" and "12,50 EUR" in res["error_message"]
    (staged,) = rows(client, ORDER_STAGE, f"sys_id={res['sys_id']}", "sys_row_error,sys_import_state_comment")
    (error,) = rows(client, "sys_import_set_row_error", f"sys_id={staged['sys_row_error']}")
    assert error["error_code"] == "800" and error["error_message"] == staged["sys_import_state_comment"]
    first = rows(client, "sys_import_set_row_error", "error_code=100")
    assert len(first) == 1 and "not found in sn_fin_legal_entity" in first[0]["error_message"]
    assert client.post("/api/now/import/no_such_stage", json=order).status_code == 400
    assert client.post("/api/now/import/sn_fin_supplier", json=order).status_code == 400  # not a staging table


def test_import_row_lookup(client):
    res = client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-9")).json()
    row_id = rows(client, SUPPLIER_STAGE, "erp_company_code=V-9")[0]["sys_id"]
    got = client.get(f"/api/now/import/{SUPPLIER_STAGE}/{row_id}").json()
    assert got["result"][0]["sys_id"] == res["result"][0]["sys_id"] and got["result"][0]["status"] == "inserted"
    assert client.get(f"/api/now/import/{SUPPLIER_STAGE}/{'0' * 32}").status_code == 404


def test_insert_multiple_keys_are_labels_and_unknown_keys_are_dropped(client):
    records = [{"ERP source": "D365FO", "ERP company code": "L-1", "Legal name": "By label",
                "erp_company_code": "BY-ELEMENT", "legal name": "wrong case", "No such field": "x"},
               {"erp_source": "D365FO", "erp_company_code": "L-2", "legal_name": "Only elements"}]
    staged = insert_multiple(client, SUPPLIER_STAGE, records)
    assert [(r["erp_company_code"], r["legal_name"], r["sys_import_state"]) for r in staged] == [
        ("L-1", "By label", "inserted"), ("", "", "skipped")]
    assert "no_such_field" not in staged[0] and count(client, "sn_fin_supplier") == 1


def test_column_name_mode_and_synchronous_transform_come_from_sys_rest_insert_multiple(server, client):
    # An admin creates the record through the Table API (any client could): the next request obeys it.
    r = client.post("/api/now/table/sys_rest_insert_multiple",
                    json={"source_table": SUPPLIER_STAGE, "column_mapping": "column_name"})
    assert r.status_code == 201
    staged = insert_multiple(client, SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "C-1"},
                                                      supplier("C-2")])
    assert [(r["erp_company_code"], r["sys_import_state"]) for r in staged] == [("", "skipped"), ("C-2", "inserted")]
    client.patch(f"/api/now/table/sys_rest_insert_multiple/{r.json()['result']['sys_id']}",
                 json={"transformation": "synchronous"})
    body = client.post(f"/api/now/import/{SUPPLIER_STAGE}/insertMultiple",
                       json={"records": [supplier("C-2"), supplier("C-3")]}).json()
    assert [x["status"] for x in body["result"]] == ["ignored", "inserted"]  # transformed before the answer
    assert client.get(f"/api/now/table/sys_import_set/{body['import_set_id']}").json()["result"]["state"] == \
        "processed"
    # Other staging tables keep the documented default: labels, asynchronous.
    body = client.post(f"/api/now/import/{LE_STAGE}/insertMultiple",
                       json={"records": [{"ERP company code": "USMF", "ERP source": "D365FO"}]}).json()
    assert set(body) == {"import_set_id", "multi_import_set_id"}


def test_insert_multiple_async_rows_readable_in_sys_import_set_row(client):
    client.post(f"/api/now/import/{SUPPLIER_STAGE}", json=supplier("V-0"))  # exists, will be ignored
    records = [{"ERP source": "D365FO", "ERP company code": f"V-{i}", "Legal name": "Contoso 'Steel' ^ GmbH",
                "Status": "active"} for i in range(300)] + [{"ERP source": "D365FO", "Legal name": "no key"}]
    records[5]["Legal name"] = 42  # a number is coerced to a string, as the Import Set API documents
    r = client.post(f"/api/now/import/{SUPPLIER_STAGE}/insertMultiple", json={"records": records})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"import_set_id", "multi_import_set_id"}
    assert client.get(f"/api/now/table/sys_import_set/{body['import_set_id']}").json()["result"]["state"] in (
        "loading", "processed")
    wait_processed(client, body["import_set_id"])
    # The parent table returns every staging row, with the parent's columns only.
    got = rows(client, "sys_import_set_row", f"sys_import_set={body['import_set_id']}^ORDERBYsys_import_row",
               "sys_import_row,sys_import_state,sys_import_state_comment,sys_target_table,sys_target_sys_id,"
               "sys_row_error,sys_transform_map.name,sys_class_name,erp_company_code")
    assert len(got) == 301 and "erp_company_code" not in got[0]
    states = [x["sys_import_state"] for x in got]
    assert states[0] == "ignored" and states[1:300] == ["inserted"] * 299 and states[300] == "skipped"
    assert got[0]["sys_import_state_comment"] == "No field values changed"
    assert got[1]["sys_target_table"] == "sn_fin_supplier" and len(got[1]["sys_target_sys_id"]) == 32
    assert got[1]["sys_transform_map.name"] == "Master data supplier" and got[1]["sys_class_name"] == SUPPLIER_STAGE
    assert [x["sys_import_row"] for x in got[:3]] == ["0", "1", "2"]
    assert count(client, "sn_fin_supplier") == 300
    assert rows(client, "sn_fin_supplier", "erp_company_code=V-5")[0]["legal_name"] == "42"
    run = rows(client, "sys_import_set_run", f"set={body['import_set_id']}")[0]
    assert (run["inserts"], run["ignored"], run["skipped"], run["total"]) == ("299", "1", "1", "301")

    # Re-sending the whole batch changes nothing: every row ignored, still 300 suppliers.
    again = client.post(f"/api/now/import/{SUPPLIER_STAGE}/insertMultiple", json={"records": records[:300]}).json()
    wait_processed(client, again["import_set_id"])
    assert count(client, "sys_import_set_row", f"sys_import_set={again['import_set_id']}^sys_import_state=ignored") \
        == 300
    assert count(client, "sn_fin_supplier") == 300


def test_coalesce_follows_the_entry_records(server, client):
    def gl(number: str, name: str) -> dict[str, str]:
        return {"ERP source": "D365FO", "Number": number, "Account name": name, "Inactive": "false"}

    assert [r["sys_import_state"] for r in insert_multiple(client, GL_STAGE, [gl("600100", "Office"),
                                                                             gl("600110", "Raw")])] == \
        ["inserted", "inserted"]
    (entry,) = rows(client, "sys_transform_entry", "map.name=GL account load data^target_field=gl_account",
                    "sys_id,coalesce,source_field")
    assert entry["coalesce"] == "true" and entry["source_field"] == "number"
    # An admin unticks Coalesce on the account number: ERP source alone now matches, so the next account
    # overwrites the first record instead of creating its own (the duplicate risk `fit` must report).
    assert client.patch(f"/api/now/table/sys_transform_entry/{entry['sys_id']}",
                        json={"coalesce": "false"}).status_code == 200
    (state,) = [r["sys_import_state"] for r in insert_multiple(client, GL_STAGE, [gl("600120", "Tools")])]
    assert state == "updated" and count(client, "sn_fin_gl_account", "erp_source=D365FO") == 2
    assert count(client, "sn_fin_gl_account", "gl_account=600100") == 0
    # The admin knob sets the coalesce fields back.
    assert server.world.snow.set_coalesce(GL_STAGE, ["erp_source", "gl_account"]) == ["erp_source", "gl_account"]
    assert [r["sys_import_state"] for r in insert_multiple(client, GL_STAGE, [gl("600130", "New")])] == ["inserted"]


def test_coalesce_ignores_case_unless_the_entry_is_case_sensitive(server, client):
    snow = server.world.snow
    assert snow.import_records(SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "v-7"}]) == ["inserted"]
    assert snow.import_records(SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "V-7"}]) == ["updated"]
    (entry,) = rows(client, "sys_transform_entry", "map.name=Master data supplier^target_field=erp_company_code")
    client.patch(f"/api/now/table/sys_transform_entry/{entry['sys_id']}", json={"coalesce_case_sensitive": "true"})
    assert snow.import_records(SUPPLIER_STAGE, [{"ERP source": "D365FO", "ERP company code": "v-7"}]) == ["inserted"]
    assert count(client, "sn_fin_supplier") == 2


def test_po_lines_find_their_order_by_number_and_legal_entity(server, client):
    """The same PO number in two companies: each line references its own company's order (the map's source
    script), and a line whose order was never pushed fails (§3.5: "PO lines that arrive without a PO fail")."""
    legal_entities(server, "USMF", "DEMF")
    orders = [{"ERP source": "D365FO", "Legal entity": le, "ERP PO number": "PO-000001", "PO amount": "10.00"}
              for le in ("USMF", "DEMF")]
    assert [r["sys_import_state"] for r in insert_multiple(client, ORDER_STAGE, orders)] == ["inserted", "inserted"]
    lines = [{"ERP source": "D365FO", "Legal entity": le, "ERP PO number": po, "ERP PO line number": "1",
              "Unit price": "10.00"} for le, po in (("USMF", "PO-000001"), ("DEMF", "PO-000001"),
                                                    ("DEMF", "PO-000009"))]
    staged = insert_multiple(client, LINE_STAGE, lines)
    assert [r["sys_import_state"] for r in staged] == ["inserted", "inserted", "error"]
    assert "PO-000009" in staged[2]["sys_import_state_comment"]
    got = rows(client, "sn_shop_purchase_order_line", "ORDERBYlegal_entity.erp_company_code",
               "purchase_order.legal_entity.erp_company_code,legal_entity.erp_company_code,purchase_order.erp_number")
    assert [(r["legal_entity.erp_company_code"], r["purchase_order.legal_entity.erp_company_code"],
             r["purchase_order.erp_number"]) for r in got] == [("DEMF", "DEMF", "PO-000001"),
                                                               ("USMF", "USMF", "PO-000001")]


def test_cost_center_with_a_blank_legal_entity_is_shared(server, client):
    legal_entities(server, "USMF")
    centers = [{"ERP source": "D365FO", "Legal entity": le, "Code": "010", "Account number": "010", "Name": name,
                "Valid from": "2018-01-01"} for le, name in (("", "Finance"), ("USMF", "Finance US"))]
    assert [r["sys_import_state"] for r in insert_multiple(client, CC_STAGE, centers)] == ["inserted", "inserted"]
    assert [r["sys_import_state"] for r in insert_multiple(client, CC_STAGE, centers[:1])] == ["ignored"]
    got = rows(client, "cmn_cost_center", "ORDERBYname", "name,legal_entity,valid_from,code")
    assert [(r["name"], bool(r["legal_entity"])) for r in got] == [("Finance", False), ("Finance US", True)]
    assert got[0]["valid_from"] == "2018-01-01 00:00:00"  # a date into a Date/Time column
