"""Month-end reconciliation as its own job and schedule, one partition per legal entity and month (DESIGN §5.2).

Kept out of ``invoice_round_trip`` (every 2 minutes under the sensor), whose work must not grow with history: a
partition reads only its month (sync/reconciliation.py). In the UI each legal entity × month is one cell, so
month-end is one materialization per entity and month, with the check ``no_mismatches``.
"""

from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from ...settings import SettingsError, load_settings
from ...sync.invoices import JOUR, VEND_TRANS
from ...sync.reconciliation import reconcile
from ...warehouse.diff import business_key
from ..d365_extract.assets import extract_key
from ..partitions import LEGAL_ENTITY
from ..resources import D365Resource, ServiceNowResource, WarehouseResource
from .assets import PAYMENTS_KEY, POSTED_STATUS_KEY
from .metadata import trace_lines

RECONCILIATION_KEY = dg.AssetKey(["invoices", "reconciliation"])
MISMATCH_CHECK = "no_mismatches"
# The months a partition can name: from before the connector's first release, up to and including the current one
# (a month is reconciled again as it fills). [choice]
MONTH = dg.MonthlyPartitionsDefinition(start_date="2025-01-01", end_offset=1)
LEGAL_ENTITY_MONTH = dg.MultiPartitionsDefinition({"legal_entity": LEGAL_ENTITY, "month": MONTH})
MISMATCH_COLUMNS = ["number", "supplier", "invoice", "problem", "servicenow", "d365"]
TOTAL_COLUMNS = ["sn_processed", "sn_amount", "fno_pending", "fno_posted", "fno_amount", "sn_paid", "fno_paid",
                 "paid_amount", "mismatches"]


def _table(rows: list[dict[str, Any]], columns: list[str]) -> dg.MetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns])
    records = [dg.TableRecord({c: str(r.get(c, ""))[:200] for c in columns}) for r in rows[:200]]
    return dg.MetadataValue.table(records, schema=schema)


@dg.asset(
    key=RECONCILIATION_KEY, deps=[POSTED_STATUS_KEY, PAYMENTS_KEY, extract_key(JOUR), extract_key(VEND_TRANS)],
    group_name="invoices", kinds={"servicenow", "odata"}, partitions_def=LEGAL_ENTITY_MONTH,
    owners=["team:integration"],
    check_specs=[dg.AssetCheckSpec(MISMATCH_CHECK, asset=RECONCILIATION_KEY,
                                   description="Fails when ServiceNow and F&O disagree on any processed invoice of "
                                               "the legal entity dated in the month.")],
    description="Month-end reconciliation of one legal entity and month: every outbound invoice ServiceNow "
                "processed with an invoice date in the month against F&O pending / posted / settled (ERP number, "
                "posting date, amount, paid amount, ServiceNow invoice state); totals and every mismatch listed. "
                "Reads that month only.",
)
def invoice_reconciliation(context: dg.AssetExecutionContext, d365: D365Resource, snow: ServiceNowResource,
                           warehouse: WarehouseResource) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    le, month = keys["legal_entity"], date.fromisoformat(keys["month"])
    wh = warehouse.open()
    result = reconcile(snow.client(), snow.outbound(wh), warehouse.settings.erp_source, d365.client(), wh, le, month)
    check = dg.AssetCheckResult(check_name=MISMATCH_CHECK, passed=not result.mismatches,
                                metadata={"mismatches": len(result.mismatches),
                                          "list": _table(result.mismatches, MISMATCH_COLUMNS)})
    return dg.MaterializeResult(check_results=[check], metadata={
        "dagster/row_count": result.totals["sn_processed"],
        "legal_entity": le.upper(), "month": f"{month:%Y-%m}",
        "mismatches": len(result.mismatches),
        "reconciled_at": dg.MetadataValue.timestamp(datetime.now(UTC)),
        "totals": _table([result.totals], TOTAL_COLUMNS),
        "mismatch_list": _table(result.mismatches, MISMATCH_COLUMNS),
        "trace": trace_lines((business_key([le.upper(), m["supplier"], m["invoice"]]) for m in result.mismatches),
                             "mismatch"),
    })


reconcile_invoices = dg.define_asset_job(
    "reconcile_invoices", selection=[RECONCILIATION_KEY], partitions_def=LEGAL_ENTITY_MONTH,
    description="Month-end reconciliation of one legal entity and one month (partition legal_entity|month).")


def previous_month(today: date) -> date:
    return date(today.year - (today.month == 1), (today.month - 2) % 12 + 1, 1)


@dg.schedule(
    name="reconcile_invoices_monthly", job=reconcile_invoices, cron_schedule="0 6 2 * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="On the 2nd of each month at 06:00 UTC: the previous month of every configured legal entity (a "
                "day after month end, for the last postings of the month to arrive).",
)
def reconcile_invoices_monthly(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
    try:
        legal_entities = load_settings(require=None).legal_entities
    except SettingsError as exc:
        return dg.SkipReason(f"configuration problem: {exc}")
    # Partitions exist for the legal entities a sync registered; one nobody synced has nothing to reconcile.
    known = set(context.instance.get_dynamic_partitions(LEGAL_ENTITY.name or "legal_entity"))
    month = previous_month((context.scheduled_execution_time or datetime.now(UTC)).date())
    requests = [dg.RunRequest(run_key=f"{le}:{month:%Y-%m}",
                              partition_key=dg.MultiPartitionKey({"legal_entity": le, "month": month.isoformat()}))
                for le in legal_entities if le in known]
    return requests or dg.SkipReason("no configured legal entity has been synced yet")
