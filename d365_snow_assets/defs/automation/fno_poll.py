"""Poll F&O on an interval: reference data, then every configured legal entity.

Neither system can push changes to us (DESIGN §1), so F&O is polled. A sensor rather than a schedule because only
a sensor can register the configured legal entities as partitions before requesting their runs.
"""

import time

import dagster as dg

from ...settings import SettingsError, load_settings
from ..jobs import sync_legal_entity, sync_reference_data
from ..partitions import LEGAL_ENTITY
from .active import active_partitions

POLL_INTERVAL_S = 30 * 60  # master data changes slowly; F&O's service protection favours few, large reads


@dg.sensor(
    name="fno_poll",
    jobs=[sync_reference_data, sync_legal_entity],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Every 30 minutes: GL accounts and cost centers, then vendors, purchase orders and lines of each "
                "configured legal entity, F&O → ServiceNow. Skips a legal entity whose previous run is still going.",
)
def fno_poll(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    try:
        settings = load_settings(require=None)
    except SettingsError as exc:
        return dg.SkipReason(f"configuration problem: {exc}")
    legal_entities, tags = settings.legal_entities, settings.run_tags()
    if not legal_entities:
        return dg.SkipReason("no legal entities configured (D365SNOW_LEGAL_ENTITIES)")
    # One window per interval: every request of a window has the same run key, so a re-evaluated tick (or two
    # daemons) can never launch the same sync twice.
    window = int(time.time() // POLL_INTERVAL_S)
    known = set(context.instance.get_dynamic_partitions(LEGAL_ENTITY.name or "legal_entity"))
    requests = []
    if None not in active_partitions(context.instance, sync_reference_data.name):
        requests.append(dg.RunRequest(run_key=f"reference_data:{window}", job_name=sync_reference_data.name,
                                      tags=tags))
    busy = active_partitions(context.instance, sync_legal_entity.name)
    requests += [dg.RunRequest(run_key=f"{le}:{window}", job_name=sync_legal_entity.name, partition_key=le,
                               tags=tags) for le in legal_entities if le not in busy]
    new = [le for le in legal_entities if le not in known]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[LEGAL_ENTITY.build_add_request(new)] if new else None,
        skip_reason=None if requests else "every job of this window is still running",
    )
