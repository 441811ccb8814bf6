"""F&O Business Events: the HTTP receiver (``d365-snow events serve``) and the durable spool a sensor reads.

Sensor-side use::

    spool = EventSpool(events_spool_path(settings.home))
    events = spool.pending(100, business_event_ids=["VendorInvoicePostedBusinessEvent"])
    ...  # request runs for them, then
    spool.mark_consumed(e.event_id for e in events)
"""

from __future__ import annotations

from pathlib import Path

from .receiver import DEFAULT_MAX_BODY, SecretError, build_app, check_secret, make_server
from .spool import EnvelopeError, Event, EventSpool, parse_envelope

SPOOL_FILE = "events.sqlite"


def events_spool_path(home: Path) -> Path:
    """``D365SNOW_HOME/events.sqlite``: beside, not inside, the DuckDB warehouse (single-writer lock)."""
    return Path(home) / SPOOL_FILE


__all__ = ["DEFAULT_MAX_BODY", "SPOOL_FILE", "EnvelopeError", "Event", "EventSpool", "SecretError", "build_app",
           "check_secret", "events_spool_path", "make_server", "parse_envelope"]
