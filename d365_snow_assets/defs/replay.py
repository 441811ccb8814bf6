"""``replay_failed``: replay of failed records as a Dagster job, launched from the UI or by ``d365-snow replay``
(either way a run in the instance, with its logs and decisions). The rule is sync/replay.py's."""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from ..sync.replay import ReplayScope, ReplaySummary, replay_to_servicenow
from ..sync.targets import mapping_context
from .resources import ServiceNowResource, WarehouseResource
from .snow_sync.metadata import preview_table

OP_NAME = "replay_failed_records"


class ReplayConfig(dg.Config):
    run_id: str | None = None
    business_key: str | None = None
    since: str | None = None  # ISO 8601, UTC when no offset is given
    all_failed: bool = False
    dry_run: bool = False  # decide and show what would be sent; send nothing


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dg.op(description="Repair failed F&O → ServiceNow records: each one held against the plan a sync would push now, "
                   "sent (as audited, or F&O's newer state) or skipped with the reason; never a stale state.")
def replay_failed_records(context: dg.OpExecutionContext, config: ReplayConfig, snow: ServiceNowResource,
                          warehouse: WarehouseResource) -> Iterator[dg.Output[ReplaySummary]]:
    if not (config.run_id or config.business_key or config.since or config.all_failed):
        raise dg.Failure("say which failures to replay: run_id, business_key, since or all_failed")
    wh = warehouse.open()
    failed = wh.failed_records(run_id=config.run_id, business_key=config.business_key, since=_since(config.since))
    settings = warehouse.settings
    scope = ReplayScope(mapping_context(settings), snow.mappings(wh), snow.instance_schema(wh))
    summary = replay_to_servicenow(failed, snow.client(), wh, scope, context.run.run_id, dry_run=config.dry_run)
    decided = ", ".join(f"{a} {summary.count(a)}" for a in ("resend", "rederive", "skip"))
    context.log.info(f"{'dry run: ' if config.dry_run else ''}{failed.height} failed record(s): {decided}; "
                     f"outcomes {summary.outcomes or 'none'}; not replayable here: {len(summary.not_replayable)}")
    metadata: dict[str, object] = {"failed_records": failed.height, "dry_run": config.dry_run,
                                   **{f"decided_{a}": summary.count(a) for a in ("resend", "rederive", "skip")},
                                   **{f"outcome_{k}": v for k, v in sorted(summary.outcomes.items())}}
    if summary.decisions:
        metadata["decisions"] = preview_table(pl.DataFrame([vars(d) for d in summary.decisions]),
                                              ["business_key", "staging_table", "action", "reason"])
    yield dg.Output(summary, metadata=metadata)
    if summary.outcomes.get("error"):
        raise dg.Failure(f"{summary.outcomes['error']} record(s) failed again; see the audit store",
                         allow_retries=False)


@dg.job(description="Replay failed records from the audit store (like `d365-snow replay`; `dry_run` only shows "
                    "what would be sent).")
def replay_failed() -> None:
    replay_failed_records()
