"""``d365-snow trace KEY``: the history of one business record across both systems."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..clients.errors import ConnectorError
from ..clients.servicenow import ServiceNowClient
from ..paths import StatePaths
from ..settings import SettingsError, load_settings
from ..warehouse import Warehouse, state

console = Console()
err = Console(stderr=True)

# Compact enough for an 80-column terminal; the full rows stay in the audit store (and the Dagster run).
_COLUMNS = {"at": 19, "run_id": 8, "attempt": 2, "outcome": 8, "target_id": 12, "message": 0}


def trace(
    key: Annotated[str, typer.Argument(help="Business key as audited, e.g. 'D365FO|USMF|USMF-000001' (coalesce "
                                            "values joined by |) or 'usmf|V0001|INV-1' for an invoice.")],
    live: Annotated[bool, typer.Option(help="Also read the record's current state in ServiceNow.")] = True,
) -> None:
    """Every run, request outcome and target id of one record, oldest first, and where it stands now."""
    try:
        settings = load_settings(require=None)
    except SettingsError as exc:
        err.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    history = warehouse.audit_for_key(key)
    if history.height == 0:
        with warehouse.reader() as con:
            close = [r[0] for r in con.execute(
                "SELECT DISTINCT business_key FROM audit WHERE business_key ILIKE ? ORDER BY 1 LIMIT 5",
                [f"%{key}%"]).fetchall()]
        err.print(f"No audit rows for {escape(key)!r}." + (" Did you mean: " + ", ".join(map(escape, close))
                                                          if close else ""))
        raise typer.Exit(1)
    entities = ", ".join(history.get_column("entity").unique(maintain_order=True).drop_nulls())
    table = Table(title=f"History of {escape(key)} ({escape(entities)})")
    for column, width in _COLUMNS.items():
        table.add_column("#" if column == "attempt" else column.removesuffix("_id"), overflow="fold",
                         no_wrap=bool(width), max_width=width or None)
    for row in history.iter_rows(named=True):
        cells = {c: "" if row[c] is None else str(row[c]) for c in _COLUMNS}
        cells["at"] = cells["at"][:19]
        table.add_row(*(Text(v[:w] if w else v) for (c, w), v in zip(_COLUMNS.items(), cells.values(), strict=True)))
    console.print(table)
    for entity in history.get_column("entity").unique(maintain_order=True):
        with warehouse.reader() as con:
            pushed = state.pushed_state(con, entity).filter(business_key=key)
        if pushed.height:
            last = pushed.row(0, named=True)
            console.print(f"Pushed state in {entity}: {last['outcome']} at {last['pushed_at']}, "
                          f"ServiceNow sys_id {last['target_id'] or '?'}"
                          + (" (deactivated: gone from F&O)" if last["deactivated"] else ""))
            if live and last["target_id"] and settings.snow_url:
                _show_live(settings, entity, last["target_id"])


def _show_live(settings: object, table_name: str, sys_id: str) -> None:
    try:
        with ServiceNowClient(settings) as client:  # type: ignore[arg-type]
            record = client.get_record(table_name, sys_id)
    except (ConnectorError, SettingsError) as exc:
        err.print(f"[yellow]Could not read it from ServiceNow now:[/] {escape(str(exc))}")
        return
    fields = [k for k, v in record.items() if v not in ("", None) and not k.startswith("sys_")][:6]
    shown = {k: record[k] for k in ("sys_updated_on", *fields) if k in record}
    console.print(f"ServiceNow now ({table_name}/{sys_id}): " + escape(", ".join(f"{k}={v}" for k, v in shown.items())))
