"""Typed outbound invoices parsed from ServiceNow Table API rows (DESIGN §5.2).

Every Table API value is a string (``"1250.00"``, ``"2026-05-01"``), and a reference may arrive as
``{"value": sys_id, "link": …}`` unless ``sysparm_exclude_reference_link`` was set. Parsing never raises for bad
data: each unusable value becomes a sentence in ``problems`` and the typed field is ``None``, so one bad row
cannot stop the batch and the clerk learns about every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from d365_snow_assets.invoices.messages import line_label, shorten
from d365_snow_assets.warehouse.diff import business_key

HEADER_TABLE = "sn_spend_intg_outbound_invoice"
LINE_TABLE = "sn_spend_intg_outbound_invoice_line"

# Money must stay exact: ServiceNow decimals carry 2 places and F&O amounts are rounded to the currency (2 for
# almost every currency). More places mean the value was computed, not entered; rounding it here would silently
# change what is paid, so it is a problem for the clerk instead. [choice; 3-decimal currencies are not supported]
MONEY_PLACES = 2
# A bound far above any real invoice and well inside F&O's Decimal(32,16)-like storage [INF]; it catches typos
# such as a pasted account number in the amount field.
MAX_ABS_AMOUNT = Decimal("1000000000000")
# 15 significant digits is what a binary double carries exactly, so any value that passes can cross a JSON
# library that only knows floats without changing (see payloads.json_ready); F&O prices use at most 6 places.
MAX_SIGNIFICANT_DIGITS = 15
# F&O's VendInvoiceId extends the 20-character Num EDT in standard builds [INF: not in reference/]. An invoice
# number is half of the duplicate key, so it is rejected rather than cut.
MAX_INVOICE_NUMBER_LENGTH = 20
# LineDescription is free text; cutting it loses nothing that identifies the invoice [INF: 1000 from ItemFreeTxt].
MAX_DESCRIPTION_LENGTH = 1000
# invoice_type choice values of credit notes [INF: ServiceNow's choice list is not in reference/]. Their totals
# and lines are negative; every other type must be positive.
CREDIT_TYPES = frozenset({"credit_note", "credit_memo", "credit"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_CURRENCY_SHAPE = re.compile(r"[A-Z]{3}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class InvoiceSettings:
    """The knobs of the invoice flow; defaults are DESIGN §5.2/§5.3's."""

    # DimensionDisplayValue segments in order, and their delimiter (DESIGN §5.3).
    dimension_format: tuple[str, ...] = ("CostCenter",)
    dimension_delimiter: str = "-"
    # The FinancialDimension whose values are cost centers; also the segment the line's cost center fills.
    cost_center_dimension: str = "CostCenter"
    # Lines + tax must equal amount_invoiced within this (DESIGN §5.2).
    amount_tolerance: Decimal = Decimal("0.01")
    # A GL-coded line without a cost center would post to the account with an empty cost-center segment, which
    # is how money lands on a wrong (unallocated) account; so it is rejected. [choice; item lines and lines matched
    # to a PO line take their dimensions from the item / the PO line's distribution and are exempt: many PO lines
    # have no cost center of their own, DESIGN §5.1]
    require_cost_center: bool = True
    # Reject invoices against a canceled purchase order or PO line. [choice: F&O cannot match against them]
    reject_canceled_orders: bool = True
    message_limit: int = 4000


@dataclass(frozen=True)
class InvoiceLine:
    """One outbound invoice line; ``None`` in a typed field means the row's value was unusable (see problems)."""

    sys_id: str
    position: int  # 1-based order of the row within the invoice, for messages when line_number is unusable
    line_number: int | None
    purchase_order: str
    purchase_order_line: int | None
    item_number: str
    description: str
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal | None
    gl_account: str
    cost_center: str
    tax_amount: Decimal | None

    @property
    def label(self) -> str:
        return line_label(self.line_number, self.position)


@dataclass(frozen=True)
class OutboundInvoice:
    """One ``sn_spend_intg_outbound_invoice`` row with its lines, typed."""

    sys_id: str
    number: str  # ServiceNow's OBINV number, sent as DocumentNumber
    supplier_invoice_number: str
    supplier: str  # ERP supplier code = F&O InvoiceAccount
    legal_entity: str  # upper-case, as ServiceNow shows it; F&O's dataAreaId is its lower-case form
    currency: str
    invoice_date: date | None
    due_date: date | None
    amount_invoiced: Decimal | None
    tax_amount: Decimal | None
    purchase_order: str
    invoice_type: str
    integration_status: str
    erp_number: str
    lines: tuple[InvoiceLine, ...] = ()

    @property
    def data_area_id(self) -> str:
        return self.legal_entity.lower()

    @property
    def is_credit(self) -> bool:
        return self.invoice_type.lower() in CREDIT_TYPES

    @property
    def business_key(self) -> str:
        """``LE|account|number``: the natural key of DESIGN §5.2, escaped like every warehouse business key."""
        return business_key([self.legal_entity, self.supplier, self.supplier_invoice_number])

    @property
    def total_tax(self) -> Decimal:
        """The header's tax, or the lines' tax when the header leaves it blank (ServiceNow fills either)."""
        if self.tax_amount is not None:
            return self.tax_amount
        return sum((line.tax_amount or Decimal(0) for line in self.lines), Decimal(0))


@dataclass
class ParsedInvoice:
    """An invoice and every problem found while reading it."""

    invoice: OutboundInvoice
    problems: list[str] = field(default_factory=list)


def text_value(value: Any) -> str:
    """A Table API value as text: reference objects give their ``value``; ``None`` gives ``""``."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return text_value(value.get("value"))
    return str(value).strip()


def _decimal(raw: str, what: str, problems: list[str], *, money: bool) -> Decimal | None:
    """``raw`` as an exact Decimal, or ``None`` with a problem. Only plain notation is accepted: ``1e3``,
    ``NaN``, ``Infinity`` and ``1,250.00`` are rejected because Decimal() would take the first three and a clerk
    would not have typed them."""
    if not _NUMBER.fullmatch(raw):
        problems.append(f"{what} '{shorten(raw)}' is not a number.")
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern already excludes these
        problems.append(f"{what} '{shorten(raw)}' is not a number.")
        return None
    if abs(value) >= MAX_ABS_AMOUNT:
        problems.append(f"{what} {shorten(raw)} is too large.")
        return None
    if money and value.as_tuple().exponent < -MONEY_PLACES:  # type: ignore[operator]
        problems.append(f"{what} {raw} has more than {MONEY_PLACES} decimal places.")
        return None
    if len(value.normalize().as_tuple().digits) > MAX_SIGNIFICANT_DIGITS:
        problems.append(f"{what} {shorten(raw)} has more than {MAX_SIGNIFICANT_DIGITS} significant digits.")
        return None
    return value


def _date(raw: str, what: str, problems: list[str]) -> date | None:
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        problems.append(f"{what} '{shorten(raw)}' is not a valid date (expected YYYY-MM-DD).")
        return None


def _integer(raw: str, what: str, problems: list[str]) -> int | None:
    # ServiceNow integer columns may come back as "2" or "2.0" depending on the field type.
    if re.fullmatch(r"\d+(\.0+)?", raw) and 0 < int(raw.split(".")[0]) < 10**9:
        return int(raw.split(".")[0])
    problems.append(f"{what} '{shorten(raw)}' is not a positive whole number.")
    return None


def _code(raw: str, what: str, problems: list[str], *, required: bool, max_length: int | None = None) -> str:
    """A key-like value (supplier code, invoice number, account): must be present when required, must be free
    of control characters (they cannot be typed in F&O and break OData literals), and must fit its F&O field."""
    if not raw:
        if required:
            problems.append(f"{what} is missing.")
        return raw
    if _CONTROL.search(raw):
        problems.append(f"{what} '{shorten(_CONTROL.sub('?', raw))}' contains control characters.")
    if max_length is not None and len(raw) > max_length:
        problems.append(f"{what} '{shorten(raw)}' is longer than the {max_length} characters Dynamics 365 allows.")
    return raw


def parse_line(row: Mapping[str, Any], position: int, problems: list[str], *, credit: bool = False) -> InvoiceLine:
    """One ``sn_spend_intg_outbound_invoice_line`` row; problems are appended, prefixed with the line label."""
    own: list[str] = []
    get = lambda name: text_value(row.get(name))  # noqa: E731
    raw_number = get("line_number")
    line_number = _integer(raw_number, "The line number", own) if raw_number else None
    if not raw_number:
        own.append("The line number is missing.")
    raw_po_line = get("purchase_order_line")
    po_line = _integer(raw_po_line, "The purchase order line", own) if raw_po_line else None
    amount = _decimal(get("amount"), "The amount", own, money=True) if get("amount") else None
    if not get("amount"):
        own.append("The amount is missing.")
    quantity = _decimal(get("quantity"), "The quantity", own, money=False) if get("quantity") else None
    unit_price = _decimal(get("unit_price"), "The unit price", own, money=False) if get("unit_price") else None
    tax = _decimal(get("tax_amount"), "The tax amount", own, money=True) if get("tax_amount") else None
    sign = Decimal(-1) if credit else Decimal(1)
    kind = "a credit note" if credit else "an invoice"
    # Zero lines post nothing and on an invoice usually mean a missing value; negative lines on an invoice (or
    # positive on a credit note) would reverse the meaning of the line. [choice]
    if amount is not None and amount * sign <= 0:
        own.append(f"The amount {amount} must be {'negative' if credit else 'positive'} on {kind}.")
    if quantity is not None and quantity * sign <= 0:
        own.append(f"The quantity {quantity} must be {'negative' if credit else 'positive'} on {kind}.")
    if unit_price is not None and unit_price < 0:
        own.append(f"The unit price {unit_price} must not be negative.")
    description = get("description")
    line = InvoiceLine(
        sys_id=get("sys_id"), position=position, line_number=line_number,
        purchase_order=_code(get("purchase_order"), "The purchase order", own, required=False),
        purchase_order_line=po_line,
        item_number=_code(get("item_number"), "The item number", own, required=False),
        description=_CONTROL.sub(" ", description)[:MAX_DESCRIPTION_LENGTH],
        quantity=quantity, unit_price=unit_price, amount=amount,
        gl_account=_code(get("gl_account"), "The GL account", own, required=False),
        cost_center=_code(get("cost_center"), "The cost center", own, required=False),
        tax_amount=tax,
    )
    problems.extend(f"{line.label}: {_lower_first(p)}" for p in own)
    return line


def _lower_first(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def parse_invoice(header: Mapping[str, Any], lines: Iterable[Mapping[str, Any]]) -> ParsedInvoice:
    """One outbound invoice header row and its line rows (any order; sorted by line number here)."""
    problems: list[str] = []
    get = lambda name: text_value(header.get(name))  # noqa: E731
    if not get("sys_id"):
        problems.append("The ServiceNow record has no sys_id.")
    invoice_type = get("invoice_type")
    credit = invoice_type.lower() in CREDIT_TYPES
    supplier = _code(get("supplier"), "The supplier", problems, required=True)
    number = _code(get("supplier_invoice_number"), "The supplier invoice number", problems, required=True,
                   max_length=MAX_INVOICE_NUMBER_LENGTH)
    legal_entity = _code(get("legal_entity"), "The legal entity", problems, required=True).upper()
    currency = get("currency").upper()
    if not currency:
        problems.append("The currency is missing.")
    elif not _CURRENCY_SHAPE.fullmatch(currency):
        problems.append(f"The currency '{shorten(currency)}' is not a three-letter ISO currency code.")
    invoice_date = _date(get("invoice_date"), "The invoice date", problems) if get("invoice_date") else None
    if not get("invoice_date"):
        problems.append("The invoice date is missing.")
    due_date = _date(get("due_date"), "The due date", problems) if get("due_date") else None
    if invoice_date and due_date and due_date < invoice_date:
        problems.append(f"The due date {due_date} is before the invoice date {invoice_date}.")
    amount = _decimal(get("amount_invoiced"), "The invoiced amount", problems, money=True) \
        if get("amount_invoiced") else None
    if not get("amount_invoiced"):
        problems.append("The invoiced amount is missing.")
    elif amount is not None and (amount >= 0 if credit else amount <= 0):
        problems.append(f"The invoiced amount {amount} must be {'negative' if credit else 'positive'} on "
                        f"{'a credit note' if credit else 'an invoice'}.")
    tax = _decimal(get("tax_amount"), "The tax amount", problems, money=True) if get("tax_amount") else None
    if tax is not None and (tax > 0 if credit else tax < 0):
        problems.append(f"The tax amount {tax} must not be {'positive' if credit else 'negative'}.")

    rows = sorted(lines, key=_line_sort_key)
    line_problems: list[str] = []
    parsed_lines = tuple(parse_line(row, i, line_problems, credit=credit) for i, row in enumerate(rows, start=1))
    if not parsed_lines:
        problems.append("The invoice has no lines.")
    numbers = [line.line_number for line in parsed_lines if line.line_number is not None]
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        problems.append(f"Line numbers {', '.join(map(str, duplicates))} are used more than once.")
    problems.extend(line_problems)
    invoice = OutboundInvoice(
        sys_id=get("sys_id"), number=get("number"), supplier_invoice_number=number, supplier=supplier,
        legal_entity=legal_entity, currency=currency, invoice_date=invoice_date, due_date=due_date,
        amount_invoiced=amount, tax_amount=tax, purchase_order=get("purchase_order"), invoice_type=invoice_type,
        integration_status=get("integration_status"), erp_number=get("erp_number"), lines=parsed_lines,
    )
    return ParsedInvoice(invoice, problems)


def _line_sort_key(row: Mapping[str, Any]) -> tuple[int, str]:
    raw = text_value(row.get("line_number"))
    return (int(raw), "") if raw.isdigit() and len(raw) < 10 else (10**10, raw)


def parse_invoices(headers: Iterable[Mapping[str, Any]], lines: Iterable[Mapping[str, Any]]) -> list[ParsedInvoice]:
    """Every header with its lines (joined on ``outbound_invoice`` = header ``sys_id``), in header order.

    Lines whose header is not among ``headers`` belong to invoices outside this poll and are ignored.
    """
    by_header: dict[str, list[Mapping[str, Any]]] = {}
    for row in lines:
        by_header.setdefault(text_value(row.get("outbound_invoice")), []).append(row)
    return [parse_invoice(h, by_header.get(text_value(h.get("sys_id")), [])) for h in headers]
