"""Two runs posting the same legal entity's invoices (chaos seed 882466: one left a valid invoice in `error`, off
the retry list, because the other overwrote that list). One run at a time holds the posting lock, and a run whose
poll went stale meanwhile posts only what still waits: no ServiceNow write, no F&O write, no audit row for the rest."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import dagster as dg
import polars as pl
import pytest

from d365_snow_assets.commands.runs import open_instance, run_cycle
from d365_snow_assets.definitions import defs
from d365_snow_assets.defs.invoices.assets import POLL_KEY, POSTING_KEY
from d365_snow_assets.invoices import run as invoice_run
from d365_snow_assets.invoices.run import later_cursor, poll_cursor_name, posting_lock_name, retry_cursor_name
from d365_snow_assets.settings import load_settings
from d365_snow_assets.warehouse import Warehouse

from . import outbound
from .conftest import Connector


def _prepared(connector: Connector) -> tuple[dg.DagsterInstance, dg.JobDefinition]:
    """Reference data and legal entities synced (the invoices validate against them), no invoice run yet."""
    settings = load_settings()
    instance = open_instance(settings)
    outcomes = run_cycle(settings, instance, push=True, invoices=False)
    assert all(o.success for o in outcomes), [o.error for o in outcomes]
    return instance, defs().resolve_job_def("invoice_round_trip")


def _usmf(connector: Connector) -> list[dict[str, Any]]:
    return outbound.of(connector, "usmf")


def _usmf_headers(connector: Connector) -> int:
    return len(connector.fno('SELECT 1 FROM "VendorInvoiceHeaders" WHERE "dataAreaId" = ?', ["usmf"]))


def _posting_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [mat] = result.asset_materializations_for_node("invoices__posting")
    assert mat.asset_key == POSTING_KEY
    return {k: v.value for k, v in mat.metadata.items()}


def test_a_run_whose_poll_went_stale_leaves_the_invoices_another_run_handled(connector: Connector) -> None:
    instance, job = _prepared(connector)
    first = job.execute_in_process(instance=instance, partition_key="usmf")
    invoices = _usmf(connector)
    assert invoices and not [r for r in invoices if r["status"] in ("new", "in_progress")]
    mods = {r["sys_id"]: r["sys_mod_count"] for r in invoices}
    headers = _usmf_headers(connector)
    assert headers == sum(r["status"] == "processed" for r in invoices) > 0

    # The posting step alone, on the poll the first run stored: as if it had polled at the same moment.
    late = job.execute_in_process(instance=instance, partition_key="usmf", asset_selection=[POSTING_KEY])
    meta = _posting_metadata(late)
    assert meta["handled_by_another_run"] == _posting_metadata(first)["invoices"] == len(invoices)
    assert meta["invoices"] == 0
    assert {r["sys_id"]: r["sys_mod_count"] for r in _usmf(connector)} == mods  # not one ServiceNow write
    assert _usmf_headers(connector) == headers
    assert Warehouse(connector.home / "warehouse.duckdb").audit_for_run(late.run_id).height == 0


def test_a_second_run_waits_for_the_one_posting_then_posts_everything_once(connector: Connector) -> None:
    instance, job = _prepared(connector)
    run_id = str(uuid.uuid4())
    done: list[dg.ExecuteInProcessResult] = []
    thread = threading.Thread(target=lambda: done.append(job.execute_in_process(
        instance=instance, partition_key="usmf", run_id=run_id, raise_on_error=False)))
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    with warehouse.exclusive(posting_lock_name("usmf"), "the test's holder", timeout=5):
        thread.start()
        deadline = time.monotonic() + 300
        while not any("waiting for the test's holder" in (r.user_message or "") for r in instance.all_logs(run_id)):
            assert thread.is_alive() and time.monotonic() < deadline, "the run never waited for the lock"
            time.sleep(0.1)
        # The run has polled and now waits: nothing of USMF reached F&O or changed in ServiceNow.
        assert _usmf_headers(connector) == 0
        assert outbound.statuses(connector, "usmf") == {"new"}
    thread.join(timeout=600)
    assert done and done[0].success
    invoices = _usmf(connector)
    processed = sum(r["status"] == "processed" for r in invoices)
    assert {r["status"] for r in invoices} <= {"processed", "error"}
    assert _usmf_headers(connector) == processed > 0
    assert _posting_metadata(done[0])["handled_by_another_run"] == 0


def test_an_invoice_another_run_left_on_the_retry_list_after_this_poll_stays_there(connector: Connector) -> None:
    """The list a posting commits replaces the one it found: what another run put there after this run polled must
    still be there afterwards (or it would stay in `error` for good), and the next run takes it up."""
    instance, job = _prepared(connector)
    for le in load_settings().legal_entities:
        job.execute_in_process(instance=instance, partition_key=le)
    rejected = outbound.of(connector, status="error")[0]
    le = rejected["legal_entity"].lower()
    job.execute_in_process(instance=instance, partition_key=le, asset_selection=[POLL_KEY])  # polls nothing
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    warehouse.set_cursor(retry_cursor_name(le), [rejected["sys_id"]])  # as another run would have left it

    late = job.execute_in_process(instance=instance, partition_key=le, asset_selection=[POSTING_KEY])
    assert (_posting_metadata(late)["invoices"], _posting_metadata(late)["retry_next_run"]) == (0, 1)
    assert warehouse.get_cursor(retry_cursor_name(le)) == [rejected["sys_id"]]

    following = job.execute_in_process(instance=instance, partition_key=le)
    meta = _posting_metadata(following)
    assert (meta["invoices"], meta["rejected"], meta["retry_next_run"]) == (1, 1, 0)
    audit = warehouse.audit_for_run(following.run_id).filter(pl.col("outcome") == "rejected")
    assert audit.height == 1 and rejected["supplier_invoice_number"] in audit.item(0, "business_key")
    assert warehouse.get_cursor(retry_cursor_name(le)) == []  # rejected again: not retryable


def test_a_polled_invoice_another_run_failed_meanwhile_stays_on_the_retry_list(connector: Connector) -> None:
    """Chaos seed 892043: this run polled an invoice, the other run posted it first and failed it retryably. This
    run leaves it alone, and the list it commits must still hold it."""
    instance, job = _prepared(connector)
    for le in load_settings().legal_entities:
        job.execute_in_process(instance=instance, partition_key=le)
    invoice = outbound.of(connector, status="error")[0]
    le = invoice["legal_entity"].lower()
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    warehouse.set_cursor(retry_cursor_name(le), [invoice["sys_id"]])
    job.execute_in_process(instance=instance, partition_key=le, asset_selection=[POLL_KEY])  # polls it
    # The other run's attempt: it writes the invoice (a new message) and keeps it on the list.
    outbound.update(connector, invoice["sys_id"], {
        "Processing message": "Dynamics 365 did not confirm the invoice header."})

    late = job.execute_in_process(instance=instance, partition_key=le, asset_selection=[POSTING_KEY])
    meta = _posting_metadata(late)
    assert (meta["invoices"], meta["handled_by_another_run"], meta["retry_next_run"]) == (0, 1, 1)
    assert warehouse.get_cursor(retry_cursor_name(le)) == [invoice["sys_id"]]


def test_the_poll_cursor_never_moves_back() -> None:
    early = {"updated_on": "2026-11-30 10:00:00", "sys_id": "b"}
    tie = {"updated_on": "2026-11-30 10:00:00", "sys_id": "c"}
    late = {"updated_on": "2026-11-30 10:00:01", "sys_id": "a"}
    assert later_cursor(late, early) == late
    assert later_cursor(early, tie) == tie
    assert later_cursor(None, early) == early
    assert later_cursor(early, None) == early
    assert later_cursor(None, None) is None


def test_a_run_that_waited_too_long_fails_clearly_and_changes_nothing(connector: Connector,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    instance, job = _prepared(connector)
    monkeypatch.setattr(invoice_run, "POSTING_WAIT_S", 0.5)
    warehouse = Warehouse(connector.home / "warehouse.duckdb")
    with warehouse.exclusive(posting_lock_name("usmf"), "run 1234", timeout=5):
        result = job.execute_in_process(instance=instance, partition_key="usmf", raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    text = failure.step_failure_data.user_failure_data.description
    assert text.startswith("USMF: another run is still posting this legal entity's invoices (run 1234 (since ")
    assert "Nothing was posted by this run" in text
    assert outbound.statuses(connector, "usmf") == {"new"}
    assert _usmf_headers(connector) == 0
    assert warehouse.get_cursor(poll_cursor_name("usmf")) is None  # the next run polls the same invoices
