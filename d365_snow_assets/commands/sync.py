"""``d365-snow sync`` and ``d365-snow plan``: one cycle through the Dagster asset graph, headless."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..clients.errors import ConnectorError
from ..clients.servicenow import ServiceNowClient
from ..mapping import MappingError
from ..paths import StatePaths
from ..settings import ConnectorSettings, SettingsError, load_settings
from ..sync.fit import fit_before_sync
from ..sync.targets import load_mappings
from ..warehouse import Warehouse
from .fit import findings_table
from .runs import RunOutcome, open_instance, run_cycle

console = Console(stderr=True)


def _describe(outcome: RunOutcome) -> str:
    scope = outcome.partition.upper() if outcome.partition else "reference data"
    if outcome.success:
        return f"[green]✓[/] {scope} ([dim]{outcome.job} run {outcome.run_id[:8]}[/])"
    return f"[red]✗[/] {scope}: {escape(outcome.error or 'failed')} ([dim]run {outcome.run_id[:8]}[/])"


def _cycle(push: bool) -> list[RunOutcome]:
    try:
        settings = load_settings()
        load_mappings()  # a typo in a [mapping] override fails here, before anything is extracted
    except (SettingsError, MappingError) as exc:
        console.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if push:
        _refuse_misfit(settings)
    instance = open_instance(settings)
    verb = "Syncing" if push else "Planning"
    with console.status(f"{verb} {len(settings.legal_entities)} legal entities…") as status:
        def on_run(outcome: RunOutcome) -> None:
            console.print(_describe(outcome))
            status.update(f"{verb}… ({outcome.job} done)")
        return run_cycle(settings, instance, push=push, on_run=on_run)


def _refuse_misfit(settings: ConnectorSettings) -> None:
    """No push into a table whose mapping does not fit the instance (DESIGN §4: exit 2 with the report)."""
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    try:
        with ServiceNowClient(settings) as snow:
            report = fit_before_sync(snow, warehouse, settings)
    except MappingError as exc:
        console.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except ConnectorError:
        return  # the runs meet the same failure and report it where it happens
    if report.blocking:
        console.print(findings_table("The mapping does not fit this ServiceNow instance", report.blocking))
        console.print("[red]Nothing was synced.[/] Run `d365-snow fit` for the whole report; the README's \"Before "
                      "the first sync\" says how an admin fixes each finding.")
        raise typer.Exit(2)


def summarize(outcomes: list[RunOutcome], prefix: str) -> dict[str, dict[str, int]]:
    """Metadata counts (``outcome_*`` / ``rows_*``) summed per asset across legal entities."""
    totals: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        for asset, metadata in outcome.materializations.items():
            if not asset.startswith(prefix):
                continue
            bucket = totals.setdefault(asset.removeprefix(prefix).removesuffix("_changes"), {})
            for key, value in metadata.items():
                if isinstance(value, int) and (key.startswith(("outcome_", "rows_")) or key in {"rejected", "errors"}):
                    name = key.removeprefix("outcome_").removeprefix("rows_")
                    bucket[name] = bucket.get(name, 0) + value
    return totals


def invoice_totals(outcomes: list[RunOutcome]) -> dict[str, int]:
    """What ``invoices/posting`` did across legal entities: one count per outcome, plus ``retry_next_run``."""
    totals: dict[str, int] = {}
    for outcome in outcomes:
        for key, value in outcome.materializations.get("invoices/posting", {}).items():
            if isinstance(value, int) and (key.startswith("outcome_") or key == "retry_next_run"):
                name = key.removeprefix("outcome_")
                totals[name] = totals.get(name, 0) + value
    return totals


PUSH_COLUMNS = ("inserted", "updated", "ignored", "rejected", "errors")
# invoices/posting outcomes (invoices.posting.Outcome) and how many failed invoices the next run takes up again.
INVOICE_COLUMNS = ("created", "reused", "posted", "skipped", "rejected", "error", "retry_next_run")
PLAN_COLUMNS = ("insert", "change", "delete", "held_back", "unchanged")


def print_table(title: str, totals: dict[str, dict[str, int]], columns: tuple[str, ...]) -> None:
    table = Table(title=title)
    table.add_column("target", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    for target, counts in sorted(totals.items()):
        table.add_row(target, *(f"{counts.get(c, 0):,}" for c in columns))
    Console().print(table)


def sync(json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False) -> None:
    """Run one full cycle F&O → ServiceNow for every configured legal entity through the Dagster asset graph."""
    outcomes = _cycle(push=True)
    totals = summarize(outcomes, "servicenow/")
    invoices = invoice_totals(outcomes)
    failed_checks = [c for o in outcomes for c in o.failed_checks]
    ok = all(o.success for o in outcomes)
    if json_output:
        typer.echo(orjson.dumps({"ok": ok, "pushed": totals, "invoices": invoices, "failed_checks": failed_checks,
                                 "runs": [{"job": o.job, "partition": o.partition, "run_id": o.run_id,
                                           "success": o.success, "error": o.error} for o in outcomes]},
                                option=orjson.OPT_INDENT_2).decode())
    else:
        print_table("Pushed to ServiceNow (per target, all legal entities)", totals, PUSH_COLUMNS)
        print_table("Invoices ServiceNow → F&O (all legal entities)", {"invoices": invoices}, INVOICE_COLUMNS)
        for check in failed_checks:
            console.print(f"[yellow]check not passing:[/] {escape(check)}")
    if not ok:
        console.print("[red]The cycle did not complete.[/] Fix the error above and run `d365-snow sync` again; "
                      "records already pushed are not sent twice.")
        raise typer.Exit(1)


def plan() -> None:
    """Show what a sync would push (inserts, changes, deactivations, held-back lines), without pushing."""
    outcomes = _cycle(push=False)
    print_table("What a sync would push (per target, all legal entities)", summarize(outcomes, "plan/"), PLAN_COLUMNS)
    if not all(o.success for o in outcomes):
        raise typer.Exit(1)
