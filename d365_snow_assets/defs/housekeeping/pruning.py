"""Keeping the Dagster database bounded, following Dagster's "Database tuning" troubleshooting guide.

Dagster OSS 1.13 has retention for schedule/sensor ticks only (dagster.yaml ``retention:``); runs and the
``event_logs`` table grow with every run (dagster#33785: ~110 GB a year for one busy job). The guide's clean-up job
deletes, by age: user log lines (``dagster_event_type IS NULL``) at DEBUG after 7 days and at INFO/WARNING after 60,
and bookkeeping event types nobody reads once a run is over after 30. Everything the UI, asset history and partition
status are built from (materializations, observations, check evaluations, step/run success and failure, ERROR logs)
stays until the whole run is deleted.

Public API first: whole runs go through ``DagsterInstance.delete_run``. Single events have no public delete, so they
are deleted through the event-log storage's own connection methods and Dagster's own table definition (column names
follow the installed Dagster, not a copy of its schema). That covers Postgres/MySQL (one ``event_logs`` table) and the
local SQLite storage (one shard file per run). Deletes run in batches, each its own transaction, because the guide
warns that one huge DELETE can fill the disk with transaction log and turn the database read-only.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from sqlalchemy.dialects.postgresql import JSONB

# The guide's list. RESOURCE_INIT_FAILURE is left out on purpose: it carries the error of a failed run's resources.
UNIMPORTANT_EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in (
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    DagsterEventType.ENGINE_EVENT,
    DagsterEventType.HANDLED_OUTPUT,
    DagsterEventType.LOADED_INPUT,
    DagsterEventType.STEP_INPUT,
    DagsterEventType.STEP_OUTPUT,
    DagsterEventType.RESOURCE_INIT_STARTED,
    DagsterEventType.RESOURCE_INIT_SUCCESS,
    DagsterEventType.STEP_WORKER_STARTING,
    DagsterEventType.STEP_WORKER_STARTED,
    DagsterEventType.RUN_ENQUEUED,
    DagsterEventType.RUN_STARTING,
    DagsterEventType.RUN_CANCELING,
))
_DEBUG, _ERROR = 10, 40  # python logging levels, as stored in the serialized EventLogEntry
_FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
_Connect = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class EventRetention:
    """Age in days after which each class of event is deleted; ``None`` keeps that class."""

    debug_logs_days: int | None = 7
    info_logs_days: int | None = 60
    unimportant_events_days: int | None = 30

    def rules(self) -> dict[str, int]:
        rules = {"debug_logs": self.debug_logs_days, "info_logs": self.info_logs_days,
                 "unimportant_events": self.unimportant_events_days}
        for name, days in rules.items():
            if days is not None and days < 1:
                raise ValueError(f"{name}: keep events at least one day (got {days}); use null to keep them all")
        return {name: days for name, days in rules.items() if days is not None}


def storage_kind(instance: dg.DagsterInstance) -> str:
    """``postgresql``, ``mysql``, ``sqlite`` (one shard per run) … of the instance's event log."""
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        return "sqlite-sharded"
    if isinstance(storage, SqlEventLogStorage):
        with storage.index_connection() as conn:
            return str(conn.dialect.name)
    return type(storage).__name__


def _level(dialect: str) -> sa.ColumnElement[Any]:
    event = SqlEventLogStorageTable.c.event
    if dialect == "postgresql":
        return sa.cast(sa.cast(event, JSONB)["level"].astext, sa.Integer)
    return sa.func.json_extract(event, "$.level")  # SQLite and MySQL


def _condition(rule: str, dialect: str, cutoff: datetime) -> sa.ColumnElement[bool]:
    table = SqlEventLogStorageTable
    # The column holds naive UTC (Dagster writes it that way for Postgres' sake).
    older = table.c.timestamp < cutoff.astimezone(UTC).replace(tzinfo=None)
    if rule == "debug_logs":
        return sa.and_(table.c.dagster_event_type.is_(None), older, _level(dialect) <= _DEBUG)
    if rule == "info_logs":
        level = _level(dialect)
        return sa.and_(table.c.dagster_event_type.is_(None), older, level > _DEBUG, level < _ERROR)
    return sa.and_(table.c.dagster_event_type.in_(UNIMPORTANT_EVENT_TYPES), older)


def _delete(connect: _Connect, where: sa.ColumnElement[bool], batch_size: int, dry_run: bool) -> int:
    table = SqlEventLogStorageTable
    if dry_run:
        with connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())
    total = 0
    while True:
        # Ids first, then delete by id: bounded transactions, and MySQL refuses a LIMIT subquery on the same table.
        with connect() as conn:
            ids = [row[0] for row in conn.execute(sa.select(table.c.id).where(where).limit(batch_size))]
            if ids:
                conn.execute(table.delete().where(table.c.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch_size:
            return total


def _sqlite_shards(instance: dg.DagsterInstance, created_before: datetime) -> Iterator[str]:
    # Only shards of runs the run storage knows about: opening an unknown shard would create an empty file.
    cursor = None
    while True:
        records = instance.get_run_records(dg.RunsFilter(created_before=created_before), limit=500, cursor=cursor)
        if not records:
            return
        for record in records:
            yield record.dagster_run.run_id
        cursor = records[-1].dagster_run.run_id


def prune_event_logs(instance: dg.DagsterInstance, retention: EventRetention, *, batch_size: int = 5000,
                     dry_run: bool = False, now: datetime | None = None) -> dict[str, int]:
    """Delete (or with ``dry_run`` count) old low-value events; returns rows per rule."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise NotImplementedError(f"event-log pruning needs a SQL event log storage, not {type(storage).__name__}")
    now = now or datetime.now(UTC)
    cutoffs = {rule: now - timedelta(days=days) for rule, days in retention.rules().items()}
    counts = dict.fromkeys(cutoffs, 0)
    if not cutoffs:
        return counts
    if isinstance(storage, SqliteEventLogStorage):
        # The embedded default keeps one SQLite file per run; visit the runs old enough to hold prunable events.
        for run_id in _sqlite_shards(instance, max(cutoffs.values())):
            for rule, cutoff in cutoffs.items():
                counts[rule] += _delete(lambda run_id=run_id: storage.run_connection(run_id),
                                        _condition(rule, "sqlite", cutoff), batch_size, dry_run)
        return counts
    with storage.index_connection() as conn:
        dialect = conn.dialect.name
    for rule, cutoff in cutoffs.items():
        counts[rule] = _delete(storage.index_connection, _condition(rule, dialect, cutoff), batch_size, dry_run)
    return counts


def delete_old_runs(instance: dg.DagsterInstance, older_than_days: int, *, max_runs: int = 1000,
                    dry_run: bool = False, now: datetime | None = None) -> int:
    """Delete finished runs created more than ``older_than_days`` ago, with all their events (public API).

    At most ``max_runs`` per call, so one housekeeping run after a long pause stays short; the next tick continues.
    Runs that are queued or in progress are never touched, whatever their age.
    """
    if older_than_days < 1:
        raise ValueError("keep runs at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    filters = dg.RunsFilter(created_before=cutoff, statuses=_FINISHED)
    if dry_run:
        return min(instance.get_runs_count(filters), max_runs)
    deleted = 0
    while deleted < max_runs:
        run_ids = [r.dagster_run.run_id for r in instance.get_run_records(filters, limit=min(200, max_runs - deleted))]
        if not run_ids:
            break
        for run_id in run_ids:
            instance.delete_run(run_id)
        deleted += len(run_ids)
    return deleted
