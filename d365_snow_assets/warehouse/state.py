"""What was last pushed to ServiceNow per (target table, business key), and sync cursors (DESIGN §6, §7).

Pushed state moves only on outcomes that mean "ServiceNow now holds this row" (inserted, updated, ignored), so a
row that failed or was skipped stays different from the pushed state and the next diff offers it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa

from d365_snow_assets.warehouse.sql import first

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS pushed_state (
        target VARCHAR NOT NULL, business_key VARCHAR NOT NULL, erp_source VARCHAR NOT NULL,
        legal_entity VARCHAR NOT NULL, row_hash VARCHAR NOT NULL, target_id VARCHAR, outcome VARCHAR NOT NULL,
        deactivated BOOLEAN NOT NULL, pushed_at TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS cursors (
        name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, updated_at TIMESTAMPTZ NOT NULL)""",
)

PUSHED_OUTCOMES: tuple[str, ...] = ("inserted", "updated", "ignored")
# Meta columns that the diff adds to every row it returns and that push results carry back.
BUSINESS_KEY = "_business_key"
ROW_HASH = "_row_hash"
ERP_SOURCE = "_erp_source"
LEGAL_ENTITY = "_legal_entity"
DEACTIVATED = "_deactivated"
META_COLUMNS: tuple[str, ...] = (BUSINESS_KEY, ROW_HASH, ERP_SOURCE, LEGAL_ENTITY, DEACTIVATED)


# 2: business keys and payloads by ServiceNow's documented labels. A warehouse written before (keys of guessed column
# names, which no stock instance took) has its pushed state moved to pushed_state_v1: kept, never read again, so the
# first sync sends every record once more and the instance's coalesce finds or creates it.
PUSHED_STATE_FORMAT = 2
_FORMAT_CURSOR = "warehouse:pushed_state_format"


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring pushed state to :data:`PUSHED_STATE_FORMAT` (idempotent; runs with the schema DDL)."""
    if get_cursor(con, _FORMAT_CURSOR) == PUSHED_STATE_FORMAT:
        return
    if first(con.execute("SELECT 1 FROM pushed_state LIMIT 1").fetchall()):
        con.execute("CREATE TABLE IF NOT EXISTS pushed_state_v1 AS SELECT * FROM pushed_state LIMIT 0").fetchall()
        con.execute("INSERT INTO pushed_state_v1 SELECT * FROM pushed_state").fetchall()
        con.execute("DELETE FROM pushed_state").fetchall()
    set_cursor(con, _FORMAT_CURSOR, PUSHED_STATE_FORMAT)


def record_push_results(
    con: duckdb.DuckDBPyConnection,
    target: str,
    results: pl.DataFrame,
    at: datetime | None = None,
) -> int:
    """Update pushed state of ``target`` from push results; returns how many keys moved.

    ``results`` holds the diff's meta columns (``_business_key, _row_hash, _erp_source, _legal_entity,
    _deactivated``) plus ``outcome`` and optionally ``target_id`` (the ServiceNow sys_id; kept from before when
    null). Rows with any other outcome than inserted/updated/ignored are left out.
    """
    required = [BUSINESS_KEY, ROW_HASH, ERP_SOURCE, LEGAL_ENTITY, "outcome"]
    missing = [c for c in required if c not in results.columns]
    if missing:
        raise ValueError(f"push results lack columns {missing}")
    frame = results.filter(pl.col("outcome").is_in(PUSHED_OUTCOMES)).select(
        pl.col(BUSINESS_KEY).alias("business_key"),
        pl.col(ROW_HASH).alias("row_hash"),
        pl.col(ERP_SOURCE).alias("erp_source"),
        pl.col(LEGAL_ENTITY).str.to_uppercase().alias("legal_entity"),
        (pl.col("target_id").cast(pl.String) if "target_id" in results.columns
         else pl.lit(None, dtype=pl.String)).alias("target_id"),
        pl.col("outcome"),
        (pl.col(DEACTIVATED).fill_null(False) if DEACTIVATED in results.columns
         else pl.lit(False)).alias("deactivated"),
    ).unique("business_key", keep="last", maintain_order=True)
    if frame.is_empty():
        return 0
    con.register("_push_results", frame.to_arrow())
    try:
        con.execute(
            """MERGE INTO pushed_state p
               USING (SELECT *, ?::VARCHAR AS target, ?::TIMESTAMPTZ AS pushed_at FROM _push_results) r
               ON p.target = r.target AND p.business_key = r.business_key
               WHEN MATCHED THEN UPDATE SET row_hash = r.row_hash, erp_source = r.erp_source,
                   legal_entity = r.legal_entity, target_id = coalesce(r.target_id, p.target_id),
                   outcome = r.outcome, deactivated = r.deactivated, pushed_at = r.pushed_at
               WHEN NOT MATCHED THEN INSERT (target, business_key, erp_source, legal_entity, row_hash, target_id,
                   outcome, deactivated, pushed_at)
                   VALUES (r.target, r.business_key, r.erp_source, r.legal_entity, r.row_hash, r.target_id,
                   r.outcome, r.deactivated, r.pushed_at)""",
            [target, at or datetime.now(UTC)],
        ).fetchall()
    finally:
        con.unregister("_push_results")
    return frame.height


def pushed_state(con: duckdb.DuckDBPyConnection, target: str) -> pl.DataFrame:
    """All pushed-state rows of ``target`` (for plan, trace and tests)."""
    return con.sql("SELECT * FROM pushed_state WHERE target = ? ORDER BY business_key", params=[target]).pl()


def active_count(con: duckdb.DuckDBPyConnection, target: str, erp_source: str, legal_entities: Sequence[str]) -> int:
    """Records of ``target`` pushed for ``erp_source`` and ``legal_entities`` ("" = shared) and not deactivated."""
    row = first(con.execute(
        """SELECT count(*) FROM pushed_state WHERE target = ? AND erp_source = ? AND NOT deactivated
           AND list_contains(?, legal_entity)""",
        [target, erp_source, [le.upper() for le in legal_entities]]).fetchall())
    return int(row[0]) if row else 0


def target_ids(con: duckdb.DuckDBPyConnection, target: str, business_keys: list[str]) -> dict[str, str]:
    """ServiceNow sys_ids of the given keys of ``target`` (keys never pushed are absent)."""
    keys = pa.table({"business_key": pa.array(business_keys, pa.string())})
    con.register("_wanted_keys", keys)
    try:
        rows = con.execute(
            """SELECT p.business_key, p.target_id FROM pushed_state p JOIN _wanted_keys w USING (business_key)
               WHERE p.target = ? AND p.target_id IS NOT NULL""", [target]).fetchall()
    finally:
        con.unregister("_wanted_keys")
    return dict(rows)


def get_cursor(con: duckdb.DuckDBPyConnection, name: str, default: Any = None) -> Any:
    """The JSON value stored under ``name``, or ``default``."""
    row = first(con.execute("SELECT value FROM cursors WHERE name = ?", [name]).fetchall())
    return default if row is None else orjson.loads(row[0])


def set_cursor(con: duckdb.DuckDBPyConnection, name: str, value: Any) -> None:
    """Store ``value`` (anything orjson can encode) under ``name``.

    Call it on the same writer connection as the work the cursor covers so both commit or neither does.
    """
    con.execute(
        """INSERT INTO cursors VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at""",
        [name, orjson.dumps(value).decode(), datetime.now(UTC)],
    ).fetchall()
