"""Invoice round-trip assets, one partition per legal entity:

``servicenow_in/sn_spend_intg_outbound_invoice`` (poll) → ``invoices/posting`` (validate, post to F&O, write back)
→ ``d365/VendInvoiceJourBiEntities`` + ``d365/VendTransBiEntities`` (incremental) → ``invoices/posted_status`` and
``servicenow/sn_shop_invoice_payment_detail``. The month-end reconciliation is ``reconciliation.py``.
"""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl

from ...discovery.outbound import OutboundFields
from ...invoices.adapters import D365Ledger, ServiceNowOutbound, ServiceNowStatusWriter
from ...invoices.model import HEADER_TABLE, LINE_TABLE
from ...invoices.run import InvoicePoll, InvoiceRun, RunContext, poll_invoices, post_polled
from ...sync.invoices import JOUR, PAYMENT_MAPPING, VEND_TRANS, extract_incremental, push_payments, update_posted_status
from ...sync.push import AuditContext
from ...sync.targets import mapping_context
from ...warehouse import ExclusiveBusy, Warehouse
from ...warehouse.state import BUSINESS_KEY
from ..d365_extract.assets import extract_key
from ..partitions import LEGAL_ENTITY
from ..resources import D365Resource, ServiceNowResource, WarehouseResource
from ..snow_sync.metadata import preview_table
from .metadata import counts, trace_lines

POLL_KEY = dg.AssetKey(["servicenow_in", HEADER_TABLE])
POSTING_KEY = dg.AssetKey(["invoices", "posting"])
POSTED_STATUS_KEY = dg.AssetKey(["invoices", "posted_status"])
PAYMENTS_KEY = dg.AssetKey(["servicenow", PAYMENT_MAPPING.target_table])
REFERENCE_DEPS = [extract_key(e) for e in ("VendorsV2", "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2",
                                           "MainAccounts", "FinancialDimensionValues")]
_TAGS = {"direction": "snow_to_d365"}
# How long a run waits before it looks up again the invoice headers whose creation F&O did not confirm (a lost
# answer): long enough for a write that was still committing to show, short next to a run. [choice]
RECHECK_AFTER_S = 10.0
INVOICE_OUTCOMES = ("created", "reused", "posted", "skipped", "rejected", "error")


def _outbound(snow: ServiceNowResource, wh: Warehouse) -> OutboundFields:
    """How this instance's outbound invoices are read; a field the flow cannot do without stops it at once."""
    out = snow.outbound(wh)
    blocking = [f.message for f in out.findings if f.severity == "blocking"]
    if blocking:
        raise dg.Failure(description="The outbound invoice tables of this ServiceNow instance do not fit the "
                                     "connector: " + " ".join(blocking) + " Run `d365-snow fit` for the report.",
                         allow_retries=False)
    return out


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> dg.MetadataValue:
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(
        schema={c: pl.String for c in (columns or ["none"])})
    return preview_table(frame, columns or list(frame.columns))


@dg.asset(
    key=POLL_KEY, group_name="snow_extract", kinds={"servicenow", "duckdb"}, partitions_def=LEGAL_ENTITY,
    owners=["team:integration"], tags=_TAGS,
    description="Approved invoices waiting for F&O: `sn_spend_intg_outbound_invoice` (+ lines) with "
                "integration_status `new` after the keyset cursor, every `in_progress` one (a stopped attempt) and "
                "those on the retry list; snapshotted in DuckDB. The cursor moves only when the posting asset has "
                "committed its work, and never past an invoice whose outcome is not final.",
)
def outbound_invoices(context: dg.AssetExecutionContext, snow: ServiceNowResource,
                      warehouse: WarehouseResource) -> dg.Output[InvoicePoll]:
    le = context.partition_key
    wh = warehouse.open()
    poll = poll_invoices(ServiceNowOutbound(snow.client(), _outbound(snow, wh), snow.settings.erp_source), wh, le)
    # ServiceNow's legal_entity column would clash with the snapshot's own legal_entity metadata column.
    headers = [{("sn_legal_entity" if k == "legal_entity" else k): v for k, v in r.items()} for r in poll.headers]
    wh.write_snapshot(HEADER_TABLE, le, [headers] if headers else [], ("sys_id",))
    wh.write_snapshot(LINE_TABLE, le, [poll.lines] if poll.lines else [], ("sys_id",))
    context.log.info(f"{le.upper()}: {len(poll.headers)} invoices, {len(poll.lines)} lines ({poll.sources})")
    metadata: dict[str, Any] = {"dagster/row_count": len(poll.headers), "lines": len(poll.lines),
                                **{f"selected_{k}": poll.sources.get(k, 0) for k in ("new", "in_progress", "retry")},
                                "cursor": str(poll.start or "")}
    metadata["preview"] = _table(poll.headers, ["number", "supplier", "supplier_invoice_number", "amount_invoiced",
                                                "integration_status"])
    return dg.Output(poll, metadata=metadata)


@dg.asset(
    key=POSTING_KEY, ins={"poll": dg.AssetIn(POLL_KEY)}, deps=REFERENCE_DEPS, group_name="invoices",
    kinds={"odata", "servicenow"}, partitions_def=LEGAL_ENTITY, owners=["team:integration"], tags=_TAGS,
    description="Every polled invoice validated against the F&O snapshots (all problems collected); valid ones "
                "created in F&O as pending vendor invoices (header, then lines) through the natural-key lookup of "
                "DESIGN §5.2, never twice and never over a posted one; ServiceNow written back (`processed` + "
                "erp_number, or `error` + a message for the AP clerk); every invoice and line audited. One run "
                "at a time per legal entity: a second one waits, then posts only what still waits. Fails when an "
                "invoice's outcome is not final (F&O or ServiceNow unreachable): the next run takes it up.",
)
def invoice_posting(context: dg.AssetExecutionContext, poll: InvoicePoll, d365: D365Resource,
                    snow: ServiceNowResource, warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    le = context.partition_key
    wh = warehouse.open()

    def waiting(owner: str, waited: float) -> None:
        context.log.info(f"{le.upper()}: waiting for {owner} to finish posting invoices ({waited:.0f} s so far)")

    def settle(count: int) -> None:
        context.log.info(f"{le.upper()}: Dynamics 365 did not confirm {count} invoice header(s); looking them up "
                         f"again in {RECHECK_AFTER_S:.0f} s")
        time.sleep(RECHECK_AFTER_S)

    run_context = RunContext(context.run.run_id, context.asset_key.to_user_string(), context.retry_number + 1)
    client, out = snow.client(), _outbound(snow, wh)
    try:
        run = post_polled(poll, ServiceNowOutbound(client, out, snow.settings.erp_source), D365Ledger(d365.client()),
                          ServiceNowStatusWriter(client, out), wh, run_context, settle=settle, on_wait=waiting)
    except ExclusiveBusy as exc:
        raise dg.Failure(f"{le.upper()}: another run is still posting this legal entity's invoices ({exc}). "
                         "Nothing was posted by this run; its invoices stay waiting for the next one.") from None
    if run.handled:
        context.log.info(f"{le.upper()}: {len(run.handled)} polled invoices were written by another run meanwhile "
                         f"and are left to it: {', '.join(f'{n} ({s})' for n, s in sorted(run.handled.items())[:20])}")
    context.log.info(f"{le.upper()}: {counts((r.outcome for r in run.results), INVOICE_OUTCOMES)}")
    yield dg.MaterializeResult(metadata=_posting_metadata(run))
    # Status tells the truth (DESIGN §7.1): what this run did is recorded above, but an invoice whose outcome is not
    # final (unreachable, throttled, unconfirmed, ServiceNow not told) means the step did not complete.
    unfinished = [r.number for r in run.unfinished]
    if unfinished:
        raise dg.Failure(description=f"{le.upper()}: {len(unfinished)} invoice(s) could not be brought to an end "
                                     f"state for a reason that is not the invoice's ({', '.join(unfinished[:10])}"
                                     f"{', …' if len(unfinished) > 10 else ''}); the next run takes them up again.",
                         allow_retries=False)


def _posting_metadata(run: InvoiceRun) -> dict[str, Any]:
    """The same numeric keys on every materialization, zeros included, so the UI's Plots tab charts them."""
    by_outcome = counts((r.outcome for r in run.results), INVOICE_OUTCOMES)
    metadata: dict[str, Any] = {f"outcome_{k}": v for k, v in by_outcome.items()}
    metadata.update({"dagster/row_count": len(run.results), "invoices": len(run.results),
                     "sent_to_fno": by_outcome["created"] + by_outcome["reused"],
                     "rejected": by_outcome["rejected"], "errors": by_outcome["error"],
                     "unfinished": len(run.unfinished), "retry_next_run": len(run.retry),
                     "handled_by_another_run": len(run.handled)})
    metadata["preview"] = _table([{"number": r.number, "key": r.business_key, "outcome": r.outcome,
                                   "erp_number": r.erp_number or "", "message": r.message} for r in run.results],
                                 ["number", "key", "outcome", "erp_number", "message"])
    metadata["trace"] = trace_lines([r.business_key for r in [*run.unfinished, *run.results]])
    return metadata


def _bi_extract(entity: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=extract_key(entity), deps=[POSTING_KEY], group_name="status_back", kinds={"odata", "duckdb"},
        partitions_def=LEGAL_ENTITY, owners=["team:integration"], tags={"direction": "d365_to_snow"},
        description=description,
    )
    def _extract(context: dg.AssetExecutionContext, d365: D365Resource,
                 warehouse: WarehouseResource) -> dg.MaterializeResult:
        result = extract_incremental(d365.client(), warehouse.open(), entity, context.partition_key)
        return dg.MaterializeResult(metadata={
            "dagster/row_count": result.rows, "rows_read": result.read,
            "read_since": str(result.since or "full read"), "watermark": str(result.watermark or "")})

    return _extract


posted_invoices_extract = _bi_extract(
    JOUR, "Posted vendor invoices of one legal entity (F&O `VendInvoiceJourBiEntities`), read incrementally on "
          "SysModifiedDateTime with an overlap window and de-duplicated by (dataAreaId, SourceKey).")
vendor_transactions_extract = _bi_extract(
    VEND_TRANS, "Vendor transactions of one legal entity (F&O `VendTransBiEntities`: invoices and the payments "
                "settling them), read incrementally like the posted invoices.")


@dg.asset(
    key=POSTED_STATUS_KEY, deps=[extract_key(JOUR), POSTING_KEY], group_name="status_back", kinds={"servicenow"},
    partitions_def=LEGAL_ENTITY, owners=["team:integration"], tags={"direction": "d365_to_snow"},
    description="Outbound invoices F&O has posted get erp_number = LedgerVoucher and erp_posting_date "
                "(PATCH of `sn_spend_intg_outbound_invoice`; F&O is only read). Works on what F&O posted since the "
                "last run, and asks ServiceNow for those invoices only.",
)
def posted_status(context: dg.AssetExecutionContext, snow: ServiceNowResource,
                  warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    le = context.partition_key
    wh = warehouse.open()
    run = update_posted_status(snow.client(), _outbound(snow, wh), warehouse.settings.erp_source, wh, le, {
        "run_id": context.run.run_id, "asset_key": context.asset_key.to_user_string(), "partition": le,
        "attempt": context.retry_number + 1})
    updated = len(run.updates) - run.errors
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": len(run.updates), "posted_read": run.posted_read, "outcome_updated": updated,
        "errors": run.errors,
        "preview": _table([{"number": u.number, "erp_number": u.erp_number, "erp_posting_date": u.posting_date}
                           for u in run.updates], ["number", "erp_number", "erp_posting_date"]),
        "trace": trace_lines([str(r["business_key"]) for r in sorted(run.audit, key=lambda r: r["outcome"])]),
    })
    if run.errors:
        failed = [str(r["message"]) for r in run.audit if r["outcome"] == "error"]
        raise dg.Failure(description=f"{le.upper()}: {run.errors} of {len(run.updates)} posted invoice(s) could "
                                     f"not be updated in ServiceNow ({failed[0]}); the next run offers them again.",
                         allow_retries=False)


PAYMENT_OUTCOMES = ("inserted", "updated", "ignored", "skipped", "error")


@dg.asset(
    key=PAYMENTS_KEY, deps=[extract_key(VEND_TRANS), POSTED_STATUS_KEY], group_name="status_back",
    kinds={"servicenow"}, partitions_def=LEGAL_ENTITY, owners=["team:integration"],
    tags={"direction": "d365_to_snow", "system": "servicenow"},
    description="One payment detail per settlement of an invoice (VendTrans payment rows), pushed through "
                f"`{PAYMENT_MAPPING.staging_table}` (DESIGN §5.1), so ServiceNow moves the invoice to Paid; a "
                "partial payment leaves it Pending payment. Works on the settlements recorded since the last run, "
                "diffed against what was pushed: nothing is sent twice.",
)
def payment_details(context: dg.AssetExecutionContext, snow: ServiceNowResource,
                    warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    le = context.partition_key
    wh = warehouse.open()
    ctx = AuditContext(context.run.run_id, context.asset_key.to_user_string(), le, context.retry_number + 1)
    run = push_payments(snow.client(), wh, mapping_context(warehouse.settings), le, snow.instance_schema(wh), ctx)
    to_push = run.plan.diff.to_push
    outcomes = {**dict.fromkeys(PAYMENT_OUTCOMES, 0), **run.summary.outcomes}
    metadata: dict[str, Any] = {f"outcome_{k}": v for k, v in outcomes.items()}
    metadata.update({"dagster/row_count": to_push.height, "rows_read": run.rows_read,
                     "unchanged": run.plan.diff.unchanged, "errors": run.summary.errors.height,
                     "preview": preview_table(to_push, ["ERP invoice number", "ERP supplier code", "Payment amount",
                                                        "Payment reference ID"]),
                     "trace": trace_lines([*run.summary.errors.get_column(BUSINESS_KEY),
                                           *to_push.get_column(BUSINESS_KEY)], "payment detail")})
    yield dg.MaterializeResult(metadata=metadata)
    if run.summary.unsent_chunks:
        raise dg.Failure(description=f"{le.upper()}: {run.summary.unsent_chunks} call(s) to "
                                     f"{PAYMENT_MAPPING.staging_table} failed; {run.summary.errors.height} payment "
                                     "detail(s) are audited as errors and sent again by the next run.",
                         allow_retries=False)
