"""Adapters from the pure posting core (:mod:`posting`) to the real HTTP clients (DESIGN §5.2, §6).

``D365Ledger`` satisfies :class:`~d365_snow_assets.invoices.posting.InvoiceLedger` over :class:`D365Client`;
``ServiceNowStatusWriter`` satisfies :class:`InvoiceStatusWriter` over :class:`ServiceNowClient`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from d365_snow_assets.clients import odata
from d365_snow_assets.clients.d365 import D365Client
from d365_snow_assets.clients.servicenow import ServiceNowClient
from d365_snow_assets.discovery.outbound import OutboundFields
from d365_snow_assets.invoices.payloads import HEADER_ENTITY, LINE_ENTITY, Payload, json_ready
from d365_snow_assets.invoices.posting import PendingInvoice, PostedInvoice


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


__all__ = ["D365Ledger", "ServiceNowStatusWriter", "parse_fno_date"]
