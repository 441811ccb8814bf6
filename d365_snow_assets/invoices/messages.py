"""What the AP clerk reads in ServiceNow's ``processing_message`` (DESIGN §5.2).

The clerk knows suppliers, invoice numbers, GL accounts and cost centers, not HTTP or OData, so every sentence
names the business object and, where possible, what to do. Rule-specific sentences live next to their rule (in
``model.py`` / ``validation.py``); this module holds the shared wording and the length bound.
"""

from __future__ import annotations

from collections.abc import Sequence

# ServiceNow string fields default to max_length 4000 [INF: the dictionary of processing_message is not in
# reference/]; longer text would be cut by the instance mid-sentence, so the bound is applied here instead.
MAX_MESSAGE_CHARS = 4000
SYSTEM = "Dynamics 365"


def line_label(line_number: int | None, position: int) -> str:
    """``Line 2`` or, when the row has no usable line number, its position among the invoice's rows."""
    return f"Line {line_number}" if line_number is not None else f"Line in position {position}"


def shorten(value: str, limit: int = 60) -> str:
    """A user value quoted inside a sentence, cut so a 10 KB value cannot crowd out every other problem."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def processing_message(problems: Sequence[str], limit: int = MAX_MESSAGE_CHARS) -> str:
    """All problems, one per line, cut at a whole problem with ``… and N more problems`` to stay within ``limit``."""
    if limit < 40:
        raise ValueError("processing message limit must leave room for at least one sentence")
    text = "\n".join(problems)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    for index, problem in enumerate(problems):
        remaining = len(problems) - index - 1
        # Reserve room for the tail in case this is the last problem that fits.
        tail = len(_more(remaining + 1)) + 1
        cost = len(problem) + (1 if kept else 0)
        if used + cost + tail > limit:
            break
        kept.append(problem)
        used += cost
    if not kept:
        first = problems[0][: limit - len(_more(len(problems) - 1)) - 2] + "…"
        return first + "\n" + _more(len(problems) - 1) if len(problems) > 1 else first
    return "\n".join([*kept, _more(len(problems) - len(kept))])


def _more(count: int) -> str:
    return f"… and {count} more problem{'s' if count != 1 else ''}."


def rejected_by_erp(detail: str) -> str:
    """F&O refused the invoice's content: the infolog text is the most precise thing the clerk can act on."""
    return f"{SYSTEM} rejected the invoice: {detail.strip() or 'no reason given'}. Correct it and resend."


def line_rejected_by_erp(line_number: int, detail: str, header_reference: str) -> str:
    return (f"{SYSTEM} rejected line {line_number}: {detail.strip() or 'no reason given'}. The pending invoice "
            f"{header_reference} exists in {SYSTEM} without this line; correct the line and resend.")


def unconfirmed(what: str) -> str:
    """A write whose answer was lost and could not be confirmed by a lookup (DESIGN §6)."""
    return (f"{SYSTEM} did not confirm {what}. The connector will check again on the next attempt and never "
            "creates the invoice twice; no action is needed unless this message stays.")


def unreachable(detail: str) -> str:
    return (f"The connector could not complete the transfer to {SYSTEM} ({shorten(detail, 200)}). It will be "
            "retried; no action is needed unless this message stays.")


def not_attempted(number: str) -> str:
    """For the audit of an invoice a run left alone because an earlier one met an outage (nothing is written to
    ServiceNow for it)."""
    return (f"Not attempted in this run: Dynamics 365 or ServiceNow could not be reached while invoice {number} was "
            "being transferred. The next run takes it up.")


def conflicting_pending(invoice_number: str, supplier: str, legal_entity: str, header_reference: str,
                        document_number: str) -> str:
    source = f"ServiceNow invoice {document_number}" if document_number else "a manual entry"
    return (f"Invoice number {shorten(invoice_number)} of supplier {supplier} is already pending in {SYSTEM} "
            f"({legal_entity}, {header_reference}) from {source}. It was not sent again; check for a duplicate.")


def posted_incomplete(header_reference: str, present: Sequence[int], wanted: Sequence[int]) -> str:
    return (f"The pending invoice {header_reference} was posted or removed in {SYSTEM} before all lines were "
            f"added (present: {', '.join(map(str, present)) or 'none'}; expected: {', '.join(map(str, wanted))}). "
            "Check the invoice in Dynamics 365.")
