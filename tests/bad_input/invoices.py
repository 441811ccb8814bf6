"""Hand-made approved invoices in the sandbox's ServiceNow, cloned from a seeded valid one so that everything the
case does not change is known to pass validation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tests.defs.conftest import Connector

OUTBOUND = "sn_spend_intg_outbound_invoice"
OUTBOUND_LINE = "sn_spend_intg_outbound_invoice_line"
HEADER_FIELDS = ("supplier_invoice_number", "supplier", "legal_entity", "currency", "invoice_date", "due_date",
                 "subtotal", "amount_invoiced", "tax_amount", "purchase_order", "invoice_type", "payment_terms",
                 "erp_source")
LINE_FIELDS = ("line_number", "purchase_order", "purchase_order_line", "item_number", "description", "quantity",
               "unit_price", "amount", "gl_account", "cost_center", "tax_amount")

LineChange = Callable[[dict[str, str]], None]


def valid_bases(connector: Connector) -> list[dict[str, str]]:
    """Seeded outbound invoices that are valid (the sandbox knows which ones it made invalid)."""
    invalid = connector.server.world.snow.invalid_invoices
    return [r for r in connector.snow(OUTBOUND) if r["sys_id"] not in invalid]


def clone(connector: Connector, base: Mapping[str, str], number: str, header: Mapping[str, str] | None = None,
          line: LineChange | None = None, *, invalid: str | None = None) -> str:
    """A new approved invoice (``sn_shop_invoice`` + outbound invoice in ``new`` + lines) copied from ``base``
    with ``header`` values and ``line`` edits applied; ``invalid`` registers it with the sandbox as one the
    connector must reject, so ``verify_end_state`` holds the whole batch to account. Returns its sys_id."""
    snow = connector.server.world.snow
    values: dict[str, Any] = {k: base[k] for k in HEADER_FIELDS}
    values.update({"supplier_invoice_number": number, **(header or {})})
    shop = snow.insert("sn_shop_invoice", {**values, "number": snow.ids.number("INV"), "state": "approved",
                                           "amount_paid": "0.00"})
    out = snow.insert(OUTBOUND, {**values, "number": snow.ids.number("OBINV"), "integration_status": "new",
                                 "invoice_status": "approved", "invoice": shop["sys_id"]})
    for src in snow.select(OUTBOUND_LINE, f"outbound_invoice={base['sys_id']}"):
        row = {k: src[k] for k in LINE_FIELDS}
        if line is not None:
            line(row)
        snow.insert(OUTBOUND_LINE, {**row, "outbound_invoice": out["sys_id"]})
    if invalid is not None:
        snow.invalid_invoices[out["sys_id"]] = [invalid]
    return out["sys_id"]


def outcome(connector: Connector, sys_id: str) -> tuple[str, str]:
    row = connector.snow(OUTBOUND, f"sys_id={sys_id}")[0]
    return row["integration_status"], row["processing_message"]
