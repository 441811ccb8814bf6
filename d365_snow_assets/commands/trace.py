"""``d365-snow trace KEY``: the history of one business record across both systems."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import polars as pl
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..clients.errors import ConnectorError
from ..clients.servicenow import ServiceNowClient
from ..paths import StatePaths
from ..settings import ConnectorSettings, SettingsError
from ..warehouse import Warehouse, state
from .output import CommandError, emit_json, reported, settings_for

console = Console()
err = Console(stderr=True)

# Compact enough for an 80-column terminal; the full rows stay in the audit store (and the Dagster run).
_COLUMNS = {"at": 19, "run_id": 8, "attempt": 2, "outcome": 8, "target_id": 12, "message": 0}
# The instance's column names are its own (discovery): show when the record changed and its first few filled fields.
_LIVE_FIELDS = 6


@dataclass
class Trace:
    """What ``trace`` found for one key: its audit history, its pushed state per target, and ServiceNow now."""

    key: str
    history: pl.DataFrame
    pushed: list[dict[str, Any]] = field(default_factory=list)
    now: dict[str, dict[str, str]] = field(default_factory=dict)  # target table → shown fields of the record
    live_error: str | None = None


def trace(
    key: Annotated[str, typer.Argument(metavar="KEY", help="Business key as audited, e.g. 'D365FO|USMF|USMF-000001' "
                                                           "(coalesce values joined by |) or 'usmf|V0001|INV-1' for "
                                                           "an invoice.")],
    no_live: Annotated[bool, typer.Option("--no-live", help="Do not read the record's current state from "
                                                            "ServiceNow.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the history as one JSON document.")] = False,
) -> None:
    """Every run, request outcome and target id of one record, oldest first, and where it stands now."""
    settings = settings_for(json_output=json_output, require=None)
    with reported(json_output=json_output):
        found = _trace(settings, key, live=not no_live)
    if json_output:
        emit_json({"ok": True, "error": None, "key": key,
                   "history": [_jsonable(row) for row in found.history.iter_rows(named=True)],
                   "pushed_state": [_jsonable(row) for row in found.pushed],
                   "servicenow_now": found.now, "servicenow_error": found.live_error})
        return
    _print(found)


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _trace(settings: ConnectorSettings, key: str, *, live: bool) -> Trace:
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    history = warehouse.audit_for_key(key)
    if history.height == 0:
        with warehouse.reader() as con:
            close = [r[0] for r in con.execute(
                "SELECT DISTINCT business_key FROM audit WHERE business_key ILIKE ? ORDER BY 1 LIMIT 5",
                [f"%{key}%"]).fetchall()]
        raise CommandError("not_found", f"No audit rows for {key!r}." + (
            " Did you mean: " + ", ".join(close) + "?" if close else ""))
    found = Trace(key, history)
    for entity in history.get_column("entity").unique(maintain_order=True):
        with warehouse.reader() as con:
            pushed = state.pushed_state(con, entity).filter(business_key=key)
        if pushed.height:
            last = pushed.row(0, named=True)
            found.pushed.append({"target": entity, **last})
            if live and last["target_id"] and settings.snow_url:
                _read_live(settings, found, entity, last["target_id"])
    return found


def _read_live(settings: ConnectorSettings, found: Trace, table_name: str, sys_id: str) -> None:
    try:
        with ServiceNowClient(settings) as client:
            record = client.get_record(table_name, sys_id)
    except (ConnectorError, SettingsError) as exc:
        found.live_error = str(exc)
        return
    filled = [k for k, v in record.items() if v not in ("", None) and not k.startswith("sys_")][:_LIVE_FIELDS]
    found.now[table_name] = {k: record[k] for k in ("sys_updated_on", *filled) if k in record}


def _print(found: Trace) -> None:
    history = found.history
    entities = ", ".join(history.get_column("entity").unique(maintain_order=True).drop_nulls())
    table = Table(title=f"History of {escape(found.key)} ({escape(entities)})", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for column, width in _COLUMNS.items():
        table.add_column("#" if column == "attempt" else column.removesuffix("_id"), overflow="fold",
                         no_wrap=bool(width), max_width=width or None)
    for row in history.iter_rows(named=True):
        cells = {c: "" if row[c] is None else str(row[c]) for c in _COLUMNS}
        cells["at"] = cells["at"][:19]
        table.add_row(*(Text(v[:w] if w else v) for (c, w), v in zip(_COLUMNS.items(), cells.values(), strict=True)))
    console.print(table)
    for last in found.pushed:
        console.print(Text(f"Pushed state in {last['target']}: {last['outcome']} at {last['pushed_at']}, ServiceNow "
                           f"sys_id {last['target_id'] or '?'}" + (" (deactivated: gone from F&O)"
                                                                   if last["deactivated"] else "")))
        now = found.now.get(last["target"])
        if now is not None:
            console.print(Text(f"ServiceNow now ({last['target']}/{last['target_id']}): "
                               + ", ".join(f"{k}={v}" for k, v in now.items())))
    if found.live_error:
        err.print(Text(f"Could not read it from ServiceNow now: {found.live_error}"))
