"""The durable spool of received F&O business events: a SQLite file under ``D365SNOW_HOME``.

SQLite (stdlib) rather than the DuckDB warehouse: DuckDB allows one writing process per file, and the receiver
runs for days beside Dagster runs that hold the warehouse. SQLite in WAL mode lets the receiver append while a
sensor reads, and ``synchronous=FULL`` makes a commit survive a power cut, because the receiver acknowledges an
event to F&O (which then forgets it) only after the commit.

Each event is stored once: ``EventId`` is unique, and so is (``BusinessEventId``, legal entity, ``ControlNumber``)
(reference/d365.md §6: the control number detects duplicates and re-ordering). Status moves ``new`` →
``consumed`` when the sensor has requested the run that handles the event.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id          TEXT    NOT NULL UNIQUE,
    business_event_id TEXT    NOT NULL,
    legal_entity      TEXT    NOT NULL,
    control_number    INTEGER NOT NULL,
    received_at       TEXT    NOT NULL,
    payload           BLOB    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'consumed')),
    consumed_at       TEXT,
    UNIQUE (business_event_id, legal_entity, control_number)
);
CREATE INDEX IF NOT EXISTS events_status_seq ON events (status, seq);
"""

_COLUMNS = "seq, event_id, business_event_id, legal_entity, control_number, received_at, payload, status"


class EnvelopeError(ValueError):
    """The body is not a business-event envelope; the message says which field is wrong."""


@dataclass(frozen=True)
class Event:
    """One received business event. ``payload`` is the envelope exactly as F&O sent it."""

    event_id: str
    business_event_id: str
    legal_entity: str
    control_number: int
    received_at: dt.datetime
    payload: dict[str, Any]
    status: str = "new"
    seq: int = 0


def parse_envelope(payload: Any, *, received_at: dt.datetime | None = None) -> Event:
    """Validate the envelope fields of reference/d365.md §6 and build an :class:`Event`.

    The legal entity comes from ``BusinessEventLegalEntity`` (current platform) or ``LegalEntity`` (older
    envelopes and the P2P contracts) and is lower-cased like every dataAreaId in the connector.
    """
    if not isinstance(payload, dict):
        raise EnvelopeError("the body must be a JSON object (one business event)")
    business_event_id = payload.get("BusinessEventId")
    if not isinstance(business_event_id, str) or not business_event_id.strip():
        raise EnvelopeError("BusinessEventId is missing or not a string")
    event_id = payload.get("EventId")
    if not isinstance(event_id, str) or not event_id.strip("{} "):
        raise EnvelopeError("EventId is missing or not a string")
    control = payload.get("ControlNumber")
    # bool is an int subclass; True is not a control number.
    if isinstance(control, bool) or not isinstance(control, int) or control < 0:
        raise EnvelopeError("ControlNumber is missing or not a non-negative integer")
    legal_entity = payload.get("BusinessEventLegalEntity") or payload.get("LegalEntity")
    if not isinstance(legal_entity, str) or not legal_entity.strip():
        raise EnvelopeError("BusinessEventLegalEntity (or LegalEntity) is missing or not a string")
    return Event(
        # GUIDs arrive upper-case without braces (reference §6); normalise anyway so a resend in another
        # spelling is still recognised as the same event.
        event_id=event_id.strip("{} ").upper(),
        business_event_id=business_event_id.strip(),
        legal_entity=legal_entity.strip().lower(),
        control_number=control,
        received_at=received_at or dt.datetime.now(dt.UTC),
        payload=payload,
    )


class EventSpool:
    """The spool file. Safe to share between threads; every call uses its own short transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        # WAL persists in the file; it cannot be switched on inside a transaction, hence outside _connect().
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        with contextlib.suppress(OSError):
            self.path.chmod(0o600)  # payloads are business data (vendor accounts, amounts)

    # -- connections -------------------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared across threads without a lock,
        # and a fresh connection per call would re-read the schema every time.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")  # take the write lock up front: no lock upgrade, no SQLITE_BUSY mid-way
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (other threads' connections close with their thread)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- receiver side -----------------------------------------------------------------------------------------
    def add(self, event: Event) -> bool:
        """Store ``event`` unless it is already spooled; True when it was new (committed on return)."""
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO events (event_id, business_event_id, legal_entity, control_number, received_at, "
                "payload) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [event.event_id, event.business_event_id, event.legal_entity, event.control_number,
                 event.received_at.isoformat(), orjson.dumps(event.payload)])
            return cur.rowcount == 1

    # -- sensor side -------------------------------------------------------------------------------------------
    def pending(self, limit: int = 100, business_event_ids: Iterable[str] | None = None) -> list[Event]:
        """The oldest ``new`` events first (arrival order), at most ``limit``, optionally of some kinds only."""
        sql = f"SELECT {_COLUMNS} FROM events WHERE status = 'new'"
        params: list[Any] = []
        if business_event_ids is not None:
            kinds = list(business_event_ids)
            sql += f" AND business_event_id IN ({', '.join('?' for _ in kinds) or 'NULL'})"
            params += kinds
        sql += " ORDER BY seq LIMIT ?"
        params.append(int(limit))
        rows = self._conn().execute(sql, params).fetchall()
        return [_event(row) for row in rows]

    def mark_consumed(self, event_ids: Iterable[str]) -> int:
        """Mark events consumed (call after the run that handles them was requested); returns how many moved."""
        ids = [i.strip("{} ").upper() for i in event_ids]
        if not ids:
            return 0
        now = dt.datetime.now(dt.UTC).isoformat()
        moved = 0
        with self._connect() as conn:
            for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                chunk = ids[start:start + 500]
                cur = conn.execute(
                    f"UPDATE events SET status = 'consumed', consumed_at = ? WHERE status = 'new' AND event_id IN "
                    f"({', '.join('?' for _ in chunk)})", [now, *chunk])
                moved += cur.rowcount
        return moved

    # -- operations --------------------------------------------------------------------------------------------
    def get(self, event_id: str) -> Event | None:
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM events WHERE event_id = ?",
                                   [event_id.strip("{} ").upper()]).fetchone()
        return _event(row) if row else None

    def counts(self) -> dict[str, int]:
        """Events per status, e.g. ``{"new": 3, "consumed": 120}``."""
        rows = self._conn().execute("SELECT status, count(*) FROM events GROUP BY status").fetchall()
        return {"new": 0, "consumed": 0, **dict(rows)}

    def purge_consumed(self, older_than: dt.timedelta = dt.timedelta(days=30)) -> int:
        """Delete consumed events older than ``older_than``; their EventIds stop being de-duplicated then, which
        is harmless because F&O retries within seconds and a manual Resend comes from its error log within days."""
        cutoff = (dt.datetime.now(dt.UTC) - older_than).isoformat()
        with self._connect() as conn:
            return conn.execute("DELETE FROM events WHERE status = 'consumed' AND consumed_at < ?",
                                [cutoff]).rowcount


def _event(row: tuple[Any, ...]) -> Event:
    seq, event_id, kind, le, control, received_at, payload, status = row
    return Event(event_id=event_id, business_event_id=kind, legal_entity=le, control_number=control,
                 received_at=dt.datetime.fromisoformat(received_at), payload=orjson.loads(payload),
                 status=status, seq=seq)
