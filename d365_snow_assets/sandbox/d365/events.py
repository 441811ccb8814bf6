"""F&O Business Events: the envelope of reference/d365.md §6, delivered to registered HTTP(S) endpoints.

Delivery imitates the documented behaviour: a background sender, 3 retries 1 s apart, then the error log.
"""

from __future__ import annotations

import datetime as dt
import queue
import random
import ssl
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

CONTROL_NUMBER_BASE = 5637144576  # the observed ControlNumber shape (a RecId)


def dotnet_date(value: dt.datetime | dt.date) -> str:
    """``/Date(<ms since epoch>)/`` (reference §6); a date means its UTC midnight."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return f"/Date({int(value.timestamp() * 1000)})/"


@dataclass
class Endpoint:
    url: str
    verify: str | bool = True


class BusinessEvents:
    """Endpoints, the control-number sequence, a delivery thread and the error log."""

    def __init__(self, *, seed: int = 0, retries: int = 3, retry_delay_s: float = 1.0) -> None:
        self.endpoints: list[Endpoint] = []
        self.sent: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self._rng = random.Random(seed)
        self._control = CONTROL_NUMBER_BASE
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Endpoint, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def register(self, url: str, verify: str | bool = True) -> None:
        with self._lock:
            self.endpoints = [e for e in self.endpoints if e.url != url] + [Endpoint(url, verify)]

    def clear(self) -> None:
        with self._lock:
            self.endpoints = []
            self.sent.clear()
            self.errors.clear()

    def envelope(self, event_id: str, legal_entity: str, fields: dict[str, Any]) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            # Increasing with gaps, as documented ("not sequential").
            self._control += self._rng.randint(1, 9)
            control = self._control
        body: dict[str, Any] = {
            "BusinessEventId": event_id, "BusinessEventLegalEntity": legal_entity.upper(),
            "ContextRecordSubject": "", "ControlNumber": control, "EventId": str(uuid.uuid4()).upper(),
            "EventTime": dotnet_date(now), "EventTimeIso8601": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "InitiatingUserAADObjectId": "{00000000-0000-0000-0000-000000000000}",
            "MajorVersion": 0, "MinorVersion": 0, "ParentContextRecordSubjects": None,
        }
        body.update(fields)
        return body

    def fire(self, event_id: str, legal_entity: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Build the event and queue it for every endpoint; returns the payload."""
        payload = self.envelope(event_id, legal_entity, fields)
        with self._lock:
            targets = list(self.endpoints)
            for ep in targets:
                self._idle.clear()
                self._queue.put((ep, payload))
            if targets and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="d365-business-events", daemon=True)
                self._thread.start()
        return payload

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued event is delivered or logged as failed (for tests)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=5)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if item is None:
                return
            self._deliver(*item)
            with self._lock:
                if self._queue.empty():
                    self._idle.set()

    def _deliver(self, ep: Endpoint, payload: dict[str, Any]) -> None:
        last = ""
        for attempt in range(self.retries + 1):
            try:
                verify = ssl.create_default_context(cafile=ep.verify) if isinstance(ep.verify, str) else ep.verify
                with httpx.Client(verify=verify, timeout=10, trust_env=False) as client:
                    resp = client.post(ep.url, json=payload)
                if resp.status_code < 300:
                    with self._lock:
                        self.sent.append({"url": ep.url, "payload": payload, "status": resp.status_code})
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.retries:
                threading.Event().wait(self.retry_delay_s)
        with self._lock:
            self.errors.append({"url": ep.url, "payload": payload, "error": last,
                                "time": dt.datetime.now(dt.UTC).isoformat()})
