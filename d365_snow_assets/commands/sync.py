"""``d365-snow sync`` and ``d365-snow plan``: one cycle through the Dagster asset graph, headless."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ..clients.d365 import D365Client
from ..clients.errors import ConnectorError, CredentialsRefusedError
from ..clients.servicenow import ServiceNowClient
from ..paths import StatePaths
from ..settings import ConnectorSettings
from ..sync.fit import fit_before_sync
from ..sync.mass_change import Acceptance, AcceptanceError
from ..sync.targets import load_mappings
from ..warehouse import Warehouse
from .fit import findings_table
from .output import (
    EXIT_FAILED,
    EXIT_USAGE,
    CommandError,
    config_json,
    emit_json,
    new_cycle_id,
    reported,
    run_log,
    settings_for,
)
from .runs import RunOutcome, open_instance, run_cycle
from .summary import (
    OutcomeCounts,
    fatal_failure,
    print_outcome_table,
    print_runs,
    print_summary,
    runs_json,
    summarize_cycle,
    summary_json,
)

console = Console()
progress = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout (shape "
                                                         "in the README, errors included).")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Also print Dagster's log lines and "
                                                                     "tracebacks here (they always go to the log "
                                                                     "file).")]


def _describe(outcome: RunOutcome) -> str:
    scope = outcome.partition.upper() if outcome.partition else "reference data"
    run = f"[dim]{outcome.job} run {outcome.run_id[:8]}[/]"
    if outcome.success:
        return f"[green]✓[/] {scope} ({run})"
    return f"[red]✗[/] {scope} ({run}): {len(outcome.failures) or 'a'} step(s) failed"


def _cycle(command: str, *, push: bool, json_output: bool, verbose: bool,
           accept_deactivations: list[str] | None = None
           ) -> tuple[ConnectorSettings, str, Path, list[RunOutcome]]:
    """Check the configuration (exit 2 with a sentence), then run the cycle with its log file."""
    settings = settings_for(json_output=json_output)
    with reported(json_output=json_output):
        load_mappings()  # a typo in a [mapping] override fails here, before anything is extracted
        try:
            acceptance = Acceptance.of(accept_deactivations or [], getpass.getuser())
        except AcceptanceError as exc:
            raise CommandError("usage", str(exc)) from None
        if push:
            _preflight(settings, json_output=json_output)
    instance = open_instance(settings)
    cycle = new_cycle_id()
    verb = "Syncing" if push else "Planning"
    with run_log(settings.home, command, cycle, verbose=verbose) as log_file, progress.status(
            f"{verb} {len(settings.legal_entities)} legal entities…") as status:
        def on_run(outcome: RunOutcome) -> None:
            progress.print(_describe(outcome))
            status.update(f"{verb}… ({outcome.job} done)")
        outcomes = run_cycle(settings, instance, push=push, on_run=on_run, cycle_id=cycle,
                             run_config=acceptance.run_config() if acceptance else None,
                             tags=acceptance.tags() if acceptance else None)
    return settings, cycle, log_file, outcomes


def _preflight(settings: ConnectorSettings, *, json_output: bool) -> None:
    """Before any run: both systems take the credentials (a refusal ends the cycle with the variable to fix), and
    no table's mapping has a blocking misfit with the instance (DESIGN §4: exit 2 with the report). F&O first:
    its token costs two requests, the instance's schema a dozen. A [mapping] override naming a field the instance
    lacks raises MappingError (the caller's exit 2)."""
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    try:
        with D365Client(settings) as d365:
            d365.token()
        with ServiceNowClient(settings) as snow:
            report = fit_before_sync(snow, warehouse, settings)
    except CredentialsRefusedError as exc:
        _stop(json_output, "credentials", exc.message, EXIT_FAILED)
    except ConnectorError:
        return  # unreachable or similar: the runs meet the same failure and report it where it happens
    if report.blocking:
        message = ("The mapping does not fit this ServiceNow instance, so nothing was synced: "
                   + " ".join(f.message for f in report.blocking))
        if not json_output:
            progress.print(findings_table("The mapping does not fit this ServiceNow instance", report.blocking))
        _stop(json_output, "misfit", message, EXIT_USAGE, [f.as_dict() for f in report.blocking])


def _stop(json_output: bool, kind: str, message: str, code: int, findings: list[dict[str, str | None]] | None = None
          ) -> NoReturn:
    if json_output:
        emit_json({"ok": False, "error": {"kind": kind, "message": message},
                   **({"findings": findings} if findings is not None else {})})
    elif kind == "misfit":
        progress.print("[red]Nothing was synced.[/] Run `d365-snow fit` for the whole report; the README's "
                       "\"Before the first sync\" says how an admin fixes each finding.")
    else:
        progress.print(f"[red]Stopped:[/] {escape(message)} Nothing more was sent.")
    raise typer.Exit(code)


def _closing(ok: bool, fatal_message: str | None, failed_steps: int, log_file: Path, again: str) -> None:
    if fatal_message:
        progress.print(f"[red]Stopped:[/] {escape(fatal_message)} Nothing more was sent.")
    elif not ok:
        progress.print(f"[red]The cycle did not complete:[/] {failed_steps} step(s) failed (above). {again}")
    # On a line of its own and never wrapped, so it can be copied (or read by a script).
    progress.print(f"Log: {log_file}", soft_wrap=True, highlight=False, style=None if not ok else "dim")


def sync(json_output: JsonOption = False, verbose: VerboseOption = False,
         accept_deactivations: Annotated[list[str] | None, typer.Option(
             "--accept-deactivations", metavar="TARGET",
             help="Accept a mass deactivation of TARGET (e.g. gl_accounts) in this run: F&O really lost those "
                  "records. Repeatable; recorded with your user name in the run's tags and the audit.")] = None,
         ) -> None:
    """Run one full cycle through Dagster (F&O → ServiceNow, then invoices) and summarise every record's outcome.

    All configured legal entities; the runs land in the Dagster instance under D365SNOW_HOME, tagged by cycle.
    """
    settings, cycle, log_file, outcomes = _cycle("sync", push=True, json_output=json_output, verbose=verbose,
                                                 accept_deactivations=accept_deactivations)
    summary = summarize_cycle(Warehouse(StatePaths(settings.home).warehouse), cycle, outcomes)
    if json_output:
        emit_json(summary_json(summary, config=config_json(settings), log_file=log_file))
    else:
        print_summary(summary, console)
        fatal = fatal_failure(outcomes)
        _closing(summary.ok, fatal.message if fatal else None, sum(len(r.failures) for r in outcomes), log_file,
                 "Records already pushed are not sent twice: run `d365-snow sync` again once the cause is fixed.")
    if not summary.ok:
        raise typer.Exit(EXIT_FAILED)


PLAN_COLUMNS = {"insert": "insert", "change": "change", "delete": "deactivate", "held_back": "held back",
                "unchanged": "unchanged"}


def plan_rows(outcomes: list[RunOutcome]) -> list[OutcomeCounts]:
    """What each plan asset would push, per target and legal entity (``rows_*`` metadata of the plan assets)."""
    rows = []
    for run in outcomes:
        for asset, metadata in run.materializations.items():
            if asset.startswith("plan/"):
                counts = {c: int(metadata.get(f"rows_{c}", 0) or 0) for c in PLAN_COLUMNS}
                rows.append(OutcomeCounts("d365_to_snow", asset.removeprefix("plan/").removesuffix("_changes"),
                                          run.partition, asset, counts))
    return sorted(rows, key=lambda r: (r.target, r.legal_entity or ""))


def plan(json_output: JsonOption = False, verbose: VerboseOption = False) -> None:
    """Show what a sync would push (inserts, changes, deactivations, held-back lines), without pushing."""
    settings, cycle, log_file, outcomes = _cycle("plan", push=False, json_output=json_output, verbose=verbose)
    rows = plan_rows(outcomes)
    runs = runs_json(outcomes)
    if json_output:
        emit_json({"ok": runs["ok"], "error": runs["error"], "cycle": cycle, "config": config_json(settings),
                   "log_file": str(log_file),
                   "plan": [{"target": r.target, "legal_entity": r.legal_entity, **r.counts} for r in rows],
                   **{k: v for k, v in runs.items() if k not in ("ok", "error")}})
    else:
        print_outcome_table("What a sync would push", rows, PLAN_COLUMNS, console)
        print_runs(outcomes, console)
        fatal = fatal_failure(outcomes)
        _closing(runs["ok"], fatal.message if fatal else None, len(runs["failed_steps"]), log_file,
                 "Run `d365-snow plan` again once the cause is fixed.")
    if not runs["ok"]:
        raise typer.Exit(EXIT_FAILED)
