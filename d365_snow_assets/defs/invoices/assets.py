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
from ...invoices import InvoiceReferences, audit_rows, outcome_counts, parse_invoices, validate_invoices
from ...invoices.adapters import D365Ledger, ServiceNowStatusWriter
from ...invoices.model import HEADER_TABLE, LINE_TABLE
from ...invoices.payloads import HEADER_ENTITY
from ...invoices.posting import AuditRecord, PostingResult, post_invoices
from ...sync.invoices import (
    JOUR,
    PAYMENT_MAPPING,
    VEND_TRANS,
    InvoicePoll,
    apply_status_updates,
    extract_incremental,
    later_cursor,
    plan_payments,
    poll_cursor_name,
    poll_invoices,
    posted_status_updates,
    retry_cursor_name,
    scope_under_lock,
)
from ...sync.push import AuditContext, push_plan
from ...sync.targets import mapping_context
from ...warehouse import ExclusiveBusy, Warehouse, audit, state
from ..d365_extract.assets import extract_key
from ..partitions import LEGAL_ENTITY
from ..resources import D365Resource, ServiceNowResource, WarehouseResource
from ..snow_sync.metadata import preview_table

POLL_KEY = dg.AssetKey(["servicenow_in", HEADER_TABLE])
POSTING_KEY = dg.AssetKey(["invoices", "posting"])
POSTED_STATUS_KEY = dg.AssetKey(["invoices", "posted_status"])
PAYMENTS_KEY = dg.AssetKey(["servicenow", PAYMENT_MAPPING.target_table])
REFERENCE_DEPS = [extract_key(e) for e in ("VendorsV2", "PurchaseOrderHeadersV2", "PurchaseOrderLinesV2",
                                           "MainAccounts", "FinancialDimensionValues")]
_TAGS = {"direction": "snow_to_d365"}
# How long a run waits for another run posting the same legal entity's invoices before it fails (its invoices stay
# as they are, for the next run). A month-end batch of a few thousand invoices posts well inside it. [choice]
POSTING_WAIT_S = 3600.0
# How long a run waits before it looks up again the invoice headers whose creation F&O did not confirm (a lost
# answer): long enough for a write that was still committing to show, short next to a run. [choice]
RECHECK_AFTER_S = 10.0


def posting_lock_name(legal_entity: str) -> str:
    return f"invoice-posting-{legal_entity.lower()}"


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
                "integration_status `new` after the keyset cursor, every `in_progress` one (a crashed attempt) and "
                "the `error` ones marked retryable; snapshotted in DuckDB. The cursor moves only when the posting "
                "asset has committed its work.",
)
def outbound_invoices(context: dg.AssetExecutionContext, snow: ServiceNowResource,
                      warehouse: WarehouseResource) -> dg.Output[InvoicePoll]:
    le = context.partition_key
    wh = warehouse.open()
    poll = poll_invoices(snow.client(), wh, le, _outbound(snow, wh), warehouse.settings.erp_source)
    # ServiceNow's legal_entity column would clash with the snapshot's own legal_entity metadata column.
    headers = [{("sn_legal_entity" if k == "legal_entity" else k): v for k, v in r.items()} for r in poll.headers]
    wh.write_snapshot(HEADER_TABLE, le, [headers] if headers else [], ("sys_id",))
    wh.write_snapshot(LINE_TABLE, le, [poll.lines] if poll.lines else [], ("sys_id",))
    context.log.info(f"{le.upper()}: {len(poll.headers)} invoices, {len(poll.lines)} lines ({poll.sources})")
    metadata: dict[str, Any] = {"dagster/row_count": len(poll.headers), "lines": len(poll.lines),
                                **{f"selected_{k}": v for k, v in poll.sources.items()},
                                "cursor": str(poll.cursor or "")}
    if poll.headers:
        metadata["preview"] = _table(poll.headers, ["number", "supplier", "supplier_invoice_number",
                                                    "amount_invoiced", "integration_status"])
    return dg.Output(poll, metadata=metadata)


@dg.asset(
    key=POSTING_KEY, ins={"poll": dg.AssetIn(POLL_KEY)}, deps=REFERENCE_DEPS, group_name="invoices",
    kinds={"odata", "servicenow"}, partitions_def=LEGAL_ENTITY, owners=["team:integration"], tags=_TAGS,
    description="Every polled invoice validated against the F&O snapshots (all problems collected); valid ones "
                "created in F&O as pending vendor invoices (header, then lines) through the natural-key lookup of "
                "DESIGN §5.2, never twice and never over a posted one; ServiceNow written back (`processed` + "
                "erp_number, or `error` + a message for the AP clerk); every invoice and line audited. One run "
                "at a time per legal entity: a second one waits, then posts only what still waits.",
)
def invoice_posting(context: dg.AssetExecutionContext, poll: InvoicePoll, d365: D365Resource,
                    snow: ServiceNowResource, warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    le = context.partition_key
    wh = warehouse.open()

    def waiting(owner: str, waited: float) -> None:
        context.log.info(f"{le.upper()}: waiting for {owner} to finish posting invoices ({waited:.0f} s so far)")

    # One run at a time posts a legal entity's invoices; everything from the re-read to the last commit happens
    # under the lock, so no other run's status writes or retry list interleave with this run's.
    try:
        with wh.exclusive(posting_lock_name(le), f"run {context.run.run_id}", timeout=POSTING_WAIT_S,
                          on_wait=waiting):
            materialization, results = _post(context, poll, d365, snow, wh)
    except ExclusiveBusy as exc:
        raise dg.Failure(f"{le.upper()}: another run is still posting this legal entity's invoices ({exc}). "
                         "Nothing was posted by this run; its invoices stay waiting for the next one.") from None
    yield materialization
    # Status tells the truth (DESIGN §7.1): what this run did is recorded above, but an invoice left in error for
    # a reason that is not the invoice's (unreachable, throttled, unconfirmed) means the step did not complete.
    unfinished = [r.number for r in results if r.outcome == "error" and r.retryable]
    if unfinished:
        raise dg.Failure(description=f"{le.upper()}: {len(unfinished)} invoice(s) could not be brought to an end "
                                     f"state for a reason that is not the invoice's ({', '.join(unfinished[:10])}"
                                     f"{', …' if len(unfinished) > 10 else ''}); the next run takes them up again.",
                         allow_retries=False)


def _post(context: dg.AssetExecutionContext, poll: InvoicePoll, d365: D365Resource, snow: ServiceNowResource,
          wh: Warehouse) -> tuple[dg.MaterializeResult, list[PostingResult]]:
    le = context.partition_key
    run_id, asset_key, attempt = context.run.run_id, context.asset_key.to_user_string(), context.retry_number + 1
    out = _outbound(snow, wh)
    erp_source = snow.settings.erp_source
    scope = scope_under_lock(snow.client(), out, erp_source, poll, wh.get_cursor(retry_cursor_name(le), []))
    poll, handled = scope.poll, scope.handled
    if handled:
        context.log.info(f"{le.upper()}: {len(handled)} polled invoices were written by another run meanwhile and "
                         f"are left to it: {', '.join(f'{n} ({s})' for n, s in sorted(handled.items())[:20])}")
    parsed = parse_invoices(poll.headers, poll.lines)
    verdicts = validate_invoices(parsed, InvoiceReferences.from_warehouse(wh, [le]))
    flushed: set[int] = set()

    sys_id_of = {p.invoice.business_key: p.invoice.sys_id for p in parsed}

    def flush(records: list[AuditRecord]) -> None:
        # An invoice about to be marked `error` in ServiceNow joins the retry list in the same transaction as its
        # audit rows: the poll takes `error` invoices only from that list, so a process killed before the list
        # below is committed would otherwise leave a retryable invoice in `error` for good (chaos seed 262263).
        # Over-inclusion is harmless: the list written at the end of the run keeps only the retryable ones.
        failed = {sys_id_of[r.business_key] for r in records
                  if r.entity == HEADER_ENTITY and r.outcome == "error" and r.business_key in sys_id_of}
        with wh.writer() as con:
            audit.write_audit(con, [r.as_row(run_id, asset_key, le, attempt) for r in records])
            if failed:
                pending = state.get_cursor(con, retry_cursor_name(le), [])
                state.set_cursor(con, retry_cursor_name(le), sorted({*pending, *failed}))
        flushed.update(id(r) for r in records)

    def settle(count: int) -> None:
        context.log.info(f"{le.upper()}: Dynamics 365 did not confirm {count} invoice header(s); looking them up "
                         f"again in {RECHECK_AFTER_S:.0f} s")
        time.sleep(RECHECK_AFTER_S)

    results = post_invoices(verdicts, D365Ledger(d365.client()), ServiceNowStatusWriter(snow.client(), out),
                            flush=flush, settle=settle)
    rows = [row for row, record in zip(audit_rows(results, run_id, asset_key, le, attempt=attempt),
                                       (r for res in results for r in res.audit), strict=True)
            if id(record) not in flushed]
    retry = sorted({*scope.carried, *(r.sys_id for r in results if r.outcome == "error" and r.retryable)})
    # Audit, keyset cursor and retry list commit together: the cursor never passes work that is not recorded.
    with wh.writer() as con:
        if rows:
            audit.write_audit(con, rows)
        if poll.cursor:
            stored = state.get_cursor(con, poll_cursor_name(le))
            state.set_cursor(con, poll_cursor_name(le), later_cursor(stored, poll.cursor))
        state.set_cursor(con, retry_cursor_name(le), retry)
    counts = outcome_counts(results)
    context.log.info(f"{le.upper()}: {counts or 'no invoices'}")
    metadata: dict[str, Any] = {f"outcome_{k}": v for k, v in sorted(counts.items())}
    metadata.update({"dagster/row_count": len(results), "invoices": len(results),
                     "sent_to_fno": sum(counts.get(k, 0) for k in ("created", "reused")),
                     "rejected": counts.get("rejected", 0), "errors": counts.get("error", 0),
                     "retry_next_run": len(retry), "handled_by_another_run": len(handled)})
    if results:
        metadata["preview"] = _table([{"number": r.number, "key": r.business_key, "outcome": r.outcome,
                                       "erp_number": r.erp_number or "", "message": r.message} for r in results])
    return dg.MaterializeResult(metadata=metadata), results


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
                "(PATCH of `sn_spend_intg_outbound_invoice`; F&O is only read).",
)
def posted_status(context: dg.AssetExecutionContext, snow: ServiceNowResource,
                  warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    le = context.partition_key
    wh = warehouse.open()
    client = snow.client()
    out = _outbound(snow, wh)
    updates = posted_status_updates(client, out, warehouse.settings.erp_source, wh.read_snapshot(JOUR, [le]), le)
    rows, errors = apply_status_updates(client, out, updates, {
        "run_id": context.run.run_id, "asset_key": context.asset_key.to_user_string(), "partition": le,
        "attempt": context.retry_number + 1})
    if rows:
        wh.write_audit(rows)
    metadata: dict[str, Any] = {"dagster/row_count": len(updates), "outcome_updated": len(updates) - errors,
                                "errors": errors}
    if updates:
        metadata["preview"] = _table([{"number": u.number, "erp_number": u.erp_number,
                                       "erp_posting_date": u.posting_date} for u in updates])
    yield dg.MaterializeResult(metadata=metadata)
    if errors:
        failed = [str(r["message"]) for r in rows if r["outcome"] == "error"]
        raise dg.Failure(description=f"{le.upper()}: {errors} of {len(updates)} posted invoice(s) could not be "
                                     f"updated in ServiceNow ({failed[0]}); the next run offers them again.",
                         allow_retries=False)


@dg.asset(
    key=PAYMENTS_KEY, deps=[extract_key(VEND_TRANS), POSTED_STATUS_KEY], group_name="status_back",
    kinds={"servicenow"}, partitions_def=LEGAL_ENTITY, owners=["team:integration"],
    tags={"direction": "d365_to_snow", "system": "servicenow"},
    description="One payment detail per settlement of an invoice (VendTrans payment rows), pushed through "
                f"`{PAYMENT_MAPPING.staging_table}` (DESIGN §5.1), so ServiceNow moves the invoice to Paid; a "
                "partial payment leaves it Pending payment. Diffed against what was pushed: nothing is sent twice.",
)
def payment_details(context: dg.AssetExecutionContext, snow: ServiceNowResource,
                    warehouse: WarehouseResource) -> Iterator[dg.MaterializeResult]:
    le = context.partition_key
    wh = warehouse.open()
    plan = plan_payments(wh, mapping_context(warehouse.settings), le, snow.instance_schema(wh))
    ctx = AuditContext(context.run.run_id, context.asset_key.to_user_string(), le, context.retry_number + 1)
    summary = push_plan(plan, snow.client(), wh, ctx)
    metadata: dict[str, Any] = {f"outcome_{k}": v for k, v in sorted(summary.outcomes.items())}
    metadata.update({"dagster/row_count": plan.diff.to_push.height, "unchanged": plan.diff.unchanged,
                     "errors": summary.errors.height})
    if plan.diff.to_push.height:
        metadata["preview"] = preview_table(plan.diff.to_push, ["ERP invoice number", "ERP supplier code",
                                                                "Payment amount", "Payment reference ID"])
    yield dg.MaterializeResult(metadata=metadata)
    if summary.unsent_chunks:
        raise dg.Failure(description=f"{le.upper()}: {summary.unsent_chunks} call(s) to "
                                     f"{PAYMENT_MAPPING.staging_table} failed; {summary.errors.height} payment "
                                     "detail(s) are audited as errors and sent again by the next run.",
                         allow_retries=False)
