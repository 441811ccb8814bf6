"""Extract assets: stream one F&O entity into a DuckDB snapshot, page by page."""


import time

import dagster as dg

from ...sync.mass_change import MAX_COUNT, MAX_SHARE, extract_suspicion, targets_reading
from ...sync.targets import SHARED, load_mappings
from ..failures import fail_fast_on_configuration
from ..partitions import LEGAL_ENTITY
from ..resources import D365Resource, MassChangeResource, WarehouseResource
from .specs import EXTRACTS, ExtractSpec

EXTRACT_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
COMPLETE_CHECK = "extract_looks_complete"


def extract_key(entity_set: str) -> dg.AssetKey:
    return dg.AssetKey(["d365", entity_set])


def build_extract_asset(spec: ExtractSpec) -> dg.AssetsDefinition:
    key = extract_key(spec.entity_set)
    readers = targets_reading(spec.entity_set)

    @dg.asset(
        key=key,
        group_name="d365_extract",
        kinds={"odata", "duckdb"},
        partitions_def=LEGAL_ENTITY if spec.per_company else None,
        description=spec.description,
        owners=["team:integration"],
        tags={"direction": "d365_to_snow", "system": "d365"},
        retry_policy=EXTRACT_RETRY,
        metadata={"odata_entity_set": spec.entity_set, "key_columns": ", ".join(spec.key_columns)},
        check_specs=[dg.AssetCheckSpec(
            COMPLETE_CHECK, asset=key, blocking=True,
            description="F&O's answer looks like the whole entity: not empty where the current snapshot has rows, "
                        f"not more than {MAX_SHARE:.0%} (and {MAX_COUNT}) rows fewer. Otherwise it is what lost "
                        "read access looks like: the current snapshot stays (validation and plans keep using it) "
                        "and nothing downstream runs, unless the run accepts a mass change of "
                        f"{' or '.join(readers) or 'a target reading it'} (`d365-snow sync --accept-deactivations`).")],
    )
    @fail_fast_on_configuration
    def _extract(context: dg.AssetExecutionContext, d365: D365Resource, warehouse: WarehouseResource,
                 mass_change: MassChangeResource) -> dg.MaterializeResult:
        legal_entity = context.partition_key if spec.per_company else None
        acceptance = mass_change.acceptance()
        accepted = acceptance is not None and any(acceptance.covers(t) for t in readers)
        started = time.monotonic()
        pages = spec.pages(d365.client(), legal_entity, load_mappings())
        info = warehouse.open().write_snapshot(spec.entity_set, legal_entity or SHARED, pages, spec.key_columns,
                                               sane=None if accepted else extract_suspicion)
        seconds = time.monotonic() - started
        unchanged = " (unchanged since the last extraction: snapshot kept)" if info.unchanged_bodies else ""
        scope = legal_entity or "all companies"
        context.log.info(f"{spec.entity_set} ({scope}): {info.rows} rows in {seconds:.1f} s{unchanged}")
        check = dg.AssetCheckResult(
            check_name=COMPLETE_CHECK, passed=info.held_back is None,
            metadata={"rows_answered": info.rows if info.offered_rows is None else info.offered_rows,
                      "rows_current_snapshot": info.rows, "accepted_mass_change": accepted},
            description=(f"{spec.entity_set} ({scope}): {info.held_back}; the current snapshot stays until F&O "
                         "answers in full again or the change is accepted." if info.held_back else None))
        return dg.MaterializeResult(check_results=[check], metadata={
            "dagster/row_count": info.rows,
            "legal_entity": legal_entity or "all (shared)",
            "snapshot_id": info.snapshot_id,
            "duplicate_keys_dropped": info.duplicates,
            # The snapshot swap is a delta: these are the rows it wrote and deleted (0 and 0 when nothing changed).
            "rows_new_or_changed": info.written,
            "rows_removed": info.removed,
            # True when F&O's pages matched the current snapshot's byte for byte: nothing was parsed or rewritten.
            "unchanged_since_last_extraction": info.unchanged_bodies,
            "seconds": round(seconds, 2),
            "rows_per_second": int(info.rows / seconds) if seconds else 0,
            "extracted_at": dg.MetadataValue.timestamp(info.extracted_at),
        })

    return _extract


extract_assets = [build_extract_asset(spec) for spec in EXTRACTS]
