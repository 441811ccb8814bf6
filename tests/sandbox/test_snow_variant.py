"""The variant instance: other elements, status values, insertMultiple modes and one coalesce than the documented
one, and the same business behaviour for a client that discovers them (DESIGN §9)."""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.server import SandboxServer
from d365_snow_assets.sandbox.world import SandboxWorld

from .snow_world import Discovery, fno_records, push_in_process

OUT = "sn_spend_intg_outbound_invoice"
LINES = "sn_spend_intg_outbound_invoice_line"
SUPPLIER_STAGE = "sn_fcms_intg_imp_supplier"


@pytest.fixture(scope="module")
def variant() -> Iterator[SandboxServer]:
    server = SandboxServer(SandboxConfig(data=SandboxDataSize.small(), snow_instance="variant")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def vclient(variant: SandboxServer) -> Iterator[httpx.Client]:
    variant.world.snow.reset()
    creds = variant.world.config.credentials
    with httpx.Client(base_url=variant.snow_url, auth=(creds.snow_username, creds.snow_password), timeout=30,
                      verify=ssl.create_default_context(cafile=str(variant.tls.ca_pem))) as client:
        yield client
    variant.world.snow.reset()


def test_elements_and_status_values_differ_from_the_documented_ones(vclient):
    discovery = Discovery(vclient)
    assert discovery.el(OUT, "Integration status") == "status"
    assert discovery.el(LINES, "Invoice") == "invoice_header"
    assert discovery.el("sn_fin_legal_entity", "ERP company code") == "company_code"
    assert discovery.el(SUPPLIER_STAGE, "ERP company code") == "u_erp_company_code"
    assert discovery.el("sn_spend_intg_imp_invoice_payment_detail", "ERP invoice number") == "u_erp_invoice_number"
    choices = discovery.rows("sys_choice", "name=sn_spend_intg_outbound_invoice^element=status^ORDERBYsequence",
                             "value,label")
    assert [(c["value"], c["label"]) for c in choices] == [("1", "New"), ("2", "In process"), ("3", "Processed"),
                                                          ("4", "Failed")]
    scopes = discovery.rows("sys_dictionary", f"name={SUPPLIER_STAGE}^elementISNOTEMPTY", "sys_scope.scope")
    assert {r["sys_scope.scope"] for r in scopes} == {"global"}  # u_ columns: a global-scope customisation


def test_insert_multiple_by_column_name_on_some_staging_tables(vclient):
    discovery = Discovery(vclient)
    assert discovery.mode(SUPPLIER_STAGE) == "column_name" and discovery.mode("sn_fcms_intg_imp_order") == "label"
    by_label = {"ERP source": "D365FO", "ERP company code": "V-1", "Legal name": "Label-keyed"}
    discovery.insert_multiple(SUPPLIER_STAGE, [by_label])  # translated to u_ elements by the discovering client
    body = vclient.post(f"/api/now/import/{SUPPLIER_STAGE}/insertMultiple", json={"records": [by_label]}).json()
    discovery.wait(body["import_set_id"])
    staged = discovery.rows(SUPPLIER_STAGE, f"sys_import_set={body['import_set_id']}",
                            "sys_import_state,u_erp_company_code")
    assert staged == [{"sys_import_state": "skipped", "u_erp_company_code": ""}]  # labels are unknown keys here
    assert discovery.rows("sn_fin_supplier", "", "erp_company_code,legal_name") == [
        {"erp_company_code": "V-1", "legal_name": "Label-keyed"}]


def test_one_map_coalesces_differently(vclient):
    keys = Discovery(vclient).rows("sys_transform_entry", "map.name=Master data cost center^coalesce=true",
                                   "target_field")
    assert {k["target_field"] for k in keys} == {"erp_source", "u_legal_entity", "account_number"}


def business_end_state(world: SandboxWorld) -> tuple[Counter, set]:
    """Invalid kinds and, per outbound invoice, what it says in business terms (read through labels)."""
    snow = world.snow
    out = snow.tables[OUT]
    le, sup, po = (snow.tables[t] for t in ("sn_fin_legal_entity", "sn_fin_supplier", "sn_shop_purchase_order"))
    facts = set()
    for row in out.rows.values():
        lines = snow.find_by_labels(LINES, {"Invoice": row["sys_id"]})
        facts.add((le.rows[row[snow.el(OUT, "Legal entity")]][snow.el("sn_fin_legal_entity", "ERP company code")],
                   sup.rows[row[snow.el(OUT, "Supplier")]][snow.el("sn_fin_supplier", "ERP company code")],
                   po.rows[row[snow.el(OUT, "Purchase order")]][snow.el("sn_shop_purchase_order", "ERP number")],
                   row[snow.el(OUT, "Supplier invoice number")], row[snow.el(OUT, "Amount invoiced")], len(lines),
                   snow.choice_value(OUT, "Integration status", "New") == row[snow.el(OUT, "Integration status")]))
    return Counter(k for kinds in snow.invalid_invoices.values() for k in kinds), facts


def test_a_discovering_client_reaches_the_documented_instances_end_state(variant, vclient):
    documented = SandboxWorld(SandboxConfig(data=SandboxDataSize.small()))
    documented.snow.set_switches(invoices_per_second=1_000)
    push_in_process(documented)
    variant.world.snow.set_switches(invoices_per_second=1_000)
    discovery = Discovery(vclient)
    for staging, records in fno_records(variant.world.d365, variant.world.config.data.legal_entities).items():
        discovery.insert_multiple(staging, records)
    assert variant.world.snow.invoices_waiting() == 0
    kinds, facts = business_end_state(variant.world)
    assert (kinds, facts) == business_end_state(documented)
    assert len(facts) == 20 and all(f[-1] for f in facts)


def test_processed_on_the_variant_status_column_moves_the_invoice(variant, vclient):
    push_in_process(variant.world)
    snow = variant.world.snow
    out = snow.dump(OUT)[0]
    r = vclient.patch(f"/api/now/table/{OUT}/{out['sys_id']}", json={"status": "3", "erp_number": "APINV-9"})
    assert r.status_code == 200
    invoice = snow.tables["sn_shop_invoice"].rows[snow.apo.invoice_of_outbound[out["sys_id"]]]
    assert invoice["state"] == "pending_payment" and invoice["erp_number"] == "APINV-9"
    # The documented instance's column and value mean nothing here.
    other = snow.dump(OUT)[1]
    vclient.patch(f"/api/now/table/{OUT}/{other['sys_id']}", json={"integration_status": "30"})
    assert snow.tables["sn_shop_invoice"].rows[snow.apo.invoice_of_outbound[other["sys_id"]]]["state"] == "approved"
