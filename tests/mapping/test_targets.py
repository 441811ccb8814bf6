from datetime import date

import polars as pl
import pytest

from d365_snow_assets.discovery import documented as doc
from d365_snow_assets.mapping import DEFAULT_MAPPINGS, MappingContext, MappingError, apply_mapping, source_columns
from d365_snow_assets.mapping.apply import REASON
from d365_snow_assets.mapping.targets import (
    COST_CENTER,
    GL_ACCOUNT,
    LEGAL_ENTITY,
    ORDER,
    ORDER_LINE,
    PAYMENT_DETAIL,
    SUPPLIER,
    SUPPLIER_LEGAL_ENTITY,
)

CTX = MappingContext(erp_source="D365FO-PROD", legal_entities=("usmf", "demf"),
                     dimension_format=("BusinessUnit", "CostCenter", "Department"), today=date(2026, 12, 5))
LONG = "Ω" * 10_240


def vendor(**over):
    row = {
        "dataAreaId": "usmf", "VendorAccountNumber": "V-001", "VendorOrganizationName": 'Acme "Steel", Inc.^',
        "VendorPartyNumber": "000100", "VendorPartyType": "Organization", "PersonFirstName": None,
        "PersonLastName": None, "VendorGroupId": "10", "CurrencyCode": "USD", "DefaultPaymentTermsName": "Net30",
        "DefaultVendorPaymentMethodName": "CHECK", "TaxExemptNumber": None, "PrimaryEmailAddress": "ap@acme.test",
        "PrimaryPhoneNumber": "+1 555", "AddressStreet": "1 Main St\nSuite 2", "AddressCity": "Zürich",
        "AddressStateId": "ZH", "AddressZipCode": "8000", "AddressCountryRegionISOCode": "CH", "OnHoldStatus": "No",
    }
    row.update(over)
    return row


def test_every_field_is_a_documented_label_of_its_staging_table():
    """The mapping names ServiceNow fields by the labels ServiceNow documents (reference §3), never by a column."""
    for mapping in DEFAULT_MAPPINGS.values():
        documented = set(doc.documented_labels(mapping.staging_table))
        assert set(mapping.sent) <= documented, (mapping.staging_table, set(mapping.sent) - documented)


def test_one_supplier_per_account_across_companies():
    frame = pl.DataFrame([
        vendor(),
        vendor(dataAreaId="DEMF", VendorOrganizationName="Acme GmbH", OnHoldStatus="All"),
        vendor(VendorAccountNumber="V-002", VendorPartyNumber="000200", VendorPartyType="Person",
               VendorOrganizationName="", PersonFirstName="Zoë", PersonLastName="O'Brien", OnHoldStatus="All"),
        vendor(VendorAccountNumber="V-003", VendorOrganizationName=LONG),
        vendor(dataAreaId="gbsi", VendorAccountNumber="V-004"),  # not a configured company: out of scope
    ])
    out = apply_mapping(SUPPLIER, frame, CTX)
    assert out.columns == [*SUPPLIER.column_names, REASON]
    assert all(dtype == pl.String for dtype in out.dtypes)
    rows = {r["ERP company code"]: r for r in out.to_dicts()}
    assert set(rows) == {"V-001", "V-002", "V-003"}
    assert rows["V-001"] == {
        "ERP source": "D365FO-PROD", "ERP company code": "V-001", "Legal name": 'Acme "Steel", Inc.^',
        "Legal entities": "DEMF,USMF", "Accepted purchasing currency": "USD", "Payment term": "Net30",
        "Tax id": "", "Street address": "1 Main St\nSuite 2", "City": "Zürich", "State / Province": "ZH",
        "Zip / Postal code": "8000", "Country": "CH", "Primary phone number": "+1 555",
        "Status": "active", REASON: "",
    }  # usable in USMF although on hold in DEMF; the first configured company's values
    assert (rows["V-002"]["Legal name"], rows["V-002"]["Status"]) == ("Zoë O'Brien", "inactive")
    assert rows["V-003"]["Legal name"] == LONG


def test_an_account_naming_two_parties_is_held_back_with_both():
    frame = pl.DataFrame([vendor(), vendor(dataAreaId="demf", VendorPartyNumber="000999")])
    [supplier] = apply_mapping(SUPPLIER, frame, CTX).to_dicts()
    assert "000100 in USMF" in supplier[REASON] and "000999 in DEMF" in supplier[REASON]
    links = apply_mapping(SUPPLIER_LEGAL_ENTITY, frame, CTX)
    assert links.select("Supplier", "Legal entity").rows() == [("V-001", "USMF"), ("V-001", "DEMF")]
    assert all(reason for reason in links.get_column(REASON))


def po_lines():
    return pl.DataFrame({
        "dataAreaId": ["usmf", "usmf", "usmf", "demf"],
        "PurchaseOrderNumber": ["PO-1", "PO-1", "PO-2", "PO-1"],
        "LineNumber": [1, 2, 1, 1],
        "ItemNumber": ["I-1", "", "I-2", "I-9"],
        "LineDescription": ["Bolts, 10^3 pcs", 'Service "A"', "x", "y"],
        "OrderedPurchaseQuantity": [1000.0, 1.5, 3.0, 1e-7],
        "PurchaseUnitSymbol": ["ea", "h", "ea", "ea"],
        "PurchasePrice": [0.1234, 80.0, 12.5, 1.0],
        "LineAmount": [123.4, 120.0, 37.5, 0.1],
        "PurchaseOrderLineStatus": ["Backorder", "Received", "Canceled", "Invoiced"],
        "MainAccountIdDisplayValue": ["", "600200", "600100", ""],
        "DefaultLedgerDimensionDisplayValue": ["001-007-022", "001-CC\\-9-022", "", "001-a\\\\b-"],
        "RequestedDeliveryDate": ["2026-06-26T12:00:00Z", "1900-01-01T12:00:00Z", None, "2026-01-02T00:00:00Z"],
    })


def test_order_lines_exact():
    out = apply_mapping(ORDER_LINE, po_lines(), CTX)
    assert out.select("ERP PO line number", "Product name", "Purchase quantity", "Unit price", "Total line amount",
                      "General Ledger Account", "Cost center", "Expected delivery date").rows() == [
        ("1", "I-1", "1000", "0.1234", "123.40", "", "007", "2026-06-26"),
        ("2", 'Service "A"', "1.5", "80", "120.00", "600200", "CC-9", ""),
        ("1", "I-2", "3", "12.5", "37.50", "600100", "", ""),
        ("1", "I-9", "0.0000001", "1", "0.10", "", "a\\b", "2026-01-02"),
    ]
    assert out.row(3, named=True)["Legal entity"] == "DEMF"


def test_order_headers_with_po_amount_and_the_vendors_name():
    headers = pl.DataFrame({
        "dataAreaId": ["USMF", "usmf", "usmf"],
        "PurchaseOrderNumber": ["PO-1", "PO-2", "PO-3"],
        "OrderVendorAccountNumber": ["V-001", "V-001", "V-404"],
        "PurchaseOrderStatus": ["Backorder", "Received", "None"],
        "CurrencyCode": ["USD"] * 3, "PaymentTermsName": ["Net30"] * 3,
        "DefaultLedgerDimensionDisplayValue": ["001-007-022", "", "x"],
    })
    related = {"PurchaseOrderLinesV2": po_lines(), "VendorsV2": pl.DataFrame([vendor()])}
    out = apply_mapping(ORDER, headers, CTX, related=related)
    assert out.select("Legal entity", "ERP PO number", "Supplier company name", "Cost center", "PO amount",
                      "PO amount currency", "Order type").rows() == [
        ("USMF", "PO-1", 'Acme "Steel", Inc.^', "007", "243.40", "USD", "Standard"),
        ("USMF", "PO-2", 'Acme "Steel", Inc.^', "", "37.50", "USD", "Standard"),
        ("USMF", "PO-3", "", "", "0.00", "USD", "Standard"),
    ]
    with pytest.raises(MappingError, match="PurchaseOrderLinesV2"):
        apply_mapping(ORDER, headers, CTX, related={"VendorsV2": pl.DataFrame([vendor()])})


def ledgers():
    return pl.DataFrame({"LegalEntityId": ["demf", "usmf", "gbsi"], "AccountingCurrency": ["EUR", "USD", "GBP"],
                         "ReportingCurrency": ["USD", "EUR", "USD"], "ChartOfAccounts": ["Shared", "Shared", "UK"]})


def test_gl_accounts_take_the_first_configured_companys_currency():
    accounts = pl.DataFrame({"ChartOfAccounts": ["Shared"] * 2, "MainAccountId": ["600100", "110110"],
                             "Name": ["Travel, meals & \"fun\"", "Cash"], "MainAccountType": ["Expense", "Asset"],
                             "MainAccountCategory": ["EXP", "BS"], "IsSuspended": ["No", "Yes"]})
    travel = 'Travel, meals & "fun"'
    assert apply_mapping(GL_ACCOUNT, accounts, CTX, {"Ledgers": ledgers()}).rows() == [
        ("D365FO-PROD", "600100", travel, travel, "Expense", "false", "USD", "USD", "EUR", "EXP", travel),
        ("D365FO-PROD", "110110", "Cash", "Cash", "Asset", "true", "USD", "USD", "EUR", "BS", "Cash"),
    ]


def test_cost_centers_valid_to_and_scope():
    dims = pl.DataFrame({
        "FinancialDimension": ["CostCenter", "Department", "CostCenter", "CostCenter"],
        "LegalEntityId": ["usmf", "usmf", "", "gbsi"], "DimensionValue": ["007", "022", "CC-9", "010"],
        "Description": ["Sales", "HR", "Shared ops", "UK"], "IsSuspended": ["No", "No", "Yes", "No"],
        "Owner": ["000123", "", "", ""],
        "ActiveFrom": ["1900-01-01T12:00:00Z", "2020-01-01T12:00:00Z", "2024-02-29T12:00:00Z", None],
        "ActiveTo": ["2154-12-31T23:59:59Z", "1900-01-01T12:00:00Z", "1900-01-01T12:00:00Z", None],
    })
    out = apply_mapping(COST_CENTER, dims, CTX)
    assert out.rows() == [
        ("D365FO-PROD", "USMF", "007", "007", "Sales", "000123", "", "2154-12-31", "false", "2154-12-31"),
        ("D365FO-PROD", "", "CC-9", "CC-9", "Shared ops", "", "2024-02-29", "2026-12-05", "true", ""),
    ]
    assert "Valid to" not in COST_CENTER.hashed and "Suspended" not in COST_CENTER.sent


def test_legal_entities_with_their_ledger_currency():
    companies = pl.DataFrame({"LegalEntityId": ["usmf", "gbsi"], "Name": ["Contoso US", "Contoso UK"],
                              "AddressCountryRegionISOCode": ["US", "GB"], "AddressStreet": ["1 Road", "2 Lane"],
                              "AddressCity": ["Chicago", "Leeds"]})
    assert apply_mapping(LEGAL_ENTITY, companies, CTX, {"Ledgers": ledgers()}).rows() == [
        ("D365FO-PROD", "USMF", "Contoso US", "US", "1 Road", "Chicago", "USD")]


def test_payment_details_with_the_remit_to_address():
    trans = pl.DataFrame({
        "dataAreaId": ["usmf", "usmf", "usmf"], "Invoice": ["INV-1", "", "INV-2"], "Voucher": ["APINV1", "PAY", "X"],
        "AccountNum": ["V-001"] * 3, "CurrencyCode": ["USD"] * 3,
        "SettleAmountCur": [-1250.0, 10.0, -5.0], "LastSettleDate": ["2026-07-03T12:00:00Z"] * 2 + [
            "1900-01-01T12:00:00Z"],
        "PaymMode": ["check", "ACH", "EFT"], "LastSettleVoucher": ["PAY-9", "PAY-9", ""],
        "DueDate": ["2026-07-01T12:00:00Z"] * 3,
    })
    out = apply_mapping(PAYMENT_DETAIL, trans, CTX, {"VendorsV2": pl.DataFrame([vendor()])})
    assert out.to_dicts() == [{
        "ERP Source": "D365FO-PROD", "Legal entity": "USMF", "ERP invoice number": "APINV1",
        "ERP supplier code": "V-001", "Currency": "USD", "Payment amount": "1250.00", "Payment date": "2026-07-03",
        "Scheduled payment date": "2026-07-01", "Payment method": "cheque", "Payment reference ID": "PAY-9",
        "Remit to street": "1 Main St\nSuite 2", "Remit to city": "Zürich", "Remit to state/province": "ZH",
        "Remit to ZIP/postal code": "8000", "Remit to country": "CH",
    }]
    assert "Legal entity" not in PAYMENT_DETAIL.sent


def test_missing_source_column_is_a_clear_error():
    with pytest.raises(MappingError, match=r"lacks columns \['CurrencyCode'\]"):
        apply_mapping(SUPPLIER, pl.DataFrame([vendor()]).drop("CurrencyCode"), CTX)


def test_defaults_cover_the_documented_targets():
    assert {m.target_table for m in DEFAULT_MAPPINGS.values()} == {
        "sn_fin_legal_entity", "sn_fin_supplier", "sn_fin_supplier_detail", "sn_shop_purchase_order",
        "sn_shop_purchase_order_line", "sn_fin_gl_account", "cmn_cost_center", "sn_shop_invoice_payment_detail"}
    assert "PersonFirstName" in source_columns(SUPPLIER)
    assert "VendorPartyNumber" in source_columns(SUPPLIER)
