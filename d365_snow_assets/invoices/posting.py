"""The idempotent posting of validated invoices to F&O (DESIGN §5.2 steps 2–3, §6, §7).

The invariant: for one natural key (dataAreaId, InvoiceAccount, InvoiceNumber) there is at most one F&O invoice,
however often a run is repeated, crashes or loses responses. It holds because

- every attempt starts with a lookup of the key (posted first, then pending): what exists is reused, what is
  posted is never written;
- a header create whose answer was lost (:class:`MaybeWrittenError`) or that F&O refuses as a duplicate is
  resolved by looking up again and is never re-sent in the same attempt: a lookup right after a lost response
  may not yet see a write that is still committing, so an unconfirmed header is left to the next attempt, whose
  first step is again the lookup;
- lines are keyed by (HeaderReference, InvoiceLineNumber = ServiceNow line number) in F&O, so a line create may
  be repeated: F&O refuses the second one as a duplicate key, which the lookup then confirms.

ServiceNow learns ``in_progress`` before the first F&O write of an attempt, then ``processed`` (+ erp_number)
or ``error`` (+ a sentence for the AP clerk). The runner must also re-select invoices left ``in_progress`` by a
crashed attempt; for them this module does the same as for ``new`` ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal, Protocol

from d365_snow_assets.invoices import messages
from d365_snow_assets.invoices.errors import (
    DuplicateError,
    LedgerError,
    MaybeWrittenError,
    NotFoundError,
    TransientError,
    ValidationError,
    detail,
    is_retryable,
)
from d365_snow_assets.invoices.model import HEADER_TABLE, InvoiceLine, InvoiceSettings, OutboundInvoice
from d365_snow_assets.invoices.payloads import (
    HEADER_ENTITY,
    LINE_ENTITY,
    Payload,
    header_payload,
    line_payload,
    payload_text,
)
from d365_snow_assets.invoices.validation import InvoiceVerdict
from d365_snow_assets.warehouse.diff import business_key

log = logging.getLogger(__name__)

DIRECTION = "snow_to_d365"
Outcome = Literal["created", "reused", "posted", "rejected", "error", "skipped", "updated"]


# -- the two sides ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostedInvoice:
    """A row of ``VendInvoiceJourBiEntities`` for the key."""

    ledger_voucher: str
    posting_date: date | None = None


@dataclass(frozen=True)
class PendingInvoice:
    """A ``VendorInvoiceHeaders`` row for the key, with the ``InvoiceLineNumber`` values of its lines."""

    header_reference: str
    # The header's DocumentNumber as F&O holds it ("" when blank). This connector writes the ServiceNow number
    # there, so only a pending invoice carrying this invoice's number is its own (DESIGN §5.2 step 2).
    document_number: str
    line_numbers: frozenset[int] = frozenset()


class InvoiceLedger(Protocol):
    """The F&O side. Lookups match the key the way F&O's duplicate check does (case-insensitively on the
    invoice number, d365.md §4) and must be read fresh, never from a snapshot."""

    def find_posted(self, legal_entity: str, invoice_account: str, invoice_number: str) -> PostedInvoice | None:
        """``VendInvoiceJourBiEntities`` by dataAreaId, InvoiceAccount, InvoiceId (``legal_entity`` lower-case)."""
        ...

    def find_pending(self, legal_entity: str, invoice_account: str, invoice_number: str) -> PendingInvoice | None:
        """``VendorInvoiceHeaders`` by dataAreaId, InvoiceAccount, InvoiceNumber, with its lines' numbers."""
        ...

    def create_header(self, payload: Payload) -> str:
        """POST the header; returns HeaderReference. Raises DuplicateError, MaybeWrittenError, ValidationError,
        or another LedgerError (a failure known to have written nothing)."""
        ...

    def create_line(self, payload: Payload) -> None:
        """POST one line. Raises DuplicateError (line number already used), MaybeWrittenError, ValidationError,
        NotFoundError (the header is gone: posted or deleted), or another LedgerError."""
        ...


class InvoiceStatusWriter(Protocol):
    """The ServiceNow side: PATCHes of ``sn_spend_intg_outbound_invoice`` (each call idempotent)."""

    def mark_in_progress(self, sys_id: str) -> None: ...

    def mark_processed(self, sys_id: str, erp_number: str, posting_date: date | None = None) -> None: ...

    def mark_error(self, sys_id: str, message: str) -> None: ...


# -- results ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditRecord:
    """One audit row without its run context (DESIGN §7); :meth:`as_row` adds it for ``write_audit``."""

    entity: str
    business_key: str
    outcome: Outcome
    target: str
    target_id: str | None = None
    payload: str | None = None  # JSON text
    message: str | None = None

    def as_row(self, run_id: str, asset_key: str | None = None, partition: str | None = None,
               attempt: int = 1) -> dict[str, Any]:
        return {"run_id": run_id, "asset_key": asset_key, "partition": partition, "direction": DIRECTION,
                "entity": self.entity, "business_key": self.business_key, "payload": self.payload,
                "target": self.target, "target_id": self.target_id, "outcome": self.outcome,
                "message": self.message, "attempt": attempt}


@dataclass
class PostingResult:
    """What happened to one invoice in one attempt."""

    sys_id: str
    number: str
    business_key: str
    outcome: Outcome
    erp_number: str | None = None
    message: str = ""
    # True when a later attempt may succeed without anybody changing the data (lost responses, outages).
    retryable: bool = False
    audit: list[AuditRecord] = field(default_factory=list)
    # True when F&O's answer to the header create was lost and the lookup did not find the header (yet).
    unconfirmed: bool = False
    # True when the attempt ended because F&O or ServiceNow could not be reached (or kept throttling) through every
    # retry: every invoice after this one would meet the same outage.
    unreachable: bool = False

    @property
    def final(self) -> bool:
        """ServiceNow holds this outcome and another attempt would not change it unless somebody changes the data:
        processed, rejected, or error for a reason that is the invoice's. Anything else is taken up again by the
        next run (DESIGN §7.1, :mod:`d365_snow_assets.invoices.run`)."""
        return not (self.outcome == "error" and self.retryable)


def is_outage(exc: BaseException) -> bool:
    """A system unreachable or throttling beyond every retry, as opposed to one request whose answer was lost
    (:class:`MaybeWrittenError`) or a refusal."""
    return isinstance(exc, TransientError) and not isinstance(exc, MaybeWrittenError)


AuditFlush = Callable[[list["AuditRecord"], str | None], None]
"""Persists audit records at once; called with each invoice's records before its ServiceNow write-back, and with
the sys_id of the invoice when that write-back is about to mark it ``error`` (else None)."""


def audit_rows(results: Iterable[PostingResult], run_id: str, asset_key: str | None = None,
               partition: str | None = None, attempt: int = 1) -> list[dict[str, Any]]:
    """Every audit record of ``results`` as rows for :func:`d365_snow_assets.warehouse.audit.write_audit`."""
    return [r.as_row(run_id, asset_key, partition, attempt) for res in results for r in res.audit]


def line_key(invoice: OutboundInvoice, line_number: int | None) -> str:
    """A line's business key: the invoice key plus the line number, so that replay tracks each line apart."""
    return business_key([invoice.legal_entity, invoice.supplier, invoice.supplier_invoice_number,
                         str(line_number)])


def _summary(invoice: OutboundInvoice) -> str:
    """The audit payload of an invoice that was not sent: what the clerk entered, in words F&O never saw."""
    return payload_text({
        "sys_id": invoice.sys_id, "number": invoice.number, "supplier": invoice.supplier,
        "supplier_invoice_number": invoice.supplier_invoice_number, "legal_entity": invoice.legal_entity,
        "currency": invoice.currency, "amount_invoiced": invoice.amount_invoiced,
        "lines": [li.line_number for li in invoice.lines]})


# -- the algorithm ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Line:
    outcome: Outcome
    message: str | None = None
    retryable: bool = False


class _Attempt:
    """One attempt at one invoice: holds the audit trail and ends in exactly one :class:`PostingResult`."""

    def __init__(self, verdict: InvoiceVerdict, ledger: InvoiceLedger, servicenow: InvoiceStatusWriter,
                 settings: InvoiceSettings, flush: AuditFlush | None = None) -> None:
        self.verdict, self.ledger, self.sn, self.settings = verdict, ledger, servicenow, settings
        self.inv = verdict.invoice
        self.key = (self.inv.data_area_id, self.inv.supplier, self.inv.supplier_invoice_number)
        self.audit: list[AuditRecord] = []
        self.flush, self.flushed = flush, 0
        self.header_payload: Payload | None = None
        self.outage = False  # a system-level failure was met (see is_outage)

    # results
    def _result(self, outcome: Outcome, erp_number: str | None = None, message: str = "",
                retryable: bool = False, unconfirmed: bool = False) -> PostingResult:
        return PostingResult(self.inv.sys_id, self.inv.number, self.inv.business_key, outcome, erp_number, message,
                             retryable, self.audit, unconfirmed, self.outage)

    def _record(self, outcome: Outcome, *, entity: str = HEADER_ENTITY, key: str | None = None,
                target_id: str | None = None, payload: str | None = None, message: str | None = None) -> None:
        self.audit.append(AuditRecord(entity, key or self.inv.business_key, outcome, entity, target_id,
                                      payload, message))

    def _writeback(self, status: Literal["processed", "error"], erp_number: str = "", message: str = "",
                   posting_date: date | None = None) -> None:
        if self.flush and (len(self.audit) > self.flushed or status == "error"):
            # What F&O now holds is recorded before ServiceNow is told: a crash after the write-back would
            # otherwise leave a processed invoice no later run looks at again, and no audit row for it. An
            # invoice about to be marked `error` is named whatever failed (its header or one of its lines).
            self.flush(self.audit[self.flushed:], self.inv.sys_id if status == "error" else None)
            self.flushed = len(self.audit)
        if status == "processed":
            self.sn.mark_processed(self.inv.sys_id, erp_number, posting_date)
            payload = {"integration_status": "processed", "erp_number": erp_number}
            if posting_date:
                payload["erp_posting_date"] = posting_date.isoformat()
        else:
            self.sn.mark_error(self.inv.sys_id, message)
            payload = {"integration_status": "error", "processing_message": message}
        self.audit.append(AuditRecord(HEADER_TABLE, self.inv.business_key, "updated", HEADER_TABLE,
                                      self.inv.sys_id, payload_text(payload)))

    def _fail(self, message: str, *, retryable: bool, header_reference: str | None = None,
              unconfirmed: bool = False) -> PostingResult:
        """End the attempt as ``error``: audited, and told to ServiceNow (see :meth:`_tell_error`)."""
        self._record("error", target_id=header_reference, payload=self._header_text(), message=message)
        told = self._tell_error(message)
        return self._result("error", header_reference, message, retryable or not told, unconfirmed)

    def _tell_error(self, message: str) -> bool:
        """Mark the invoice ``error`` in ServiceNow; False when ServiceNow could not be told. The F&O outcome is
        audited already, so that failure must not hide it: the invoice stays new / in_progress there, and its
        result is retryable whatever the reason, because until ServiceNow holds the outcome it is not final
        (DESIGN §7.1) and the next attempt, which starts over with the lookup, tells it."""
        try:
            self._writeback("error", message=message)
        except Exception as exc:
            log.warning("could not mark outbound invoice %s as error: %s", self.inv.number, type(exc).__name__)
            self.outage = self.outage or is_outage(exc)
            return False
        return True

    def _header_text(self) -> str | None:
        return payload_text(self.header_payload) if self.header_payload is not None else None

    # steps
    def run(self) -> PostingResult:
        inv = self.inv
        if inv.integration_status == "processed":
            # Already written back: nothing to do, and no F&O call (a re-run of a processed invoice is a no-op).
            self._record("skipped", target_id=inv.erp_number or None, message="already processed")
            return self._result("skipped", inv.erp_number or None)
        if not self.verdict.valid:
            message = self.verdict.processing_message
            self._record("rejected", payload=_summary(inv), message=message)
            self._writeback("error", message=message)
            return self._result("rejected", message=message)
        self.header_payload = header_payload(inv, self.verdict.order_account)

        found = self._existing()
        if isinstance(found, PostingResult):
            return found
        if found is not None and not self._missing(found):
            return self._finish(found.header_reference, "reused", found.line_numbers)
        self.sn.mark_in_progress(inv.sys_id)
        if found is None:
            return self._create_header()
        return self._add_lines(found.header_reference, "reused", found.line_numbers)

    def _existing(self) -> PostingResult | PendingInvoice | None:
        """What F&O holds under the natural key: a posted invoice or another ServiceNow invoice's pending one (both
        end the attempt, so their result is returned), our own pending invoice, or nothing."""
        posted = self.ledger.find_posted(*self.key)
        if posted is not None:
            return self._already_posted(posted)
        pending = self.ledger.find_pending(*self.key)
        if pending is None:
            return None
        return self._conflict(pending) or pending

    def _already_posted(self, posted: PostedInvoice) -> PostingResult:
        self._record("posted", target_id=posted.ledger_voucher, payload=self._header_text(),
                     message="already posted in Dynamics 365; not touched")
        self._writeback("processed", posted.ledger_voucher, posting_date=posted.posting_date)
        return self._result("posted", posted.ledger_voucher)

    def _conflict(self, pending: PendingInvoice) -> PostingResult | None:
        """A pending invoice with this key that is not this ServiceNow invoice's: another number, or blank (keyed
        by hand in F&O). Adding our lines to it would merge two invoices, so F&O is left untouched and the clerk
        is told which pending invoice is in the way (DESIGN §5.2 step 2)."""
        document_number = pending.document_number.strip()
        if document_number == self.inv.number.strip():
            return None
        message = messages.conflicting_pending(self.inv.supplier_invoice_number, self.inv.supplier,
                                               self.inv.legal_entity, pending.header_reference, document_number)
        return self._fail(message, retryable=False, header_reference=pending.header_reference)

    def _missing(self, pending: PendingInvoice) -> list[InvoiceLine]:
        return [li for li in self.inv.lines if li.line_number not in pending.line_numbers]

    def _create_header(self) -> PostingResult:
        assert self.header_payload is not None
        try:
            reference = self.ledger.create_header(self.header_payload)
        except (DuplicateError, MaybeWrittenError) as exc:
            return self._resolve_header(exc)
        except ValidationError as exc:
            return self._fail(messages.rejected_by_erp(detail(exc)), retryable=False)
        except LedgerError as exc:
            self.outage = is_outage(exc)
            return self._fail(messages.unreachable(detail(exc)), retryable=is_retryable(exc))
        return self._add_lines(reference, "created", frozenset())

    def _resolve_header(self, exc: DuplicateError | MaybeWrittenError) -> PostingResult:
        """After a duplicate refusal or a lost answer, the lookup decides; nothing is re-sent in this attempt."""
        found = self._existing()
        if isinstance(found, PostingResult):
            return found
        if found is not None:
            # A lost answer found by the lookup is our own write of this attempt.
            outcome: Outcome = "created" if isinstance(exc, MaybeWrittenError) else "reused"
            return self._add_lines(found.header_reference, outcome, found.line_numbers)
        if isinstance(exc, MaybeWrittenError):
            return self._fail(messages.unconfirmed("the invoice header"), retryable=True, unconfirmed=True)
        # F&O says the number is used but neither lookup sees it (e.g. a duplicate check across fiscal years
        # that the lookup does not mirror): a person has to look. [INF]
        return self._fail(messages.rejected_by_erp(detail(exc)), retryable=False)

    def _add_lines(self, reference: str, header_outcome: Outcome, existing: frozenset[int]) -> PostingResult:
        self._record(header_outcome, target_id=reference, payload=self._header_text())
        present = set(existing)
        for line in self.inv.lines:
            assert line.line_number is not None  # validated
            key = line_key(self.inv, line.line_number)
            target = f"{reference}|{line.line_number}"
            if line.line_number in present:
                self._record("reused", entity=LINE_ENTITY, key=key, target_id=target)
                continue
            payload = line_payload(self.inv, line, reference, self.settings)
            done = self._create_line(line.line_number, reference, payload, present)
            if isinstance(done, PostingResult):
                return done
            self._record(done.outcome, entity=LINE_ENTITY, key=key, target_id=target, payload=payload_text(payload),
                         message=done.message)
            if done.outcome == "error":
                return self._end(done.message or "", done.retryable, reference)
            present.add(line.line_number)
        return self._finish(reference, header_outcome, frozenset(present), record=False)

    def _create_line(self, number: int, reference: str, payload: Payload, present: set[int]) -> _Line | PostingResult:
        """Create one line; returns its outcome, or a finished result when the header is gone."""
        for try_number in (1, 2):
            try:
                self.ledger.create_line(payload)
                return _Line("created")
            except (DuplicateError, MaybeWrittenError) as exc:
                again = self.ledger.find_pending(*self.key)
                if again is None or again.header_reference != reference:
                    return self._header_gone(reference, present)
                present.update(again.line_numbers)
                if number in again.line_numbers:
                    return _Line("created" if isinstance(exc, MaybeWrittenError) else "reused")
                if try_number == 2 or isinstance(exc, DuplicateError):
                    return _Line("error", messages.unconfirmed(f"line {number}"), retryable=True)
                # Not there after a lost answer: safe to send once more, the line key refuses a second copy.
            except ValidationError as exc:
                return _Line("error", messages.line_rejected_by_erp(number, detail(exc), reference))
            except NotFoundError:
                return self._header_gone(reference, present)
            except LedgerError as exc:
                self.outage = is_outage(exc)
                return _Line("error", messages.unreachable(detail(exc)), retryable=is_retryable(exc))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _end(self, message: str, retryable: bool, reference: str) -> PostingResult:
        """End after a line failure: the line's own audit row is written, so only ServiceNow is told."""
        told = self._tell_error(message)
        return self._result("error", reference, message, retryable or not told)

    def _header_gone(self, reference: str, present: set[int]) -> PostingResult:
        """The pending header vanished mid-attempt: posted by someone (with only some of our lines) or deleted."""
        wanted = [li.line_number for li in self.inv.lines if li.line_number is not None]
        message = messages.posted_incomplete(reference, sorted(present), wanted)
        posted = self.ledger.find_posted(*self.key)
        # Posted → it can never be completed by us; deleted → the next attempt creates it afresh.
        return self._fail(message, retryable=posted is None, header_reference=reference)

    def _finish(self, reference: str, outcome: Outcome, present: frozenset[int], record: bool = True) -> PostingResult:
        if record:
            self._record(outcome, target_id=reference, payload=self._header_text())
            for line in self.inv.lines:
                self._record("reused", entity=LINE_ENTITY, key=line_key(self.inv, line.line_number),
                             target_id=f"{reference}|{line.line_number}")
        self._writeback("processed", reference)
        return self._result(outcome, reference)


def post_invoice(verdict: InvoiceVerdict, ledger: InvoiceLedger, servicenow: InvoiceStatusWriter,
                 settings: InvoiceSettings | None = None) -> PostingResult:
    """Bring one invoice to its end state (DESIGN §5.2): rejected, posted (untouched), reused or created, with
    ServiceNow written back. Safe to call any number of times for the same invoice. Exceptions other than
    :class:`LedgerError` from the ledger or ServiceNow propagate (use :func:`post_invoices` for a batch)."""
    return _Attempt(verdict, ledger, servicenow, settings or InvoiceSettings()).run()


def post_invoices(verdicts: Sequence[InvoiceVerdict], ledger: InvoiceLedger, servicenow: InvoiceStatusWriter,
                  settings: InvoiceSettings | None = None, flush: AuditFlush | None = None,
                  settle: Callable[[int], None] | None = None) -> list[PostingResult]:
    """:func:`post_invoice` for each verdict; an unexpected failure of one invoice is audited as a retryable
    ``error`` and the batch goes on, except after an outage: once an attempt met F&O or ServiceNow unreachable
    through every retry (:attr:`PostingResult.unreachable`), the rest of the batch is not attempted (audited as a
    retryable ``error``, nothing written anywhere) and waits for the next run, instead of spending every retry
    budget again on a system that is down.

    With ``settle``, the invoices whose header F&O did not confirm get one more attempt at the end of the batch,
    after ``settle(count)`` returns: a pause in which a write that was still committing becomes visible to the
    lookup that the attempt starts with, so the header is still never sent again without a lookup first. What
    does not confirm then is left to the next run. A result keeps the audit records of both attempts."""
    settings = settings or InvoiceSettings()
    results: list[PostingResult] = []
    for verdict in verdicts:
        if any(r.unreachable for r in results):
            results.append(_not_attempted(verdict, servicenow, ledger, settings))
        else:
            results.append(_attempt(verdict, ledger, servicenow, settings, flush))
    again = [i for i, r in enumerate(results) if r.unconfirmed]
    if settle is not None and again and not any(r.unreachable for r in results):
        settle(len(again))
        for i in again:
            second = _attempt(verdicts[i], ledger, servicenow, settings, flush)
            second.audit = results[i].audit + second.audit
            results[i] = second
    return results


def _attempt(verdict: InvoiceVerdict, ledger: InvoiceLedger, servicenow: InvoiceStatusWriter,
             settings: InvoiceSettings, flush: AuditFlush | None) -> PostingResult:
    attempt = _Attempt(verdict, ledger, servicenow, settings, flush)
    try:
        return attempt.run()
    except Exception as exc:
        # Whatever this attempt already did stays audited; the invoice is left new / in_progress in
        # ServiceNow (telling it may be what failed), and the next attempt starts over with the lookup.
        message = messages.unreachable(detail(exc))
        log.warning("invoice %s failed: %s", verdict.invoice.number, type(exc).__name__)
        attempt.outage = attempt.outage or is_outage(exc)
        attempt._record("error", payload=attempt._header_text(), message=message)
        return attempt._result("error", None, message, retryable=True)


def _not_attempted(verdict: InvoiceVerdict, servicenow: InvoiceStatusWriter, ledger: InvoiceLedger,
                   settings: InvoiceSettings) -> PostingResult:
    attempt = _Attempt(verdict, ledger, servicenow, settings)
    message = messages.not_attempted(verdict.invoice.number)
    attempt._record("error", message=message)
    return attempt._result("error", None, message, retryable=True)
