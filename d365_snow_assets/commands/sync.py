"""``d365-snow sync`` and ``d365-snow plan``: one cycle through the Dagster asset graph, headless."""

from __future__ import annotations

import getpass
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..mapping import MappingError
from ..settings import SettingsError, load_settings
from ..sync.mass_change import Acceptance, AcceptanceError
from ..sync.targets import load_mappings
from .runs import RunOutcome, open_instance, run_cycle

console = Console(stderr=True)


def _describe(outcome: RunOutcome) -> str:
    scope = outcome.partition.upper() if outcome.partition else "reference data"
    if outcome.success:
        return f"[green]✓[/] {scope} ([dim]{outcome.job} run {outcome.run_id[:8]}[/])"
    return f"[red]✗[/] {scope}: {escape(outcome.error or 'failed')} ([dim]run {outcome.run_id[:8]}[/])"


def _cycle(push: bool, accept_deactivations: list[str] | None = None) -> list[RunOutcome]:
    try:
        settings = load_settings()
        load_mappings()  # a typo in a [mapping] override fails here, before anything is extracted
        acceptance = Acceptance.of(accept_deactivations or [], getpass.getuser())
    except (SettingsError, MappingError, AcceptanceError) as exc:
        console.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    instance = open_instance(settings)
    verb = "Syncing" if push else "Planning"
    with console.status(f"{verb} {len(settings.legal_entities)} legal entities…") as status:
        def on_run(outcome: RunOutcome) -> None:
            console.print(_describe(outcome))
            status.update(f"{verb}… ({outcome.job} done)")
        return run_cycle(settings, instance, push=push, on_run=on_run,
                         run_config=acceptance.run_config() if acceptance else None,
                         tags=acceptance.tags() if acceptance else None)


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


def sync(json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
         accept_deactivations: Annotated[list[str] | None, typer.Option(
             "--accept-deactivations", metavar="TARGET",
             help="Accept a mass deactivation of TARGET (e.g. gl_accounts) in this run: F&O really lost those "
                  "records. Repeatable; recorded with your user name in the run's tags and the audit.")] = None,
         ) -> None:
    """Run one full cycle F&O → ServiceNow for every configured legal entity through the Dagster asset graph."""
    outcomes = _cycle(push=True, accept_deactivations=accept_deactivations)
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
