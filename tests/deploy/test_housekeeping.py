"""The housekeeping job on the embedded (SQLite, one shard per run) instance: what goes, and what never goes."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from d365_snow_assets.definitions import defs
from d365_snow_assets.defs.housekeeping.pruning import EventRetention, delete_old_runs, prune_event_logs
from d365_snow_assets.paths import StatePaths
from d365_snow_assets.warehouse import Warehouse, audit


@dg.op
def chatty(context: dg.OpExecutionContext) -> None:
    context.log.debug("debug line")
    context.log.info("info line")
    context.log.error("error line")


@dg.job
def chatty_job() -> None:
    chatty()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D365SNOW_HOME", str(tmp_path / "home"))
    # Only the home is configured: housekeeping must not need F&O or ServiceNow settings.
    for name in ("D365SNOW_D365_URL", "D365SNOW_SNOW_URL", "D365SNOW_LEGAL_ENTITIES"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def _metadata(result: dg.ExecuteInProcessResult, step: str) -> dict[str, object]:
    event = next(e for e in result.all_events if e.is_successful_output and e.step_key == step)
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


def test_audit_rows_younger_than_the_retention_are_never_deleted(home: Path, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    warehouse = Warehouse(StatePaths(home).ensure().warehouse)
    with warehouse.writer() as con:
        for days, key in ((401, "old"), (399, "young"), (0, "today")):
            audit.write_audit(con, [{"run_id": "r", "outcome": "inserted", "business_key": key}],
                              at=now - timedelta(days=days))
    job = defs().resolve_job_def("housekeeping")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dry = job.execute_in_process(instance=instance, run_config={"ops": {
            "purge_audit_store": {"config": {"dry_run": True}}}})
        assert _metadata(dry, "purge_audit_store")["audit_rows_deleted"] == 1
        assert len(warehouse.audit_for_key("old")) == 1  # a dry run deletes nothing

        result = job.execute_in_process(instance=instance)
    purged = _metadata(result, "purge_audit_store")
    assert purged["audit_rows_deleted"] == 1 and purged["retention_days"] == 400
    assert purged["audit_rows_remaining"] == 2
    assert len(warehouse.audit_for_key("old")) == 0
    assert len(warehouse.audit_for_key("young")) == 1 and len(warehouse.audit_for_key("today")) == 1
    pruned = _metadata(result, "prune_dagster_database")
    assert pruned["storage"] == "sqlite-sharded" and pruned["events_total"] == 0 and pruned["runs"] == 0


def test_audit_retention_below_one_day_is_rejected(home: Path, tmp_path: Path) -> None:
    job = defs().resolve_job_def("housekeeping")
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config={"ops": {
            "purge_audit_store": {"config": {"retention_days": 0}}}})
    failure = next(e for e in result.all_events if e.is_step_failure and e.step_key == "purge_audit_store")
    assert "greater than or equal to 1" in failure.step_failure_data.error.to_string()


def test_event_pruning_on_sqlite_shards_keeps_errors_and_outcomes(home: Path, tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run_id = chatty_job.execute_in_process(instance=instance).run_id
        before = instance.all_logs(run_id)
        now = datetime.now(UTC)
        assert prune_event_logs(instance, EventRetention(), now=now) == {
            "debug_logs": 0, "info_logs": 0, "unimportant_events": 0}  # nothing is old yet

        counts = prune_event_logs(instance, EventRetention(), now=now + timedelta(days=8))
        assert counts["debug_logs"] == 1 and counts["info_logs"] == 0  # INFO is kept for 60 days
        counts = prune_event_logs(instance, EventRetention(), now=now + timedelta(days=61))
        assert counts["info_logs"] == 1 and counts["unimportant_events"] > 0

        after = instance.all_logs(run_id)
        messages = [e.user_message for e in after if e.dagster_event is None]
        assert messages == ["error line"]
        kept = {e.dagster_event_type for e in after if e.dagster_event}
        assert {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.RUN_SUCCESS} <= kept
        assert dg.DagsterEventType.ENGINE_EVENT not in kept
        assert len(after) < len(before)

        assert delete_old_runs(instance, 400, now=now + timedelta(days=399)) == 0
        assert delete_old_runs(instance, 400, now=now + timedelta(days=401)) == 1
        assert instance.get_run_by_id(run_id) is None


def test_housekeeping_schedule_is_stopped_by_default_and_daily() -> None:
    schedule = defs().resolve_schedule_def("housekeeping_daily")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "30 3 * * *" and schedule.execution_timezone == "UTC"
