"""Discovery of the ServiceNow instance's own schema (DESIGN §5), Dagster-free: what the connector cannot know
(the customer's dictionary, insertMultiple mapping mode, transform-map coalesce, choice values) is read from the
instance and cached in the warehouse for a day; ``d365-snow fit`` refreshes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from . import documented as doc
from .model import InstanceSchema
from .reader import Discovery, TableReader, Wanted

CACHE_TTL = timedelta(hours=24)

# What the connector reads and writes, for one discovery: every staging table of the mappings, the outbound tables
# and the tables their references point at, the choice fields whose values it writes or filters on, and the tables
# whose rows it must be able to read.
WANTED = Wanted(
    tables=(*doc.STAGING, *doc.READ),
    staging=tuple(doc.STAGING),
    choice_fields=((doc.OUTBOUND_INVOICE, "Integration status"), (doc.PAYMENT_DETAIL_STAGE, "Payment method")),
    probes=(doc.OUTBOUND_INVOICE, doc.OUTBOUND_INVOICE_LINE, doc.IMPORT_SET_ROW),
)


class CursorStore(Protocol):
    """The warehouse's cursor API (JSON values by name)."""

    def get_cursor(self, name: str, default: Any = None) -> Any: ...

    def set_cursor(self, name: str, value: Any) -> None: ...


def cache_name(url: str) -> str:
    return f"servicenow:schema:{url.rstrip('/')}"


def discover(snow: TableReader) -> InstanceSchema:
    """Read the instance's schema now (no cache)."""
    return Discovery(snow, WANTED).run()


def cached_schema(store: CursorStore, url: str) -> InstanceSchema | None:
    """The last discovered schema of ``url`` whatever its age, without asking ServiceNow (None if never read)."""
    data = store.get_cursor(cache_name(url))
    return InstanceSchema.from_json(data) if data else None


def load_schema(snow: TableReader, store: CursorStore, *, max_age: timedelta = CACHE_TTL,
                refresh: bool = False) -> InstanceSchema:
    """The instance's schema: from the warehouse when younger than ``max_age``, else discovered and cached."""
    if not refresh:
        cached = cached_schema(store, snow.base)
        if cached is not None and datetime.now(UTC) - cached.fetched_at < max_age:
            return cached
    schema = discover(snow)
    store.set_cursor(cache_name(snow.base), schema.to_json())
    return schema


__all__ = ["CACHE_TTL", "WANTED", "InstanceSchema", "cache_name", "cached_schema", "discover", "load_schema"]
