"""Test helpers for the sandbox's ServiceNow: F&O master data as staging records by documented LABEL (what a
connector pushes, DESIGN §5.1, reduced to what the sandbox's maps read), and a minimal discovering Table API client
that learns an instance's elements and insertMultiple mode the way reference/servicenow-s2p-schema.md §11 says."""

from __future__ import annotations

import time
from typing import Any

import httpx

from d365_snow_assets.sandbox.d365 import D365State
from d365_snow_assets.sandbox.servicenow import apo
from d365_snow_assets.sandbox.servicenow.import_api import insert_multiple_settings
from d365_snow_assets.sandbox.world import SandboxWorld

ERP = "D365FO"
STAGES = ("sn_fcms_intg_legal_entity_stage", "sn_fcms_intg_imp_supplier", "sn_fcms_intg_supplier_legal_entity_inbound",
          "sn_fcms_intg_gl_account_stage", "sn_fcms_intg_imp_cost_center", "sn_fcms_intg_imp_order",
          "sn_fcms_intg_imp_order_line")


def _yes(value: Any) -> bool:
    return str(value) == "Yes"


def fno_records(d365: D365State, legal_entities: list[str]) -> dict[str, list[dict[str, str]]]:
    """Staging table -> records keyed by label, from the fake F&O (``legal_entities`` only)."""
    les = [le.lower() for le in legal_entities]
    out: dict[str, list[dict[str, str]]] = {s: [] for s in STAGES}
    for le in d365.read("SELECT e.LegalEntityId, e.Name, e.AddressCountryRegionISOCode, l.AccountingCurrency "
                        "FROM LegalEntities e JOIN Ledgers l USING (LegalEntityId) ORDER BY 1"):
        out[STAGES[0]].append({"ERP company code": le["LegalEntityId"].upper(), "ERP source": ERP,
                               "Legal name": le["Name"], "Country": le["AddressCountryRegionISOCode"],
                               "Local currency": le["AccountingCurrency"]})
    vendors = d365.read("SELECT * FROM VendorsV2 WHERE dataAreaId IN (SELECT unnest(?)) "
                        "ORDER BY VendorAccountNumber, dataAreaId", [les])
    by_account: dict[str, list[dict[str, Any]]] = {}
    for v in vendors:
        by_account.setdefault(v["VendorAccountNumber"], []).append(v)
    for account, rows in by_account.items():
        if len({r["VendorPartyNumber"] for r in rows}) > 1:
            continue  # one number, two parties: a connector holds it back
        name = rows[0]["VendorOrganizationName"] or rows[0]["VendorKnownAsName"]
        out[STAGES[1]].append({"ERP company code": account, "ERP source": ERP, "Legal name": name,
                               "Legal entities": ",".join(r["dataAreaId"].upper() for r in rows),
                               "Status": "inactive" if any(r["OnHoldStatus"] == "All" for r in rows) else "active"})
        out[STAGES[2]] += [{"ERP source": ERP, "Supplier": account, "Legal entity": r["dataAreaId"].upper()}
                           for r in rows]
    active_accounts = set()
    for acc in d365.read("SELECT * FROM MainAccounts ORDER BY MainAccountId"):
        if not _yes(acc["IsSuspended"]):
            active_accounts.add(acc["MainAccountId"])
        out[STAGES[3]].append({"ERP source": ERP, "Number": acc["MainAccountId"], "Account name": acc["Name"],
                               "GL Account": acc["Name"], "Type": acc["MainAccountType"],
                               "Inactive": "true" if _yes(acc["IsSuspended"]) else "false", "Account currency": "USD"})
    active_centers: set[tuple[str, str]] = set()
    for cc in d365.read("SELECT * FROM FinancialDimensionValues WHERE FinancialDimension = 'CostCenter' "
                        "ORDER BY LegalEntityId, DimensionValue"):
        if not _yes(cc["IsSuspended"]):
            active_centers.add((cc["LegalEntityId"], cc["DimensionValue"]))
        out[STAGES[4]].append({"ERP source": ERP, "Legal entity": cc["LegalEntityId"].upper(),
                               "Code": cc["DimensionValue"], "Account number": cc["DimensionValue"],
                               "Name": cc["Description"], "Valid from": str(cc["ActiveFrom"]),
                               "Valid to": "2026-01-01" if _yes(cc["IsSuspended"]) else ""})
    names = {(v["dataAreaId"], v["VendorAccountNumber"]): v["VendorOrganizationName"] or v["VendorKnownAsName"]
             for v in vendors}
    amounts = {(r["dataAreaId"], r["PurchaseOrderNumber"]): r["amt"] for r in d365.read(
        "SELECT dataAreaId, PurchaseOrderNumber, sum(LineAmount) AS amt FROM PurchaseOrderLinesV2 GROUP BY ALL")}
    for po in d365.read("SELECT * FROM PurchaseOrderHeadersV2 WHERE dataAreaId IN (SELECT unnest(?)) "
                        "ORDER BY dataAreaId, PurchaseOrderNumber", [les]):
        key = (po["dataAreaId"], po["PurchaseOrderNumber"])
        out[STAGES[5]].append({
            "ERP source": ERP, "Legal entity": po["dataAreaId"].upper(), "ERP PO number": po["PurchaseOrderNumber"],
            "Supplier company name": names.get((po["dataAreaId"], po["OrderVendorAccountNumber"]), ""),
            "PO amount": f"{amounts.get(key, 0):.2f}", "PO amount currency": po["CurrencyCode"],
            "PO status": po["PurchaseOrderStatus"], "Order type": "Standard", "Payment term": po["PaymentTermsName"],
            "Cost center": apo.parse_cost_center(po["DefaultLedgerDimensionDisplayValue"])})
    for line in d365.read("SELECT * FROM PurchaseOrderLinesV2 WHERE dataAreaId IN (SELECT unnest(?)) "
                          "ORDER BY dataAreaId, PurchaseOrderNumber, LineNumber", [les]):
        gl = line["MainAccountIdDisplayValue"]
        cc = apo.parse_cost_center(line["DefaultLedgerDimensionDisplayValue"])
        if (gl and gl not in active_accounts) or (
                cc and (line["dataAreaId"], cc) not in active_centers and ("", cc) not in active_centers):
            continue  # held back: a line naming a missing or inactive account or cost center
        out[STAGES[6]].append({
            "ERP source": ERP, "ERP PO number": line["PurchaseOrderNumber"],
            "ERP PO line number": str(line["LineNumber"]), "Legal entity": line["dataAreaId"].upper(),
            "Product name": line["ItemNumber"] or line["LineDescription"],
            "Purchase quantity": f"{line['OrderedPurchaseQuantity']:f}", "Unit": line["PurchaseUnitSymbol"],
            "Unit price": f"{line['PurchasePrice']:.2f}", "Total line amount": f"{line['LineAmount']:.2f}",
            "Expected delivery date": str(line["RequestedDeliveryDate"]), "General Ledger Account": gl,
            "Cost center": cc, "Status": line["PurchaseOrderLineStatus"]})
    return out


def push_in_process(world: SandboxWorld, *, instant: bool = True) -> dict[str, list[str]]:
    """Push every staging table through the sandbox's own synchronous import (keys by label, or by element where
    the instance maps column names); ``instant`` lets every invoice whose references now exist appear at once."""
    snow = world.snow
    if instant:
        snow.set_switches(invoices_per_second=1_000_000)
    statuses: dict[str, list[str]] = {}
    for staging, records in fno_records(world.d365, world.config.data.legal_entities).items():
        mode, _ = insert_multiple_settings(snow, staging)
        if mode == "column_name":
            records = [{snow.el(staging, label): v for label, v in r.items()} for r in records]
        statuses[staging] = snow.import_records(staging, records, by=mode)
    return statuses


class Discovery:
    """What a connector reads before writing (§11): the dictionary with parents, insertMultiple mode, choices."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def rows(self, table: str, query: str, fields: str) -> list[dict[str, Any]]:
        r = self.client.get(f"/api/now/table/{table}", params={"sysparm_query": query, "sysparm_fields": fields,
                                                               "sysparm_exclude_reference_link": "true"})
        r.raise_for_status()
        return r.json()["result"]

    def lineage(self, table: str) -> list[str]:
        chain = [table]
        while True:
            (obj,) = self.rows("sys_db_object", f"name={chain[-1]}", "name,super_class.name")
            if not obj["super_class.name"]:
                return chain
            chain.append(obj["super_class.name"])

    def elements(self, table: str) -> dict[str, list[str]]:
        """label -> elements (own and inherited columns)."""
        names = ",".join(self.lineage(table))
        out: dict[str, list[str]] = {}
        for row in self.rows("sys_dictionary", f"nameIN{names}^elementISNOTEMPTY", "element,column_label"):
            out.setdefault(row["column_label"], []).append(row["element"])
        return out

    def el(self, table: str, label: str) -> str:
        (element,) = self.elements(table)[label]
        return element

    def mode(self, staging: str) -> str:
        found = self.rows("sys_rest_insert_multiple", f"source_table={staging}", "column_mapping")
        return found[0]["column_mapping"] if found else "label"

    def choice(self, table: str, label: str, choice_label: str) -> str:
        element = self.el(table, label)
        (row,) = self.rows("sys_choice", f"name={table}^element={element}^label={choice_label}", "value")
        return row["value"]

    def keys(self, staging: str, record: dict[str, str]) -> dict[str, str]:
        if self.mode(staging) == "label":
            return dict(record)
        elements = self.elements(staging)
        return {elements[label][0]: value for label, value in record.items()}

    def insert_multiple(self, staging: str, records: list[dict[str, str]]) -> str:
        """Post records keyed by label the way the instance wants them; wait until transformed."""
        body = {"records": [self.keys(staging, r) for r in records]}
        r = self.client.post(f"/api/now/import/{staging}/insertMultiple", json=body)
        assert r.status_code == 201, r.text
        return self.wait(r.json()["import_set_id"])

    def wait(self, set_id: str) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = self.client.get(f"/api/now/table/sys_import_set/{set_id}").json()["result"]["state"]
            if state == "processed":
                return set_id
            time.sleep(0.05)
        raise AssertionError(f"import set {set_id} was never transformed")
