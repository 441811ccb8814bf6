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
from ..clients.encoded_query import escape
from ..clients.servicenow import KeysetCursor, ServiceNowClient
from ..invoices.adapters import parse_fno_date
from ..invoices.model import HEADER_TABLE, LINE_TABLE, text_value
from ..mapping import MappingContext, apply_mapping
from ..mapping.targets import PAYMENT_DETAIL
from ..warehouse import DiffResult, Warehouse
from ..warehouse.diff import business_key
from ..warehouse.snapshots import META_COLUMNS
from ..warehouse.state import BUSINESS_KEY
from .plan import SyncPlan
from .targets import SyncTarget

HEADER_FIELDS = ["sys_id", "number", "supplier_invoice_number", "supplier", "legal_entity", "currency",
                 "invoice_date", "due_date", "amount_invoiced", "tax_amount", "purchase_order", "invoice_type",
                 "integration_status", "erp_number", "erp_posting_date", "processing_message", "invoice",
                 "sys_updated_on", "sys_mod_count"]
LINE_FIELDS = ["sys_id", "outbound_invoice", "line_number", "purchase_order", "purchase_order_line", "item_number",
               "description", "quantity", "unit_price", "amount", "gl_account", "cost_center", "tax_amount"]
SHOP_INVOICE = "sn_shop_invoice"
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


def poll_invoices(snow: ServiceNowClient, warehouse: Warehouse, legal_entity: str, *,
                  page_size: int = 500) -> InvoicePoll:
    """``integration_status=new`` after the stored keyset cursor (DESIGN §6), plus every invoice left
    ``in_progress`` by a crashed attempt, plus the ``error`` ones the last run marked retryable; with their lines."""
    le = legal_entity.upper()
    stored = warehouse.get_cursor(poll_cursor_name(legal_entity))
    cursor = KeysetCursor(stored["updated_on"], stored["sys_id"]) if stored else None
    base = f"legal_entity={escape(le)}"
    headers: dict[str, dict[str, Any]] = {}
    last = cursor
    for page in snow.iter_keyset(HEADER_TABLE, f"{base}^integration_status=new", fields=HEADER_FIELDS,
                                 page_size=page_size, cursor=cursor):
        headers.update((r["sys_id"], r) for r in page.rows)
        last = page.cursor
    sources = {"new": len(headers)}
    # In-progress invoices are re-selected whatever the cursor says: their status was written after the cursor
    # position was read, and a crash may have stopped the run before the cursor moved (posting.py's docstring).
    stuck = [r for rows in snow.iter_static(HEADER_TABLE, f"{base}^integration_status=in_progress",
                                            fields=HEADER_FIELDS) for r in rows]
    sources["in_progress"] = len(stuck)
    headers.update((r["sys_id"], r) for r in stuck)
    retried = _retryable(snow, le, [i for i in warehouse.get_cursor(retry_cursor_name(legal_entity), [])
                                    if i not in headers])
    sources["retry"] = len(retried)
    headers.update((r["sys_id"], r) for r in retried)
    new_cursor = {"updated_on": last.updated_on, "sys_id": last.sys_id} if last else None
    return InvoicePoll(legal_entity.lower(), list(headers.values()), _lines(snow, list(headers)), new_cursor,
                       sources)


def _by_ids(snow: ServiceNowClient, table: str, query: str, ids: Sequence[str],
            fields: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of ``table`` for ``query`` + a chunk of ``ids`` (``query`` ends in ``…IN``), chunk by chunk."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), _IDS_PER_QUERY):
        for rows in snow.iter_static(table, query + _ids_query(ids[start:start + _IDS_PER_QUERY]), fields=fields):
            found.extend(rows)
    return found


def _retryable(snow: ServiceNowClient, le: str, ids: Sequence[str]) -> list[dict[str, Any]]:
    """The headers among ``ids`` that are still ``error`` (a clerk may have resubmitted or cancelled some)."""
    return _by_ids(snow, HEADER_TABLE, f"legal_entity={escape(le)}^integration_status=error^sys_idIN", ids,
                   HEADER_FIELDS)


def _lines(snow: ServiceNowClient, header_ids: Sequence[str]) -> list[dict[str, Any]]:
    return _by_ids(snow, LINE_TABLE, "outbound_invoiceIN", header_ids, LINE_FIELDS)


_CHANGE_FIELDS = ("sys_id", "integration_status", "sys_updated_on", "sys_mod_count")


@dataclass(frozen=True)
class PostingScope:
    """What one run posts once it holds the legal entity's posting lock."""

    poll: InvoicePoll  # the polled invoices nobody has written since the poll
    handled: dict[str, str]  # polled invoices another run wrote meanwhile: number → their status now
    carried: list[str]  # retryable invoices on the list that this run does not post: stay there for the next run


def scope_under_lock(snow: ServiceNowClient, poll: InvoicePoll, retry_ids: Sequence[str]) -> PostingScope:
    """Read again, under the posting lock, what this run polled before it: another run may have posted since
    (``retry_ids`` is the retry list as it is now). A polled invoice is posted only if nobody wrote it since the
    poll (same status and ``sys_mod_count``); one that another run wrote is left alone, and if that run failed it
    with a retryable error it is on the list, so the next run takes it up. Not now: the lookup of an invoice whose
    header F&O did not confirm is worth more after a pause (invoices/posting.py). Every invoice on the list that
    this run does not post, and that is still ``error``, is carried over, because the list this run commits
    replaces the one it found."""
    ids = [h["sys_id"] for h in poll.headers]
    status = {r["sys_id"]: r for r in _by_ids(snow, HEADER_TABLE, "sys_idIN", ids, _CHANGE_FIELDS)}

    def untouched(header: dict[str, Any]) -> bool:
        now = status.get(header["sys_id"])
        return now is not None and all(now.get(f) == header.get(f) for f in _CHANGE_FIELDS)

    keep = {h["sys_id"] for h in poll.headers if untouched(h)}
    handled = {h["number"]: status.get(h["sys_id"], {}).get("integration_status", "deleted")
               for h in poll.headers if h["sys_id"] not in keep}
    # Everything on the list that this run will not post: what another run put there after this run's poll, and
    # polled invoices that run has written since (the case of chaos seed 892043).
    carried = [r["sys_id"] for r in _retryable(snow, poll.legal_entity.upper(),
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


def posted_status_updates(snow: ServiceNowClient, jour: pl.DataFrame, legal_entity: str) -> list[StatusUpdate]:
    """The processed outbound invoices of ``legal_entity`` that F&O has posted but ServiceNow does not show as
    posted yet (no ``erp_posting_date``, or ``erp_number`` still the pending HeaderReference)."""
    posted = posted_lookup(jour)
    if not posted:
        return []
    query = f"legal_entity={escape(legal_entity.upper())}^integration_status=processed"
    updates = []
    for rows in snow.iter_static(HEADER_TABLE, query, fields=HEADER_FIELDS):
        for row in rows:
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


def apply_status_updates(snow: ServiceNowClient, updates: Sequence[StatusUpdate],
                         audit_base: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """PATCH each posted invoice's ERP number and posting date; audit rows (``audit_base`` + per-record fields) and
    the error count. One failed PATCH does not stop the others; the next run offers it again."""
    rows, errors = [], 0
    for u in updates:
        values = {"erp_number": u.erp_number, "erp_posting_date": u.posting_date}
        outcome, message = "updated", None
        try:
            snow.patch(HEADER_TABLE, u.sys_id, values, fields=["sys_id"])
        except Exception as exc:
            outcome, message, errors = "error", str(exc), errors + 1
        rows.append({**audit_base, "direction": "d365_to_snow", "entity": HEADER_TABLE,
                     "business_key": u.business_key, "payload": values, "target": HEADER_TABLE,
                     "target_id": u.sys_id, "outcome": outcome, "message": message})
    return rows, errors


# -- payments ------------------------------------------------------------------------------------------------------
# DESIGN §5.1 coalesces payment details on (u_erp_source, u_legal_entity, u_payment_reference_id). Our pushed-state
# key adds the invoice number, because one F&O settlement voucher can pay several invoices and must become one
# payment detail per invoice; the ServiceNow column u_payment_reference_id stays the settlement voucher. See README.
PAYMENT_MAPPING = replace(PAYMENT_DETAIL, coalesce=(*PAYMENT_DETAIL.coalesce, "u_erp_invoice_number"))
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


def plan_payments(warehouse: Warehouse, ctx: MappingContext, legal_entity: str) -> SyncPlan:
    """The payment details to push for ``legal_entity``: mapped, then diffed against what was pushed."""
    source = settlement_rows(warehouse.read_snapshot(VEND_TRANS, [legal_entity]))
    if source.height:
        staging = apply_mapping(PAYMENT_MAPPING, source, ctx)
    else:
        staging = pl.DataFrame(schema={c: pl.String for c in PAYMENT_MAPPING.column_names})
    diff: DiffResult = warehouse.diff(PAYMENT_MAPPING, staging, erp_source=ctx.erp_source,
                                      legal_entities=[legal_entity])
    held = staging.head(0).with_columns(pl.lit("").alias(BUSINESS_KEY), pl.lit("").alias("_reason"))
    return SyncPlan(PAYMENT_TARGET, legal_entity, diff, held)


__all__ = ["HEADER_FIELDS", "JOUR", "LINE_FIELDS", "PAYMENT_MAPPING", "PAYMENT_TARGET", "VEND_TRANS",
           "IncrementalResult", "InvoicePoll", "StatusUpdate", "extract_incremental", "plan_payments",
           "poll_invoices", "posted_status_updates", "settlement_rows"]
