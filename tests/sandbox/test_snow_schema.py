"""The instance describes itself as a real one does: the §11 discovery reads (sys_db_object, sys_dictionary with
parents, sys_documentation, sys_rest_insert_multiple, sys_transform_map/entry, sys_choice) over the Table API."""

from __future__ import annotations

import pytest

from d365_snow_assets.sandbox.servicenow.schema import derive_element

from .snow_world import Discovery

STAGING = ("sn_fcms_intg_legal_entity_stage", "sn_fcms_intg_imp_supplier", "sn_fcms_intg_supplier_legal_entity_inbound",
           "sn_fcms_intg_imp_order", "sn_fcms_intg_imp_order_line", "sn_fcms_intg_gl_account_stage",
           "sn_fcms_intg_imp_cost_center", "sn_fcms_intg_payment_term_stage",
           "sn_spend_intg_imp_invoice_payment_detail")


def get(client, table: str, **params: str) -> list[dict]:
    r = client.get(f"/api/now/table/{table}", params={"sysparm_limit": "3000", **params})
    assert r.status_code == 200, r.text
    return r.json()["result"]


@pytest.mark.parametrize(("label", "element"), [
    ("County / District", "county_district"), ("Default tax code - deprecated", "default_tax_code_deprecated"),
    ("On-boarded by", "on_boarded_by"), ("Remit to state/province", "remit_to_state_province")])
def test_elements_are_derived_from_labels(label, element):
    assert derive_element(label) == element


def test_import_table_elements_follow_their_documented_siblings():
    assert derive_element("Remit to ZIP/postal code", import_table=True) == "u_remit_to_zip_or_postal_code"
    assert derive_element("Payment reference ID", import_table=True) == "u_payment_reference_id"


def test_tables_with_parent_and_scope(client):
    names = ",".join((*STAGING, "sn_shop_invoice", "sn_fin_legal_entity", "sn_spend_intg_outbound_invoice"))
    got = {r["name"]: r for r in get(client, "sys_db_object", sysparm_query=f"nameIN{names}",
                                     sysparm_fields="name,label,super_class.name,sys_scope.scope")}
    assert set(got) == set(names.split(","))
    assert {got[t]["super_class.name"] for t in STAGING} == {"sys_import_set_row"}
    assert got["sn_shop_invoice"]["super_class.name"] == "sn_fin_base_invoice"
    assert got["sn_fcms_intg_imp_supplier"]["sys_scope.scope"] == "sn_fcms_intg"
    assert got["sn_spend_intg_outbound_invoice"]["label"] == "Outbound invoice"
    assert got["sn_fin_legal_entity"]["super_class.name"] == ""


def test_dictionary_with_inherited_columns_in_the_parent(client):
    rows = get(client, "sys_dictionary", sysparm_display_value="all",
               sysparm_query="nameINsn_fcms_intg_legal_entity_stage,sys_import_set_row^ORDERBYname^ORDERBYelement",
               sysparm_fields="name,element,column_label,internal_type,reference,mandatory,max_length,active")
    own = {r["element"]["value"]: r for r in rows if r["name"]["value"] == "sn_fcms_intg_legal_entity_stage"}
    assert set(own) == {"", "city", "country", "erp_company_code", "erp_source", "global_company", "industry",
                        "legal_name", "local_currency", "street"}
    assert own[""]["internal_type"]["value"] == "collection"  # the table's own row, carrying its label
    assert own[""]["column_label"]["value"] == "Legal Entity stage inbound"
    assert own["erp_company_code"]["column_label"]["value"] == "ERP company code"
    assert own["erp_company_code"]["mandatory"]["value"] == "true" and own["city"]["mandatory"]["value"] == "false"
    assert own["city"]["internal_type"] == {"display_value": "String", "value": "string",
                                            "link": own["city"]["internal_type"]["link"]}
    parent = {r["element"]["value"] for r in rows if r["name"]["value"] == "sys_import_set_row"}
    assert {"sys_import_state", "sys_target_sys_id", "sys_import_set", "sys_id"} <= parent
    assert not parent & set(own) - {""}  # inherited columns are not in the child's rows


def test_reference_columns_name_their_tables(client):
    rows = get(client, "sys_dictionary", sysparm_query="name=sn_spend_intg_outbound_invoice^internal_type=reference",
               sysparm_fields="element,column_label,reference", sysparm_exclude_reference_link="true")
    refs = {r["column_label"]: (r["element"], r["reference"]) for r in rows}
    assert refs["Supplier"] == ("supplier", "sn_fin_supplier")
    assert refs["Legal entity"] == ("legal_entity", "sn_fin_legal_entity")
    assert refs["Purchase order"] == ("purchase_order", "sn_shop_purchase_order")
    assert refs["Payment terms"] == ("payment_terms", "sn_shop_payment_term")
    (erp,) = get(client, "sys_dictionary", sysparm_query="name=sn_fin_legal_entity^element=erp_source",
                 sysparm_fields="internal_type,reference.name", sysparm_exclude_reference_link="true")
    assert erp == {"internal_type": "reference", "reference.name": "sn_fin_erp_source"}
    (status,) = get(client, "sys_dictionary",
                    sysparm_query="name=sn_spend_intg_outbound_invoice^column_label=ERP source",
                    sysparm_fields="internal_type")
    assert status["internal_type"]["value"] == "string"  # "Target ERP where the invoice will be posted"


def test_documentation_labels(client):
    rows = get(client, "sys_documentation", sysparm_query="name=sn_spend_intg_imp_invoice_payment_detail^language=en",
               sysparm_fields="element,label")
    labels = {r["element"]: r["label"] for r in rows}
    assert labels["u_erp_invoice_number"] == "ERP invoice number"
    assert labels["u_remit_to_zip_or_postal_code"] == "Remit to ZIP/postal code"
    assert "Legal entity" not in labels.values()  # the documented table has no legal entity


def test_insert_multiple_settings_are_discoverable_by_label(client):
    rows = get(client, "sys_dictionary", sysparm_query="name=sys_rest_insert_multiple^elementISNOTEMPTY",
               sysparm_fields="element,column_label", sysparm_exclude_reference_link="true")
    by_label = {r["column_label"]: r["element"] for r in rows}
    assert {"Source table", "Column mapping", "Transformation", "Use data source format"} <= set(by_label)
    choices = get(client, "sys_choice", sysparm_query=f"name=sys_rest_insert_multiple^element="
                                                      f"{by_label['Column mapping']}^ORDERBYsequence",
                  sysparm_fields="value,label")
    assert [(c["value"], c["label"]) for c in choices] == [("label", "Label"), ("column_name", "Column name")]
    assert get(client, "sys_rest_insert_multiple") == []  # the documented default: no record, labels


def test_transform_maps_coalesce_on_the_connectors_keys(client):
    maps = get(client, "sys_transform_map", sysparm_fields="name,source_table,target_table,active")
    assert {m["source_table"] for m in maps} == set(STAGING)
    entries = get(client, "sys_transform_entry", sysparm_query="coalesce=true^ORDERBYmap",
                  sysparm_fields="map.name,target_field,coalesce_empty_fields,reference_value_field",
                  sysparm_exclude_reference_link="true")
    keys: dict[str, set[str]] = {}
    for e in entries:
        keys.setdefault(e["map.name"], set()).add(e["target_field"])
    assert keys == {
        "Transform legal entities": {"erp_source", "erp_company_code"},
        "Master data supplier": {"erp_source", "erp_company_code"},
        "Load legal entity-mapping data": {"erp_source", "supplier", "legal_entity"},
        "Order stage": {"erp_source", "legal_entity", "erp_number"},
        "Order line stage": {"erp_source", "legal_entity", "purchase_order", "erp_line_number"},
        "GL account load data": {"erp_source", "gl_account"},
        "Master data cost center": {"erp_source", "legal_entity", "code"},
        "Load payment terms": {"name"},
        "Invoice payment detail import": {"erp_source", "erp_supplier_code", "erp_invoice_number",
                                          "payment_reference_id"}}
    shared = [e for e in entries if e["map.name"] == "Master data cost center" and e["target_field"] == "legal_entity"]
    assert shared[0]["coalesce_empty_fields"] == "true"  # a blank legal entity = a shared cost center
    (line_po,) = get(client, "sys_transform_entry",
                     sysparm_query="map.name=Order line stage^target_field=purchase_order",
                     sysparm_fields="use_source_script,source_script,choice_action")
    assert line_po["use_source_script"] == "true" and line_po["choice_action"] == "reject"
    assert "source.erp_po_number" in line_po["source_script"]


def test_choices(client):
    def values(table: str, element: str) -> list[tuple[str, str]]:
        rows = get(client, "sys_choice", sysparm_query=f"name={table}^element={element}^ORDERBYsequence",
                   sysparm_fields="value,label,inactive,language")
        assert {(r["inactive"], r["language"]) for r in rows} == {("false", "en")}
        return [(r["value"], r["label"]) for r in rows]

    expected = [("5", "Draft"), ("10", "New"), ("20", "In progress"), ("30", "Processed"), ("40", "Error")]
    assert values("sn_spend_intg_outbound_invoice", "integration_status") == expected
    assert values("sn_spend_intg_outbound_invoice_line", "integration_status") == expected
    states = dict(values("sn_fin_base_invoice", "state"))
    assert states["approved"] == "Approved" and states["pending_payment"] == "Pending payment"
    assert states["paid"] == "Paid" and states["po_matching_completed"] == "PO matching completed"
    assert [v for v, _ in values("sn_spend_intg_imp_invoice_payment_detail", "u_payment_method")] == [
        "bank_transfer", "cash_payment", "cheque", "credit_card", "debit_card", "wire_transfer"]


def test_a_discovering_client_learns_the_documented_defaults(client):
    discovery = Discovery(client)
    assert discovery.lineage("sn_shop_invoice") == ["sn_shop_invoice", "sn_fin_base_invoice"]
    assert discovery.el("sn_shop_invoice", "Amount invoiced (Transaction currency)") == "invoice_amount"
    assert discovery.el("sn_fcms_intg_imp_supplier", "ERP company code") == "erp_company_code"
    assert discovery.mode("sn_fcms_intg_imp_supplier") == "label"
    assert discovery.choice("sn_spend_intg_outbound_invoice", "Integration status", "Processed") == "30"


def test_choice_display_values_and_dot_walks(invoices, client):
    rows = get(client, "sn_spend_intg_outbound_invoice", sysparm_display_value="true", sysparm_limit="2",
               sysparm_fields="integration_status,legal_entity,legal_entity.erp_company_code,supplier.erp_company_code,"
                              "purchase_order.erp_number,payment_terms.name")
    for row in rows:
        assert row["integration_status"] == "New"  # a choice displays its label
        assert row["legal_entity"]["display_value"].startswith("Contoso")  # the referenced record's display field
        assert row["legal_entity.erp_company_code"] in ("USMF", "DEMF", "GBSI")
        assert row["purchase_order.erp_number"] and row["payment_terms.name"].startswith("Net")
    raw = get(client, "sn_spend_intg_outbound_invoice", sysparm_limit="1", sysparm_fields="integration_status")
    assert raw == [{"integration_status": "10"}]
    sorted_rows = get(client, "sn_spend_intg_outbound_invoice",
                      sysparm_query="ORDERBYlegal_entity.erp_company_code^ORDERBYnumber",
                      sysparm_fields="legal_entity.erp_company_code")
    codes = [r["legal_entity.erp_company_code"] for r in sorted_rows]
    assert codes == sorted(codes) and len(codes) == 20


# The reads reference/servicenow-s2p-schema.md §11 tells a connector to make, verbatim.
_T = ("sn_fcms_intg_imp_supplier,sn_fcms_intg_supplier_legal_entity_inbound,sn_fcms_intg_supplier_location_inbound,"
      "sn_fcms_intg_supplier_payment_inbound_stage,sn_fcms_intg_supplier_contact_inbound,"
      "sn_fcms_intg_legal_entity_stage,sn_fcms_intg_imp_order,sn_fcms_intg_imp_order_line,"
      "sn_fcms_intg_gl_account_stage,sn_fcms_intg_imp_cost_center,sn_fcms_intg_payment_term_stage,"
      "sn_spend_intg_imp_invoice_payment_detail,sn_spend_intg_outbound_invoice,sn_spend_intg_outbound_invoice_line,"
      "sn_spend_intg_outbound_invoice_tax_line,sn_fin_supplier,sn_fin_supplier_detail,sn_fin_legal_entity,"
      "sn_fin_erp_source,sn_shop_purchase_order,sn_shop_order,sn_shop_purchase_order_line,sn_shop_line,"
      "sn_fin_gl_account,cmn_cost_center,sn_shop_payment_term,sn_shop_invoice,sn_fin_base_invoice,"
      "sn_shop_invoice_payment_detail,sys_import_set_row")
_READS = {
    "tables": "sys_db_object?sysparm_query=nameIN$T&sysparm_fields=name,label,super_class.name,sys_scope.scope"
              "&sysparm_limit=100",
    "columns": "sys_dictionary?sysparm_query=nameIN$T%5EelementISNOTEMPTY%5Einternal_type!%3Dcollection"
               "%5EORDERBYname%5EORDERBYelement&sysparm_fields=name,element,column_label,internal_type,reference,"
               "mandatory,max_length,active,sys_scope.scope&sysparm_display_value=all&sysparm_limit=3000",
    "labels": "sys_documentation?sysparm_query=nameIN$T%5Elanguage%3Den&sysparm_fields=name,element,label"
              "&sysparm_limit=3000",
    "insert_multiple": "sys_rest_insert_multiple?sysparm_display_value=all&sysparm_limit=500",
    "insert_multiple_columns": "sys_dictionary?sysparm_query=name%3Dsys_rest_insert_multiple%5EelementISNOTEMPTY"
                               "&sysparm_fields=element,column_label,internal_type,reference",
    "maps": "sys_transform_map?sysparm_query=source_tableIN$T&sysparm_fields=sys_id,name,source_table,target_table,"
            "active,order,run_business_rules,enforce_mandatory_fields,sys_scope.scope",
    "entries": "sys_transform_entry?sysparm_query=map.source_tableIN$T%5EORDERBYmap&sysparm_fields=map.name,"
               "source_table,source_field,target_table,target_field,coalesce,coalesce_case_sensitive,"
               "coalesce_empty_fields,use_source_script,reference_value_field,choice_action&sysparm_limit=3000",
    "scripts": "sys_transform_script?sysparm_query=map.source_tableIN$T&sysparm_fields=map.name,when,order,active",
    "choices": "sys_choice?sysparm_query=nameINsn_spend_intg_outbound_invoice,sn_spend_intg_outbound_invoice_line,"
               "sn_spend_intg_outbound_invoice_tax_line,sn_spend_intg_outbound_invoice_cost_allocation,"
               "sn_spend_intg_outbound_purchase_order,sn_shop_invoice,sn_fin_base_invoice,"
               "sn_shop_invoice_payment_detail,sn_spend_intg_imp_invoice_payment_detail,sys_import_set_row"
               "%5Einactive%3Dfalse%5EORDERBYname%5EORDERBYelement%5EORDERBYsequence"
               "&sysparm_fields=name,element,value,label,sequence,language&sysparm_limit=3000",
    "properties": "sys_properties?sysparm_query=nameSTARTSWITHsn_fcms_intg.status_for&sysparm_fields=name,value",
}


def test_the_documented_discovery_reads_answer(client):
    got = {}
    for name, path in _READS.items():
        r = client.get("/api/now/table/" + path.replace("$T", _T))
        assert r.status_code == 200, (name, r.text)
        got[name] = r.json()["result"]
    absent = {"sn_fcms_intg_supplier_location_inbound", "sn_fcms_intg_supplier_payment_inbound_stage",
              "sn_fcms_intg_supplier_contact_inbound", "sn_spend_intg_outbound_invoice_tax_line", "sn_shop_order",
              "sn_shop_line"}  # documented tables the connector does not use: the sandbox leaves them out
    assert {t["name"] for t in got["tables"]} == set(_T.split(",")) - absent
    assert len(got["columns"]) == len(got["labels"]) > 400
    assert {c["internal_type"]["value"] for c in got["columns"]} >= {"string", "reference", "choice", "boolean"}
    assert got["insert_multiple"] == []
    assert {c["column_label"] for c in got["insert_multiple_columns"] if not c["element"].startswith("sys_")} == {
        "Source table", "Column mapping", "Transformation", "Use data source format"}
    assert len(got["maps"]) == 9 and got["scripts"] == []
    assert {e["map.name"] for e in got["entries"]} == {m["name"] for m in got["maps"]}
    assert {(c["name"], c["element"]) for c in got["choices"]} >= {
        ("sn_spend_intg_outbound_invoice", "integration_status"), ("sn_fin_base_invoice", "state"),
        ("sn_shop_invoice_payment_detail", "payment_method"), ("sys_import_set_row", "sys_import_state")}
    assert got["properties"] == [{"name": "sn_fcms_intg.status_for_invoice_creation", "value": "approved"}]
