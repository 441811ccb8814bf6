"""``d365-snow replay``: re-send failed records from the audit store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..clients.servicenow import ServiceNowClient
from ..paths import StatePaths
from ..sync.replay import ReplaySummary, replay_to_servicenow
from ..sync.targets import load_mappings
from ..warehouse import Warehouse
from .output import CommandError, emit_json, fail, reported, settings_for
from .summary import OUTCOME_ORDER

console = Console(stderr=True)


def replay_json(summary: ReplaySummary, replay_run: str | None) -> dict[str, Any]:
    """The documented ``replay --json`` shape: every outcome present, zeros included."""
    counts = {outcome: summary.outcomes.get(outcome, 0) for outcome in OUTCOME_ORDER}
    return {"ok": not counts["error"], "error": {"kind": "failed", "message": f"{counts['error']} record(s) failed "
                                                 "again; see `d365-snow trace`"} if counts["error"] else None,
            "replay_run": replay_run, "replayed": sum(counts.values()), "outcomes": counts,
            "not_replayed": summary.not_replayable}


def replay(
    run: Annotated[str | None, typer.Option("--run", metavar="RUN_ID", help="Only failures of this run id.")] = None,
    key: Annotated[str | None, typer.Option("--key", metavar="KEY", help="Only this business key (see `d365-snow "
                                                                         "trace`).")] = None,
    since: Annotated[datetime | None, typer.Option("--since", metavar="TIME", help="Only failures at or after this "
                                                                                   "time (UTC).")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every record whose last attempt failed.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document.")] = False,
) -> None:
    """Re-send failed records exactly as audited, through the same idempotent path; audit the new attempt."""
    chosen = [name for name, value in (("--run", run), ("--key", key), ("--since", since),
                                       ("--all-failed", all_failed)) if value]
    if len(chosen) != 1:
        fail(CommandError("usage", "Give exactly one of --run, --key, --since or --all-failed to say which failures "
                                   "to replay" + (f" (got {' and '.join(chosen)})." if chosen else ".")),
             json_output=json_output)
    settings = settings_for(json_output=json_output, require=("snow",))
    with reported(json_output=json_output):
        mappings = load_mappings()
        warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
        if run and warehouse.audit_for_run(run).height == 0:
            raise CommandError("usage", f"Unknown run {run!r}: no audit row carries this run id (`d365-snow sync` "
                                        f"prints the run ids, and so does the Dagster UI).")
    failed = warehouse.failed_records(run_id=run, business_key=key,
                                      since=since.replace(tzinfo=UTC) if since and not since.tzinfo else since)
    if failed.height == 0:
        if json_output:
            emit_json(replay_json(ReplaySummary(), None))
        else:
            console.print("Nothing to replay: no failed record matches (records that later succeeded are not "
                          "failed).")
        return
    replay_run = f"replay-{uuid.uuid4()}"
    with ServiceNowClient(settings) as client:
        summary = replay_to_servicenow(failed, client, warehouse, mappings, replay_run)
    report = replay_json(summary, replay_run)
    if json_output:
        emit_json(report)
    else:
        console.print(f"Replayed {report['replayed']} record(s) as {replay_run}: "
                      + (", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "none sent"))
        for business_key in summary.not_replayable:
            console.print(f"[yellow]not replayed:[/] {escape(business_key)} (invoice records are retried by the "
                          "next sync, which looks the invoice up by its natural key first)")
    if not report["ok"]:
        raise typer.Exit(1)
