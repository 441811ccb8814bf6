"""The ``housekeeping`` job and its daily schedule (STOPPED by default, like all automation here).

Two independent ops: ``prune_dagster_database`` (old DEBUG/INFO log lines and bookkeeping events, then whole runs
past their retention) and ``purge_audit_store`` (audit rows older than the audit retention, default 400 days, never
younger). Defaults are safe to run unattended; every field can be changed in the launchpad or the schedule's run
config, and ``dry_run: true`` reports what would go without deleting anything.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from ...paths import StatePaths
from ...settings import load_settings
from ...warehouse import Warehouse
from ...warehouse.audit import DEFAULT_RETENTION_DAYS
from .pruning import EventRetention, delete_old_runs, prune_event_logs, storage_kind

HOUSEKEEPING_TAG = "d365snow/housekeeping"


class DagsterDatabaseRetention(dg.Config):
    """Ages (days) after which Dagster's own records go; null keeps that class forever."""

    debug_logs_days: int | None = Field(7, description="DEBUG log lines (Dagster's database-tuning guide: 7).")
    info_logs_days: int | None = Field(60, description="INFO/WARNING log lines; ERROR lines stay with their run.")
    unimportant_events_days: int | None = Field(
        30, description="Bookkeeping events (engine, step input/output, worker start, planned materialization…).")
    delete_runs_after_days: int | None = Field(
        DEFAULT_RETENTION_DAYS,
        description="Finished runs (with all their events, including materializations) older than this are deleted. "
                    "Default = the audit retention, so every audit row's run id still opens in the UI.")
    max_runs_per_tick: int = Field(1000, description="Upper bound of runs deleted by one housekeeping run.")
    batch_size: int = Field(5000, description="Events deleted per transaction (bounds transaction-log growth).")
    dry_run: bool = Field(False, description="Count what would be deleted, delete nothing.")


class AuditRetention(dg.Config):
    """Audit rows older than ``retention_days`` are deleted; younger rows never are."""

    retention_days: int = Field(DEFAULT_RETENTION_DAYS, ge=1, description="Keep audit rows at least this many days.")
    dry_run: bool = Field(False, description="Count what would be deleted, delete nothing.")


@dg.op(out=dg.Out(dg.Nothing), description="Delete old low-value events and old finished runs from Dagster's DB.")
def prune_dagster_database(context: dg.OpExecutionContext, config: DagsterDatabaseRetention) -> dg.Output:
    retention = EventRetention(config.debug_logs_days, config.info_logs_days, config.unimportant_events_days)
    events = prune_event_logs(context.instance, retention, batch_size=config.batch_size, dry_run=config.dry_run)
    runs = 0
    if config.delete_runs_after_days is not None:
        runs = delete_old_runs(context.instance, config.delete_runs_after_days, max_runs=config.max_runs_per_tick,
                               dry_run=config.dry_run)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(f"{verb} {sum(events.values())} events {events} and {runs} runs")
    return dg.Output(None, metadata={
        "storage": storage_kind(context.instance),
        "dry_run": config.dry_run,
        **{f"events_{rule}": count for rule, count in events.items()},
        "events_total": sum(events.values()),
        "runs": runs,
        "config": dg.MetadataValue.json(config.model_dump()),
    })


@dg.op(out=dg.Out(dg.Nothing), description="Delete audit rows past the audit retention (default 400 days).")
def purge_audit_store(context: dg.OpExecutionContext, config: AuditRetention) -> dg.Output:
    # Only D365SNOW_HOME is needed: housekeeping must keep working while F&O/ServiceNow settings are being fixed,
    # so this does not go through the warehouse resource (which requires both systems' settings).
    store = Warehouse(StatePaths(load_settings(require=(), use_store=False).home).ensure().warehouse)
    cutoff = datetime.now(UTC) - timedelta(days=config.retention_days)
    if config.dry_run:
        with store.reader() as con:
            deleted = int(con.execute('SELECT count(*) FROM audit WHERE "at" < ?', [cutoff]).fetchall()[0][0])
    else:
        deleted = store.purge_audit(config.retention_days)
    with store.reader() as con:
        oldest, remaining = con.execute('SELECT min("at"), count(*) FROM audit').fetchall()[0]
    context.log.info(f"{'would delete' if config.dry_run else 'deleted'} {deleted} audit rows older than {cutoff}")
    return dg.Output(None, metadata={
        "dry_run": config.dry_run,
        "audit_rows_deleted": deleted,
        "retention_days": config.retention_days,
        "cutoff": cutoff.isoformat(timespec="seconds"),
        "audit_rows_remaining": int(remaining),
        "oldest_remaining": oldest.isoformat(timespec="seconds") if oldest else "",
    })


@dg.job(
    executor_def=dg.in_process_executor,  # two short ops: not worth a process each
    tags={HOUSEKEEPING_TAG: "true"},  # dagster.yaml limits runs with this tag to one at a time
    description="Keep the Dagster database bounded and expire audit rows past their retention (deploy/README.md).",
)
def housekeeping() -> None:
    prune_dagster_database()
    purge_audit_store()


housekeeping_daily = dg.ScheduleDefinition(
    name="housekeeping_daily",
    job=housekeeping,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,  # an operator turns automation on deliberately
    description="Daily 03:30 UTC housekeeping with the default retention (see the job's config).",
)
