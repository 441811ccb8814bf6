"""Business Events fast path: read back from F&O just the records an event names (DESIGN §1: events are stubs,
the full record is always read over OData)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from ..clients import odata
from ..clients.d365 import D365Client
from .invoices import JOUR

INVOICE_POSTED = "VendorInvoicePostedBusinessEvent"
PAYMENT_POSTED = "VendorPaymentPostedBusinessEvent"
PO_CONFIRMED = "PurchaseOrderConfirmedBusinessEvent"
_PER_QUERY = 20  # invoices per $filter: keeps the URL short whatever the invoice numbers look like


def read_posted_invoices(d365: D365Client, legal_entity: str, invoices: Sequence[tuple[str, str]]) -> pl.DataFrame:
    """``VendInvoiceJourBiEntities`` rows of just these (InvoiceAccount, InvoiceId) pairs in one company.

    ``*`` is a wildcard inside an F&O ``eq`` literal that cannot be escaped, so a number containing one reads a
    superset; the caller compares exactly (``sync.invoices.posted_lookup``).
    """
    pages: list[dict] = []
    for start in range(0, len(invoices), _PER_QUERY):
        chunk = invoices[start:start + _PER_QUERY]
        wanted = odata.any_of(*(odata.all_of(odata.eq("InvoiceAccount", account, wildcard_ok=True),
                                             odata.eq("InvoiceId", number, wildcard_ok=True))
                                for account, number in chunk))
        for page in d365.iter_pages(JOUR, legal_entity=legal_entity, odata_filter=wanted):
            pages.extend(page)
    return pl.from_dicts(pages, infer_schema_length=None) if pages else pl.DataFrame()
