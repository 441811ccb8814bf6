"""Use cases of the invoice round trip that need I/O but no Dagster (DESIGN §5.2, §5.1 payment detail, §6, §7):
the outbound-invoice poll, the incremental read of F&O's posted-invoice BI entities, the posted-status write-back
and the payment-detail plan (the month-end reconciliation is ``sync/reconciliation.py``). The assets in
``defs/invoices`` only wire these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from ..clients import odata
from ..clients.d365 import D365Client
from ..clients.encoded_query import EncodedQuery, escape
from ..clients.servicenow import KeysetCursor, ServiceNowClient
from ..discovery.binding import bind, coalesce_findings
from ..discovery.model import InstanceSchema
from ..discovery.outbound import OutboundFields
from ..invoices.adapters import parse_fno_date
from ..invoices.model import text_value
from ..mapping import MappingContext, apply_mapping
from ..mapping.spec import TargetMapping
from ..mapping.targets import PAYMENT_DETAIL
from ..warehouse import DiffResult, Warehouse
from ..warehouse.diff import business_key
from ..warehouse.snapshots import META_COLUMNS
from ..warehouse.state import BUSINESS_KEY
from .plan import MissingSnapshotError, SyncPlan
from .targets import SyncTarget

JOUR = "VendInvoiceJourBiEntities"
VEND_TRANS = "VendTransBiEntities"
BI_KEYS = ("dataAreaId", "SourceKey")
# The BI entities are read from (watermark - overlap): a row committed late with an earlier SysModifiedDateTime,
# or a clock difference between F&O's AOS nodes, is read again instead of missed; the merge de-duplicates. [choice]
OVERLAP = timedelta(minutes=10)
_IDS_PER_QUERY = 100  # sys_ids per `…IN…` encoded query: keeps the URL far below any proxy limit


def poll_cursor_name(legal_entity: str) -> str:
    return f"invoices:poll:{legal_entity.lower()}"


def retry_cursor_name(legal_entity: str) -> str:
    return f"invoices:retry:{legal_entity.lower()}"


def watermark_name(entity: str, legal_entity: str) -> str:
    return f"{entity}:{legal_entity.lower()}:watermark"


# -- the poll ----------------------------------------------------------------------------------------------------
@dataclass
class InvoicePoll:
    """The outbound invoices one run works on, and the keyset cursor to commit once they are done."""

    legal_entity: str
    headers: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    cursor: dict[str, str] | None  # the new keyset position (committed with the posting's audit rows)
    sources: dict[str, int] = field(default_factory=dict)  # what the poll selected: new / in_progress / retry


def _ids_query(ids: Sequence[str]) -> str:
    return ",".join(escape(i) for i in ids)


def scope_query(out: OutboundFields, legal_entity: str, erp_source: str, status: str) -> EncodedQuery:
    """Our invoices (ERP source), of this legal entity (its ERP company code, through the reference), in
    ``status`` (a logical status; the stored value comes from the instance's choices)."""
    return (EncodedQuery().eq(out.header["legal_entity"], legal_entity.upper())
            .eq(out.header["erp_source"], erp_source).eq(out.element("integration_status"), out.status(status)))


def poll_invoices(snow: ServiceNowClient, warehouse: Warehouse, legal_entity: str, out: OutboundFields,
                  erp_source: str, *, page_size: int = 500) -> InvoicePoll:
    """``integration_status=new`` after the stored keyset cursor (DESIGN §6), plus every invoice left
    ``in_progress`` by a crashed attempt, plus the ``error`` ones the last run marked retryable; with their lines.
    Rows come back as the logical dicts :mod:`d365_snow_assets.invoices.model` parses (``out.to_header``)."""
    stored = warehouse.get_cursor(poll_cursor_name(legal_entity))
    cursor = KeysetCursor(stored["updated_on"], stored["sys_id"]) if stored else None
    fields = out.header_fields()
    headers: dict[str, dict[str, Any]] = {}
    last = cursor
    for page in snow.iter_keyset(out.header_table, scope_query(out, legal_entity, erp_source, "new"),
                                 fields=fields, page_size=page_size, cursor=cursor):
        headers.update((r["sys_id"], out.to_header(r)) for r in page.rows)
        last = page.cursor
    sources = {"new": len(headers)}
    # In-progress invoices are re-selected whatever the cursor says: their status was written after the cursor
    # position was read, and a crash may have stopped the run before the cursor moved (posting.py's docstring).
    stuck = [out.to_header(r) for rows in snow.iter_static(
        out.header_table, scope_query(out, legal_entity, erp_source, "in_progress"), fields=fields) for r in rows]
    sources["in_progress"] = len(stuck)
    headers.update((r["sys_id"], r) for r in stuck)
    retried = _retryable(snow, out, legal_entity, erp_source,
                         [i for i in warehouse.get_cursor(retry_cursor_name(legal_entity), []) if i not in headers])
    sources["retry"] = len(retried)
    headers.update((r["sys_id"], r) for r in retried)
    new_cursor = {"updated_on": last.updated_on, "sys_id": last.sys_id} if last else None
    return InvoicePoll(legal_entity.lower(), list(headers.values()), _lines(snow, out, list(headers)), new_cursor,
                       sources)


def _by_ids(snow: ServiceNowClient, table: str, query: EncodedQuery | None, id_field: str, ids: Sequence[str],
            fields: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of ``table`` matching ``query`` whose ``id_field`` is one of ``ids``, a chunk of ids per request."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk_query = (query.copy() if query else EncodedQuery()).in_(id_field, list(ids[start:start + _IDS_PER_QUERY]))
        for rows in snow.iter_static(table, chunk_query, fields=fields):
            found.extend(rows)
    return found


def _retryable(snow: ServiceNowClient, out: OutboundFields, legal_entity: str, erp_source: str,
               ids: Sequence[str]) -> list[dict[str, Any]]:
    """The headers among ``ids`` that are still ``error`` (a clerk may have resubmitted or cancelled some)."""
    rows = _by_ids(snow, out.header_table, scope_query(out, legal_entity, erp_source, "error"), "sys_id", ids,
                   out.header_fields())
    return [out.to_header(r) for r in rows]


def _lines(snow: ServiceNowClient, out: OutboundFields, header_ids: Sequence[str]) -> list[dict[str, Any]]:
    return out.to_lines(_by_ids(snow, out.line_table, None, out.line["outbound_invoice"], header_ids,
                                out.line_fields()))


@dataclass(frozen=True)
class PostingScope:
    """What one run posts once it holds the legal entity's posting lock."""

    poll: InvoicePoll  # the polled invoices nobody has written since the poll
    handled: dict[str, str]  # polled invoices another run wrote meanwhile: number → their status now
    carried: list[str]  # retryable invoices on the list that this run does not post: stay there for the next run


_CHANGE = ("integration_status", "sys_updated_on", "sys_mod_count")


def scope_under_lock(snow: ServiceNowClient, out: OutboundFields, erp_source: str, poll: InvoicePoll,
                     retry_ids: Sequence[str]) -> PostingScope:
    """Read again, under the posting lock, what this run polled before it: another run may have posted since
    (``retry_ids`` is the retry list as it is now). A polled invoice is posted only if nobody wrote it since the
    poll (same status and ``sys_mod_count``); one that another run wrote is left alone, and if that run failed it
    with a retryable error it is on the list, so the next run takes it up. Not now: the lookup of an invoice whose
    header F&O did not confirm is worth more after a pause (invoices/posting.py). Every invoice on the list that
    this run does not post, and that is still ``error``, is carried over, because the list this run commits
    replaces the one it found."""
    ids = [h["sys_id"] for h in poll.headers]
    fields = ["sys_id", "sys_updated_on", "sys_mod_count", out.element("integration_status")]
    status = {r["sys_id"]: out.to_header(r) for r in _by_ids(snow, out.header_table, None, "sys_id", ids, fields)}

    def untouched(header: dict[str, Any]) -> bool:
        now = status.get(header["sys_id"])
        return now is not None and all(now.get(f) == header.get(f) for f in _CHANGE)

    keep = {h["sys_id"] for h in poll.headers if untouched(h)}
    handled = {h["number"]: status.get(h["sys_id"], {}).get("integration_status", "deleted")
               for h in poll.headers if h["sys_id"] not in keep}
    # Everything on the list that this run will not post: what another run put there after this run's poll, and
    # polled invoices that run has written since (the case of chaos seed 892043).
    carried = [r["sys_id"] for r in _retryable(snow, out, poll.legal_entity, erp_source,
                                               [i for i in retry_ids if i not in keep])]
    return PostingScope(replace(poll, headers=[h for h in poll.headers if h["sys_id"] in keep],
                                lines=[li for li in poll.lines if li["outbound_invoice"] in keep]),
                        handled, carried)


def later_cursor(stored: dict[str, str] | None, polled: dict[str, str] | None) -> dict[str, str] | None:
    """The keyset position further on: a run that polled before another run committed must not move it back.
    ``updated_on`` is ServiceNow's ``YYYY-MM-DD HH:MM:SS`` (UTC), so text order is time order."""
    positions = [c for c in (stored, polled) if c]
    return max(positions, key=lambda c: (c["updated_on"], c["sys_id"])) if positions else None


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
    old = warehouse.read_snapshot(entity, [legal_entity]) if since else pl.DataFrame()
    old = old.drop([c for c in META_COLUMNS if c in old.columns])
    frames = [f for f in (old, new) if f.height]
    merged = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    if merged.height:
        merged = merged.unique(list(BI_KEYS), keep="last", maintain_order=True)
    if since is None or new.height:
        info = warehouse.write_snapshot(entity, legal_entity, [merged] if merged.height else [], BI_KEYS)
        rows = info.rows
    else:
        rows = old.height
    stamps = [str(r.get("SysModifiedDateTime") or "") for r in fresh]
    newest = max((_parse_stamp(s) for s in stamps if s), default=None)
    watermark = newest.isoformat() if newest else mark
    if watermark and watermark != mark:
        warehouse.set_cursor(watermark_name(entity, legal_entity), watermark)
    return IncrementalResult(len(fresh), rows, since, watermark)


def _parse_stamp(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
    """Posted invoices by (InvoiceAccount, InvoiceId), compared the way F&O does (case-insensitively)."""
    if jour.height == 0:
        return {}
    return {(_norm(r.get("InvoiceAccount")), _norm(r.get("InvoiceId"))): r for r in jour.to_dicts()}


def posted_status_updates(snow: ServiceNowClient, out: OutboundFields, erp_source: str, jour: pl.DataFrame,
                          legal_entity: str) -> list[StatusUpdate]:
    """The processed outbound invoices of ``legal_entity`` that F&O has posted but ServiceNow does not show as
    posted yet (no ERP posting date, or the ERP number still the pending HeaderReference)."""
    posted = posted_lookup(jour)
    if not posted:
        return []
    updates = []
    query = scope_query(out, legal_entity, erp_source, "processed")
    for rows in snow.iter_static(out.header_table, query, fields=out.header_fields()):
        for raw in rows:
            row = out.to_header(raw)
            hit = posted.get((_norm(row.get("supplier")), _norm(row.get("supplier_invoice_number"))))
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
                  schema: InstanceSchema | None = None) -> SyncPlan:
    """The payment details to push for ``legal_entity``: mapped, then diffed against what was pushed; with
    ``schema`` bound to the instance (see :func:`.plan.build_plan`)."""
    mapping: TargetMapping = PAYMENT_MAPPING
    bound = bind(mapping, schema, dict(mapping.element_overrides)) if schema is not None else None
    source = settlement_rows(warehouse.read_snapshot(VEND_TRANS, [legal_entity]))
    if source.height:
        if warehouse.current_snapshot("VendorsV2", legal_entity) is None:
            raise MissingSnapshotError(f"there is no snapshot of VendorsV2 for {legal_entity.upper()} yet: the "
                                       "payment details' remit-to address comes from it (d365-snow sync extracts it)")
        staging = apply_mapping(mapping, source, ctx, {"VendorsV2": warehouse.read_snapshot("VendorsV2",
                                                                                            [legal_entity])})
    else:
        staging = pl.DataFrame(schema={c: pl.String for c in mapping.column_names})
    diff: DiffResult = warehouse.diff(mapping, staging, erp_source=ctx.erp_source, legal_entities=[legal_entity])
    held = staging.head(0).with_columns(pl.lit("").alias(BUSINESS_KEY), pl.lit("").alias("_reason"))
    findings = [*bound.findings, *coalesce_findings(bound, schema, staging)] if bound and schema else []
    return SyncPlan(PAYMENT_TARGET, legal_entity, diff, held, bound, findings)


__all__ = ["JOUR", "PAYMENT_MAPPING", "PAYMENT_TARGET", "VEND_TRANS", "IncrementalResult", "InvoicePoll",
           "StatusUpdate", "extract_incremental", "plan_payments", "poll_invoices", "posted_status_updates",
           "scope_query", "settlement_rows"]
