"""No invoice is stranded (DESIGN §7.1, issue 16 item 1): F&O or ServiceNow unreachable for longer than every retry
at one step of the invoice run, or a run killed midway. The cycle's `d365-snow sync` exits 1, every approved invoice
whose outcome is not final is still waiting, the `snow_approved_invoices` sensor asks for a run of its legal
entity, and the next healthy cycle leaves the exact end state (tests/chaos/endstate.py): every valid invoice once
in F&O with all its lines, nothing doubled. Through the real CLI against the sandbox, faults scoped to one kind of
request."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import orjson
import pytest

from d365_snow_assets.defs.automation.snow_invoices import snow_approved_invoices
from d365_snow_assets.invoices.adapters import D365Ledger
from d365_snow_assets.invoices.payloads import Payload
from d365_snow_assets.sandbox.faults import FaultProfile
from tests.chaos.endstate import verify_end_state

from . import outbound
from .conftest import Connector

DOWN = {"share_5xx": 1.0}  # every request of the scope answered 5xx, through every retry


def _sync(connector: Connector) -> tuple[int, dict[str, Any]]:
    result = connector.cli("sync", "--json")
    return result.exit_code, orjson.loads(result.stdout)


def _requested(connector: Connector) -> set[str]:
    """The legal entities the sensor asks a run for."""
    with dg.instance_for_test() as instance:
        result = snow_approved_invoices(dg.build_sensor_context(instance=instance))
    return {r.partition_key for r in result.run_requests} if isinstance(result, dg.SensorResult) else set()


def _waiting(connector: Connector) -> dict[str, str]:
    """Valid approved invoices that are not processed: sys_id → status."""
    invalid = connector.server.world.snow.invalid_invoices
    return {i: r["status"] for i, r in outbound.invoices(connector).items()
            if r["status"] != "processed" and i not in invalid}


def _recovers(connector: Connector) -> None:
    connector.server.clear_faults()
    code, summary = _sync(connector)
    assert code == 0, summary
    verify_end_state(connector)
    assert _requested(connector) == set()


def test_fno_unreachable_during_the_invoice_lookups(connector: Connector) -> None:
    outbound.sync_without_invoices(connector)
    approved = _waiting(connector)
    connector.server.set_faults("d365", FaultProfile(**DOWN, methods=["GET"],
                                                     path_contains="/data/VendInvoiceJourBiEntities"))
    code, summary = _sync(connector)

    assert code == 1
    assert "invoices__posting" in {r["error"].split(":")[0] for r in summary["runs"] if not r["success"]}
    assert _waiting(connector) == approved  # not one of them lost: still new, the cursor before them
    assert connector.fno('SELECT 1 FROM "VendorInvoiceHeaders"') == []
    assert _requested(connector) == {r["legal_entity"].lower() for r in outbound.invoices(connector).values()
                                     if r["sys_id"] in approved}
    _recovers(connector)


@pytest.mark.parametrize("entity", ["VendorInvoiceHeaders", "VendorInvoiceLines"])
def test_fno_unreachable_when_the_invoices_are_created(connector: Connector, entity: str) -> None:
    """Every create answered 5xx, on companies that accept duplicate invoice numbers: never re-sent blindly, looked
    up, left for the next run."""
    connector.server.world.d365.set_duplicate_check("AcceptDuplicate")
    connector.server.set_faults("d365", FaultProfile(**DOWN, methods=["POST"], path_contains=f"/data/{entity}"))
    code, summary = _sync(connector)

    assert code == 1
    assert summary["invoices"]["retry_next_run"] > 0
    waiting = _waiting(connector)
    assert waiting and set(waiting.values()) <= {"new", "in_progress", "error"}
    assert _requested(connector) >= {r["legal_entity"].lower() for i, r in outbound.invoices(connector).items()
                                     if i in waiting}
    _recovers(connector)


@pytest.fixture
def servicenow_down_after_the_first_header(connector: Connector, monkeypatch: pytest.MonkeyPatch) -> None:
    """ServiceNow stops answering its outbound-invoice writes right after F&O took the first invoice header (once):
    the write-back of that invoice, and every status write after it, fail through every retry."""
    create_header = D365Ledger.create_header
    armed = True

    def then_servicenow_goes_down(self: D365Ledger, payload: Payload) -> str:
        nonlocal armed
        reference = create_header(self, payload)
        if armed:
            armed = False
            connector.server.set_faults("snow", FaultProfile(**DOWN, methods=["PATCH"],
                                                             path_contains=f"/table/{outbound.OUTBOUND}"))
        return reference

    monkeypatch.setattr(D365Ledger, "create_header", then_servicenow_goes_down)


def test_servicenow_unreachable_during_the_write_back(connector: Connector,
                                                      servicenow_down_after_the_first_header: None) -> None:
    outbound.sync_without_invoices(connector)
    approved = _waiting(connector)
    code, _summary = _sync(connector)

    assert code == 1
    [header] = connector.fno('SELECT * FROM "VendorInvoiceHeaders"')
    waiting = _waiting(connector)
    assert set(waiting) == set(approved)  # F&O holds one of them; ServiceNow was told of none
    [in_progress] = [i for i, s in waiting.items() if s == "in_progress"]
    assert outbound.invoices(connector)[in_progress]["number"] == header["DocumentNumber"]
    assert set(waiting.values()) == {"new", "in_progress"}
    assert _requested(connector) == {r["legal_entity"].lower() for r in outbound.invoices(connector).values()
                                     if r["sys_id"] in approved}
    connector.server.clear_faults()
    _recovers(connector)
    again = next(h for h in connector.fno('SELECT * FROM "VendorInvoiceHeaders"')
                 if h["DocumentNumber"] == header["DocumentNumber"])
    assert again["HeaderReference"] == header["HeaderReference"]  # the header F&O took, reused


def test_an_invoice_a_killed_run_left_in_progress_is_seen_by_the_sensor(connector: Connector) -> None:
    assert _sync(connector)[0] == 0
    assert _requested(connector) == set()
    connector.server.world.snow.approve_invoices(1)
    outbound.wait_for_approved(connector)
    [sys_id] = [r["sys_id"] for r in outbound.of(connector, status="new")]
    launcher = Path(__file__).with_name("crash_launcher.py")  # SIGKILLs itself once F&O took a header
    proc = subprocess.run([sys.executable, str(launcher), "sync", "--json"], env=connector.env,
                          capture_output=True, timeout=600, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert outbound.invoices(connector)[sys_id]["status"] == "in_progress"

    assert _requested(connector) == {outbound.invoices(connector)[sys_id]["legal_entity"].lower()}
    _recovers(connector)

