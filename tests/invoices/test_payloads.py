from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from d365_snow_assets.invoices import InvoiceSettings, dumps_payload, header_payload, line_payload, parse_invoice
from d365_snow_assets.invoices.payloads import json_ready

from .fakes import header, line


def inv(h=None, lines=None):
    p = parse_invoice(h or header(), lines if lines is not None else [line(1), line(2)])
    assert p.problems == []
    return p.invoice


def test_header_payload():
    payload = header_payload(inv(), "V-0099")
    assert payload == {
        "dataAreaId": "usmf", "InvoiceNumber": "INV-h1", "InvoiceAccount": "V-0001", "VendorAccount": "V-0099",
        "InvoiceDate": "2026-05-01T12:00:00Z", "Date": "2026-05-01T12:00:00Z", "DueDate": "2026-05-31T12:00:00Z",
        "Currency": "USD", "ImportedAmount": Decimal("1320.00"), "ImportedSalesTax": Decimal("120.00"),
        "PurchaseOrderNumber": "PO-1", "DocumentNumber": "OBINV-h1",
    }


def test_header_sends_only_what_it_sets():
    payload = header_payload(inv(header(due_date="", purchase_order="", amount_invoiced="1320"),
                                 [line(1, purchase_order="", purchase_order_line=""),
                                  line(2, purchase_order="", purchase_order_line="")]))
    assert "DueDate" not in payload and "PurchaseOrderNumber" not in payload
    assert payload["VendorAccount"] == "V-0001"
    assert str(payload["ImportedAmount"]) == "1320.00"  # the F&O scale


def test_gl_line_payload_with_dimension_display_value():
    invoice = inv(lines=[line(1, cost_center="US-108", description=""), line(2)])
    payload = line_payload(invoice, invoice.lines[0], "USMF-VI00000001")
    assert payload == {
        "dataAreaId": "usmf", "HeaderReference": "USMF-VI00000001", "InvoiceLineNumber": 1, "Currency": "USD",
        "MainAccountDisplayValue": "600100", "DimensionDisplayValue": "US\\-108", "InventNow": Decimal("2"),
        "UnitPrice": Decimal("300.00"), "Amount": Decimal("600.00"), "PurchaseOrder": "PO-1", "PurchLineNumber": 1,
    }
    settings = InvoiceSettings(dimension_format=("BusinessUnit", "CostCenter", "Department"), dimension_delimiter="|")
    assert line_payload(invoice, invoice.lines[1], "R", settings)["DimensionDisplayValue"] == "|CC01|"


def test_item_line_payload_and_line_purchase_order():
    invoice = inv(header(purchase_order=""), [line(1, item_number="A0001", purchase_order="PO-3"),
                                              line(2, purchase_order="", purchase_order_line="", quantity="",
                                                   unit_price="")])
    first = line_payload(invoice, invoice.lines[0], "R")
    assert first["ItemNumber"] == "A0001"
    assert "MainAccountDisplayValue" not in first and "DimensionDisplayValue" not in first
    assert first["PurchaseOrder"] == "PO-3" and first["LineDescription"] == "Steel beams, batch 1"
    second = line_payload(invoice, invoice.lines[1], "R")
    assert not {"PurchaseOrder", "PurchLineNumber", "InventNow", "UnitPrice"} & second.keys()


@pytest.mark.parametrize(("text", "json"), [
    ("1250.10", b"1250.10"), ("0.10", b"0.10"), ("99999999999.99", b"99999999999.99"), ("1250", b"1250.00"),
])
def test_amounts_are_exact_json_numbers(text, json):
    invoice = inv(header(amount_invoiced=text, tax_amount=""),
                  [line(1, amount=text, tax_amount="", quantity="", unit_price="")])
    body = dumps_payload(header_payload(invoice))
    assert b'"ImportedAmount":' + json + b"," in body
    assert orjson.loads(body)["ImportedAmount"] == float(text)  # still a number for any JSON reader


def test_hostile_text_survives_json():
    nasty = "O'Brien \"^\" Ünïcødé € \\ 𝄞"
    invoice = inv(header(supplier_invoice_number="INV^'Ü€", supplier="O'BRIEN^Ü"), [line(1, description=nasty),
                                                                                   line(2)])
    assert orjson.loads(dumps_payload(header_payload(invoice)))["InvoiceNumber"] == "INV^'Ü€"
    assert orjson.loads(dumps_payload(line_payload(invoice, invoice.lines[0], "R")))["LineDescription"] == nasty


def test_unvalidated_invoice_is_refused():
    p = parse_invoice(header(invoice_date=""), [line(1)])
    with pytest.raises(ValueError, match="validate it before posting"):
        header_payload(p.invoice)


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999999999999.99"), places=2))
def test_json_ready_floats_carry_the_exact_amount(amount):
    invoice = inv(header(amount_invoiced=str(amount), tax_amount=""),
                  [line(1, amount=str(amount), tax_amount="", quantity="", unit_price="")])
    ready = json_ready(header_payload(invoice))
    assert Decimal(repr(ready["ImportedAmount"])) == amount
    assert orjson.loads(dumps_payload(header_payload(invoice)))["ImportedAmount"] == ready["ImportedAmount"]


def test_json_ready_refuses_a_lossy_conversion():
    with pytest.raises(ValueError, match="cannot be sent"):
        json_ready({"UnitPrice": Decimal("0.12345678901234567890")})
