"""``d365-snow replay``: re-send failed records from the audit store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..clients.servicenow import ServiceNowClient
from ..mapping import MappingError
from ..paths import StatePaths
from ..settings import SettingsError, load_settings
from ..sync.replay import replay_to_servicenow
from ..sync.targets import load_mappings
from ..warehouse import Warehouse

console = Console(stderr=True)


def replay(
    run: Annotated[str | None, typer.Option("--run", help="Only failures of this run id.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this business key (see `d365-snow trace`).")] = None,
    since: Annotated[datetime | None, typer.Option("--since", help="Only failures at or after this time (UTC).")]
    = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every record whose last attempt failed.")] = False,
) -> None:
    """Re-send failed records exactly as audited, through the same idempotent path; audit the new attempt."""
    if not (run or key or since or all_failed):
        console.print("Say which failures to replay: --run, --key, --since or --all-failed.")
        raise typer.Exit(2)
    try:
        settings = load_settings(require=("snow",))
        mappings = load_mappings()
    except (SettingsError, MappingError) as exc:
        console.print(f"[red]Configuration problem:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
    failed = warehouse.failed_records(run_id=run, business_key=key,
                                      since=since.replace(tzinfo=UTC) if since and not since.tzinfo else since)
    if failed.height == 0:
        console.print("Nothing to replay: no failed record matches (records that later succeeded are not failed).")
        return
    replay_run = f"replay-{uuid.uuid4()}"
    with ServiceNowClient(settings) as client:
        summary = replay_to_servicenow(failed, client, warehouse, mappings, replay_run)
    console.print(f"Replayed {sum(summary.outcomes.values())} record(s) as {replay_run}: "
                  + (", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "none sent"))
    for business_key in summary.not_replayable:
        console.print(f"[yellow]not replayed:[/] {escape(business_key)} (invoice records are retried by the next "
                      "sync, which looks the invoice up by its natural key first)")
    if summary.outcomes.get("error"):
        raise typer.Exit(1)
