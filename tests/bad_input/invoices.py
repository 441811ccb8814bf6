"""Hand-made approved invoices in the sandbox's ServiceNow, cloned from a seeded valid one so that everything the
case does not change is known to pass validation. Fields are named by documented label (tests/snow_view.py), so
the clone is the seeded record with only the case's fields changed, references and all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tests.defs.conftest import Connector
from tests.invoice_flow import outbound
from tests.snow_view import SnowView

OUTBOUND = outbound.OUTBOUND
OUTBOUND_LINE = outbound.OUTBOUND_LINE
# The case's names for the fields it changes → their documented labels.
HEADER_LABELS = {"supplier": "Supplier", "invoice_date": "Invoice date", "amount_invoiced": "Amount invoiced",
                 "currency": "Currency", "invoice_type": "Invoice type", "tax_amount": "Tax amount",
                 "subtotal": "Subtotal"}
LINE_LABELS = {"amount": "Line amount invoiced", "tax_amount": "Tax amount", "quantity": "Line quantity",
               "description": "Line description"}
_SYSTEM = ("sys_id", "sys_created_on", "sys_updated_on", "sys_created_by", "sys_updated_by", "sys_mod_count")

LineChange = Callable[[dict[str, str]], None]


def valid_bases(connector: Connector) -> list[dict[str, str]]:
    """Seeded outbound invoices that are valid (the sandbox knows which ones it made invalid), as logical dicts."""
    view = SnowView(connector.server.world.snow)
    invalid = connector.server.world.snow.invalid_invoices
    return [{"sys_id": r["sys_id"], "legal_entity": view.get(OUTBOUND, r, "Legal entity", "ERP company code"),
             "supplier": view.get(OUTBOUND, r, "Supplier", "ERP company code"),
             "purchase_order": view.get(OUTBOUND, r, "Purchase order", "ERP number"),
             **{name: view.get(OUTBOUND, r, label) for name, label in HEADER_LABELS.items()
                if name not in ("supplier",)}}
            for r in view.rows(OUTBOUND) if r["sys_id"] not in invalid]


def _copy(row: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in _SYSTEM}


def clone(connector: Connector, base: Mapping[str, str], number: str, header: Mapping[str, str] | None = None,
          line: LineChange | None = None, *, invalid: str | None = None) -> str:
    """A new approved invoice (``sn_shop_invoice`` + outbound invoice in ``new`` + lines) copied from ``base``
    with ``header`` values (by the names of :data:`HEADER_LABELS`) and ``line`` edits (on a dict with the names
    of :data:`LINE_LABELS`) applied; ``invalid`` registers it with the sandbox as one the connector must reject,
    so ``verify_end_state`` holds the whole batch to account. Returns its sys_id."""
    snow = connector.server.world.snow
    el = snow.el
    values = {el(OUTBOUND, HEADER_LABELS[k]): v for k, v in (header or {}).items()}
    shop_base = snow.tables["sn_shop_invoice"].rows[snow.apo.invoice_of_outbound[base["sys_id"]]]
    shop = snow.insert("sn_shop_invoice", {**_copy(shop_base), "number": snow.ids.number("INV"),
                                           el("sn_shop_invoice", "Supplier invoice number"): number},
                       run_rules=False)
    out = snow.insert(OUTBOUND, {**_copy(snow.tables[OUTBOUND].rows[base["sys_id"]]), **values,
                                 el(OUTBOUND, "Number"): snow.ids.number("OBINV"),
                                 el(OUTBOUND, "Supplier invoice number"): number,
                                 el(OUTBOUND, "Integration status"): snow.choice_value(OUTBOUND, "Integration status",
                                                                                        "New")})
    snow.apo.invoice_of_outbound[out["sys_id"]] = shop["sys_id"]
    link = el(OUTBOUND_LINE, "Invoice")
    for src in [r for r in snow.tables[OUTBOUND_LINE].rows.values() if r.get(link) == base["sys_id"]]:
        row = _copy(src)
        if line is not None:
            logical = {name: row.get(el(OUTBOUND_LINE, label), "") for name, label in LINE_LABELS.items()}
            line(logical)
            row.update({el(OUTBOUND_LINE, LINE_LABELS[k]): v for k, v in logical.items()})
        snow.insert(OUTBOUND_LINE, {**row, link: out["sys_id"]})
    if invalid is not None:
        snow.invalid_invoices[out["sys_id"]] = [invalid]
    return out["sys_id"]


def outcome(connector: Connector, sys_id: str) -> tuple[str, str]:
    """The outbound invoice's Integration status (logical) and Processing message."""
    row: dict[str, Any] = outbound.invoices(connector)[sys_id]
    return row["status"], row["message"]
