"""In-memory fakes of the Protocols of the invoice flow, with fault injection, and the reference data of its tests.

The fake ledger mirrors the F&O behaviour the algorithm relies on (d365.md §3.3, §4): server-assigned
HeaderReference, the vendor-invoice duplicate check (NoDuplicate over pending and posted, case-insensitive, or
AcceptDuplicate), the line key (HeaderReference, InvoiceLineNumber), 404 for a line under a vanished header.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from d365_snow_assets.discovery.outbound import DOCUMENTED_STATUS, OutboundFields
from d365_snow_assets.discovery.outbound import HEADER as OUTBOUND_HEADER
from d365_snow_assets.discovery.outbound import LINE as OUTBOUND_LINE
from d365_snow_assets.invoices import (
    DuplicateError,
    MaybeWrittenError,
    NotFoundError,
    PendingInvoice,
    PostedInvoice,
    ValidationError,
)
from d365_snow_assets.invoices.errors import TransientError
from d365_snow_assets.invoices.model import text_value
from d365_snow_assets.invoices.validation import InvoiceReferences


class Crash(Exception):
    """Not a LedgerError: simulates the process dying at this point."""


# Fault codes consumed one per call, in call order:
#   ok            the call works
#   fail          TransientError before any write (connection refused)
#   lost_before   MaybeWrittenError, nothing written
#   lost_after    the write happens, then MaybeWrittenError
#   crash_before  Crash before the write
#   crash_after   the write happens, then Crash
FAULTS = ("ok", "fail", "lost_before", "lost_after", "crash_before", "crash_after")


class FakeLedger:
    def __init__(self, duplicate_check: str = "NoDuplicate", faults: list[str] | None = None) -> None:
        self.duplicate_check = duplicate_check
        self.headers: dict[str, dict] = {}
        self.lines: dict[tuple[str, int], dict] = {}
        self.posted: dict[tuple[str, str, str], PostedInvoice] = {}
        self.faults: deque[str] = deque(faults or [])
        self.calls: list[tuple[str, object]] = []
        self.reject_header: str | None = None  # F&O validation message to raise on create_header
        self.reject_line: dict[int, str] = {}
        self.after_header = None  # hook(ledger) run after a successful header write
        self._seq = 0

    # helpers
    def _fault(self, op: str) -> str:
        code = self.faults.popleft() if self.faults else "ok"
        if op.startswith("find") and code in ("lost_before", "lost_after"):
            code = "fail"  # a read has nothing to lose
        if op.startswith("find") and code == "crash_after":
            code = "crash_before"
        if code == "fail":
            raise TransientError(f"connection refused during {op}")
        if code == "lost_before":
            raise MaybeWrittenError(f"timeout during {op}")
        if code == "crash_before":
            raise Crash(op)
        return code

    @staticmethod
    def _after(code: str, op: str) -> None:
        if code == "lost_after":
            raise MaybeWrittenError(f"timeout after {op}")
        if code == "crash_after":
            raise Crash(op)

    def _key(self, le: str, account: str, number: str) -> tuple[str, str, str]:
        return (le.lower(), account, number.lower())

    def pending_for(self, le: str, account: str, number: str) -> list[str]:
        want = self._key(le, account, number)
        return [ref for ref, h in sorted(self.headers.items())
                if self._key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"]) == want]

    def lines_of(self, ref: str) -> dict[int, dict]:
        return {n: p for (r, n), p in self.lines.items() if r == ref}

    def post(self, ref: str, voucher: str = "APINV-000001", day: date | None = date(2026, 5, 20)) -> None:
        """What F&O does when a clerk posts: pending rows go, the journal row appears."""
        h = self.headers.pop(ref)
        for key in [k for k in self.lines if k[0] == ref]:
            del self.lines[key]
        self.posted[self._key(h["dataAreaId"], h["InvoiceAccount"], h["InvoiceNumber"])] = PostedInvoice(voucher, day)

    # the Protocol
    def find_posted(self, legal_entity: str, invoice_account: str, invoice_number: str) -> PostedInvoice | None:
        self.calls.append(("find_posted", invoice_number))
        self._fault("find_posted")
        return self.posted.get(self._key(legal_entity, invoice_account, invoice_number))

    def find_pending(self, legal_entity: str, invoice_account: str, invoice_number: str) -> PendingInvoice | None:
        self.calls.append(("find_pending", invoice_number))
        self._fault("find_pending")
        refs = self.pending_for(legal_entity, invoice_account, invoice_number)
        if not refs:
            return None
        ref = refs[0]
        # Exactly what D365Ledger.find_pending builds from F&O's row: a blank DocumentNumber is "".
        return PendingInvoice(ref, document_number=str(self.headers[ref].get("DocumentNumber") or ""),
                              line_numbers=frozenset(self.lines_of(ref)))

    def create_header(self, payload: dict) -> str:
        self.calls.append(("create_header", payload))
        code = self._fault("create_header")
        if self.reject_header:
            raise ValidationError(self.reject_header)
        key = (payload["dataAreaId"], payload["InvoiceAccount"], payload["InvoiceNumber"])
        if self.duplicate_check == "NoDuplicate" and (self.pending_for(*key) or self._key(*key) in self.posted):
            raise DuplicateError(f"Invoice {key[2]} has already been used for vendor {key[1]}.")
        self._seq += 1
        ref = f"{payload['dataAreaId'].upper()}-VI{self._seq:08d}"
        self.headers[ref] = dict(payload, HeaderReference=ref)
        if self.after_header:
            self.after_header(self)
        self._after(code, "create_header")
        return ref

    def create_line(self, payload: dict) -> None:
        self.calls.append(("create_line", payload))
        code = self._fault("create_line")
        ref, number = payload["HeaderReference"], payload["InvoiceLineNumber"]
        if ref not in self.headers:
            raise NotFoundError(f"The pending vendor invoice '{ref}' does not exist.")
        if number in self.reject_line:
            raise ValidationError(self.reject_line[number])
        if (ref, number) in self.lines:
            raise DuplicateError(f"The record already exists: {ref}, {number}.")
        self.lines[(ref, number)] = dict(payload)
        self._after(code, "create_line")

    def writes(self) -> int:
        return sum(1 for op, _ in self.calls if op.startswith("create"))


class FakeServiceNow:
    """The outbound invoice table as far as the write-back is concerned."""

    def __init__(self, faults: list[str] | None = None) -> None:
        self.status: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.faults: deque[str] = deque(faults or [])

    def _fault(self) -> str:
        code = self.faults.popleft() if self.faults else "ok"
        if code in ("fail", "crash_before", "lost_before"):
            raise Crash("servicenow")
        return code

    def _set(self, sys_id: str, values: dict) -> None:
        code = self._fault()
        self.status.setdefault(sys_id, {}).update(values)
        if code in ("crash_after", "lost_after"):
            raise Crash("servicenow after write")

    def mark_in_progress(self, sys_id: str) -> None:
        self.calls.append(("in_progress", sys_id))
        self._set(sys_id, {"integration_status": "in_progress"})

    def mark_processed(self, sys_id: str, erp_number: str, posting_date: date | None = None) -> None:
        self.calls.append(("processed", sys_id, erp_number, posting_date))
        self._set(sys_id, {"integration_status": "processed", "erp_number": erp_number,
                           "erp_posting_date": posting_date.isoformat() if posting_date else ""})

    def mark_error(self, sys_id: str, message: str) -> None:
        self.calls.append(("error", sys_id, message))
        self._set(sys_id, {"integration_status": "error", "processing_message": message})

    def apply(self, header: dict) -> dict:
        """``header`` as the next poll would return it (with the written-back fields)."""
        return {**header, **self.status.get(header["sys_id"], {})}


class FakeOutboundTable(FakeServiceNow):
    """The outbound invoice tables of one instance, read and written: the write-back of :class:`FakeServiceNow`
    plus the poll's side (:class:`~d365_snow_assets.invoices.run.OutboundSource`).

    Rows are held as the instance stores them (a stored status value, a stamp and a mod count that move on every
    write) and read through the real ``OutboundFields.to_header`` / ``to_lines``, so what the fake returns is exactly
    what ``adapters.ServiceNowOutbound`` returns. ``down`` makes every call fail the way the real adapters do when
    ServiceNow is unreachable beyond their retries (TransientError)."""

    def __init__(self, erp_source: str = "D365FO") -> None:
        super().__init__()
        self.out = OutboundFields({k: k for k in OUTBOUND_HEADER}, {k: k for k in OUTBOUND_LINE},
                                  dict(DOCUMENTED_STATUS))
        self.erp_source = erp_source
        self.rows: dict[str, dict[str, str]] = {}
        self.line_rows: list[dict[str, str]] = []
        self.down = False
        self._second = 0

    def _stamp(self) -> str:
        self._second += 1
        return f"2026-05-01 {self._second // 3600:02d}:{self._second // 60 % 60:02d}:{self._second % 60:02d}"

    def approve(self, head: dict, lines: list[dict]) -> str:
        """An approved invoice appears (``header()`` / ``line()`` values), in ``new``."""
        row = {k: str(v) for k, v in head.items() if k in OUTBOUND_HEADER}
        row.update(sys_id=head["sys_id"], sys_updated_on=self._stamp(), sys_mod_count="0",
                   erp_source=self.erp_source, integration_status=DOCUMENTED_STATUS["new"])
        self.rows[row["sys_id"]] = row
        for li in lines:
            raw = {k: text_value(v) for k, v in li.items() if k in OUTBOUND_LINE}
            self.line_rows.append({**raw, "sys_id": li["sys_id"], "number": f"{int(li['line_number']):04d}"})
        return row["sys_id"]

    def status_of(self, sys_id: str) -> str:
        return self.out.logical_status(self.rows[sys_id]["integration_status"])

    def _set(self, sys_id: str, values: dict) -> None:
        if self.down:
            raise TransientError("servicenow could not be reached after 6 attempts")
        super()._set(sys_id, values)
        row = self.rows[sys_id]
        stored = {k: str(v) for k, v in values.items()}
        stored["integration_status"] = DOCUMENTED_STATUS[values["integration_status"]]
        row.update(stored, sys_updated_on=self._stamp(), sys_mod_count=str(int(row["sys_mod_count"]) + 1))

    # the OutboundSource Protocol
    def _read(self) -> None:
        if self.down:
            raise TransientError("servicenow could not be reached after 6 attempts")

    def _ours(self, legal_entity: str) -> list[dict[str, str]]:
        return sorted((r for r in self.rows.values() if r["legal_entity"] == legal_entity.upper()
                       and r["erp_source"] == self.erp_source), key=lambda r: (r["sys_updated_on"], r["sys_id"]))

    def new_pages(self, legal_entity: str, after: Mapping[str, str] | None,
                  page_size: int = 500) -> Iterator[list[dict[str, Any]]]:
        self._read()
        start = (after["updated_on"], after["sys_id"]) if after else ("", "")
        rows = [self.out.to_header(r) for r in self._ours(legal_entity)
                if r["integration_status"] == DOCUMENTED_STATUS["new"]
                and (r["sys_updated_on"], r["sys_id"]) > start]
        for i in range(0, len(rows), page_size):
            yield rows[i:i + page_size]

    def in_progress(self, legal_entity: str) -> list[dict[str, Any]]:
        self._read()
        return [self.out.to_header(r) for r in self._ours(legal_entity)
                if r["integration_status"] == DOCUMENTED_STATUS["in_progress"]]

    def by_ids(self, legal_entity: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        self._read()
        return [self.out.to_header(r) for r in self._ours(legal_entity) if r["sys_id"] in set(ids)]

    def lines(self, header_ids: Sequence[str]) -> list[dict[str, Any]]:
        self._read()
        return self.out.to_lines([li for li in self.line_rows if li["outbound_invoice"] in set(header_ids)])


# -- reference snapshots (F&O column names) ---------------------------------------------------------------------
VENDORS = pl.DataFrame({
    "dataAreaId": ["usmf", "usmf", "usmf", "usmf", "demf", "usmf"],
    "VendorAccountNumber": ["V-0001", "V-0042", "V-0050", "V-0060", "V-0001", "O'BRIEN^Ü"],
    "OnHoldStatus": ["No", "Invoice", "Payment", "All", "No", "No"],
    "CurrencyCode": ["USD", "USD", "EUR", "USD", "EUR", "USD"],
})
PURCHASE_ORDERS = pl.DataFrame({
    "dataAreaId": ["usmf", "usmf", "usmf", "usmf"],
    "PurchaseOrderNumber": ["PO-1", "PO-2", "PO-3", "PO-4"],
    "PurchaseOrderStatus": ["Backorder", "Canceled", "Received", "Backorder"],
    "CurrencyCode": ["USD", "USD", "EUR", "USD"],
    "OrderVendorAccountNumber": ["V-0001", "V-0001", "V-0050", "V-0099"],
    "InvoiceVendorAccountNumber": ["V-0001", "V-0001", "V-0050", "V-0001"],
})
PURCHASE_ORDER_LINES = pl.DataFrame({
    "dataAreaId": ["usmf", "usmf", "usmf", "usmf", "usmf"],
    "PurchaseOrderNumber": ["PO-1", "PO-1", "PO-1", "PO-3", "PO-4"],
    "LineNumber": [1.0, 2.0, 3.0, 1.0, 1.0],  # JSON numbers may arrive as floats
    "PurchaseOrderLineStatus": ["Backorder", "Backorder", "Canceled", "Received", "Backorder"],
})
MAIN_ACCOUNTS = pl.DataFrame({
    "ChartOfAccounts": ["Shared"] * 3,
    "MainAccountId": ["600100", "600200", "600300"],
    "IsSuspended": ["No", "Yes", "No"],
})
DIMENSION_VALUES = pl.DataFrame({
    "FinancialDimension": ["CostCenter"] * 6 + ["Department"],
    "LegalEntityId": ["USMF", "USMF", "", "", "usmf", "DEMF", "USMF"],
    "DimensionValue": ["CC01", "CC02", "CC99", "CC05", "CC05", "CC07", "D01"],
    "IsSuspended": ["No", "Yes", "No", "No", "Yes", "No", "No"],
})


def references(legal_entities: list[str] | None = None) -> InvoiceReferences:
    return InvoiceReferences.from_snapshots(
        vendors=VENDORS, purchase_orders=PURCHASE_ORDERS, purchase_order_lines=PURCHASE_ORDER_LINES,
        main_accounts=MAIN_ACCOUNTS, dimension_values=DIMENSION_VALUES, legal_entities=legal_entities)


def header(sys_id: str = "h1", **over: object) -> dict:
    row = {"sys_id": sys_id, "number": f"OBINV-{sys_id}", "supplier_invoice_number": f"INV-{sys_id}",
           "supplier": "V-0001", "legal_entity": "USMF", "currency": "USD", "invoice_date": "2026-05-01",
           "due_date": "2026-05-31", "amount_invoiced": "1320.00", "tax_amount": "120.00", "purchase_order": "PO-1",
           "invoice_type": "po_invoice", "integration_status": "new", "erp_number": "", "processing_message": ""}
    row.update(over)
    return row


def line(n: int, sys_id: str = "h1", **over: object) -> dict:
    row = {"sys_id": f"{sys_id}-l{n}", "outbound_invoice": {"value": sys_id, "link": f"https://x/{sys_id}"},
           "line_number": str(n), "purchase_order": "PO-1", "purchase_order_line": str(n), "item_number": "",
           "description": f"Steel beams, batch {n}", "quantity": "2", "unit_price": "300.00", "amount": "600.00",
           "gl_account": "600100", "cost_center": "CC01", "tax_amount": "60.00"}
    row.update(over)
    return row
