"""Status tells the truth (DESIGN §7.1): a step that leaves records in error for a reason that is not the record's
fails, its run fails, and `d365-snow sync` exits 1; once the system is back the next cycle finishes the work and
exits 0. Through the CLI against the sandbox, with faults scoped to one kind of request."""

from __future__ import annotations

from typing import Any

import orjson
from typer.testing import CliRunner

from d365_snow_assets.cli import app
from d365_snow_assets.sandbox.faults import FaultProfile

from . import outbound
from .conftest import Connector

OUTBOUND = outbound.OUTBOUND
# Throttled with "come back at once" until the client's budget of attempts is spent: beyond the budget, fast.
STORM = {"share_429": 1.0, "retry_after_s": 0}


def _sync(connector: Connector) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["sync", "--json"], env=connector.env, catch_exceptions=False)
    return result.exit_code, orjson.loads(result.stdout)


def _failed_steps(summary: dict[str, Any]) -> set[str]:
    return {str(r["error"]).split(":")[0] for r in summary["runs"] if not r["success"]}


def test_invoices_left_in_error_because_fno_refused_service_fail_the_cycle(connector: Connector) -> None:
    connector.server.set_faults("d365", FaultProfile(**STORM, methods=["POST"], path_contains="/data/VendorInvoice"))
    code, summary = _sync(connector)

    assert code == 1
    assert _failed_steps(summary) == {"invoices__posting"}
    assert summary["invoices"]["error"] == summary["invoices"]["retry_next_run"] > 0
    assert connector.fno('SELECT 1 FROM "VendorInvoiceHeaders"') == []

    connector.server.clear_faults()
    code, summary = _sync(connector)
    assert code == 0, summary
    invalid = connector.server.world.snow.invalid_invoices
    statuses = {i: r["status"] for i, r in outbound.invoices(connector).items()}
    assert {s for i, s in statuses.items() if i not in invalid} == {"processed"}


def test_unsent_status_and_payments_fail_the_cycle_until_servicenow_takes_them(connector: Connector) -> None:
    connector.sync()
    world = connector.server.world
    details = len(connector.snow("sn_shop_invoice_payment_detail"))  # the sandbox seeds some history
    posted = world.d365.post_invoices()["posted"]
    paid = world.d365.pay_invoices([{k: p[k] for k in ("InvoiceId", "dataAreaId", "InvoiceAccount")}
                                    for p in posted[:2]])["paid"]
    assert posted and len(paid) == 2

    connector.server.set_faults("snow", FaultProfile(**STORM, methods=["PATCH"], path_contains=f"/table/{OUTBOUND}"))
    code, summary = _sync(connector)
    assert code == 1
    assert _failed_steps(summary) == {"invoices__posted_status"}
    assert not [r for r in outbound.invoices(connector).values() if r["erp_posting_date"]]

    staging = "sn_spend_intg_imp_invoice_payment_detail"
    connector.server.set_faults("snow", FaultProfile(**STORM, methods=["POST"], path_contains=f"/import/{staging}"))
    code, summary = _sync(connector)
    assert code == 1
    assert _failed_steps(summary) == {"servicenow__sn_shop_invoice_payment_detail"}
    assert len(connector.snow("sn_shop_invoice_payment_detail")) == details

    connector.server.clear_faults()
    code, summary = _sync(connector)
    assert code == 0, summary
    vouchers = {(p["dataAreaId"], p["InvoiceAccount"], p["InvoiceId"].casefold()): p["LedgerVoucher"] for p in posted}
    for invoice in outbound.of(connector, status="processed"):
        key = (invoice["legal_entity"].lower(), invoice["supplier"], invoice["supplier_invoice_number"].casefold())
        assert invoice["erp_number"] == vouchers[key] and invoice["erp_posting_date"]
    assert len(connector.snow("sn_shop_invoice_payment_detail")) == details + len(paid)
