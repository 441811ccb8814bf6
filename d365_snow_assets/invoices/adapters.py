"""Adapters from the pure posting core (:mod:`posting`) and the invoice run (:mod:`run`) to the real HTTP clients
(DESIGN §5.2, §6).

``D365Ledger`` satisfies :class:`~d365_snow_assets.invoices.posting.InvoiceLedger` over :class:`D365Client`;
``ServiceNowStatusWriter`` satisfies :class:`InvoiceStatusWriter` and ``ServiceNowOutbound``
:class:`~d365_snow_assets.invoices.run.OutboundSource` over :class:`ServiceNowClient`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from d365_snow_assets.clients import odata
from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.clients.encoded_query import EncodedQuery, queryable
from d365_snow_assets.clients.servicenow import KeysetCursor, ServiceNowClient
from d365_snow_assets.discovery.outbound import OutboundFields
from d365_snow_assets.invoices.payloads import HEADER_ENTITY, LINE_ENTITY, Payload, json_ready
from d365_snow_assets.invoices.posting import PendingInvoice, PostedInvoice

log = logging.getLogger(__name__)


def parse_fno_date(value: Any) -> date | None:
    """An F&O Date/DateTimeOffset value as a date; F&O's null date (1900-01-01) is ``None`` (DESIGN §5)."""
    if value in (None, ""):
        return None
    text = str(value)
    try:
        day = datetime.fromisoformat(text.replace("Z", "+00:00")).date() if "T" in text else date.fromisoformat(
            text[:10])
    except ValueError:
        return None
    return None if day.year <= 1900 else day


def _same(a: Any, b: str) -> bool:
    # F&O's duplicate check compares invoice numbers case-insensitively (SQL Server collation, d365.md §4), so
    # the lookup must too, or "inv-1" would be created next to a pending "INV-1" and be refused.
    return str(a or "").casefold() == b.casefold()


class D365Ledger:
    """The F&O side of the posting: fresh lookups by natural key, and the header / line creates."""

    def __init__(self, client: D365Client) -> None:
        self.client = client

    def _find(self, entity_set: str, legal_entity: str, match: Mapping[str, str],
              select: list[str] | None = None) -> list[dict[str, Any]]:
        # F&O's eq is case-insensitive already (and '*' is a wildcard): query the superset, compare here.
        flt = odata.all_of(*(odata.eq(k, v, wildcard_ok=True) for k, v in match.items()))
        rows = self.client.read_all(entity_set, legal_entity=legal_entity, odata_filter=flt, select=select)
        le = legal_entity.lower()
        return [r for r in rows if str(r.get("dataAreaId", le)).lower() == le
                and all(_same(r.get(k), v) for k, v in match.items())]

    def find_posted(self, legal_entity: str, invoice_account: str, invoice_number: str) -> PostedInvoice | None:
        rows = self._find("VendInvoiceJourBiEntities", legal_entity,
                          {"InvoiceAccount": invoice_account, "InvoiceId": invoice_number},
                          ["dataAreaId", "InvoiceAccount", "InvoiceId", "LedgerVoucher", "InvoiceDate",
                           "DocumentDate", "SysModifiedDateTime"])
        if not rows:
            return None
        row = rows[0]
        # The posting date of the journal: F&O's BI entity has no separate posting-date column in the sandbox's
        # field list; the voucher is dated on InvoiceDate / DocumentDate. [INF]
        posting = parse_fno_date(row.get("InvoiceDate")) or parse_fno_date(row.get("DocumentDate"))
        return PostedInvoice(str(row.get("LedgerVoucher") or ""), posting)

    def find_pending(self, legal_entity: str, invoice_account: str, invoice_number: str) -> PendingInvoice | None:
        rows = self._find(HEADER_ENTITY, legal_entity,
                          {"InvoiceAccount": invoice_account, "InvoiceNumber": invoice_number},
                          ["dataAreaId", "HeaderReference", "InvoiceAccount", "InvoiceNumber", "DocumentNumber"])
        if not rows:
            return None
        row = rows[0]
        reference = str(row["HeaderReference"])
        lines = self._find(LINE_ENTITY, legal_entity, {"HeaderReference": reference},
                           ["dataAreaId", "HeaderReference", "InvoiceLineNumber"])
        numbers = frozenset(int(float(r["InvoiceLineNumber"])) for r in lines if r.get("InvoiceLineNumber") is not None)
        return PendingInvoice(reference, document_number=str(row.get("DocumentNumber") or ""), line_numbers=numbers)

    def create_header(self, payload: Payload) -> str:
        created = self.client.create(HEADER_ENTITY, json_ready(payload))
        return str(created.get("HeaderReference") or "")

    def create_line(self, payload: Payload) -> None:
        self.client.create(LINE_ENTITY, json_ready(payload))


class ServiceNowStatusWriter:
    """PATCHes of the outbound invoice: absolute values, so a repeat is harmless. Fields and status values are the
    instance's own (``out``, resolved by discovery)."""

    def __init__(self, client: ServiceNowClient, out: OutboundFields) -> None:
        self.client = client
        self.out = out

    def _patch(self, sys_id: str, status: str, **values: str) -> None:
        body = {self.out.element("integration_status"): self.out.status(status),
                **{self.out.element(name): value for name, value in values.items()}}
        self.client.patch(self.out.header_table, sys_id, body, fields=["sys_id"])

    def mark_in_progress(self, sys_id: str) -> None:
        self._patch(sys_id, "in_progress", processing_message="")

    def mark_processed(self, sys_id: str, erp_number: str, posting_date: date | None = None) -> None:
        values = {"erp_number": erp_number, "processing_message": ""}
        if posting_date is not None and "erp_posting_date" in self.out.header:
            values["erp_posting_date"] = posting_date.isoformat()
        self._patch(sys_id, "processed", **values)

    def mark_error(self, sys_id: str, message: str) -> None:
        self._patch(sys_id, "error", processing_message=message)


IDS_PER_QUERY = 100  # values per `…IN…` encoded query: keeps the URL far below any proxy limit


def scope_query(out: OutboundFields, legal_entity: str, erp_source: str, status: str | None = None) -> EncodedQuery:
    """Our invoices (ERP source), of this legal entity (its ERP company code, through the reference), in
    ``status`` when given (a logical status; the stored value comes from the instance's choices)."""
    query = EncodedQuery().eq(out.header["legal_entity"], legal_entity.upper()).eq(out.header["erp_source"],
                                                                                    erp_source)
    return query.eq(out.element("integration_status"), out.status(status)) if status else query


def rows_by_values(snow: ServiceNowClient, table: str, query: EncodedQuery | None, field: str,
                   values: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of ``table`` matching ``query`` whose ``field`` is one of ``values``, a chunk of values per request.

    Values come from F&O (invoice numbers keyed there by hand among them): one no encoded query can carry is left
    out with a warning, since failing the whole lookup would fail the step on every run for good."""
    unaskable = [v for v in values if not queryable(field, v)]
    if unaskable:
        log.warning("%s: %d value(s) of %s cannot be asked in an encoded query and are left out (e.g. %r)",
                    table, len(unaskable), field, unaskable[0][:40])
        values = [v for v in values if queryable(field, v)]
    found: list[dict[str, Any]] = []
    for start in range(0, len(values), IDS_PER_QUERY):
        chunk_query = (query.copy() if query else EncodedQuery()).in_(field, list(values[start:start + IDS_PER_QUERY]))
        for rows in snow.iter_static(table, chunk_query, fields=fields):
            found.extend(rows)
    return found


class ServiceNowOutbound:
    """The outbound invoices of one ERP source as the invoice run reads them: every row as the logical dict
    :func:`d365_snow_assets.invoices.model.parse_invoice` reads (``out.to_header`` / ``out.to_lines``)."""

    def __init__(self, client: ServiceNowClient, out: OutboundFields, erp_source: str) -> None:
        self.client, self.out, self.erp_source = client, out, erp_source

    def new_pages(self, legal_entity: str, after: Mapping[str, str] | None,
                  page_size: int = 500) -> Iterator[list[dict[str, Any]]]:
        query = scope_query(self.out, legal_entity, self.erp_source, "new")
        cursor = None
        if after and after["sys_id"]:
            cursor = KeysetCursor(after["updated_on"], after["sys_id"])
        elif after:  # the whole second (run.overlapped)
            query = query.ge("sys_updated_on", after["updated_on"])
        for page in self.client.iter_keyset(self.out.header_table, query, fields=self.out.header_fields(),
                                            page_size=page_size, cursor=cursor):
            yield [self.out.to_header(r) for r in page.rows]

    def in_progress(self, legal_entity: str) -> list[dict[str, Any]]:
        query = scope_query(self.out, legal_entity, self.erp_source, "in_progress")
        return [self.out.to_header(r) for rows in self.client.iter_static(
            self.out.header_table, query, fields=self.out.header_fields()) for r in rows]

    def by_ids(self, legal_entity: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = rows_by_values(self.client, self.out.header_table, scope_query(self.out, legal_entity, self.erp_source),
                              "sys_id", ids, self.out.header_fields())
        return [self.out.to_header(r) for r in rows]

    def lines(self, header_ids: Sequence[str]) -> list[dict[str, Any]]:
        return self.out.to_lines(rows_by_values(self.client, self.out.line_table, None,
                                                self.out.line["outbound_invoice"], header_ids,
                                                self.out.line_fields()))


__all__ = ["D365Ledger", "ServiceNowOutbound", "ServiceNowStatusWriter", "parse_fno_date", "rows_by_values",
           "scope_query"]
