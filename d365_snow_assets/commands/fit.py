"""``d365-snow fit``: does the connector's mapping fit this ServiceNow instance and this F&O environment?
(DESIGN §4). Reads both systems' own schemas, refreshes the discovery cache, writes nothing else."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..clients.d365 import D365Client
from ..clients.errors import ConnectorError
from ..clients.servicenow import ServiceNowClient
from ..discovery import load_schema
from ..discovery.binding import Finding
from ..paths import StatePaths
from ..sync.fit import FitReport, fit_d365, fit_servicenow
from ..sync.targets import load_mappings, mapping_context
from ..warehouse import Warehouse
from .output import EXIT_FAILED, CommandError, config_json, config_line, emit_json, reported, settings_for
from .ping import PING_POLICY

console = Console()
_MARK = {"blocking": "[red]BLOCKING[/]", "warning": "[yellow]warning[/]", "info": "[dim]info[/]"}


def findings_table(title: str, findings: list[Finding]) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("", no_wrap=True)
    table.add_column("field", overflow="fold", max_width=24)
    table.add_column("finding", overflow="fold")
    for f in findings:
        table.add_row(_MARK[f.severity], Text(f.label or ""), Text(f.message))
    return table


def render(report: FitReport, *, verbose: bool) -> None:
    console.print(f"ServiceNow instance {escape(report.instance)} (schema read {report.discovered_at})")
    for t in report.tables:
        shown = t.findings if verbose else [f for f in t.findings if f.severity != "info"]
        state = "[red]does not fit[/]" if any(f.severity == "blocking" for f in t.findings) else "[green]fits[/]"
        console.print(f"\n[bold]{t.table}[/] → {t.target_table}: {state}; insertMultiple keys: {t.key_mode}")
        if verbose:
            fields = Table(show_header=True)
            for column in ("label", "element", "sent as"):
                fields.add_column(column, overflow="fold")
            for row in t.fields:
                fields.add_row(Text(row["label"]), Text(row["element"] or row["detail"]), Text(row["sent_as"]))
            console.print(fields)
        if shown:
            console.print(findings_table(f"{t.table}", shown))
    for title, findings in (("Outbound invoices and read access", report.outbound),
                            ("Discovery", report.discovery), ("Dynamics 365", report.d365)):
        shown = findings if verbose else [f for f in findings if f.severity != "info"]
        if shown:
            console.print()
            console.print(findings_table(title, shown))
    blocking = report.blocking
    if blocking:
        console.print(f"\n[red]{len(blocking)} blocking problem(s).[/] `d365-snow sync` will not push to the "
                      "tables above marked BLOCKING; see the README, \"Before the first sync\".")
    else:
        console.print("\n[green]The mapping fits.[/]")


def fit(
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as one JSON document.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every field's resolution.")] = False,
) -> None:
    """Check the mapping against the ServiceNow instance's own schema and F&O's $metadata; writes nothing."""
    settings = settings_for(json_output=json_output)
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    with reported(json_output=json_output):
        try:
            with ServiceNowClient(settings, policy=PING_POLICY) as snow:
                schema = load_schema(snow, warehouse, refresh=True)
            mappings = load_mappings(schema=schema)
            report = fit_servicenow(schema, mappings, warehouse, mapping_context(settings), settings.legal_entities)
            with D365Client(settings, policy=PING_POLICY) as d365:
                report.d365 = fit_d365(d365, mappings, settings.legal_entities)
        except ConnectorError as exc:
            raise CommandError("failed", f"could not read the systems' schemas: {exc.message}") from None
    if json_output:
        emit_json({**report.as_json(), "config": config_json(settings)})
    else:
        console.print(config_line(settings), highlight=False)
        render(report, verbose=verbose)
    if report.blocking:
        raise typer.Exit(EXIT_FAILED)
