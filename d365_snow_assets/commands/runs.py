"""Launching the connector's Dagster jobs from the CLI into the instance under ``D365SNOW_HOME``.

Runs execute in-process (one process touches the DuckDB warehouse per run) but are recorded in the persistent
instance, so ``dagster dev`` with the same ``DAGSTER_HOME`` shows them, their metadata, checks and logs.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import filelock
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.definitions.timestamp import TimestampWithTimezone
from dagster._core.execution.asset_backfill import AssetBackfillData
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import BACKFILL_ID_TAG, USER_TAG

from ..defs.partitions import register_legal_entities
from ..paths import StatePaths
from ..settings import ConnectorSettings

CYCLE_TAG = "d365snow/cycle"
"""Every run one command launches carries the same value (the UI's run list filters by tag)."""
RUN_LOGGER = "d365_snow_assets.dagster"

# What each job of a cycle does, for progress lines ("USMF: purchase orders and their lines F&O → ServiceNow");
# short enough that "✓ <phase> (12 s)" fits an 80-column terminal.
PHASES = {
    "sync_reference_data": "GL accounts, cost centers, suppliers F&O → ServiceNow",
    "sync_legal_entity": "purchase orders and their lines F&O → ServiceNow",
    "invoice_round_trip": "approved invoices ServiceNow → F&O, status and payments back",
    "plan_reference_data": "GL accounts, cost centers, suppliers: extract and diff",
    "plan_legal_entity": "purchase orders and their lines: extract and diff",
}


@dg.logger(description="Dagster's run log lines into the connector's Python logging (the CLI's log file).")
def _run_logger(_context: dg.InitLoggerContext) -> logging.Logger:
    # Replaces the console logger, which prints every warning and traceback to the terminal. The full event stream
    # still goes to the instance, so the UI shows it; the CLI's log file gets the same lines (commands/output.py).
    return logging.getLogger(RUN_LOGGER)


@dataclass(frozen=True)
class CheckOutcome:
    """One asset check evaluation of a run."""

    asset: str
    check: str
    legal_entity: str | None
    passed: bool
    severity: str  # "ERROR" or "WARN"
    description: str

    @property
    def name(self) -> str:
        return f"{self.asset}:{self.check}"


@dataclass(frozen=True)
class StepFailure:
    """A step that failed for good (after its retries), with the innermost error's message."""

    step: str
    message: str
    # "credentials" or "configuration" when every later run of the cycle would fail the same way, else None.
    kind: str | None = None

    @property
    def fatal(self) -> bool:
        return self.kind is not None


@dataclass
class RunOutcome:
    """One Dagster run of a cycle."""

    job: str
    partition: str | None
    run_id: str
    success: bool
    materializations: dict[str, dict[str, object]] = field(default_factory=dict)  # asset key → metadata
    checks: list[CheckOutcome] = field(default_factory=list)
    failures: list[StepFailure] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """The first failed step and why, for a one-line progress report."""
        return f"{self.failures[0].step}: {self.failures[0].message}" if self.failures else None

    @property
    def fatal(self) -> bool:
        return any(f.fatal for f in self.failures)

    @property
    def phase(self) -> str:
        """Which part of the cycle this run was, e.g. ``USMF: purchase orders and their lines F&O → ServiceNow``."""
        scope = self.partition.upper() if self.partition else "All companies"
        return f"{scope}: {PHASES.get(self.job, self.job)}"


def open_instance(settings: ConnectorSettings) -> dg.DagsterInstance:
    """The persistent Dagster instance of this connector home."""
    paths = StatePaths(settings.home).ensure()
    os.environ["DAGSTER_HOME"] = str(paths.dagster_home.resolve())
    # Two CLI processes opening a brand-new SQLite instance at once both create its schema and one fails ("table
    # runs already exists"). Touching each storage under a lock makes the first one create it alone.
    with filelock.FileLock(str(paths.dagster_home / ".instance-init.lock"), timeout=120):
        instance = dg.DagsterInstance.get()
        instance.get_runs_count()
        instance.get_dynamic_partitions("legal_entity")
        instance.all_instigator_state()
    return instance


def launch(definitions: dg.Definitions, instance: dg.DagsterInstance, job_name: str, *,
           partition: str | None = None, run_config: Mapping[str, Any] | None = None,
           tags: Mapping[str, str] | None = None) -> dg.ExecuteInProcessResult:
    """Run one of the connector's jobs in this process, recorded in ``instance`` like any other run."""
    job = definitions.resolve_job_def(job_name).with_logger_defs({"console": _run_logger})
    # Without a `loggers` entry Dagster would add its default console logger; `console: {}` is also valid config
    # for that default, so re-executing the run from the UI still works.
    return job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False,
                                  tags={"d365snow/launched_by": "cli", **(tags or {})},
                                  run_config={"loggers": {"console": {}}, **(run_config or {})})


def load_definitions() -> dg.Definitions:
    from ..definitions import defs

    return defs() if callable(defs) else defs  # type: ignore[operator]


def run_cycle(settings: ConnectorSettings, instance: dg.DagsterInstance, *, push: bool,
              on_run: Callable[[RunOutcome], None] | None = None, invoices: bool = True, fno_to_snow: bool = True,
              cycle_id: str | None = None, title: str | None = None, run_config: Mapping[str, Any] | None = None,
              tags: Mapping[str, str] | None = None) -> list[RunOutcome]:
    """Reference data first (lines are validated against it), then each legal entity, then (when pushing) the
    invoice round trip of each legal entity; ``fno_to_snow=False`` runs the invoice round trips only. Every run is
    tagged with ``cycle_id`` and the configuration it used, and gets ``run_config`` and ``tags`` (e.g. an operator's
    acceptance of mass deactivations); the cycle stops at the first run that failed on configuration or refused
    credentials. With a ``cycle_id`` the runs are one backfill in the Dagster UI, titled ``title``
    (:func:`record_cycle`)."""
    definitions = load_definitions()
    register_legal_entities(instance, settings.legal_entities)
    prefix = "sync" if push else "plan"
    plan: list[tuple[str, str | None]] = []
    if fno_to_snow:
        plan += [(f"{prefix}_reference_data", None)]
        plan += [(f"{prefix}_legal_entity", le) for le in settings.legal_entities]
    if push and invoices:
        # After the F&O → ServiceNow runs: invoices are validated against the snapshots those runs refreshed.
        plan += [("invoice_round_trip", le) for le in settings.legal_entities]
    run_tags = {**settings.run_tags(), **(tags or {})}
    started = time.time()
    if cycle_id:
        run_tags.update({CYCLE_TAG: cycle_id, BACKFILL_ID_TAG: cycle_id, USER_TAG: _user()})
    outcomes: list[RunOutcome] = []
    try:
        for job_name, partition in plan:
            outcome = _execute(definitions, instance, job_name, partition, run_config or {}, run_tags)
            outcomes.append(outcome)
            if on_run:
                on_run(outcome)
            if outcome.fatal:
                break
    finally:
        if cycle_id:
            try:
                record_cycle(instance, definitions, cycle_id, plan, outcomes, started=started,
                             tags={k: v for k, v in run_tags.items() if k != BACKFILL_ID_TAG},
                             title=title or f"d365-snow {prefix}")
            except Exception as exc:
                # The backfill is the UI's grouping of runs already recorded (through Dagster internals, see
                # record_cycle): failing to write it must neither turn a completed cycle into a crash nor hide
                # the error that ended a failed one.
                logging.getLogger(RUN_LOGGER).warning("the cycle's entry on the Runs page was not written: %s",
                                                      type(exc).__name__)
    return outcomes


# The runs of one cycle are ONE backfill in the Dagster UI: the Runs page lists the cycle as one row (its status,
# who launched it, the cycle tag) and its page shows every asset and legal entity the cycle targeted with what
# became of it, the cycle's runs and their timeline. Dagster relates runs in three ways: a shared tag (CYCLE_TAG:
# shown on each run's row and filterable, but the list still has one row per run), a run group (the
# dagster/root_run_id tag, which the UI presents as re-executions of the first run: a cycle is not that), and a
# backfill, its own "one request, many runs" object. A cycle is what an asset backfill describes: a set of asset
# partitions materialized by several runs. Its runs execute here, in this process, as those of Dagster's own
# `dagster job backfill` command execute outside the backfill daemon; like that command, the cycle writes its
# backfill record itself, once its runs are done, and in a finished state, so the daemon (which drives only
# REQUESTED backfills) never launches, fails or cancels anything of it. While a cycle runs, its runs show one by
# one under the Runs page's "In progress" tab; its row appears under "All" when it ends. PartitionBackfill and
# AssetBackfillData are not Dagster's public API (dagster._core): they are pinned by dagster<1.14 and their use is
# checked by tests/ui (the cycle's backfill as the webserver shows it).
def record_cycle(instance: dg.DagsterInstance, definitions: dg.Definitions, cycle_id: str,
                 plan: Sequence[tuple[str, str | None]], outcomes: list[RunOutcome], *, started: float,
                 tags: Mapping[str, str], title: str) -> None:
    """Write the cycle's backfill: the asset partitions its runs targeted, those they materialized, and the rest
    (a failed step, or a run the cycle never started) as failed."""
    graph = definitions.resolve_asset_graph()

    def partition_of(key: dg.AssetKey, partition: str | None) -> AssetKeyPartitionKey:
        return AssetKeyPartitionKey(key, partition if graph.get(key).is_partitioned else None)

    def targeted(job: str, partition: str | None) -> set[AssetKeyPartitionKey]:
        keys = definitions.resolve_job_def(job).asset_layer.selected_asset_keys
        return {partition_of(key, partition) for key in keys}

    target = set().union(*(targeted(job, partition) for job, partition in plan))
    requested = set().union(*(targeted(run.job, run.partition) for run in outcomes))
    materialized = {partition_of(dg.AssetKey.from_user_string(asset), run.partition)
                    for run in outcomes for asset in run.materializations}

    def subset(partitions: set[AssetKeyPartitionKey]) -> AssetGraphSubset:
        return AssetGraphSubset.from_asset_partition_set(partitions, graph)

    data = AssetBackfillData(
        target_subset=subset(target), requested_runs_for_target_roots=True, latest_storage_id=None,
        materialized_subset=subset(materialized & target), requested_subset=subset(requested),
        failed_and_downstream_subset=subset(target - materialized),
        backfill_start_time=TimestampWithTimezone(started, "UTC"))
    succeeded = target <= materialized and all(run.success for run in outcomes)
    instance.add_backfill(PartitionBackfill(
        backfill_id=cycle_id, from_failure=False, tags=dict(tags), backfill_timestamp=started,
        status=BulkActionStatus.COMPLETED_SUCCESS if succeeded else BulkActionStatus.COMPLETED_FAILED,
        asset_selection=sorted({p.asset_key for p in target}, key=lambda k: k.to_user_string()),
        title=title, description=f"{len(outcomes)} of {len(plan)} runs; cycle {cycle_id}",
        asset_backfill_data=data, backfill_end_timestamp=time.time()))


def _user() -> str:
    """Who launched the cycle (the UI's "Launched by" column shows the ``user`` tag instead of "Manually launched")."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry and no LOGNAME/USER
        return "unknown user"


def _execute(definitions: dg.Definitions, instance: dg.DagsterInstance, job_name: str,
             partition: str | None, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> RunOutcome:
    result = launch(definitions, instance, job_name, partition=partition, run_config=run_config, tags=tags)
    outcome = RunOutcome(job_name, partition, result.run_id, result.success)
    for event in result.all_events:
        if event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            outcome.materializations[mat.asset_key.to_user_string()] = {
                k: v.value for k, v in mat.metadata.items()}
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            outcome.checks.append(CheckOutcome(
                evaluation.asset_key.to_user_string(), evaluation.check_name,
                evaluation.partition or partition, evaluation.passed, evaluation.severity.value,
                evaluation.description or ""))
        elif event.is_step_failure:
            outcome.failures.append(StepFailure(event.step_key or "?", _failure_text(event), _fatal_kind(event)))
    return outcome


_FATAL_ERRORS = {"AuthError": "credentials", "CredentialsRefusedError": "credentials",
                 "ConfigurationError": "configuration", "SettingsError": "configuration",
                 "MappingError": "configuration"}


def _fatal_kind(event: dg.DagsterEvent) -> str | None:
    """Whether the step failed on credentials or configuration (the error's class anywhere in its chain)."""
    data = event.step_failure_data
    error = data.error if data else None
    while error is not None:
        if error.cls_name in _FATAL_ERRORS:
            return _FATAL_ERRORS[error.cls_name]
        error = error.cause or error.context
    return None


def _failure_text(event: dg.DagsterEvent) -> str:
    """The innermost error's message: what went wrong, not the retry or execution wrapper."""
    data = event.step_failure_data
    error = data.error if data else None
    message = data.user_failure_data.description if data and data.user_failure_data else None
    while error is not None and not message:
        if error.cause is None and error.context is None:
            # The serialized message starts with the exception's qualified class name: noise for an operator.
            message = error.message.strip()
            head, sep, rest = message.partition(": ")
            if sep and head.endswith(error.cls_name or "\0"):
                message = rest
        error = error.cause or error.context
    return message or "failed"
