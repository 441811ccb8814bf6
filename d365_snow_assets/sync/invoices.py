"""Use cases of the invoice round trip after the posting, with I/O but no Dagster (DESIGN §5.2, §5.1 payment
detail, §6, §7): the incremental read of F&O's posted-invoice BI entities, the posted-status write-back and the
payment-detail plan. The posting run itself is ``invoices/run.py``, the month-end reconciliation
``sync/reconciliation.py``. The assets in ``defs/invoices`` only wire these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from ..clients import odata
from ..clients.d365 import D365Client
from ..clients.servicenow import ServiceNowClient
from ..discovery.binding import bind, coalesce_findings
from ..discovery.model import InstanceSchema
from ..discovery.outbound import OutboundFields
from ..invoices.adapters import parse_fno_date, rows_by_values, scope_query
from ..invoices.model import text_value
from ..mapping import MappingContext, apply_mapping
from ..mapping.spec import TargetMapping
from ..mapping.targets import PAYMENT_DETAIL
from ..warehouse import DiffResult, Warehouse, audit, snapshots, state
from ..warehouse.diff import business_key
from ..warehouse.snapshots import META_COLUMNS
from ..warehouse.state import BUSINESS_KEY
from .plan import MissingSnapshotError, SyncPlan
from .push import AuditContext, PushSummary, push_plan
from .targets import SyncTarget

JOUR = "VendInvoiceJourBiEntities"
VEND_TRANS = "VendTransBiEntities"
BI_KEYS = ("dataAreaId", "SourceKey")
# The BI entities are read from (watermark - overlap): a row committed late with an earlier SysModifiedDateTime,
# or a clock difference between F&O's AOS nodes, is read again instead of missed; the merge de-duplicates. [choice]
OVERLAP = timedelta(minutes=10)


def watermark_name(entity: str, legal_entity: str) -> str:
    return f"{entity}:{legal_entity.lower()}:watermark"


# -- incremental BI extract ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IncrementalResult:
    read: int
    rows: int
    since: datetime | None
    watermark: str | None


def extract_incremental(client: D365Client, warehouse: Warehouse, entity: str, legal_entity: str, *,
                        overlap: timedelta = OVERLAP) -> IncrementalResult:
    """Read the rows of ``entity`` changed since the stored watermark (minus ``overlap``), merge them into the
    current snapshot by (dataAreaId, SourceKey), keep the newest version of each, and move the watermark.

    The watermark is stored after the snapshot commits: a crash in between re-reads rows, never skips them."""
    mark = warehouse.get_cursor(watermark_name(entity, legal_entity))
    since = datetime.fromisoformat(mark) - overlap if mark else None
    flt = odata.ge("SysModifiedDateTime", since) if since else None
    fresh = client.read_all(entity, legal_entity=legal_entity, odata_filter=flt)
    new = pl.from_dicts(fresh, infer_schema_length=None) if fresh else pl.DataFrame()
    if since is None or new.height:
        # The snapshot is read only when there is something to merge into it: a run in which nothing changed
        # costs one F&O request and no pass over the history.
        old = warehouse.read_snapshot(entity, [legal_entity]) if since else pl.DataFrame()
        old = old.drop([c for c in META_COLUMNS if c in old.columns])
        frames = [f for f in (old, new) if f.height]
        merged = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        if merged.height:
            merged = merged.unique(list(BI_KEYS), keep="last", maintain_order=True)
        rows = warehouse.write_snapshot(entity, legal_entity, [merged] if merged.height else [], BI_KEYS).rows
    else:
        current = warehouse.current_snapshot(entity, legal_entity)
        rows = current.row_count if current else 0
    stamps = [str(r.get("SysModifiedDateTime") or "") for r in fresh]
    newest = max((_parse_stamp(s) for s in stamps if s), default=None)
    watermark = newest.isoformat() if newest else mark
    if watermark and watermark != mark:
        warehouse.set_cursor(watermark_name(entity, legal_entity), watermark)
    return IncrementalResult(len(fresh), rows, since, watermark)


def _parse_stamp(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- what changed since the last run -------------------------------------------------------------------------------
def status_mark_name(legal_entity: str) -> str:
    return f"invoices:posted_status:{legal_entity.lower()}"


def payments_mark_name(legal_entity: str) -> str:
    return f"invoices:payments:{legal_entity.lower()}"


@dataclass(frozen=True)
class Changed:
    """Rows of a BI snapshot changed since a step's mark, and the newest stamp among them (the step's next mark,
    stored only once the step has done its work for every one of them)."""

    rows: pl.DataFrame
    newest: str | None


_STAMP = 'TRY_CAST("SysModifiedDateTime" AS TIMESTAMPTZ)'


def changed_since(warehouse: Warehouse, entity: str, legal_entity: str, mark: str | None, *,
                  settling: bool = False) -> Changed:
    """The rows of ``entity``'s current snapshot for ``legal_entity`` whose SysModifiedDateTime is at or after
    ``mark`` minus :data:`OVERLAP` (every row when ``mark`` is None), selected inside DuckDB: a run's work follows
    what changed, not the history. The overlap matters here as in the extract: a row F&O committed late with an
    earlier stamp joins the snapshot after a step's mark passed its stamp, but never more than the extract's
    overlap earlier than the newest stamp already read.

    ``settling`` adds the rows on the other side of a settlement of a changed row (an invoice paid by a changed
    payment, the earlier payments of a changed invoice: same ``Voucher`` / ``LastSettleVoucher``), so that every
    payment of the invoices concerned can be paired with its invoice (:func:`settlement_rows`)."""
    table = snapshots.table_name(entity)
    since = (datetime.fromisoformat(mark) - OVERLAP) if mark else None
    with warehouse.reader() as con:
        columns = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
                                             [f"snap_{entity}"]).fetchall()}
        if "SysModifiedDateTime" not in columns:
            return Changed(pl.DataFrame(), None)
        changed = f"legal_entity = $le AND ($since IS NULL OR {_STAMP} >= $since)"
        where = changed
        if settling:
            # An unsettled invoice's LastSettleVoucher is blank: a blank voucher pairs nothing.
            vouchers = (f'SELECT v FROM (SELECT "Voucher" AS v FROM {table} WHERE {changed} UNION '
                        f'SELECT "LastSettleVoucher" FROM {table} WHERE {changed}) WHERE v <> \'\'')
            where = (f'legal_entity = $le AND ({changed} OR "Voucher" IN ({vouchers}) '
                     f'OR "LastSettleVoucher" IN ({vouchers}))')
        keep = ", ".join(c for c in META_COLUMNS if c != "legal_entity")
        rows = con.sql(f"SELECT * EXCLUDE ({keep}) FROM {table} WHERE {where}",
                       params={"le": legal_entity.lower(), "since": since}).pl()
        newest = con.execute(f"SELECT max({_STAMP}) FROM {table} WHERE {changed}",
                             {"le": legal_entity.lower(), "since": since}).fetchone()
    stamp = newest[0] if newest else None
    return Changed(rows, stamp.astimezone(UTC).isoformat() if stamp else None)


# -- posted status -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusUpdate:
    sys_id: str
    number: str
    business_key: str
    erp_number: str
    posting_date: str


def _norm(value: Any) -> str:
    return str(value or "").casefold()


def posted_lookup(jour: pl.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """Posted invoices by (InvoiceAccount, InvoiceId), compared the way F&O does (case-insensitively). Pass only
    the rows a step works on: every row becomes a dict."""
    if jour.height == 0:
        return {}
    return {(_norm(r.get("InvoiceAccount")), _norm(r.get("InvoiceId"))): r for r in jour.to_dicts()}


def posted_status_updates(snow: ServiceNowClient, out: OutboundFields, erp_source: str, posted: pl.DataFrame,
                          legal_entity: str) -> list[StatusUpdate]:
    """Of the posted invoices in ``posted`` (``VendInvoiceJourBiEntities`` rows: those changed since the last run,
    or those a Business Event named), the processed outbound invoices of ``legal_entity`` that ServiceNow does not
    show as posted yet (no ERP posting date, or the ERP number still the pending HeaderReference). ServiceNow is
    asked for those invoices only, by supplier invoice number.

    The posted InvoiceId is the InvoiceNumber this connector sent, which is the outbound invoice's supplier invoice
    number as ServiceNow holds it, so ServiceNow's exact match finds it; an invoice a clerk posted by hand under
    another spelling was already marked processed with its voucher by the posting (invoices/posting.py)."""
    found = posted_lookup(posted)
    numbers = sorted({str(r.get("InvoiceId") or "") for r in found.values()} - {""})
    if not numbers:
        return []
    rows = rows_by_values(snow, out.header_table, scope_query(out, legal_entity, erp_source, "processed"),
                          out.header["supplier_invoice_number"], numbers, out.header_fields())
    updates = []
    for raw in rows:
        row = out.to_header(raw)
        hit = found.get((_norm(row.get("supplier")), _norm(row.get("supplier_invoice_number"))))
        if hit is None:
            continue
        day = parse_fno_date(hit.get("InvoiceDate"))
        voucher, date_text = str(hit.get("LedgerVoucher") or ""), day.isoformat() if day else ""
        if row.get("erp_number") == voucher and row.get("erp_posting_date") == date_text:
            continue
        key = business_key([legal_entity.upper(), text_value(row.get("supplier")),
                            text_value(row.get("supplier_invoice_number"))])
        updates.append(StatusUpdate(row["sys_id"], row.get("number", ""), key, voucher, date_text))
    return updates


def apply_status_updates(snow: ServiceNowClient, out: OutboundFields, updates: Sequence[StatusUpdate],
                         audit_base: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """PATCH each posted invoice's ERP number and posting date; audit rows (``audit_base`` + per-record fields) and
    the error count. One failed PATCH does not stop the others; the next run offers it again."""
    rows, errors = [], 0
    for u in updates:
        values = {"erp_number": u.erp_number, "erp_posting_date": u.posting_date}
        outcome, message = "updated", None
        try:
            snow.patch(out.header_table, u.sys_id, {out.element(k): v for k, v in values.items()}, fields=["sys_id"])
        except Exception as exc:
            outcome, message, errors = "error", str(exc), errors + 1
        rows.append({**audit_base, "direction": "d365_to_snow", "entity": out.header_table,
                     "business_key": u.business_key, "payload": values, "target": out.header_table,
                     "target_id": u.sys_id, "outcome": outcome, "message": message})
    return rows, errors


@dataclass(frozen=True)
class StatusRun:
    """What one posted-status step did."""

    posted_read: int  # posted-invoice rows it looked at: those changed since its mark
    updates: list[StatusUpdate]
    audit: list[dict[str, Any]]
    errors: int


def update_posted_status(snow: ServiceNowClient, out: OutboundFields, erp_source: str, warehouse: Warehouse,
                         legal_entity: str, audit_base: dict[str, Any]) -> StatusRun:
    """Bring ServiceNow the posted status of what F&O posted since this step's mark (DESIGN §5.2 "Later"). The
    audit rows and the new mark commit together, and the mark moves only when every update went through: a
    failed PATCH keeps its row inside the next run's window."""
    changed = changed_since(warehouse, JOUR, legal_entity, warehouse.get_cursor(status_mark_name(legal_entity)))
    updates = posted_status_updates(snow, out, erp_source, changed.rows, legal_entity)
    rows, errors = apply_status_updates(snow, out, updates, audit_base)
    with warehouse.writer() as con:
        if rows:
            audit.write_audit(con, rows)
        if not errors and changed.newest:
            state.set_cursor(con, status_mark_name(legal_entity), changed.newest)
    return StatusRun(changed.rows.height, updates, rows, errors)


# -- payments ------------------------------------------------------------------------------------------------------
# One payment detail per settlement of an invoice: DESIGN §5.1's key (legal entity, ERP Source, ERP supplier code,
# ERP invoice number, Payment reference ID) keeps one F&O settlement voucher that pays several invoices as one
# payment detail per invoice.
PAYMENT_MAPPING = PAYMENT_DETAIL
PAYMENT_TARGET = SyncTarget("payment_details", PAYMENT_DETAIL.staging_table, per_company=True)


def settlement_rows(vend_trans: pl.DataFrame) -> pl.DataFrame:
    """One row per (payment, invoice) in the shape of a VendTrans invoice row, so the declarative PAYMENT_DETAIL
    mapping applies unchanged: ``SettleAmountCur`` = this payment's amount, ``LastSettleVoucher`` / ``LastSettleDate``
    / ``PaymMode`` = the payment's voucher, date and method.

    Why not the invoice row itself (DESIGN §5.1's literal reading): its SettleAmountCur is cumulative and its
    LastSettleVoucher only the latest payment, so after two partial payments ServiceNow, which sums the payment
    details of an invoice, would count the first payment twice. The payment rows of VendTrans carry the voucher of
    the invoice they settled in LastSettleVoucher (F&O marks both sides of a settlement). [INF for real F&O]"""
    if vend_trans.height == 0 or "TransType" not in vend_trans.columns:
        return pl.DataFrame()
    t = vend_trans.with_columns(pl.col("TransType").cast(pl.String), pl.col("Voucher").cast(pl.String),
                                pl.col("LastSettleVoucher").cast(pl.String).fill_null(""),
                                pl.col("dataAreaId").cast(pl.String).str.to_lowercase())
    invoices = t.filter(pl.col("Invoice").cast(pl.String).fill_null("") != "")
    payments = t.filter((pl.col("TransType") == "Payment") & (pl.col("LastSettleVoucher") != "")).select(
        "dataAreaId", pl.col("LastSettleVoucher").alias("_invoice_voucher"),
        pl.col("Voucher").alias("_pay_voucher"), pl.col("AmountCur").alias("_pay_amount"),
        pl.col("TransDate").alias("_pay_date"), pl.col("PaymMode").alias("_pay_mode"))
    joined = invoices.join(payments, left_on=["dataAreaId", "Voucher"], right_on=["dataAreaId", "_invoice_voucher"],
                           how="inner")
    return joined.with_columns(
        pl.col("_pay_amount").alias("SettleAmountCur"), pl.col("_pay_voucher").alias("LastSettleVoucher"),
        pl.col("_pay_date").alias("LastSettleDate"), pl.col("_pay_mode").alias("PaymMode"),
    ).drop("_pay_amount", "_pay_voucher", "_pay_date", "_pay_mode")


def plan_payments(warehouse: Warehouse, ctx: MappingContext, legal_entity: str,
                  schema: InstanceSchema | None = None, changed: pl.DataFrame | None = None) -> SyncPlan:
    """The payment details to push for ``legal_entity``: mapped, then diffed against what was pushed; with
    ``schema`` bound to the instance (see :func:`.plan.build_plan`). From ``changed`` (the VendTrans rows of
    :func:`changed_since` with ``settling``) when given, else from the whole snapshot (replay)."""
    mapping: TargetMapping = PAYMENT_MAPPING
    bound = bind(mapping, schema, dict(mapping.element_overrides)) if schema is not None else None
    source = settlement_rows(warehouse.read_snapshot(VEND_TRANS, [legal_entity]) if changed is None else changed)
    if source.height:
        if warehouse.current_snapshot("VendorsV2", legal_entity) is None:
            raise MissingSnapshotError(f"there is no snapshot of VendorsV2 for {legal_entity.upper()} yet: the "
                                       "payment details' remit-to address comes from it (d365-snow sync extracts it)")
        staging = apply_mapping(mapping, source, ctx, {"VendorsV2": warehouse.read_snapshot("VendorsV2",
                                                                                            [legal_entity])})
    else:
        staging = pl.DataFrame(schema={c: pl.String for c in mapping.column_names})
    # Payment details are never deactivated (no on_delete), so what is gone would only be reported. From the changed
    # rows alone nothing is gone: no legal entity is in that scope, so the diff does not read every payment detail
    # ever pushed.
    scope = [legal_entity] if changed is None else []
    diff: DiffResult = warehouse.diff(mapping, staging, erp_source=ctx.erp_source, legal_entities=scope)
    held = staging.head(0).with_columns(pl.lit("").alias(BUSINESS_KEY), pl.lit("").alias("_reason"))
    findings = [*bound.findings, *coalesce_findings(bound, schema, staging)] if bound and schema else []
    return SyncPlan(PAYMENT_TARGET, legal_entity, diff, held, bound, findings)


@dataclass(frozen=True)
class PaymentsRun:
    """What one payment-details step did."""

    rows_read: int  # VendTrans rows it looked at: those changed since its mark, and their settlement partners
    plan: SyncPlan
    summary: PushSummary


def push_payments(snow: ServiceNowClient, warehouse: Warehouse, ctx: MappingContext, legal_entity: str,
                  schema: InstanceSchema | None, audit_ctx: AuditContext) -> PaymentsRun:
    """Push the payment details of the settlements F&O recorded since this step's mark. The mark moves only when
    every payment detail went through: one audited as an error stays inside the next run's window."""
    changed = changed_since(warehouse, VEND_TRANS, legal_entity, warehouse.get_cursor(payments_mark_name(legal_entity)),
                            settling=True)
    plan = plan_payments(warehouse, ctx, legal_entity, schema, changed.rows)
    summary = push_plan(plan, snow, warehouse, audit_ctx)
    if not summary.errors.height and not summary.unsent_chunks and changed.newest:
        warehouse.set_cursor(payments_mark_name(legal_entity), changed.newest)
    return PaymentsRun(changed.rows.height, plan, summary)


__all__ = ["JOUR", "PAYMENT_MAPPING", "PAYMENT_TARGET", "VEND_TRANS", "Changed", "IncrementalResult", "PaymentsRun",
           "StatusRun", "StatusUpdate", "changed_since", "extract_incremental", "plan_payments",
           "posted_status_updates", "push_payments", "settlement_rows", "update_posted_status"]
