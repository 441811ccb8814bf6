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
from ..paths import StatePaths
from ..sync.replay import ReplaySummary
from ..sync.targets import load_mappings
from ..warehouse import Warehouse
from .output import CommandError, emit_json, fail, reported, settings_for
from .runs import launch, load_definitions, open_instance
from .summary import OUTCOME_ORDER

console = Console(stderr=True)
JOB = "replay_failed"


def replay_json(summary: ReplaySummary, replay_run: str | None) -> dict[str, Any]:
    """The documented ``replay --json`` shape: every outcome present, zeros included, and each decision."""
    counts = {outcome: summary.outcomes.get(outcome, 0) for outcome in OUTCOME_ORDER}
    return {"ok": not counts["error"], "error": {"kind": "failed", "message": f"{counts['error']} record(s) failed "
                                                 "again; see `d365-snow trace`"} if counts["error"] else None,
            "replay_run": replay_run, "dry_run": summary.dry_run, "replayed": sum(counts.values()),
            "outcomes": counts, "decisions": [vars(d) for d in summary.decisions],
            "not_replayed": summary.not_replayable}


def replay(
    run: Annotated[str | None, typer.Option("--run", metavar="RUN_ID", help="Only failures of this run id.")] = None,
    key: Annotated[str | None, typer.Option("--key", metavar="KEY", help="Only this business key (see `d365-snow "
                                                                         "trace`).")] = None,
    since: Annotated[datetime | None, typer.Option("--since", metavar="TIME", help="Only failures at or after this "
                                                                                   "time (UTC).")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Every record whose last attempt failed.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent, and why; send nothing.")]
    = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as one JSON document.")] = False,
) -> None:
    """Repair failed records: each is sent again only while it is still F&O's current state (else F&O's newer
    state is sent, or it is skipped with the reason), through the same idempotent path; audited as a new attempt,
    in a run of the Dagster job ``replay_failed``."""
    chosen = [name for name, value in (("--run", run), ("--key", key), ("--since", since),
                                       ("--all-failed", all_failed)) if value]
    if len(chosen) != 1:
        fail(CommandError("usage", "Give exactly one of --run, --key, --since or --all-failed to say which failures "
                                   "to replay" + (f" (got {' and '.join(chosen)})." if chosen else ".")),
             json_output=json_output)
    settings = settings_for(json_output=json_output, require=("snow",))
    since = since.replace(tzinfo=UTC) if since and not since.tzinfo else since
    with reported(json_output=json_output):
        load_mappings()  # a typo in a [mapping] override fails here, not inside the run
        warehouse = Warehouse(StatePaths(settings.home).ensure().warehouse)
        if run and warehouse.audit_for_run(run).height == 0:
            raise CommandError("usage", f"Unknown run {run!r}: no audit row carries this run id (`d365-snow sync` "
                                        f"prints the run ids, and so does the Dagster UI).")
        matching = warehouse.failed_records(run_id=run, business_key=key, since=since).height
    if matching == 0:  # no run for nothing: the UI's run list stays about work done
        if json_output:
            emit_json(replay_json(ReplaySummary(dry_run=dry_run), None))
        else:
            console.print("Nothing to replay: no failed record matches (records that later succeeded are not "
                          "failed).")
        return
    config: dict[str, Any] = {"run_id": run, "business_key": key, "all_failed": all_failed, "dry_run": dry_run,
                              "since": since.isoformat() if since else None}
    result = launch(load_definitions(), open_instance(settings), JOB,
                    run_config={"ops": {OP_NAME: {"config": config}}})
    summary = _summary(result)
    if summary is None:
        fail(CommandError("failed", f"The replay run {result.run_id} failed before it could decide anything; see "
                                    "it in the Dagster UI."), json_output=json_output)
    if json_output:
        emit_json(replay_json(summary, result.run_id))
    else:
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
