"""Launching the connector's Dagster jobs from the CLI into the instance under ``D365SNOW_HOME``.

Runs execute in-process (one process touches the DuckDB warehouse per run) but are recorded in the persistent
instance, so ``dagster dev`` with the same ``DAGSTER_HOME`` shows them, their metadata, checks and logs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import filelock

from ..defs.partitions import register_legal_entities
from ..paths import StatePaths
from ..settings import ConnectorSettings

_QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class RunOutcome:
    """One Dagster run of a cycle."""

    job: str
    partition: str | None
    run_id: str
    success: bool
    materializations: dict[str, dict[str, object]] = field(default_factory=dict)  # asset key → metadata
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None
    # Failed on configuration or credentials: every later run of the cycle would fail the same way.
    fatal: bool = False


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
    job = definitions.resolve_job_def(job_name)
    # The full event stream goes to the instance (the UI shows it); the terminal only gets warnings and errors.
    return job.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False,
                                  tags={"d365snow/launched_by": "cli", **(tags or {})},
                                  run_config={**_QUIET_CONSOLE, **(run_config or {})})


def load_definitions() -> dg.Definitions:
    from ..definitions import defs

    return defs() if callable(defs) else defs  # type: ignore[operator]


def run_cycle(settings: ConnectorSettings, instance: dg.DagsterInstance, *, push: bool,
              on_run: Callable[[RunOutcome], None] | None = None, invoices: bool = True,
              run_config: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None
              ) -> list[RunOutcome]:
    """Reference data first (lines are validated against it), then each legal entity, then (when pushing) the
    invoice round trip of each legal entity. ``run_config`` and ``tags`` go to every run (e.g. an operator's
    acceptance of mass deactivations)."""
    definitions = load_definitions()
    register_legal_entities(instance, settings.legal_entities)
    prefix = "sync" if push else "plan"
    plan: list[tuple[str, str | None]] = [(f"{prefix}_reference_data", None)]
    plan += [(f"{prefix}_legal_entity", le) for le in settings.legal_entities]
    if push and invoices:
        # After the F&O → ServiceNow runs: invoices are validated against the snapshots those runs refreshed.
        plan += [("invoice_round_trip", le) for le in settings.legal_entities]
    outcomes = []
    for job_name, partition in plan:
        outcome = _execute(definitions, instance, job_name, partition, run_config or {}, tags or {})
        outcomes.append(outcome)
        if on_run:
            on_run(outcome)
        if outcome.fatal:
            break
    return outcomes


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
            if not evaluation.passed:
                outcome.failed_checks.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
        elif event.is_step_failure and outcome.error is None:
            outcome.error = _failure_text(event)
            outcome.fatal = _is_fatal(event)
    return outcome


_FATAL_ERRORS = {"ConfigurationError", "AuthError", "SettingsError", "MappingError"}


def _is_fatal(event: dg.DagsterEvent) -> bool:
    data = event.step_failure_data
    error = data.error if data else None
    while error is not None:
        if error.cls_name in _FATAL_ERRORS:
            return True
        error = error.cause or error.context
    return False


def _failure_text(event: dg.DagsterEvent) -> str:
    """The step and the innermost error's message: what went wrong, not the retry or execution wrapper."""
    data = event.step_failure_data
    error = data.error if data else None
    message = data.user_failure_data.description if data and data.user_failure_data else None
    while error is not None and not message:
        if error.cause is None and error.context is None:
            message = error.message.strip()
        error = error.cause or error.context
    return f"{event.step_key}: {message or 'failed'}"
