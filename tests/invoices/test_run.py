"""The invoice run without Dagster (invoices/run.py): poll → validate → post → write back → commit. No invoice is
stranded (DESIGN §7.1): whatever fails, an invoice whose outcome is not final is polled again by the next run, and
the sensor's question (``waiting_invoice``) sees it. A real DuckDB warehouse; ServiceNow and F&O are the fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from d365_snow_assets.invoices.run import (
    InvoiceRun,
    RunContext,
    cursor_to_commit,
    poll_cursor_name,
    poll_invoices,
    post_polled,
    retry_cursor_name,
    waiting_invoice,
)
from d365_snow_assets.sync.targets import SHARED
from d365_snow_assets.warehouse import Warehouse

from .fakes import (
    DIMENSION_VALUES,
    MAIN_ACCOUNTS,
    PURCHASE_ORDER_LINES,
    PURCHASE_ORDERS,
    VENDORS,
    FakeLedger,
    FakeOutboundTable,
    header,
    line,
)

IDS = ("a", "b", "c")


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    """The F&O snapshots the invoices are validated against, as the extract assets leave them."""
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    usmf = {"dataAreaId": "usmf"}
    for entity, frame, keys in (
            ("VendorsV2", VENDORS, ("dataAreaId", "VendorAccountNumber")),
            ("PurchaseOrderHeadersV2", PURCHASE_ORDERS, ("dataAreaId", "PurchaseOrderNumber")),
            ("PurchaseOrderLinesV2", PURCHASE_ORDER_LINES, ("dataAreaId", "PurchaseOrderNumber", "LineNumber"))):
        wh.write_snapshot(entity, "usmf", [frame.filter(**usmf)], keys)
    wh.write_snapshot("MainAccounts", SHARED, [MAIN_ACCOUNTS], ("ChartOfAccounts", "MainAccountId"))
    wh.write_snapshot("FinancialDimensionValues", SHARED, [DIMENSION_VALUES],
                      ("FinancialDimension", "LegalEntityId", "DimensionValue"))
    return wh


def _table(*ids: str) -> FakeOutboundTable:
    table = FakeOutboundTable()
    for sys_id in ids:
        table.approve(header(sys_id), [line(1, sys_id), line(2, sys_id)])
    return table


def _run(table: FakeOutboundTable, ledger: FakeLedger, warehouse: Warehouse, n: int = 1) -> InvoiceRun:
    poll = poll_invoices(table, warehouse, "usmf")
    return post_polled(poll, table, ledger, table, warehouse, RunContext(f"run-{n}", "invoices/posting"))


def _all_processed_once(table: FakeOutboundTable, ledger: FakeLedger, ids: tuple[str, ...]) -> None:
    assert {table.status_of(i) for i in ids} == {"processed"}
    for sys_id in ids:
        [ref] = ledger.pending_for("usmf", "V-0001", f"INV-{sys_id}")
        assert sorted(ledger.lines_of(ref)) == [1, 2]
        assert table.rows[sys_id]["erp_number"] == ref


def test_fno_unreachable_during_the_lookups_leaves_every_invoice_new_and_the_cursor_before_them(
        warehouse: Warehouse) -> None:
    table, ledger = _table(*IDS), FakeLedger(faults=["fail"])  # F&O unreachable through every retry

    run = _run(table, ledger, warehouse)

    assert [(r.outcome, r.retryable, r.final) for r in run.results] == [("error", True, False)] * 3
    assert [r.unreachable for r in run.results] == [True, False, False]
    assert ledger.calls == [("find_posted", "INV-a")]  # the outage met once; the rest of the batch waits
    assert {table.status_of(i) for i in IDS} == {"new"}  # ServiceNow was never told
    assert run.cursor is None and warehouse.get_cursor(poll_cursor_name("usmf")) is None
    assert waiting_invoice(table, warehouse, "usmf") is not None  # the sensor sees them
    assert ledger.writes() == 0

    again = _run(table, ledger, warehouse, 2)
    assert [r.outcome for r in again.results] == ["created"] * 3 and not again.unfinished
    _all_processed_once(table, ledger, IDS)
    assert warehouse.get_cursor(retry_cursor_name("usmf")) == []
    assert waiting_invoice(table, warehouse, "usmf") is None


def test_the_cursor_stops_before_the_first_invoice_that_is_not_final(warehouse: Warehouse) -> None:
    table = _table(*IDS)
    polled_at = {"updated_on": table.rows["a"]["sys_updated_on"], "sys_id": "a"}
    # a: 2 lookups, header, 2 lines; then b's header create loses its answer and the lookups do not find it
    ledger = FakeLedger(faults=["ok"] * 7 + ["lost_before"])
    run = _run(table, ledger, warehouse)

    assert [(r.outcome, r.final) for r in run.results] == [("created", True), ("error", False), ("created", True)]
    assert run.cursor == polled_at == warehouse.get_cursor(poll_cursor_name("usmf"))
    assert [h["sys_id"] for h in poll_invoices(table, warehouse, "usmf").headers] == ["b"]
    _run(table, ledger, warehouse, 2)
    _all_processed_once(table, ledger, IDS)


@pytest.mark.parametrize("stage", ["header", "line"])
def test_fno_unreachable_at_a_create_leaves_the_invoice_on_the_retry_list(warehouse: Warehouse, stage: str) -> None:
    table = _table("a")
    # Both lookups work; then the header create (or the first line create) fails before anything was written.
    ledger = FakeLedger(faults=["ok", "ok", "fail"] if stage == "header" else ["ok", "ok", "ok", "fail"])

    run = _run(table, ledger, warehouse)

    [result] = run.results
    assert (result.outcome, result.final) == ("error", False)
    assert table.status_of("a") == "error" and "It will be retried" in table.rows["a"]["processing_message"]
    assert warehouse.get_cursor(retry_cursor_name("usmf")) == ["a"]
    assert waiting_invoice(table, warehouse, "usmf") == "retry|a"

    _run(table, ledger, warehouse, 2)
    _all_processed_once(table, ledger, ("a",))
    assert warehouse.get_cursor(retry_cursor_name("usmf")) == []


def test_an_invoice_approved_in_the_cursors_second_behind_it_is_still_polled(warehouse: Warehouse) -> None:
    # sys_updated_on has one-second resolution: an invoice approved after the poll, in the same second as the last
    # one polled and with a smaller sys_id, sorts behind the cursor.
    table = _table("b")
    _run(table, FakeLedger(), warehouse)
    cursor = warehouse.get_cursor(poll_cursor_name("usmf"))
    table.approve(header("a"), [line(1, "a"), line(2, "a")])
    table.rows["a"]["sys_updated_on"] = cursor["updated_on"]

    run = _run(table, FakeLedger(), warehouse, 2)

    assert [r.sys_id for r in run.results] == ["a"] and table.status_of("a") == "processed"
    assert warehouse.get_cursor(poll_cursor_name("usmf")) == cursor  # never moved back


@pytest.mark.parametrize("stage", ["header", "line"])
def test_an_invoice_is_on_the_retry_list_before_servicenow_hears_it_failed(warehouse: Warehouse, stage: str) -> None:
    # A process killed right after ServiceNow took `error` and before the run's end must leave the invoice on the
    # retry list (chaos seed 262263 for a header; a failed line the same way).
    table = _table("a")
    ledger = FakeLedger(faults=["ok", "ok", "fail"] if stage == "header" else ["ok", "ok", "ok", "fail"])
    listed_when_told: list[list[str]] = []
    tell = table.mark_error

    def mark_error(sys_id: str, message: str) -> None:
        listed_when_told.append(warehouse.get_cursor(retry_cursor_name("usmf"), []))
        tell(sys_id, message)

    table.mark_error = mark_error  # type: ignore[method-assign]
    _run(table, ledger, warehouse)

    assert listed_when_told == [["a"]]


def test_servicenow_unreachable_for_the_write_back_leaves_the_invoice_in_progress_for_the_next_run(
        warehouse: Warehouse) -> None:
    table = _table("a", "b")
    ledger = FakeLedger()

    def servicenow_goes_down(_ledger: FakeLedger) -> None:  # once F&O holds a's header
        table.down, ledger.after_header = True, None

    ledger.after_header = servicenow_goes_down

    run = _run(table, ledger, warehouse)

    assert [(r.outcome, r.final) for r in run.results] == [("error", False), ("error", False)]
    assert table.status_of("a") == "in_progress" and table.status_of("b") == "new"
    assert len(ledger.headers) == 1
    table.down = False
    assert waiting_invoice(table, warehouse, "usmf") is not None
    again = _run(table, ledger, warehouse, 2)
    assert sorted(r.outcome for r in again.results) == ["created", "reused"]
    _all_processed_once(table, ledger, ("a", "b"))


def test_a_conflict_servicenow_could_not_be_told_of_is_not_final(warehouse: Warehouse) -> None:
    """A business outcome ServiceNow does not hold yet is not final: the next run looks again and tells it."""
    table, ledger = _table("a"), FakeLedger()
    ledger.headers["USMF-VI00000099"] = {"dataAreaId": "usmf", "InvoiceAccount": "V-0001", "InvoiceNumber": "INV-a",
                                         "DocumentNumber": "", "HeaderReference": "USMF-VI00000099"}
    table.faults.extend(["fail"])  # the error write-back fails

    run = _run(table, ledger, warehouse)

    [result] = run.results
    assert (result.outcome, result.retryable, result.final) == ("error", True, False)
    assert table.status_of("a") == "new" and run.cursor is None
    [result] = _run(table, ledger, warehouse, 2).results
    assert (result.outcome, result.final) == ("error", True)
    assert table.status_of("a") == "error" and "USMF-VI00000099" in table.rows["a"]["processing_message"]
    assert warehouse.get_cursor(retry_cursor_name("usmf")) == []
    assert ledger.writes() == 0


class Killed(BaseException):
    """The process ends here (SIGKILL): nothing after it runs, no handler sees it."""


def _killed(_ledger: FakeLedger) -> None:
    raise Killed


def test_an_invoice_a_killed_run_left_in_progress_is_seen_waiting_and_taken_up(warehouse: Warehouse) -> None:
    table, ledger = _table("a"), FakeLedger()
    ledger.after_header = _killed  # right after F&O took the header
    poll = poll_invoices(table, warehouse, "usmf")
    with pytest.raises(Killed):
        post_polled(poll, table, ledger, table, warehouse, RunContext("run-1", "invoices/posting"))
    assert table.status_of("a") == "in_progress"
    assert warehouse.get_cursor(poll_cursor_name("usmf")) is None
    assert waiting_invoice(table, warehouse, "usmf") is not None

    ledger.after_header = None
    [result] = _run(table, ledger, warehouse, 2).results
    assert result.outcome == "reused"
    _all_processed_once(table, ledger, ("a",))


def test_an_invoice_approved_while_another_waits_on_the_retry_list_changes_the_sensors_key(
        warehouse: Warehouse) -> None:
    """The sensor's run key holds its waiting invoices and the hour: an approval must make a new key at once, or it
    waits for the retry's hour to end."""
    table = _table("a")
    _run(table, FakeLedger(faults=["ok", "ok", "fail"]), warehouse)  # a's header create fails: a is on the retry list
    assert waiting_invoice(table, warehouse, "usmf") == "retry|a"
    table.approve(header("b"), [line(1, "b")])
    assert waiting_invoice(table, warehouse, "usmf") == f"retry|a+{table.rows['b']['sys_updated_on']}|b"


def test_the_sensor_sees_what_the_next_run_takes_up(warehouse: Warehouse) -> None:
    table, ledger = _table("a"), FakeLedger()
    assert waiting_invoice(table, warehouse, "usmf") == f"{table.rows['a']['sys_updated_on']}|a"
    _run(table, ledger, warehouse)
    assert waiting_invoice(table, warehouse, "usmf") is None
    table.approve(header("b"), [line(1, "b"), line(2, "b")])
    assert waiting_invoice(table, warehouse, "usmf") == f"{table.rows['b']['sys_updated_on']}|b"


def test_cursor_to_commit() -> None:
    start = {"updated_on": "2026-05-01 00:00:00", "sys_id": "z"}
    new = [{"updated_on": f"2026-05-01 00:00:0{i}", "sys_id": s} for i, s in enumerate("abc", start=1)]
    assert cursor_to_commit(start, new, set()) == new[-1]
    assert cursor_to_commit(start, new, {"b"}) == new[0]
    assert cursor_to_commit(start, new, {"a", "c"}) == start
    assert cursor_to_commit(None, new, {"a"}) is None
    assert cursor_to_commit(start, [], {"x"}) == start
