"""The pure core of the invoice round trip ServiceNow → F&O (DESIGN §5.2): parse, validate, build payloads, post
idempotently. No HTTP and no Dagster: the asset passes in the snapshots and two clients satisfying
:class:`InvoiceLedger` and :class:`InvoiceStatusWriter`.

Typical use::

    parsed = parse_invoices(header_rows, line_rows)
    verdicts = validate_invoices(parsed, InvoiceReferences.from_warehouse(wh, legal_entities), settings)
    results = post_invoices(verdicts, ledger, servicenow, settings)
    wh.write_audit(audit_rows(results, run_id, asset_key))
"""

from d365_snow_assets.invoices.errors import (
    DuplicateError,
    LedgerError,
    MaybeWrittenError,
    NotFoundError,
    ValidationError,
)
from d365_snow_assets.invoices.messages import processing_message
from d365_snow_assets.invoices.model import (
    HEADER_TABLE,
    LINE_TABLE,
    InvoiceLine,
    InvoiceSettings,
    OutboundInvoice,
    ParsedInvoice,
    parse_invoice,
    parse_invoices,
)
from d365_snow_assets.invoices.payloads import dumps_payload, header_payload, line_payload
from d365_snow_assets.invoices.posting import (
    AuditRecord,
    InvoiceLedger,
    InvoiceStatusWriter,
    PendingInvoice,
    PostedInvoice,
    PostingResult,
    audit_rows,
    post_invoice,
    post_invoices,
)
from d365_snow_assets.invoices.validation import InvoiceReferences, InvoiceVerdict, validate_invoices

__all__ = [
    "HEADER_TABLE", "LINE_TABLE", "AuditRecord", "DuplicateError", "InvoiceLedger", "InvoiceLine",
    "InvoiceReferences", "InvoiceSettings", "InvoiceStatusWriter", "InvoiceVerdict", "LedgerError",
    "MaybeWrittenError", "NotFoundError", "OutboundInvoice", "ParsedInvoice", "PendingInvoice", "PostedInvoice",
    "PostingResult", "ValidationError", "audit_rows", "dumps_payload", "header_payload", "line_payload",
    "parse_invoice", "parse_invoices", "post_invoice", "post_invoices", "processing_message",
    "validate_invoices",
]
