"""Hand-made approved invoices in the sandbox's ServiceNow, cloned from a seeded valid one so that everything the
case does not change is known to pass validation. Fields are named by documented label (tests/snow_view.py): the
clone is the seeded record with only the case's fields changed, references and all."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tests.defs.conftest import Connector
from tests.snow_view import SnowView

OUTBOUND = "sn_spend_intg_outbound_invoice"
OUTBOUND_LINE = "sn_spend_intg_outbound_invoice_line"
SHOP_INVOICE = "sn_shop_invoice"
# The cases' names for the fields they change → documented labels (a reference takes the referenced sys_id).
HEADER_LABELS = {"supplier": "Supplier", "purchase_order": "Purchase order", "invoice_date": "Invoice date",
                 "amount_invoiced": "Amount invoiced", "currency": "Currency", "invoice_type": "Invoice type",
                 "tax_amount": "Tax amount", "subtotal": "Subtotal"}
LINE_LABELS = {"purchase_order_line": "Purchase order line", "gl_account": "GL account",
               "cost_center": "Cost center", "amount": "Line amount invoiced", "tax_amount": "Tax amount",
               "quantity": "Line quantity", "description": "Line description"}
_SYSTEM = ("sys_id", "sys_created_on", "sys_updated_on", "sys_created_by", "sys_updated_by", "sys_mod_count")

LineChange = Callable[[dict[str, str]], None]


def valid_bases(connector: Connector) -> list[dict[str, str]]:
    """Seeded outbound invoices that are valid (the sandbox knows which ones it made invalid), as logical dicts:
    ``sys_id``, the legal entity's and supplier's ERP codes, the order's ERP number, and the HEADER_LABELS values."""
    view = SnowView(connector.server.world.snow)
    invalid = connector.server.world.snow.invalid_invoices
    return [{**{name: view.get(OUTBOUND, r, label) for name, label in HEADER_LABELS.items()},
             "sys_id": r["sys_id"], "legal_entity": view.get(OUTBOUND, r, "Legal entity", "ERP company code"),
             "supplier": view.get(OUTBOUND, r, "Supplier", "ERP company code"),
             "purchase_order": view.get(OUTBOUND, r, "Purchase order", "ERP number")}
            for r in view.rows(OUTBOUND) if r["sys_id"] not in invalid]


def _copy(row: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in _SYSTEM}


def clone(connector: Connector, base: Mapping[str, str], number: str, header: Mapping[str, str] | None = None,
          line: LineChange | None = None, *, invalid: str | None = None) -> str:
    """A new approved invoice (``sn_shop_invoice`` + outbound invoice in New + lines) copied from ``base`` with
    ``header`` values (by the names of :data:`HEADER_LABELS`) and ``line`` edits (on a dict with the names of
    :data:`LINE_LABELS`) applied; ``invalid`` registers it with the sandbox as one the connector must reject, so
    ``verify_end_state`` holds the whole batch to account. Returns its sys_id."""
    snow = connector.server.world.snow
    el = snow.el
    changes = {HEADER_LABELS[k]: v for k, v in (header or {}).items()}
    shop_base = snow.tables[SHOP_INVOICE].rows[snow.apo.invoice_of_outbound[base["sys_id"]]]
    shop_changes = {el(SHOP_INVOICE, label): v for label, v in changes.items()
                    if snow.tables[SHOP_INVOICE].by_label(label)}
    shop = snow.insert(SHOP_INVOICE, {**_copy(shop_base), **shop_changes, el(SHOP_INVOICE, "Number"): "",
                                      el(SHOP_INVOICE, "Supplier invoice number"): number}, run_rules=False)
    new = snow.choice_value(OUTBOUND, "Integration status", "New")
    out = snow.insert(OUTBOUND, {**_copy(snow.tables[OUTBOUND].rows[base["sys_id"]]),
                                 **{el(OUTBOUND, label): v for label, v in changes.items()},
                                 el(OUTBOUND, "Number"): "", el(OUTBOUND, "Supplier invoice number"): number,
                                 el(OUTBOUND, "Integration status"): new})
    snow.apo.invoice_of_outbound[out["sys_id"]] = shop["sys_id"]
    link = el(OUTBOUND_LINE, "Invoice")
    for src in [r for r in snow.tables[OUTBOUND_LINE].rows.values() if r.get(link) == base["sys_id"]]:
        row = _copy(src)
        if line is not None:
            logical = {name: row.get(el(OUTBOUND_LINE, label), "") for name, label in LINE_LABELS.items()}
            line(logical)
            row.update({el(OUTBOUND_LINE, LINE_LABELS[k]): v for k, v in logical.items()})
        snow.insert(OUTBOUND_LINE, {**row, el(OUTBOUND_LINE, "Number"): "", link: out["sys_id"]})
    if invalid is not None:
        snow.invalid_invoices[out["sys_id"]] = [invalid]
    return out["sys_id"]


def outcome(connector: Connector, sys_id: str) -> tuple[str, str]:
    """The outbound invoice's Integration status (new / in_progress / processed / error) and Processing message."""
    view = SnowView(connector.server.world.snow)
    row = next(r for r in view.rows(OUTBOUND) if r["sys_id"] == sys_id)
    return view.outbound_status(row), view.get(OUTBOUND, row, "Processing message")
