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
        partitions_def=LEGAL_ENTITY if spec.per_company and not spec.all_companies else None,
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
        if spec.all_companies:
            companies: list[str | None] = list(warehouse.settings.legal_entities)
        else:
            companies = [context.partition_key if spec.per_company else None]
        acceptance = mass_change.acceptance()
        accepted = acceptance is not None and any(acceptance.covers(t) for t in readers)
        started = time.monotonic()
        mappings = load_mappings()
        infos = []
        for legal_entity in companies:
            pages = spec.pages(d365.client(), legal_entity, mappings)
            info = warehouse.open().write_snapshot(spec.entity_set, legal_entity or SHARED, pages, spec.key_columns,
                                                   sane=None if accepted else extract_suspicion)
            unchanged = " (unchanged since the last extraction: snapshot kept)" if info.unchanged_bodies else ""
            context.log.info(f"{spec.entity_set} ({legal_entity or 'all companies'}): {info.rows} rows{unchanged}")
            infos.append(info)
        seconds = time.monotonic() - started
        rows = sum(i.rows for i in infos)
        held = [f"{(i.legal_entity or 'all companies').upper()}: {i.held_back}" for i in infos if i.held_back]
        check = dg.AssetCheckResult(
            check_name=COMPLETE_CHECK, passed=not held,
            metadata={"rows_answered": sum(i.rows if i.offered_rows is None else i.offered_rows for i in infos),
                      "rows_current_snapshot": rows, "accepted_mass_change": accepted},
            description=(f"{spec.entity_set}: {'; '.join(held)}; the current snapshot stays until F&O answers in "
                         "full again or the change is accepted." if held else None))
        return dg.MaterializeResult(check_results=[check], metadata={
            "dagster/row_count": rows,
            "legal_entity": ", ".join(c.upper() for c in companies if c) or "all (shared)",
            "snapshot_id": ", ".join(i.snapshot_id for i in infos),
            "duplicate_keys_dropped": sum(i.duplicates for i in infos),
            # The snapshot swap is a delta: these are the rows it wrote and deleted (0 and 0 when nothing changed).
            "rows_new_or_changed": sum(i.written for i in infos),
            "rows_removed": sum(i.removed for i in infos),
            # True when F&O's pages matched the current snapshot's byte for byte: nothing was parsed or rewritten.
            "unchanged_since_last_extraction": all(i.unchanged_bodies for i in infos),
            "seconds": round(seconds, 2),
            "rows_per_second": int(rows / seconds) if seconds else 0,
            "extracted_at": dg.MetadataValue.timestamp(max(i.extracted_at for i in infos)),
        })

    return _extract


extract_assets = [build_extract_asset(spec) for spec in EXTRACTS]
