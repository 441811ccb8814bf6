"""The cycle summary counts what the audit store holds, not what the steps' metadata says (a failed step never
emits its metadata): a real DuckDB warehouse, no Dagster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from d365_snow_assets.commands.runs import RunOutcome, StepFailure
from d365_snow_assets.commands.summary import summarize_cycle, summary_json
from d365_snow_assets.warehouse import Warehouse, audit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _row(run: str, key: str, outcome: str, *, attempt: int = 1, minutes: int = 0, message: str | None = None,
         entity: str = "cmn_cost_center", partition: str | None = None) -> dict:
    return {"run_id": run, "asset_key": f"servicenow/{entity}", "partition": partition, "direction": "d365_to_snow",
            "entity": entity, "business_key": key, "outcome": outcome, "attempt": attempt, "message": message,
            "payload": "{}", "at": T0 + timedelta(minutes=minutes)}


def test_a_failed_step_counts_from_its_audit_rows_and_each_record_once(tmp_path):
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    refused = "not sent: ServiceNow answered 503 for POST /api/now/import/x after 6 attempts"
    rows = [_row("r1", f"D365FO||{n:03}", "error", message=refused) for n in range(5)]
    # A record whose first attempt failed and whose retry got through counts once, as inserted.
    rows += [_row("r1", "D365FO||100", "error", message=refused), _row("r1", "D365FO||100", "inserted", attempt=2,
                                                                       minutes=1)]
    rows += [_row("r2", f"D365FO|USMF|L{n}", "rejected", message="GL account 600150 is suspended",
                  entity="sn_shop_purchase_order_line", partition="usmf") for n in range(3)]
    rows.append(_row("other-cycle", "D365FO||999", "error", message=refused))
    with warehouse.writer() as con:
        audit.write_audit(con, rows)
    runs = [RunOutcome("sync_reference_data", None, "r1", False,
                       failures=[StepFailure("servicenow__cmn_cost_center", "1 call failed")]),
            # This push materialized (nothing to send) but audited nothing: it still shows, with zeros.
            RunOutcome("sync_legal_entity", "usmf", "r2", True,
                       materializations={"servicenow/sn_fin_supplier": {}, "servicenow/sn_shop_purchase_order_line":
                                         {}})]
    summary = summary_json(summarize_cycle(warehouse, "c1", runs), config={}, log_file=None)
    assert summary["pushed"]["cmn_cost_center"] == {"inserted": 1, "updated": 0, "ignored": 0, "skipped": 0,
                                                    "rejected": 0, "errors": 5}
    assert summary["pushed"]["sn_fin_supplier"] == dict.fromkeys(summary["pushed"]["sn_fin_supplier"], 0)
    assert summary["pushed"]["sn_shop_purchase_order_line"]["rejected"] == 3
    assert summary["reasons"] == [
        {"direction": "d365_to_snow", "target": "cmn_cost_center", "legal_entity": None, "outcome": "error",
         "reason": refused, "count": 5, "samples": ["D365FO||000", "D365FO||001"]},
        {"direction": "d365_to_snow", "target": "sn_shop_purchase_order_line", "legal_entity": "usmf",
         "outcome": "rejected", "reason": "GL account 600150 is suspended", "count": 3,
         "samples": ["D365FO|USMF|L0", "D365FO|USMF|L1"]}]
    assert summary["ok"] is False and summary["error"] == {"kind": "failed",
                                                           "message": "1 step(s) failed; see failed_steps"}
