"""F&O request bodies for ``VendorInvoiceHeaders`` / ``VendorInvoiceLines`` (DESIGN §5.2 step 2, d365.md §3.3, §4).

F&O gives unset properties their defaults (d365.md §4), so a payload holds only the properties this invoice
sets: no ``DueDate`` key when ServiceNow has none (F&O then derives it from the terms of payment), no
``PurchaseOrder`` on a non-PO line.

Money stays ``Decimal`` inside the payload and becomes a JSON number only at the JSON edge: :func:`dumps_payload`
writes its decimal text (``1250.10``) through ``orjson.Fragment``. A client whose ``json=`` goes through the
standard library (httpx does; it cannot encode Decimal) takes :func:`json_ready` instead, which converts to float
only after proving the float's shortest text is the same number: parsing caps values at 15 significant digits,
which a double always round-trips, so the proof holds for every validated invoice and a violation raises rather
than sends a different amount.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import orjson

from d365_snow_assets.invoices.model import MONEY_PLACES, InvoiceLine, InvoiceSettings, OutboundInvoice
from d365_snow_assets.mapping.dimensions import build_display_value

HEADER_ENTITY = "VendorInvoiceHeaders"
LINE_ENTITY = "VendorInvoiceLines"
# Every property a header / line payload may carry (``d365-snow fit`` checks them against $metadata).
HEADER_PROPERTIES = ("dataAreaId", "HeaderReference", "InvoiceNumber", "InvoiceAccount", "VendorAccount",
                     "InvoiceDate", "Date", "DueDate", "Currency", "ImportedAmount", "ImportedSalesTax",
                     "PurchaseOrderNumber", "DocumentNumber")
LINE_PROPERTIES = ("dataAreaId", "HeaderReference", "InvoiceLineNumber", "Currency", "ItemNumber",
                   "MainAccountDisplayValue", "DimensionDisplayValue", "InventNow", "UnitPrice", "Amount",
                   "PurchaseOrder", "PurchLineNumber", "LineDescription")
_CENT = Decimal(1).scaleb(-MONEY_PLACES)

Payload = dict[str, Any]


def odata_date(day: date) -> str:
    """F&O Date fields as DateTimeOffset at noon UTC: the time of day F&O itself writes for dates, and the one
    no time-zone shift of up to ±12 h moves to another day."""
    return f"{day.isoformat()}T12:00:00Z"


def money(value: Decimal) -> Decimal:
    """An amount at F&O's 2 places (``1250`` → ``1250.00``); parsing guarantees no digits are lost."""
    return value.quantize(_CENT)


def _plain(value: Decimal) -> Decimal:
    """A quantity or price without exponent notation (``1E+1`` → ``10``) and with its own precision."""
    return Decimal(format(value, "f"))


def _require(value: Any, what: str, invoice: OutboundInvoice) -> Any:
    # Only validated invoices reach payload building; a None here is a programming error, not bad data.
    if value is None:
        raise ValueError(f"invoice {invoice.number} ({invoice.sys_id}) has no {what}; validate it before posting")
    return value


def header_payload(invoice: OutboundInvoice, order_account: str | None = None) -> Payload:
    """The ``VendorInvoiceHeaders`` POST body; ``order_account`` is the PO's order vendor (defaults to the
    supplier, which is also the invoice account)."""
    invoice_date: date = _require(invoice.invoice_date, "invoice date", invoice)
    payload: Payload = {
        "dataAreaId": invoice.data_area_id,
        "InvoiceNumber": invoice.supplier_invoice_number,
        "InvoiceAccount": invoice.supplier,
        "VendorAccount": order_account or invoice.supplier,
        "InvoiceDate": odata_date(invoice_date),
        # Posting date = invoice date [choice]: the clerk can change it on the pending invoice before posting;
        # "today" would make a re-run produce a different payload than the first attempt.
        "Date": odata_date(invoice_date),
        "Currency": invoice.currency,
        "ImportedAmount": money(_require(invoice.amount_invoiced, "invoiced amount", invoice)),
        "ImportedSalesTax": money(invoice.total_tax),
        "DocumentNumber": invoice.number,
    }
    if invoice.due_date is not None:
        payload["DueDate"] = odata_date(invoice.due_date)
    if invoice.purchase_order:
        payload["PurchaseOrderNumber"] = invoice.purchase_order
    return payload


def line_payload(invoice: OutboundInvoice, line: InvoiceLine, header_reference: str,
                 settings: InvoiceSettings | None = None) -> Payload:
    """The ``VendorInvoiceLines`` POST body of ``line`` under the pending header ``header_reference``.

    An item line sends ``ItemNumber`` (F&O takes account and dimensions from the item / PO line); otherwise a
    GL-coded line sends ``MainAccountDisplayValue`` and the ``DimensionDisplayValue`` built from the configured
    format; a line with neither is matched to its PO line only.
    """
    settings = settings or InvoiceSettings()
    payload: Payload = {
        "dataAreaId": invoice.data_area_id,
        "HeaderReference": header_reference,
        "InvoiceLineNumber": _require(line.line_number, "line number", invoice),
        "Currency": invoice.currency,
    }
    if line.item_number:
        payload["ItemNumber"] = line.item_number
    elif line.gl_account:
        payload["MainAccountDisplayValue"] = line.gl_account
        segments = {settings.cost_center_dimension: line.cost_center} if (
            line.cost_center and settings.cost_center_dimension in settings.dimension_format) else {}
        if segments:
            payload["DimensionDisplayValue"] = build_display_value(segments, settings.dimension_format,
                                                                   settings.dimension_delimiter)
    if line.quantity is not None:
        payload["InventNow"] = _plain(line.quantity)
    if line.unit_price is not None:
        payload["UnitPrice"] = _plain(line.unit_price)
    payload["Amount"] = money(_require(line.amount, "amount", invoice))
    purchase_order = line.purchase_order or invoice.purchase_order
    if purchase_order and line.purchase_order_line is not None:
        payload["PurchaseOrder"] = purchase_order
        payload["PurchLineNumber"] = line.purchase_order_line
    if line.description:
        payload["LineDescription"] = line.description
    return payload


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps_payload(payload: Payload) -> bytes:
    """The JSON body: Decimals as exact JSON numbers (``1250.10``, never ``1250.0999…`` or ``"1250.10"``)."""
    return orjson.dumps(payload, default=_default)


def json_ready(payload: Payload) -> Payload:
    """``payload`` with Decimals as floats for a standard-library JSON encoder, each checked to round-trip."""
    out: Payload = {}
    for name, value in payload.items():
        if isinstance(value, Decimal):
            as_float = float(value)
            if Decimal(repr(as_float)) != value:
                raise ValueError(f"{name}={value} cannot be sent as a JSON float without changing it")
            value = as_float
        out[name] = value
    return out


def payload_text(payload: Payload) -> str:
    """:func:`dumps_payload` as text, with sorted keys: the audit store's stable form (its hash is compared)."""
    return orjson.dumps(payload, default=_default, option=orjson.OPT_SORT_KEYS).decode()
