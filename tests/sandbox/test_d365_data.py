"""Properties of the generated F&O data that a connector must cope with (DESIGN §5.1, §9): item lines without a main
account, lines without a cost center, orders invoiced by another vendor, PO numbers repeated across companies,
vendor accounts shared by one party across companies (and a few naming different parties), and the Ledgers entity."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from d365_snow_assets.sandbox.config import SandboxConfig, SandboxDataSize
from d365_snow_assets.sandbox.d365 import D365State


@pytest.fixture(scope="module")
def d365() -> D365State:
    return D365State(SandboxConfig(data=SandboxDataSize.small()))


def one(d365: D365State, sql: str) -> dict:
    (row,) = d365.read(sql)
    return row


def test_item_lines_mostly_have_no_main_account_of_their_own(d365):
    got = one(d365, "SELECT count(*) FILTER (WHERE ItemNumber <> '') AS items, "
                    "count(*) FILTER (WHERE ItemNumber <> '' AND MainAccountIdDisplayValue = '') AS blank_items, "
                    "count(*) FILTER (WHERE ItemNumber = '' AND MainAccountIdDisplayValue = '') AS blank_services "
                    "FROM PurchaseOrderLinesV2")
    assert got == {"items": 403, "blank_items": 339, "blank_services": 0}
    assert 0.75 < got["blank_items"] / got["items"] < 0.95


def test_a_fifth_of_the_lines_have_no_cost_center(d365):
    got = one(d365, "SELECT count(*) AS n, count(*) FILTER (WHERE DefaultLedgerDimensionDisplayValue = '') AS blank "
                    "FROM PurchaseOrderLinesV2")
    assert got == {"n": 600, "blank": 124}
    assert one(d365, "SELECT count(*) AS n FROM PurchaseOrderHeadersV2 "
                     "WHERE DefaultLedgerDimensionDisplayValue = ''")["n"] == 0  # headers keep theirs


def test_a_tenth_of_the_orders_are_invoiced_by_another_vendor_of_the_same_company(d365):
    rows = d365.read("SELECT h.dataAreaId, h.InvoiceVendorAccountNumber, v.VendorAccountNumber "
                     "FROM PurchaseOrderHeadersV2 h LEFT JOIN VendorsV2 v ON v.dataAreaId = h.dataAreaId "
                     "AND v.VendorAccountNumber = h.InvoiceVendorAccountNumber "
                     "WHERE h.InvoiceVendorAccountNumber <> h.OrderVendorAccountNumber")
    assert len(rows) == 13 and all(r["VendorAccountNumber"] for r in rows)  # each an account of that company
    assert one(d365, "SELECT count(*) AS n FROM PurchaseOrderHeadersV2 h WHERE NOT EXISTS (SELECT 1 FROM "
                     "VendorsV2 v WHERE v.dataAreaId = h.dataAreaId AND "
                     "v.VendorAccountNumber = h.OrderVendorAccountNumber)")["n"] == 0


def test_po_numbers_repeat_across_companies(d365):
    per_number = Counter(r["PurchaseOrderNumber"] for r in d365.read("SELECT * FROM PurchaseOrderHeadersV2"))
    repeated = {n for n, c in per_number.items() if c > 1}
    assert "PO-000001" in repeated and len(repeated) == 50
    companies = {r["dataAreaId"] for r in d365.read(
        "SELECT dataAreaId FROM PurchaseOrderHeadersV2 WHERE PurchaseOrderNumber = 'PO-000001'")}
    assert companies == {"usmf", "demf"}
    assert one(d365, "SELECT count(*) AS n FROM PurchaseOrderHeadersV2 WHERE dataAreaId = 'gbsi' "
                     "AND NOT starts_with(PurchaseOrderNumber, 'GBSI-')")["n"] == 0


def test_vendor_accounts_shared_by_one_party_and_a_few_naming_two(d365):
    accounts: dict[str, list[dict]] = {}
    for v in d365.read("SELECT * FROM VendorsV2 ORDER BY dataAreaId"):
        accounts.setdefault(v["VendorAccountNumber"], []).append(v)
    shared = {a: rows for a, rows in accounts.items() if len(rows) > 1}
    same_party = {a for a, rows in shared.items() if len({r["VendorPartyNumber"] for r in rows}) == 1}
    two_parties = set(shared) - same_party
    assert Counter(len(shared[a]) for a in same_party) == Counter({3: 6, 2: 2})
    assert two_parties == {"V-000005"}
    for account in same_party:  # one party: same name and address in every company, holds per company
        rows = shared[account]
        assert len({(r["VendorOrganizationName"], r["VendorKnownAsName"], r["AddressStreet"]) for r in rows}) == 1
    names = {r["VendorOrganizationName"] or r["VendorKnownAsName"] for r in shared["V-000005"]}
    assert len(names) == 2
    assert len({r["VendorPartyNumber"] for rows in accounts.values() for r in rows}) == 60 - sum(
        len(rows) - 1 for a, rows in shared.items() if a in same_party)


def test_names_holds_and_suspensions_keep_their_shares(d365):
    names = [r["VendorOrganizationName"] for r in d365.read("SELECT VendorOrganizationName FROM VendorsV2")]
    for needle in ("'", "^", ",", "Å"):
        assert any(needle in n for n in names), needle
    holds = Counter(r["OnHoldStatus"] for r in d365.read("SELECT OnHoldStatus FROM VendorsV2"))
    assert holds == Counter({"No": 53, "All": 3, "Invoice": 2, "Payment": 2})
    assert one(d365, "SELECT count(*) AS n FROM MainAccounts WHERE IsSuspended = 'Yes'")["n"] == 3
    assert one(d365, "SELECT count(*) AS n FROM FinancialDimensionValues WHERE FinancialDimension = 'CostCenter' "
                     "AND IsSuspended = 'Yes'")["n"] == 3


def test_ledgers_per_company(d365, d365_client):
    assert d365.read("SELECT * FROM Ledgers ORDER BY LegalEntityId") == [
        {"LegalEntityId": le, "Name": le.upper(), "ChartOfAccounts": "General Chart", "AccountingCurrency": cur,
         "ReportingCurrency": "USD"}
        for le, cur in (("demf", "EUR"), ("gbsi", "GBP"), ("usmf", "USD"))]
    metadata = d365_client.get("/data/$metadata").text
    assert '<EntityType Name="Ledger">\n<Key><PropertyRef Name="LegalEntityId" /></Key>' in metadata
    for field in ("Name", "ChartOfAccounts", "AccountingCurrency", "ReportingCurrency"):
        assert f'<Property Name="{field}" Type="Edm.String"' in metadata
    assert '<EntitySet Name="Ledgers" EntityType="Microsoft.Dynamics.DataEntities.Ledger" />' in metadata
    got = d365_client.get("/data/Ledgers", params={"$filter": "LegalEntityId eq 'demf'"}).json()["value"]
    assert [(r["LegalEntityId"], r["AccountingCurrency"]) for r in got] == [("demf", "EUR")]


def test_one_company_can_accept_duplicate_invoice_numbers(d365):
    modes = {r["dataAreaId"]: r["IsCheckInvoiceNumberUsed"] for r in d365.read("SELECT * FROM VendorParameters")}
    assert modes == {"usmf": "NoDuplicate", "demf": "NoDuplicate", "gbsi": "NoDuplicate"}
    d365.set_duplicate_check("AcceptDuplicate", "demf")
    try:
        modes = {r["dataAreaId"]: r["IsCheckInvoiceNumberUsed"] for r in d365.read("SELECT * FROM VendorParameters")}
        assert modes == {"usmf": "NoDuplicate", "demf": "AcceptDuplicate", "gbsi": "NoDuplicate"}
    finally:
        d365.set_duplicate_check("NoDuplicate", "demf")


def _digest(state: D365State) -> str:
    h = hashlib.sha256()
    for table in ("VendorsV2", "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2", "Ledgers"):
        h.update(repr(state.read(f'SELECT * FROM "{table}" ORDER BY ALL')).encode())
    return h.hexdigest()


def test_the_same_seed_generates_the_same_data(d365):
    assert _digest(D365State(SandboxConfig(data=SandboxDataSize.small()))) == _digest(d365)
    assert _digest(D365State(SandboxConfig(data=SandboxDataSize.small(seed=7)))) != _digest(d365)
