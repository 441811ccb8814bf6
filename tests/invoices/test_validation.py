import polars as pl
import pytest

from d365_snow_assets.invoices import InvoiceReferences, InvoiceSettings, parse_invoices, processing_message
from d365_snow_assets.invoices import validate_invoices as _validate
from d365_snow_assets.validation.reference_data import check_account_references

from .fakes import header, line, references


def validate(h=None, lines=None, refs=None, settings=None):
    h = h or header()
    lines = lines if lines is not None else [line(1), line(2)]
    [verdict] = _validate(parse_invoices([h], lines), refs or references(["usmf", "demf"]), settings)
    return verdict


def test_valid_invoice():
    v = validate()
    assert v.valid and v.problems == () and v.processing_message == ""
    assert v.order_account == "V-0001"


def test_on_hold_payment_does_not_block():
    v = validate(header(supplier="V-0050", currency="EUR", purchase_order="PO-3"),
                 [line(1, purchase_order="PO-3", amount="1200.00")])
    assert v.valid, v.problems


@pytest.mark.parametrize(("h", "lines", "expected"), [
    (header(supplier="V-0042"), None, "Supplier V-0042 is on hold for invoices in USMF."),
    (header(supplier="V-0060"), None, "Supplier V-0060 is on hold for invoices in USMF."),
    (header(supplier="V-9999", purchase_order=""), [line(1, purchase_order="", purchase_order_line=""),
                                                    line(2, purchase_order="", purchase_order_line="")],
     "Supplier V-9999 does not exist in Dynamics 365 for legal entity USMF."),
    (header(legal_entity="JPMF"), None, "Legal entity JPMF is not one of the legal entities this connector posts to."),
    (header(currency="XYZ"), None, "The currency XYZ is not a known ISO currency code."),
    (header(currency="EUR"), None, "The currency EUR differs from the currency USD of purchase order PO-1."),
    (header(purchase_order="PO-9"), [line(1, purchase_order=""), line(2, purchase_order="")],
     "Purchase order PO-9 does not exist in Dynamics 365 for legal entity USMF."),
    (header(purchase_order="PO-2"), [line(1, purchase_order=""), line(2, purchase_order="")],
     "Purchase order PO-2 is canceled in Dynamics 365."),
    (header(supplier="V-0050", currency="EUR", purchase_order="PO-1"),
     [line(1, purchase_order=""), line(2, purchase_order="")],
     "Purchase order PO-1 belongs to supplier V-0001, not V-0050."),
    (header(), [line(1), line(2, gl_account="999999")], "Line 2: GL account 999999 does not exist in Dynamics 365."),
    (header(), [line(1), line(2, gl_account="600200")], "Line 2: GL account 600200 is suspended in Dynamics 365."),
    (header(), [line(1), line(2, cost_center="CC42")],
     "Line 2: cost center CC42 does not exist in Dynamics 365 for legal entity USMF."),
    (header(), [line(1), line(2, cost_center="CC07")],  # DEMF's value is not USMF's
     "Line 2: cost center CC07 does not exist in Dynamics 365 for legal entity USMF."),
    (header(), [line(1), line(2, cost_center="CC02")], "Line 2: cost center CC02 is suspended in Dynamics 365."),
    (header(), [line(1), line(2, cost_center="CC05")],  # company value (suspended) wins over the shared one
     "Line 2: cost center CC05 is suspended in Dynamics 365."),
    (header(), [line(1), line(2, cost_center="", purchase_order_line="")], "Line 2: the cost center is missing."),
    (header(), [line(1), line(2, purchase_order_line="7")],
     "Line 2: purchase order line 7 of PO-1 does not exist in Dynamics 365."),
    (header(), [line(1), line(2, purchase_order_line="3")],
     "Line 2: purchase order line 3 of PO-1 is canceled in Dynamics 365."),
    (header(), [line(1), line(2, purchase_order="PO-77")],
     "Line 2: purchase order PO-77 does not exist in Dynamics 365 for legal entity USMF."),
    (header(purchase_order=""), [line(1, purchase_order=""), line(2, purchase_order="", purchase_order_line="")],
     "Line 1: it names purchase order line 1 but no purchase order."),
    (header(), [line(1), line(2, gl_account="", item_number="", purchase_order_line="")],
     "Line 2: there is no item number, GL account or purchase order line."),
    (header(amount_invoiced="1400.00"), None,
     "The lines (1200.00) plus tax (120.00) come to 1320.00, but the invoiced amount is 1400.00."),
])
def test_each_rule(h, lines, expected):
    v = validate(h, lines)
    assert not v.valid
    assert expected in v.problems, v.problems


def test_a_line_matched_to_a_po_line_needs_no_cost_center_of_its_own():
    """Its distribution comes from the PO line; a fifth of F&O's PO lines have no cost center (DESIGN §5.1)."""
    v = validate(header(), [line(1), line(2, cost_center="")])
    assert v.valid, v.problems


def test_shared_cost_center_and_item_lines_are_fine():
    assert validate(lines=[line(1, cost_center="CC99"), line(2)]).valid
    # an item line takes its dimensions from the item / PO line: no cost center needed
    assert validate(lines=[line(1, item_number="A0001", gl_account="", cost_center=""), line(2)]).valid
    # the payment tolerance of DESIGN §5.2
    assert validate(header(amount_invoiced="1320.01")).valid
    assert not validate(header(amount_invoiced="1320.02")).valid


def test_blank_header_tax_falls_back_to_line_tax():
    assert validate(header(tax_amount="")).valid


def test_purchase_order_vendor_may_be_the_invoice_vendor():
    v = validate(header(purchase_order="PO-4"), [line(1, purchase_order="PO-4", amount="1200.00")])
    assert v.valid, v.problems
    assert v.order_account == "V-0099"  # F&O VendorAccount = the PO's order vendor


def test_canceled_orders_can_be_allowed():
    h = header(purchase_order="PO-2")
    lines = [line(1, purchase_order="", purchase_order_line=""), line(2, purchase_order="", purchase_order_line="")]
    assert not validate(h, lines).valid
    assert validate(h, lines, settings=InvoiceSettings(reject_canceled_orders=False)).valid


def test_all_problems_are_collected_in_order():
    h = header(supplier="V-0042", currency="XYZ", amount_invoiced="5.00", due_date="junk")
    lines = [line(1, gl_account="999999", cost_center="CC02"), line(2, amount="abc"), line(3, purchase_order_line="9")]
    v = validate(h, lines)
    assert list(v.problems) == [
        "The due date 'junk' is not a valid date (expected YYYY-MM-DD).",
        "Line 2: the amount 'abc' is not a number.",
        "The currency XYZ is not a known ISO currency code.",
        "Supplier V-0042 is on hold for invoices in USMF.",
        "Purchase order PO-1 belongs to supplier V-0001, not V-0042.",
        "Line 1: GL account 999999 does not exist in Dynamics 365.",
        "Line 1: cost center CC02 is suspended in Dynamics 365.",
        "Line 3: purchase order line 9 of PO-1 does not exist in Dynamics 365.",
    ]
    assert v.processing_message == "\n".join(v.problems)


def test_many_invoices_keep_their_own_problems():
    heads = [header("a"), header("b", supplier="V-0042"), header("c"), header("", supplier="V-0060")]
    rows = [line(1, "a"), line(2, "a"), line(1, "b"), line(2, "b"), line(1, "c", gl_account="1"), line(2, "c"),
            line(1, ""), line(2, "")]
    verdicts = _validate(parse_invoices(heads, rows), references())
    assert [v.valid for v in verdicts] == [True, False, False, False]
    assert verdicts[1].problems == ("Supplier V-0042 is on hold for invoices in USMF.",
                                    "Purchase order PO-1 belongs to supplier V-0001, not V-0042.")
    assert verdicts[2].problems == ("Line 1: GL account 1 does not exist in Dynamics 365.",)
    assert "Supplier V-0060 is on hold for invoices in USMF." in verdicts[3].problems


def test_missing_snapshots_reject_rather_than_fail():
    empty = pl.DataFrame()
    refs = InvoiceReferences.from_snapshots(vendors=empty, purchase_orders=empty, purchase_order_lines=empty,
                                            main_accounts=empty, dimension_values=empty)
    v = validate(refs=refs)
    assert "Supplier V-0001 does not exist in Dynamics 365 for legal entity USMF." in v.problems
    assert "Line 1: GL account 600100 does not exist in Dynamics 365." in v.problems


def test_hostile_values_are_quoted_shortened():
    v = validate(header(supplier="X" * 10_000, purchase_order=""),
                 [line(1, purchase_order="", purchase_order_line="", gl_account="'^\"" * 3000)])
    assert not v.valid
    assert all(len(p) < 300 for p in v.problems)
    assert len(v.processing_message) <= 4000


def test_processing_message_is_bounded():
    problems = [f"Line {i}: GL account {i:06d} does not exist in Dynamics 365." for i in range(1, 400)]
    text = processing_message(problems, limit=4000)
    assert len(text) <= 4000
    kept = text.splitlines()
    assert kept[-1] == f"… and {len(problems) - (len(kept) - 1)} more problems."
    assert kept[:-1] == problems[: len(kept) - 1]
    assert processing_message(["one"]) == "one"
    one_huge = processing_message(["x" * 9000, "short"], limit=100)
    assert len(one_huge) <= 100 and one_huge.endswith("… and 1 more problem.")


@pytest.mark.parametrize("le", ["usmf", "demf"])
@pytest.mark.parametrize("gl", ["600100", "600200", "999999"])
@pytest.mark.parametrize("cc", ["CC01", "CC02", "CC05", "CC07", "CC99", "CCXX"])
def test_agrees_with_the_shared_account_rule(le, gl, cc):
    """Same verdict as reference_data.check_account_references (used for PO lines) for every GL / cost center."""
    refs = references()
    shared = check_account_references(pl.DataFrame({"legal_entity": [le], "gl_account": [gl], "cost_center": [cc]}),
                                      refs.accounts)
    h = header(legal_entity=le.upper(), purchase_order="")
    v = validate(h, [line(1, gl_account=gl, cost_center=cc, purchase_order="", purchase_order_line="",
                          amount="1200.00")], refs=refs)
    account_problems = [p for p in v.problems if "GL account" in p or "cost center" in p]
    assert bool(account_problems) == (shared["_reason"][0] != "")
