"""The invoice run of one legal entity (DESIGN §5.2, §6, §7.1): poll the outbound invoices waiting for F&O, validate
them against the snapshots, post them, write ServiceNow back, then commit the keyset cursor and the retry list
together with the audit rows. No Dagster: the assets of ``defs/invoices`` only wire it, and the sensor asks
:func:`waiting_invoice` whether there is work.

**No invoice is stranded.** An invoice's outcome is *final* when ServiceNow holds it and another attempt would not
change it: processed, or error for a reason that is the invoice's (rejected by validation or by F&O, a conflicting
pending invoice; :attr:`PostingResult.final`). Anything else (F&O or ServiceNow unreachable beyond every retry, an
answer that was lost, a process killed midway) is taken up again by the next run, by one of three roads:

- still ``new`` (ServiceNow was never told): the keyset cursor never moves past an invoice whose outcome is not
  final (:func:`cursor_to_commit`; this module is the only place the cursor is committed);
- ``in_progress`` (a run stopped between its first write and the write-back): polled every run, whatever the cursor;
- anything else: the invoice is on the retry list, which the poll reads whatever the invoice's status is now
  (unless it is processed, or a clerk took it out of the flow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..warehouse import Warehouse, audit, state
from .model import InvoiceSettings, parse_invoices
from .posting import AuditRecord, InvoiceLedger, InvoiceStatusWriter, PostingResult, audit_rows, post_invoices
from .validation import InvoiceReferences, validate_invoices

Position = dict[str, str]
"""A keyset position as stored: ``{"updated_on": sys_updated_on, "sys_id": sys_id}``."""

# The statuses in which an invoice on the retry list is taken up again: an invoice another run processed since is
# done, and one in any other state (a clerk cancelled it, or sent it back to draft) is out of the flow.
RETRY_STATUSES = frozenset({"new", "in_progress", "error"})
# How long a run waits for another run posting the same legal entity's invoices before it fails (its invoices stay
# as they are, for the next run). A month-end batch of a few thousand invoices posts well inside it. [choice]
POSTING_WAIT_S = 3600.0


def poll_cursor_name(legal_entity: str) -> str:
    return f"invoices:poll:{legal_entity.lower()}"


def retry_cursor_name(legal_entity: str) -> str:
    return f"invoices:retry:{legal_entity.lower()}"


def posting_lock_name(legal_entity: str) -> str:
    return f"invoice-posting-{legal_entity.lower()}"


class OutboundSource(Protocol):
    """The ServiceNow side of the poll (``adapters.ServiceNowOutbound``): rows as the logical dicts
    ``OutboundFields.to_header`` / ``to_lines`` make, ``integration_status`` a logical status."""

    def new_pages(self, legal_entity: str, after: Mapping[str, str] | None,
                  page_size: int = 500) -> Iterable[list[dict[str, Any]]]:
        """Our ``new`` invoices of ``legal_entity`` after the position ``after``, in keyset order, page by page;
        a blank ``sys_id`` in ``after`` means from the first row of its second on."""
        ...

    def in_progress(self, legal_entity: str) -> list[dict[str, Any]]:
        """Our ``in_progress`` invoices of ``legal_entity``."""
        ...

    def by_ids(self, legal_entity: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Our invoices of ``legal_entity`` among ``ids``, whatever their status."""
        ...

    def lines(self, header_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The lines of these invoices."""
        ...


def _position(header: Mapping[str, Any]) -> Position:
    return {"updated_on": str(header["sys_updated_on"]), "sys_id": str(header["sys_id"])}


def later_cursor(a: Position | None, b: Position | None) -> Position | None:
    """The keyset position further on. ``updated_on`` is ServiceNow's ``YYYY-MM-DD HH:MM:SS`` (UTC), so text order
    is time order."""
    positions = [p for p in (a, b) if p]
    return max(positions, key=lambda p: (p["updated_on"], p["sys_id"])) if positions else None


# -- the poll ----------------------------------------------------------------------------------------------------
# The `new` poll starts this long before the committed cursor. `sys_updated_on` has one-second resolution
# (reference/servicenow.md §1.6), so an invoice approved in the cursor's own second after the poll, with a smaller
# sys_id, sorts behind the cursor; one whose transaction commits after a later one (an inference: ServiceNow stamps
# before it commits) can too. Only invoices still `new` match, so the re-read costs a few rows. [choice: 60 s]
POLL_OVERLAP = timedelta(seconds=60)
SYS_TIME = "%Y-%m-%d %H:%M:%S"


def overlapped(start: Position | None) -> Position | None:
    """Where the ``new`` poll reads from: :data:`POLL_OVERLAP` before ``start``, from the first row of that second
    (a blank sys_id sorts before every sys_id)."""
    if start is None:
        return None
    earlier = datetime.strptime(start["updated_on"], SYS_TIME) - POLL_OVERLAP
    return {"updated_on": earlier.strftime(SYS_TIME), "sys_id": ""}


@dataclass
class InvoicePoll:
    """The outbound invoices one run works on, and where the poll started."""

    legal_entity: str
    headers: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    start: Position | None  # the committed cursor the poll read `new` invoices after
    new: list[Position] = field(default_factory=list)  # the `new` invoices polled, in keyset order
    sources: dict[str, int] = field(default_factory=dict)  # what the poll selected: new / in_progress / retry


def poll_invoices(source: OutboundSource, warehouse: Warehouse, legal_entity: str, *,
                  page_size: int = 500) -> InvoicePoll:
    """``new`` invoices after the committed cursor (DESIGN §6; read from :data:`POLL_OVERLAP` before it), every
    ``in_progress`` one, and those on the retry list still waiting (:data:`RETRY_STATUSES`); with their lines."""
    start = warehouse.get_cursor(poll_cursor_name(legal_entity))
    headers: dict[str, dict[str, Any]] = {}
    new: list[Position] = []
    for page in source.new_pages(legal_entity, overlapped(start), page_size):
        for row in page:
            headers[row["sys_id"]] = row
            new.append(_position(row))
    sources = {"new": len(headers)}
    # Whatever the cursor says: their status was written after the cursor position was read.
    stuck = source.in_progress(legal_entity)
    sources["in_progress"] = len(stuck)
    headers.update((r["sys_id"], r) for r in stuck)
    listed = [i for i in warehouse.get_cursor(retry_cursor_name(legal_entity), []) if i not in headers]
    retried = [r for r in source.by_ids(legal_entity, listed) if r["integration_status"] in RETRY_STATUSES]
    sources["retry"] = len(retried)
    headers.update((r["sys_id"], r) for r in retried)
    return InvoicePoll(legal_entity.lower(), list(headers.values()), source.lines(list(headers)), start, new, sources)


def waiting_invoice(source: OutboundSource, warehouse: Warehouse, legal_entity: str) -> str | None:
    """What the next run of ``legal_entity`` would take up, as a short key: the first invoice on the retry list, the
    first one left ``in_progress`` and the first ``new`` one after the committed cursor, each where there is one;
    None when nothing waits. The same three roads as :func:`poll_invoices`, so whatever a run would pick up, the
    sensor sees. Each road has its part, so an invoice approved while another waits on the retry list changes the
    key and gets its run now, not when the retry's hour is over."""
    parts = []
    listed = warehouse.get_cursor(retry_cursor_name(legal_entity), [])
    if listed:
        parts.append(f"retry|{listed[0]}")
    stuck = source.in_progress(legal_entity)
    if stuck:
        parts.append(f"in_progress|{stuck[0]['sys_id']}")
    for page in source.new_pages(legal_entity, overlapped(warehouse.get_cursor(poll_cursor_name(legal_entity))),
                                 page_size=1):
        if page:
            parts.append(f"{page[0]['sys_updated_on']}|{page[0]['sys_id']}")
            break
    return "+".join(parts) or None


# -- posting -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunContext:
    """Who is running, for the audit rows and the lock's holder."""

    run_id: str
    asset_key: str
    attempt: int = 1


@dataclass(frozen=True)
class PostingScope:
    """What one run posts once it holds the legal entity's posting lock."""

    poll: InvoicePoll  # the polled invoices nobody has written since the poll
    handled: dict[str, str]  # polled invoices another run wrote meanwhile: number → their status now
    carried: list[str]  # retryable invoices on the list that this run does not post: stay there for the next run


@dataclass
class InvoiceRun:
    """What one run did: a result per posted invoice, and the state it committed."""

    legal_entity: str
    results: list[PostingResult]
    handled: dict[str, str]
    retry: list[str]  # the retry list as committed
    cursor: Position | None  # the keyset cursor as committed

    @property
    def unfinished(self) -> list[PostingResult]:
        """Invoices whose outcome is not final: the next run takes them up, and this run did not complete."""
        return [r for r in self.results if not r.final]


_CHANGE = ("integration_status", "sys_updated_on", "sys_mod_count")


def scope_under_lock(source: OutboundSource, poll: InvoicePoll, retry_ids: Sequence[str]) -> PostingScope:
    """Read again, under the posting lock, what this run polled before it: another run may have posted since
    (``retry_ids`` is the retry list as it is now). A polled invoice is posted only if nobody wrote it since the
    poll (same status and ``sys_mod_count``); one that another run wrote is left alone: that run committed it as
    final, or left it ``in_progress`` or on the list for the next run. Every invoice on the list that this run does
    not post and that still waits is carried over, because the list this run commits replaces the one it found."""
    now = {r["sys_id"]: r for r in source.by_ids(poll.legal_entity, [h["sys_id"] for h in poll.headers])}

    def untouched(header: dict[str, Any]) -> bool:
        current = now.get(header["sys_id"])
        return current is not None and all(current.get(f) == header.get(f) for f in _CHANGE)

    keep = {h["sys_id"] for h in poll.headers if untouched(h)}
    handled = {h["number"]: now.get(h["sys_id"], {}).get("integration_status", "deleted")
               for h in poll.headers if h["sys_id"] not in keep}
    # Everything on the list that this run will not post: what another run put there after this run's poll, and
    # polled invoices that run has written since (the case of chaos seed 892043).
    others = [i for i in retry_ids if i not in keep]
    carried = [r["sys_id"] for r in source.by_ids(poll.legal_entity, others)
               if r["integration_status"] in RETRY_STATUSES]
    return PostingScope(replace(poll, headers=[h for h in poll.headers if h["sys_id"] in keep],
                                lines=[li for li in poll.lines if li["outbound_invoice"] in keep]),
                        handled, carried)


def cursor_to_commit(start: Position | None, new: Sequence[Position], unfinished: set[str]) -> Position | None:
    """The keyset position a run may commit: after every ``new`` invoice it polled, up to (not past) the first one
    whose outcome is not final. A ``new`` invoice ServiceNow was never told about is found again by the next poll
    only if the cursor stays before it: the one rule that keeps an invoice from being stranded behind the cursor."""
    position = start
    for polled in new:
        if polled["sys_id"] in unfinished:
            return position
        position = polled
    return position


def post_polled(poll: InvoicePoll, source: OutboundSource, ledger: InvoiceLedger, servicenow: InvoiceStatusWriter,
                warehouse: Warehouse, context: RunContext, *, settings: InvoiceSettings | None = None,
                settle: Callable[[int], None] | None = None, wait_s: float | None = None,
                on_wait: Callable[[str, float], None] | None = None) -> InvoiceRun:
    """Post the polled invoices of one legal entity and commit what the run did. One run at a time per legal
    entity: everything from the re-read to the last commit happens under the posting lock, so no other run's status
    writes or retry list interleave with this run's. Raises ``ExclusiveBusy`` when another run held the lock for
    longer than ``wait_s`` (default :data:`POSTING_WAIT_S`; nothing done). ``settle`` is the pause before
    unconfirmed headers are looked up again (:func:`~d365_snow_assets.invoices.posting.post_invoices`)."""
    with warehouse.exclusive(posting_lock_name(poll.legal_entity), f"run {context.run_id}",
                             timeout=POSTING_WAIT_S if wait_s is None else wait_s, on_wait=on_wait):
        return _post(poll, source, ledger, servicenow, warehouse, context, settings or InvoiceSettings(), settle)


def _post(poll: InvoicePoll, source: OutboundSource, ledger: InvoiceLedger, servicenow: InvoiceStatusWriter,
          warehouse: Warehouse, context: RunContext, settings: InvoiceSettings,
          settle: Callable[[int], None] | None) -> InvoiceRun:
    le = poll.legal_entity
    scope = scope_under_lock(source, poll, warehouse.get_cursor(retry_cursor_name(le), []))
    parsed = parse_invoices(scope.poll.headers, scope.poll.lines)
    verdicts = validate_invoices(parsed, InvoiceReferences.from_warehouse(warehouse, [le],
                                                                          settings.cost_center_dimension), settings)
    flushed: set[int] = set()

    def as_rows(records: Iterable[AuditRecord]) -> list[dict[str, Any]]:
        return [r.as_row(context.run_id, context.asset_key, le, context.attempt) for r in records]

    def flush(records: list[AuditRecord], marking_error: str | None) -> None:
        # An invoice about to be marked `error` in ServiceNow joins the retry list in the same transaction as its
        # audit rows: a process killed before the end of the run would otherwise leave a retryable invoice in
        # `error` off the list (chaos seed 262263; a failed line as much as a failed header). Over-inclusion is
        # harmless: the list committed at the end of the run keeps only the unfinished ones.
        with warehouse.writer() as con:
            if records:
                audit.write_audit(con, as_rows(records))
            if marking_error is not None:
                listed = state.get_cursor(con, retry_cursor_name(le), [])
                state.set_cursor(con, retry_cursor_name(le), sorted({*listed, marking_error}))
        flushed.update(id(r) for r in records)

    results = post_invoices(verdicts, ledger, servicenow, settings, flush=flush, settle=settle)
    rows = [row for row, record in zip(audit_rows(results, context.run_id, context.asset_key, le, context.attempt),
                                       (r for res in results for r in res.audit), strict=True)
            if id(record) not in flushed]
    unfinished = {r.sys_id for r in results if not r.final}
    retry = sorted({*scope.carried, *unfinished})
    polled = cursor_to_commit(poll.start, poll.new, unfinished)
    # Audit, keyset cursor and retry list commit together: the cursor never passes work that is not recorded. A
    # run that polled before another run committed must not move the cursor back.
    with warehouse.writer() as con:
        if rows:
            audit.write_audit(con, rows)
        cursor = later_cursor(state.get_cursor(con, poll_cursor_name(le)), polled)
        if cursor:
            state.set_cursor(con, poll_cursor_name(le), cursor)
        state.set_cursor(con, retry_cursor_name(le), retry)
    return InvoiceRun(le, results, scope.handled, retry, cursor)


__all__ = ["POSTING_WAIT_S", "InvoicePoll", "InvoiceRun", "OutboundSource", "PostingScope", "RunContext",
           "cursor_to_commit", "later_cursor", "overlapped", "poll_cursor_name", "poll_invoices", "post_polled",
           "posting_lock_name", "retry_cursor_name", "scope_under_lock", "waiting_invoice"]
