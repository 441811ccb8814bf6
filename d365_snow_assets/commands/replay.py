"""``d365-snow replay``: repair failed records from the audit store, as a run of the Dagster job ``replay_failed``
(so it shows in the UI with the other runs)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..defs.replay import OP_NAME
from ..mapping import MappingError
from ..settings import SettingsError, load_settings
from ..sync.replay import ReplaySummary
from ..sync.targets import load_mappings
from .runs import launch, load_definitions, open_instance

console = Console(stderr=True)
JOB = "replay_failed"


def replay(
    run: Annotated[str | None, typer.Option("--run", help="Only failures of this run id.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this business key (see `d365-snow trace`).")] = None,
    since: Annotated[datetime | None, typer.Option("--since", help="Only failures at or after this time (UTC).")]
    = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every record whose last attempt failed.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent, and why; send nothing.")]
    = False,
) -> None:
    """Repair failed records: each is sent again only while it is still F&O's current state (else F&O's newer
    state is sent, or it is skipped with the reason), through the same idempotent path; audited as a new attempt."""
    if not (run or key or since or all_failed):
        console.print("Say which failures to replay: --run, --key, --since or --all-failed.")
        raise typer.Exit(2)
    try:
        settings = load_settings(require=("snow",))
        load_mappings()  # a typo in a [mapping] override fails here, not inside the run
    except (SettingsError, MappingError) as exc:
        console.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    config: dict[str, Any] = {"run_id": run, "business_key": key, "all_failed": all_failed, "dry_run": dry_run,
                              "since": (since if since.tzinfo else since.replace(tzinfo=UTC)).isoformat()
                              if since else None}
    result = launch(load_definitions(), open_instance(settings), JOB,
                    run_config={"ops": {OP_NAME: {"config": config}}})
    summary = _summary(result)
    if summary is None:
        console.print(f"[red]The replay run {result.run_id} failed before it could decide anything;[/] see it in "
                      "the Dagster UI.")
        raise typer.Exit(1)
    _print(summary, result.run_id)
    if not result.success:
        raise typer.Exit(1)


def _summary(result: Any) -> ReplaySummary | None:
    try:
        return result.output_for_node(OP_NAME)
    except Exception:  # no output: the run failed before the op yielded it (Dagster raises a plain error)
        return None


def _print(summary: ReplaySummary, run_id: str) -> None:
    if not summary.decisions and not summary.not_replayable:
        console.print("Nothing to replay: no failed record matches (records that later succeeded, or whose newer "
                      "state a later run planned, are not failed).")
        return
    if summary.decisions:
        table = Table(title="Dry run: what a replay would do" if summary.dry_run else f"Replay run {run_id}")
        for column in ("record", "staging table", "action", "why"):
            table.add_column(column)
        for d in summary.decisions:
            table.add_row(escape(d.business_key), d.staging_table, d.action, escape(d.reason))
        Console().print(table)
    if not summary.dry_run:
        console.print(f"Replayed as run {run_id}: "
                      + (", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "nothing sent"))
    for business_key in summary.not_replayable:
        console.print(f"[yellow]not replayed:[/] {escape(business_key)} (invoice records are retried by the next "
                      "sync, which looks the invoice up by its natural key first)")
