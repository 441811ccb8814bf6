"""Bounded work per run (issue 16 item 8): the posted-status and payment steps of `invoice_round_trip` work on what
F&O posted or settled since their last run, not on every processed invoice ever. Counted on a cycle in which
nothing changed, after a history of posted invoices: the ServiceNow rows the posted-status step reads, and the
settlements the payment step looks at."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.commands import runs
from d365_snow_assets.commands.runs import RunOutcome

from . import outbound
from .conftest import Connector

BI = ("VendInvoiceJourBiEntities", "VendTransBiEntities")


def _backdate(connector: Connector, since: datetime, to: datetime) -> int:
    """Stamp every BI row F&O wrote since ``since`` as if posted and settled long ago: ``to``, then 20 minutes
    earlier for each next row, so that no two rows fall within one overlap window."""
    d365, moved = connector.server.world.d365, 0
    for entity in BI:
        rows = d365.read(f'SELECT "dataAreaId", "SourceKey" FROM "{entity}" WHERE "SysModifiedDateTime" >= ? '
                         'ORDER BY "SourceKey"', [since.replace(tzinfo=None)])
        for i, row in enumerate(rows):
            stamp = to - i * timedelta(minutes=20)
            d365.admin_update(entity, row, {"SysModifiedDateTime": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")})
            moved += 1
    return moved


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[RunOutcome]:
    """Every run outcome of the syncs that follow (their materialization metadata)."""
    seen: list[RunOutcome] = []
    execute = runs._execute

    def recording(*args: Any, **kwargs: Any) -> RunOutcome:
        seen.append(execute(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(runs, "_execute", recording)
    return seen


def test_a_cycle_reads_what_changed_since_the_last_one_not_the_history(connector: Connector,
                                                                        outcomes: list[RunOutcome],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    world = connector.server.world
    connector.sync()
    # Every invoice posted, and its rows stamped a day ago: history the next cycles must not read again.
    start = _now()
    history = world.d365.post_invoices()["posted"]
    assert history and _backdate(connector, start - timedelta(seconds=1), start - timedelta(days=1)) == 2 * len(history)
    connector.sync()
    assert {r["status"] for r in outbound.of(connector)} <= {"processed", "error"}
    # One invoice more, posted and partly paid now.
    world.snow.approve_invoices(1)
    outbound.wait_for_approved(connector)
    connector.sync()
    [fresh] = world.d365.post_invoices()["posted"]
    assert len(world.d365.pay_invoices([{"InvoiceId": fresh["InvoiceId"], "dataAreaId": fresh["dataAreaId"],
                                         "InvoiceAccount": fresh["InvoiceAccount"], "Amount": 10}])["paid"]) == 1
    connector.sync()
    [invoice] = [r for r in outbound.of(connector) if r["erp_number"] == fresh["LedgerVoucher"]
                 and r["legal_entity"].lower() == fresh["dataAreaId"]]
    assert invoice["erp_posting_date"] and outbound.shop_invoice(connector, invoice["sys_id"])["amount_paid"] == 10

    # The cycle measured: nothing changed since the last one.
    processed = outbound.of(connector, status="processed")
    assert len(processed) > len(history) >= 10
    processed_term = re.compile(r"(^|\^){}={}(\^|$)".format(  # the posted-status step's query: processed invoices
        re.escape(world.snow.el(outbound.OUTBOUND, "Integration status")),
        re.escape(world.snow.choice_value(outbound.OUTBOUND, "Integration status", "Processed"))))
    read: list[tuple[str, int]] = []
    get_page = ServiceNowClient.get_page

    def counting(self: ServiceNowClient, table: str, query: Any = "", **kwargs: Any) -> tuple[list[dict], bool]:
        rows, more = get_page(self, table, query, **kwargs)
        read.append((f"{table}?{query}", len(rows)))
        return rows, more

    monkeypatch.setattr(ServiceNowClient, "get_page", counting)
    history_runs = len(outcomes)
    writes = len(world.snow.tables["sys_import_set_row"].rows)
    summary = connector.sync()
    everything, outcomes = list(outcomes), outcomes[history_runs:]

    # Each step looked at the rows F&O changed within the overlap window of the newest one it had seen: in each
    # legal entity that one posting (its invoice and, once paid, its payment), none of the history.
    les = {o.partition for o in outcomes if o.job == "invoice_round_trip"}
    steps = {(o.partition, k): m for o in outcomes for k, m in o.materializations.items()}
    le = fresh["dataAreaId"]
    for each in les:
        assert steps[(each, "invoices/posted_status")]["posted_read"] == 1, each
        assert steps[(each, "invoices/posted_status")]["dagster/row_count"] == 0, each
        paid = steps[(each, "servicenow/sn_shop_invoice_payment_detail")]
        assert (paid["rows_read"], paid["unchanged"], paid["dagster/row_count"]) == ((2, 1, 0) if each == le
                                                                                     else (1, 0, 0)), each
    # ServiceNow was asked for those invoices only: one processed invoice per legal entity, one chunk each (the
    # page, then the empty page that ends it).
    status_reads = [n for q, n in read if q.startswith(f"{outbound.OUTBOUND}?") and processed_term.search(q)]
    assert (sum(status_reads), len(status_reads)) == (len(les), 2 * len(les))
    assert summary["ok"] and len(world.snow.tables["sys_import_set_row"].rows) == writes

    # The UI charts every count of the invoice assets: the same numeric keys on every materialization, busy cycles
    # and idle ones alike (zeros included).
    numeric: dict[str, set[frozenset[str]]] = {}
    for run in everything:
        for asset, metadata in run.materializations.items():
            if run.job == "invoice_round_trip":
                numeric.setdefault(asset, set()).add(frozenset(k for k, v in metadata.items()
                                                               if isinstance(v, int | float)))
    assert len(numeric) == 6 and all(len(shapes) == 1 for shapes in numeric.values()), numeric
