"""A real events receiver on a free loopback port, served by uvicorn in a thread, with its spool."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from d365_snow_assets.events import EventSpool, build_app, make_server

SECRET = "Zq3v-pT9xK2mLw8rB4nY7cHj6dFs1gAe"


@dataclass
class Receiver:
    url: str  # the full event URL, secret included
    base: str
    spool: EventSpool


@pytest.fixture
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    log_level = getattr(request, "param", "info")  # indirect parametrization: uvicorn's log level
    spool = EventSpool(tmp_path / "events.sqlite")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = make_server(build_app(spool, SECRET, max_body=256 * 1024), host="127.0.0.1", port=port,
                         log_level=log_level)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    try:
        yield Receiver(f"{base}/events/{SECRET}", base, spool)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def envelope(kind: str = "VendorInvoicePostedBusinessEvent", le: str = "USMF", control: int = 5637144577,
             event_id: str | None = None, **fields: object) -> dict[str, object]:
    """An envelope shaped like reference/d365.md §6."""
    return {"BusinessEventId": kind, "BusinessEventLegalEntity": le, "ContextRecordSubject": "",
            "ControlNumber": control, "EventId": event_id or str(uuid.uuid4()).upper(),
            "EventTime": "/Date(1637246655000)/", "EventTimeIso8601": "2021-11-18T14:44:15Z",
            "InitiatingUserAADObjectId": "{00000000-0000-0000-0000-000000000000}", "MajorVersion": 0,
            "MinorVersion": 0, "ParentContextRecordSubjects": None, "InvoiceId": "INV-1", "LegalEntity": le.lower(),
            **fields}
