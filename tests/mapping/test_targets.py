from datetime import UTC, datetime

import polars as pl
import pytest

from d365_snow_assets.mapping import DEFAULT_MAPPINGS, MappingContext, MappingError, apply_mapping, source_columns
from d365_snow_assets.mapping.targets import COST_CENTER, GL_ACCOUNT, ORDER, ORDER_LINE, PAYMENT_DETAIL, SUPPLIER

CTX = MappingContext(erp_source="D365FO-PROD", dimension_format=("BusinessUnit", "CostCenter", "Department"))
LONG = "Ω" * 10_240


def vendor(**over):
    row = {
        "dataAreaId": "usmf", "VendorAccountNumber": "V-001", "VendorOrganizationName": 'Acme "Steel", Inc.^',
        "VendorPartyType": "Organization", "PersonFirstName": None, "PersonLastName": None,
        "VendorGroupId": "10", "CurrencyCode": "USD", "DefaultPaymentTermsName": "Net30",
        "DefaultVendorPaymentMethodName": "CHECK", "TaxExemptNumber": None, "PrimaryEmailAddress": "ap@acme.test",
        "PrimaryPhoneNumber": "+1 555", "AddressStreet": "1 Main St\nSuite 2", "AddressCity": "Zürich",
        "AddressZipCode": "8000", "AddressCountryRegionISOCode": "CH", "OnHoldStatus": "No",
    }
    row.update(over)
    return row


def test_supplier_rows_exact():
    frame = pl.DataFrame([
        vendor(),
        vendor(dataAreaId="DEMF", VendorAccountNumber="V-002", VendorPartyType="Person", VendorOrganizationName="",
               PersonFirstName="Zoë", PersonLastName="O'Brien", OnHoldStatus="All"),
        vendor(VendorAccountNumber="V-003", VendorOrganizationName=LONG, OnHoldStatus="Invoice"),
    ])
    out = apply_mapping(SUPPLIER, frame, CTX)
    assert out.columns == list(SUPPLIER.column_names)
    assert all(dtype == pl.String for dtype in out.dtypes)
    rows = out.to_dicts()
    assert rows[0] == {
        "erp_source": "D365FO-PROD", "legal_entity": "USMF", "supplier_code": "V-001",
        "name": 'Acme "Steel", Inc.^', "supplier_group": "10", "currency": "USD", "payment_terms": "Net30",
        "payment_method": "CHECK", "tax_id": "", "email": "ap@acme.test", "phone": "+1 555",
        "street": "1 Main St\nSuite 2", "city": "Zürich", "zip": "8000", "country": "CH", "on_hold": "No",
        "active": "true",
    }
    assert (rows[1]["legal_entity"], rows[1]["name"], rows[1]["on_hold"], rows[1]["active"]) == (
        "DEMF", "Zoë O'Brien", "All", "false")
    assert rows[2]["name"] == LONG and rows[2]["active"] == "true"


def po_lines():
    return pl.DataFrame({
        "dataAreaId": ["usmf", "usmf", "usmf", "demf"],
        "PurchaseOrderNumber": ["PO-1", "PO-1", "PO-2", "PO-1"],
        "LineNumber": [1, 2, 1, 1],
        "ItemNumber": ["I-1", "", "I-2", "I-9"],
        "LineDescription": ["Bolts, 10^3 pcs", 'Service "A"', "x", "y"],
        "ProcurementProductCategoryName": ["Fasteners", "Services", "", ""],
        "OrderedPurchaseQuantity": [1000.0, 1.5, 3.0, 1e-7],
        "PurchaseUnitSymbol": ["ea", "h", "ea", "ea"],
        "PurchasePrice": [0.1234, 80.0, 12.5, 1.0],
        "LineAmount": [123.4, 120.0, 37.5, 0.1],
        "PurchaseOrderLineStatus": ["Backorder", "Received", "Canceled", "Invoiced"],
        "MainAccountIdDisplayValue": ["600100", "600200", "600100", "600100"],
        "DefaultLedgerDimensionDisplayValue": ["001-007-022", "001-CC\\-9-022", "", "001-a\\\\b-"],
        "RequestedDeliveryDate": ["2026-06-26T12:00:00Z", "1900-01-01T12:00:00Z", None, "2026-01-02T00:00:00Z"],
        "VendorInvoiceMatchingPolicy": ["ThreeWayMatch", "TwoWayMatch", "NoMatch", "NoMatch"],
    })


def test_order_lines_exact():
    out = apply_mapping(ORDER_LINE, po_lines(), CTX)
    assert out.select("erp_po_line_number", "quantity", "unit_price", "line_amount", "cost_center",
                      "requested_delivery_date").rows() == [
        ("1", "1000", "0.1234", "123.40", "007", "2026-06-26"),
        ("2", "1.5", "80", "120.00", "CC-9", ""),
        ("1", "3", "12.5", "37.50", "", ""),
        ("1", "0.0000001", "1", "0.10", "a\\b", "2026-01-02"),
    ]
    assert out.row(0, named=True)["description"] == "Bolts, 10^3 pcs"
    assert out.row(3, named=True)["legal_entity"] == "DEMF"


def test_order_headers_with_po_amount():
    headers = pl.DataFrame({
        "dataAreaId": ["USMF", "usmf", "usmf"],
        "PurchaseOrderNumber": ["PO-1", "PO-2", "PO-3"],
        "OrderVendorAccountNumber": ["V-001"] * 3, "InvoiceVendorAccountNumber": ["V-001"] * 3,
        "PurchaseOrderName": ["Acme", "Acme", "Acme"],
        "PurchaseOrderStatus": ["Backorder", "Received", "None"],
        "DocumentApprovalStatus": ["Approved", "Draft", "Confirmed"],
        "CurrencyCode": ["USD"] * 3, "PaymentTermsName": ["Net30"] * 3,
        "AccountingDate": [datetime(2026, 6, 26, 12, tzinfo=UTC), datetime(1900, 1, 1, 12, tzinfo=UTC), None],
        "RequestedDeliveryDate": ["2026-07-01T12:00:00Z"] * 3,
        "DefaultLedgerDimensionDisplayValue": ["001-007-022", "", "x"],
    })
    out = apply_mapping(ORDER, headers, CTX, related={"PurchaseOrderLinesV2": po_lines()})
    assert out.select("legal_entity", "erp_po_number", "order_date", "cost_center", "po_amount",
                      "order_type").rows() == [
        ("USMF", "PO-1", "2026-06-26", "007", "243.40", "standard"),
        ("USMF", "PO-2", "", "", "37.50", "standard"),
        ("USMF", "PO-3", "", "", "0.00", "standard"),
    ]
    with pytest.raises(MappingError, match="PurchaseOrderLinesV2"):
        apply_mapping(ORDER, headers, CTX)


def test_gl_accounts_and_cost_centers():
    accounts = pl.DataFrame({"ChartOfAccounts": ["Shared"] * 2, "MainAccountId": ["600100", "110110"],
                             "Name": ["Travel, meals & \"fun\"", "Cash"], "MainAccountType": ["Expense", "Asset"],
                             "IsSuspended": ["No", "Yes"]})
    assert apply_mapping(GL_ACCOUNT, accounts, CTX).rows() == [
        ("D365FO-PROD", "", "Shared", "600100", 'Travel, meals & "fun"', "Expense", "true"),
        ("D365FO-PROD", "", "Shared", "110110", "Cash", "Asset", "false"),
    ]
    dims = pl.DataFrame({
        "FinancialDimension": ["CostCenter", "Department", "CostCenter"],
        "LegalEntityId": ["usmf", "usmf", ""], "DimensionValue": ["007", "022", "CC-9"],
        "Description": ["Sales", "HR", "Shared ops"], "IsSuspended": ["No", "No", "Yes"],
        "ActiveFrom": ["1900-01-01T12:00:00Z", "2020-01-01T12:00:00Z", "2024-02-29T12:00:00Z"],
        "ActiveTo": ["2154-12-31T23:59:59Z", "1900-01-01T12:00:00Z", "1900-01-01T12:00:00Z"],
    })
    assert apply_mapping(COST_CENTER, dims, CTX).rows() == [
        ("D365FO-PROD", "USMF", "007", "Sales", "true", "", "2154-12-31"),
        ("D365FO-PROD", "", "CC-9", "Shared ops", "false", "2024-02-29", ""),
    ]


def test_payment_details():
    trans = pl.DataFrame({
        "dataAreaId": ["usmf", "usmf", "usmf"], "Invoice": ["INV-1", "", "INV-2"],
        "AccountNum": ["V-001"] * 3, "CurrencyCode": ["USD"] * 3,
        "SettleAmountCur": [-1250.0, 10.0, -5.0], "LastSettleDate": ["2026-07-03T12:00:00Z"] * 2 + [
            "1900-01-01T12:00:00Z"],
        "PaymMode": ["check", "ACH", "EFT"], "LastSettleVoucher": ["PAY-9", "PAY-9", ""],
        "DueDate": ["2026-07-01T12:00:00Z"] * 3,
    })
    out = apply_mapping(PAYMENT_DETAIL, trans, CTX)
    assert out.to_dicts() == [{
        "u_erp_source": "D365FO-PROD", "u_legal_entity": "USMF", "u_erp_invoice_number": "INV-1",
        "u_erp_supplier_code": "V-001", "u_currency": "USD", "u_payment_amount": "1250.00",
        "u_payment_date": "2026-07-03", "u_payment_method": "cheque", "u_payment_reference_id": "PAY-9",
        "u_scheduled_payment_date": "2026-07-01",
    }]


def test_missing_source_column_is_a_clear_error():
    with pytest.raises(MappingError, match=r"lacks columns \['VendorGroupId'\]"):
        apply_mapping(SUPPLIER, pl.DataFrame([vendor()]).drop("VendorGroupId"), CTX)


def test_defaults_cover_the_six_targets():
    assert {m.target_table for m in DEFAULT_MAPPINGS.values()} == {
        "sn_fin_supplier", "sn_shop_purchase_order", "sn_shop_purchase_order_line", "sn_fin_gl_account",
        "cmn_cost_center", "sn_shop_invoice_payment_detail"}
    assert "PersonFirstName" in source_columns(SUPPLIER)
