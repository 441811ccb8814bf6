from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from d365_snow_assets.invoices import parse_invoice, parse_invoices

from .fakes import header, line


def parse(h=None, lines=None):
    return parse_invoice(h or header(), lines if lines is not None else [line(1), line(2)])


def test_valid_rows_parse_to_typed_values():
    p = parse()
    assert p.problems == []
    inv = p.invoice
    assert inv.invoice_date == date(2026, 5, 1) and inv.due_date == date(2026, 5, 31)
    assert inv.amount_invoiced == Decimal("1320.00") and inv.tax_amount == Decimal("120.00")
    assert inv.legal_entity == "USMF" and inv.data_area_id == "usmf"
    assert [li.line_number for li in inv.lines] == [1, 2]
    assert inv.lines[0].amount == Decimal("600.00") and inv.lines[0].purchase_order_line == 1
    assert inv.business_key == "USMF|V-0001|INV-h1"


def test_reference_values_and_line_order():
    h = header(supplier={"value": "V-0001", "link": "https://x"})
    rows = [line(10), line(2), line(1)]
    p = parse_invoices([h], [*rows, line(1, sys_id="other")])
    assert len(p) == 1
    assert p[0].invoice.supplier == "V-0001"
    assert [li.line_number for li in p[0].invoice.lines] == [1, 2, 10]


def test_business_key_escapes_the_delimiter():
    p = parse(header(supplier_invoice_number="A|B\\C"))
    assert p.invoice.business_key == "USMF|V-0001|A\\|B\\\\C"


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("supplier", "", "The supplier is missing."),
    ("supplier_invoice_number", None, "The supplier invoice number is missing."),
    ("legal_entity", "", "The legal entity is missing."),
    ("currency", "", "The currency is missing."),
    ("currency", "US Dollar", "The currency 'US DOLLAR' is not a three-letter ISO currency code."),
    ("invoice_date", "", "The invoice date is missing."),
    ("invoice_date", "2026-02-30", "The invoice date '2026-02-30' is not a valid date (expected YYYY-MM-DD)."),
    ("invoice_date", "05/01/2026", "The invoice date '05/01/2026' is not a valid date (expected YYYY-MM-DD)."),
    ("due_date", "2026-04-01", "The due date 2026-04-01 is before the invoice date 2026-05-01."),
    ("amount_invoiced", "", "The invoiced amount is missing."),
    ("amount_invoiced", "1,320.00", "The invoiced amount '1,320.00' is not a number."),
    ("amount_invoiced", "NaN", "The invoiced amount 'NaN' is not a number."),
    ("amount_invoiced", "1e3", "The invoiced amount '1e3' is not a number."),
    ("amount_invoiced", "0.00", "The invoiced amount 0.00 must be positive on an invoice."),
    ("amount_invoiced", "-5.00", "The invoiced amount -5.00 must be positive on an invoice."),
    ("amount_invoiced", "10.005", "The invoiced amount 10.005 has more than 2 decimal places."),
    ("amount_invoiced", "9" * 20, f"The invoiced amount {'9' * 20} is too large."),
    ("tax_amount", "-1.00", "The tax amount -1.00 must not be negative."),
    ("sys_id", "", "The ServiceNow record has no sys_id."),
])
def test_header_problems(field, value, expected):
    p = parse(header(**{field: value}))
    assert expected in p.problems


@pytest.mark.parametrize(("over", "expected"), [
    ({"line_number": ""}, "Line in position 2: the line number is missing."),
    ({"line_number": "x"}, "Line in position 2: the line number 'x' is not a positive whole number."),
    ({"line_number": "0"}, "Line in position 1: the line number '0' is not a positive whole number."),
    ({"amount": ""}, "Line 1: the amount is missing."),
    ({"amount": "abc"}, "Line 1: the amount 'abc' is not a number."),
    ({"amount": "0.00"}, "Line 1: the amount 0.00 must be positive on an invoice."),
    ({"amount": "-600.00"}, "Line 1: the amount -600.00 must be positive on an invoice."),
    ({"quantity": "-2"}, "Line 1: the quantity -2 must be positive on an invoice."),
    ({"unit_price": "-1"}, "Line 1: the unit price -1 must not be negative."),
    ({"purchase_order_line": "first"}, "Line 1: the purchase order line 'first' is not a positive whole number."),
    ({"unit_price": "0.1234567890123456"},
     "Line 1: the unit price 0.1234567890123456 has more than 15 significant digits."),
    ({"gl_account": "600\n100"}, "Line 1: the GL account '600?100' contains control characters."),
])
def test_line_problems(over, expected):
    p = parse(lines=[line(1, **over), line(2)])
    assert expected in p.problems


def test_no_lines_and_duplicate_line_numbers():
    assert "The invoice has no lines." in parse(lines=[]).problems
    assert "Line numbers 1 are used more than once." in parse(lines=[line(1), line(1)]).problems


def test_credit_note_signs():
    h = header(invoice_type="credit_note", amount_invoiced="-660.00", tax_amount="-60.00")
    p = parse(h, [line(1, amount="-600.00", quantity="-2", tax_amount="-60.00")])
    assert p.problems == []
    p = parse(h, [line(1, amount="600.00")])
    assert "Line 1: the amount 600.00 must be negative on a credit note." in p.problems


def test_hostile_text_is_kept_verbatim_or_bounded():
    nasty = "O'Brien \"^\" Ünïcødé €"
    p = parse(header(supplier_invoice_number="INV^'Ü€", supplier="O'BRIEN^Ü"),
              [line(1, description=nasty + "x" * 10_000)])
    assert p.invoice.supplier_invoice_number == "INV^'Ü€"
    assert p.invoice.lines[0].description.startswith(nasty)
    assert len(p.invoice.lines[0].description) == 1000
    long_number = "N" * 10_000
    p = parse(header(supplier_invoice_number=long_number))
    [problem] = [x for x in p.problems if "longer than" in x]
    assert len(problem) < 200  # a 10 KB value is quoted shortened


row_values = st.one_of(st.none(), st.text(max_size=40), st.integers().map(str),
                       st.decimals(allow_nan=True, allow_infinity=True).map(str),
                       st.dictionaries(st.sampled_from(["value", "link"]), st.text(max_size=10), max_size=2))
header_fields = ["sys_id", "number", "supplier_invoice_number", "supplier", "legal_entity", "currency",
                 "invoice_date", "due_date", "amount_invoiced", "tax_amount", "purchase_order", "invoice_type"]
line_fields = ["line_number", "purchase_order", "purchase_order_line", "item_number", "description", "quantity",
               "unit_price", "amount", "gl_account", "cost_center", "tax_amount"]


@settings(max_examples=200, deadline=None)
@given(h=st.fixed_dictionaries({}, optional=dict.fromkeys(header_fields, row_values)),
       lines=st.lists(st.fixed_dictionaries({}, optional=dict.fromkeys(line_fields, row_values)), max_size=4))
def test_parsing_never_raises(h, lines):
    p = parse_invoice(h, lines)
    assert all(isinstance(x, str) and x for x in p.problems)
