"""The DuckDB warehouse file and its single-writer discipline (DESIGN §7, dagster.md §4.1).

DuckDB allows one read-write process per file, and while it is connected even read-only connects from other
processes fail. So every access, read or write, takes a cross-process file lock (the pattern of Dagster's own ETL
tutorial) and holds a short-lived connection only for the duration of the block; slow work such as HTTP paging
never happens under the lock. A connect that still hits DuckDB's lock (a process outside this discipline, e.g. a
DuckDB CLI) is retried with backoff until ``connect_timeout``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import filelock
import polars as pl
import pyarrow as pa

from d365_snow_assets.mapping.spec import TargetMapping
from d365_snow_assets.warehouse import audit, exclusive, snapshots, state
from d365_snow_assets.warehouse import diff as diff_module

SCHEMA: tuple[str, ...] = (*snapshots.SCHEMA, *state.SCHEMA, *audit.SCHEMA)


# Files whose schema this process has created or checked. Process-wide rather than per Warehouse object: the assets
# of one run build several, and each first access otherwise opened an extra read-write connection (and its
# checkpoint) just to run CREATE ... IF NOT EXISTS again. A file deleted meanwhile is noticed by the exists() checks.
_SCHEMA_READY: set[str] = set()


# Files a process holds open (:func:`held_open`): their transactions take a cursor on this connection.
_HELD: dict[str, duckdb.DuckDBPyConnection] = {}


@contextmanager
def held_open(path: Path | str) -> Iterator[None]:
    """Keep one read-write connection to ``path`` open for the block; this process's transactions on the file then
    use a cursor of it instead of opening the database again. Each open builds DuckDB's catalog anew (about 15 ms of
    CPU with duckdb 2.0, hundreds of times per cycle: a third of `d365-snow demo --small`). While it is held no other
    process can open the file, so only a process that is the file's sole user may hold it (the demo, on the home it
    created; a `sync` shares its home with sensor-launched runs)."""
    key = str(Path(path).resolve())
    _HELD[key] = duckdb.connect(key)
    try:
        yield
    finally:
        _HELD.pop(key).close()


class WarehouseBusy(TimeoutError):
    """Another process kept the warehouse locked for longer than the configured timeout."""


class Warehouse:
    """One DuckDB file holding snapshots, pushed state, cursors and the audit store."""

    def __init__(
        self,
        path: Path | str,
        *,
        lock_timeout: float = 600.0,
        connect_timeout: float = 120.0,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        self.threads = threads
        self._lock = filelock.FileLock(f"{self.path}.lock")

    @property
    def _key(self) -> str:
        return str(self.path.resolve())

    @property
    def _schema_ready(self) -> bool:
        return self._key in _SCHEMA_READY

    @property
    def staging_dir(self) -> Path:
        """Where snapshot pages are spooled (outside DuckDB, so extraction needs no lock)."""
        return Path(f"{self.path}.staging")

    @contextmanager
    def writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction: committed when the block ends, rolled back on error.

        Do not nest writer() / reader() blocks in one thread.
        """
        with self._locked():
            fresh = not self.path.exists()
            with self._connect(read_only=False) as con:
                if fresh or not self._schema_ready:
                    for ddl in SCHEMA:
                        con.execute(ddl).fetchall()
                    state.migrate(con)
                    _SCHEMA_READY.add(self._key)
                con.execute("BEGIN TRANSACTION").fetchall()
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK").fetchall()
                    raise
                con.execute("COMMIT").fetchall()

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (the schema is created first if the file is new)."""
        if not self.path.exists() or not self._schema_ready:
            with self.writer():
                pass
        with self._locked(), self._connect(read_only=True) as con:
            yield con

    def exclusive(self, name: str, holder: str, *, timeout: float,
                  on_wait: Callable[[str, float], None] | None = None) -> AbstractContextManager[None]:
        """A named lock beside this file for long work that must not run in two processes at once (the
        warehouse lock itself is only ever held for one short transaction); see ``warehouse/exclusive.py``."""
        return exclusive.exclusive(exclusive.lock_path(self.path, name), holder, timeout=timeout, on_wait=on_wait)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(timeout=self.lock_timeout)
        except filelock.Timeout:
            raise WarehouseBusy(f"the warehouse {self.path} stayed locked by another process for "
                                f"{self.lock_timeout:.0f} s; wait for the other run to finish") from None
        try:
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _connect(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        held = _HELD.get(self._key)
        if held is not None:
            with held.cursor() as con:
                yield con
            return
        config = {"threads": self.threads} if self.threads else {}
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only, config=config)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
        try:
            yield con
        finally:
            con.close()

    # Convenience: each call below is one lock + one transaction. To commit several steps together (push results
    # with the cursor that covers them), call the module functions on one `with warehouse.writer() as con:`.

    def write_snapshot(
        self,
        entity: str,
        legal_entity: str,
        pages: Iterable[snapshots.Page] | snapshots.RawPages,
        key_columns: Sequence[str],
        extracted_at: datetime | None = None,
        sane: snapshots.Sanity | None = None,
    ) -> snapshots.SnapshotInfo:
        """Stream pages into a new snapshot; it becomes current only once every page has arrived (raw bodies the
        same as the current snapshot's keep it instead, and so does an extract ``sane`` objects to)."""
        return snapshots.write_snapshot(self.writer, self.reader, self.staging_dir, entity, legal_entity, pages,
                                        key_columns, extracted_at, sane)

    def read_snapshot(
        self, entity: str, legal_entities: Sequence[str] | None = None, columns: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """Current snapshot rows of ``entity`` as polars."""
        with self.reader() as con:
            return snapshots.read_snapshot(con, entity, legal_entities, columns)

    def current_snapshot(self, entity: str, legal_entity: str) -> snapshots.SnapshotInfo | None:
        """Metadata of the current snapshot of (entity, legal entity)."""
        with self.reader() as con:
            return snapshots.current_snapshot(con, entity, legal_entity)

    def diff(
        self,
        mapping: TargetMapping,
        staging: pl.DataFrame | pl.LazyFrame | pa.Table,
        *,
        erp_source: str,
        legal_entities: Sequence[str] | None,
        today: date | None = None,
    ) -> diff_module.DiffResult:
        """Inserts, changes and deactivations of ``mapping``'s target against pushed state."""
        with self.reader() as con:
            return diff_module.diff(con, mapping, staging, erp_source=erp_source, legal_entities=legal_entities,
                                    today=today)

    def record_push_results(self, target: str, results: pl.DataFrame) -> int:
        """Advance pushed state for rows ServiceNow accepted (inserted/updated/ignored)."""
        with self.writer() as con:
            return state.record_push_results(con, target, results)

    def get_cursor(self, name: str, default: Any = None) -> Any:
        with self.reader() as con:
            return state.get_cursor(con, name, default)

    def set_cursor(self, name: str, value: Any) -> None:
        with self.writer() as con:
            state.set_cursor(con, name, value)

    def write_audit(self, records: audit.AuditRecords) -> int:
        with self.writer() as con:
            return audit.write_audit(con, records)

    def audit_for_run(self, run_id: str, asset_key: str | None = None) -> pl.DataFrame:
        with self.reader() as con:
            return audit.audit_for_run(con, run_id, asset_key)

    def audit_for_key(self, business_key: str) -> pl.DataFrame:
        with self.reader() as con:
            return audit.audit_for_key(con, business_key)

    def failed_records(
        self, *, run_id: str | None = None, business_key: str | None = None, since: datetime | None = None
    ) -> pl.DataFrame:
        with self.reader() as con:
            return audit.failed_records(con, run_id=run_id, business_key=business_key, since=since)

    def outcome_counts(self, run_id: str, asset_key: str | None = None) -> dict[str, int]:
        with self.reader() as con:
            return audit.outcome_counts(con, run_id, asset_key)

    def purge_audit(self, retention_days: int = audit.DEFAULT_RETENTION_DAYS) -> int:
        with self.writer() as con:
            return audit.purge_audit(con, retention_days)
