"""``replay_failed``: the CLI's ``d365-snow replay`` as a Dagster job, for operators who work in the UI."""

from datetime import datetime

import dagster as dg

from ..sync.replay import replay_to_servicenow
from ..sync.targets import load_mappings
from .resources import ServiceNowResource, WarehouseResource


class ReplayConfig(dg.Config):
    run_id: str | None = None
    business_key: str | None = None
    since: str | None = None  # ISO 8601, UTC when no offset is given
    all_failed: bool = False


@dg.op(description="Re-send failed F&O → ServiceNow records exactly as audited; audit the new attempt.")
def replay_failed_records(context: dg.OpExecutionContext, config: ReplayConfig, snow: ServiceNowResource,
                          warehouse: WarehouseResource) -> None:
    if not (config.run_id or config.business_key or config.since or config.all_failed):
        raise dg.Failure("say which failures to replay: run_id, business_key, since or all_failed")
    since = datetime.fromisoformat(config.since) if config.since else None
    wh = warehouse.open()
    failed = wh.failed_records(run_id=config.run_id, business_key=config.business_key, since=since)
    if failed.height == 0:
        context.log.info("nothing to replay")
        return
    summary = replay_to_servicenow(failed, snow.client(), wh, load_mappings(), context.run.run_id)
    context.log.info(f"replayed: {summary.outcomes}; not replayable here: {len(summary.not_replayable)}")
    if summary.outcomes.get("error"):
        raise dg.Failure(f"{summary.outcomes['error']} record(s) failed again; see the audit store")


@dg.job(description="Replay failed records from the audit store (like `d365-snow replay`).")
def replay_failed() -> None:
    replay_failed_records()
