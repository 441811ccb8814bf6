"""The sandbox's outbound invoices read (and, for scenarios, written) by DOCUMENTED LABEL, as a person sees them on
the form: references followed to their ERP code, the Integration status by its choice label. Built on
tests/snow_view.py, so it holds on the documented and the variant instance alike."""

from __future__ import annotations

import time
from typing import Any

from d365_snow_assets.commands.runs import open_instance, run_cycle
from d365_snow_assets.sandbox.servicenow.apo import payments_of
from d365_snow_assets.settings import load_settings
from tests.defs.conftest import Connector
from tests.snow_view import SnowView

OUTBOUND = "sn_spend_intg_outbound_invoice"
OUTBOUND_LINE = "sn_spend_intg_outbound_invoice_line"
SHOP_INVOICE = "sn_shop_invoice"


def invoices(connector: Connector) -> dict[str, dict[str, Any]]:
    """Every outbound invoice by sys_id: SnowView's logical dict plus the fields the invoice tests compare, and
    ``line_details`` (amount and quantity of each line, in the order of the lines' Number: position n becomes F&O's
    InvoiceLineNumber n)."""
    view = SnowView(connector.server.world.snow)
    raw = {r["sys_id"]: r for r in view.rows(OUTBOUND)}
    by_invoice: dict[str, list[dict[str, str]]] = {}
    for li in view.rows(OUTBOUND_LINE):
        by_invoice.setdefault(view.get(OUTBOUND_LINE, li, "Invoice"), []).append(li)
    out = {}
    for inv in view.outbound_invoices():
        row = raw[inv["sys_id"]]
        ordered = sorted(by_invoice.get(inv["sys_id"], []),
                         key=lambda li: (view.get(OUTBOUND_LINE, li, "Number"), li["sys_id"]))
        out[inv["sys_id"]] = {**inv, "sys_mod_count": row.get("sys_mod_count", ""),
                              "erp_posting_date": view.get(OUTBOUND, row, "ERP posting date"),
                              "invoice_date": view.get(OUTBOUND, row, "Invoice date"),
                              "line_details": [{"amount": view.get(OUTBOUND_LINE, li, "Line amount invoiced"),
                                                "quantity": view.get(OUTBOUND_LINE, li, "Line quantity")}
                                               for li in ordered]}
    return out


def of(connector: Connector, legal_entity: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """The outbound invoices of one legal entity (its ERP company code) and/or in one logical status."""
    return [r for r in invoices(connector).values()
            if (legal_entity is None or r["legal_entity"].lower() == legal_entity.lower())
            and (status is None or r["status"] == status)]


def statuses(connector: Connector, legal_entity: str | None = None) -> set[str]:
    return {r["status"] for r in of(connector, legal_entity)}


def shop_invoice(connector: Connector, sys_id: str) -> dict[str, Any]:
    """The APO invoice an outbound invoice was made from (the sandbox knows; no documented field links the two
    records), with its Status and what the payment details matched to it add up to."""
    state = connector.server.world.snow
    row = state.tables[SHOP_INVOICE].rows[state.apo.invoice_of_outbound[sys_id]]
    return {"state": SnowView(state).get(SHOP_INVOICE, row, "Status"), "amount_paid": payments_of(state, row["sys_id"])}


def update(connector: Connector, sys_id: str, by_label: dict[str, str]) -> None:
    """Write an outbound invoice as a person would (its business rules run), fields named by label."""
    state = connector.server.world.snow
    state.update(OUTBOUND, sys_id, {state.el(OUTBOUND, label): value for label, value in by_label.items()})


def set_status(connector: Connector, sys_id: str, choice_label: str, **by_label: str) -> None:
    """Set the Integration status by its choice label (e.g. "In progress"), and other fields by label."""
    state = connector.server.world.snow
    value = state.choice_value(OUTBOUND, "Integration status", choice_label)
    update(connector, sys_id, {"Integration status": value, **by_label})


def wait_for_approved(connector: Connector, *, timeout_s: float = 120) -> None:
    """Wait until ServiceNow holds every approved invoice: the sandbox creates an outbound invoice once the records
    it references exist, a few per second (apo.py)."""
    deadline = time.monotonic() + timeout_s
    while connector.server.world.snow.invoices_waiting():
        assert time.monotonic() < deadline, "approved invoices never appeared in ServiceNow"
        time.sleep(0.2)


def sync_without_invoices(connector: Connector) -> None:
    """The F&O → ServiceNow runs of a sync, no invoice run; then every approved invoice is in ServiceNow."""
    settings = load_settings()
    outcomes = run_cycle(settings, open_instance(settings), push=True, invoices=False)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    wait_for_approved(connector)
