"""The audit store: one row per record per attempt (DESIGN §7), the source of trace, replay and run summaries."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import orjson
import polars as pl
import pyarrow as pa

from d365_snow_assets.warehouse.sql import first

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS audit (
        run_id VARCHAR NOT NULL, asset_key VARCHAR, partition VARCHAR, direction VARCHAR, entity VARCHAR,
        business_key VARCHAR, payload_hash VARCHAR, payload VARCHAR, target VARCHAR, target_id VARCHAR,
        http_status INTEGER, outcome VARCHAR NOT NULL, message VARCHAR, attempt INTEGER NOT NULL,
        "at" TIMESTAMPTZ NOT NULL)""",
)

OUTCOMES: frozenset[str] = frozenset({"inserted", "updated", "ignored", "skipped", "error", "rejected", "created",
                                      "reused", "posted"})
SUCCESS_OUTCOMES: tuple[str, ...] = ("inserted", "updated", "ignored", "created", "reused", "posted")
FAILED_OUTCOMES: tuple[str, ...] = ("error",)
DEFAULT_RETENTION_DAYS = 400

_TEXT_COLUMNS = ("run_id", "asset_key", "partition", "direction", "entity", "business_key", "payload_hash",
                 "payload", "target", "target_id", "outcome", "message")
_SENSITIVE = re.compile(r"password|passwd|secret|token|authorization|api[_-]?key|credential", re.IGNORECASE)
# A JSON object key that looks sensitive; only payloads matching it are parsed and scrubbed (rare by design).
_SENSITIVE_KEY = r'(?i)"[^"]*(password|passwd|secret|token|authorization|api[_-]?key|credential)[^"]*"\s*:'
REDACTED = "***"

AuditRecords = pl.DataFrame | pa.Table | Sequence[Mapping[str, Any]]


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if _SENSITIVE.search(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def scrub_payload(payload: str) -> str:
    """``payload`` (JSON text) with the values of secret-looking keys replaced, at any depth."""
    try:
        return orjson.dumps(_scrub(orjson.loads(payload))).decode()
    except orjson.JSONDecodeError:
        return payload


def _frame(records: AuditRecords) -> pl.DataFrame:
    if isinstance(records, pl.DataFrame):
        return records
    if isinstance(records, pa.Table):
        return pl.from_arrow(records)  # type: ignore[return-value]
    rows = []
    for record in records:
        row = dict(record)
        if "payload" in row and row["payload"] is not None and not isinstance(row["payload"], str):
            row["payload"] = orjson.dumps(row["payload"], option=orjson.OPT_SORT_KEYS).decode()
        rows.append(row)
    return pl.from_dicts(rows, infer_schema_length=None) if rows else pl.DataFrame()


def write_audit(con: duckdb.DuckDBPyConnection, records: AuditRecords, at: datetime | None = None) -> int:
    """Append audit rows in bulk; returns the number written.

    Columns as in the table; only ``run_id`` and ``outcome`` are required. ``payload`` may be JSON text or a
    struct column; values of keys named like password/secret/token/authorization are redacted whatever the caller
    passed. ``payload_hash`` defaults to the md5 of the payload, ``attempt`` to 1, ``at`` to now.
    """
    frame = _frame(records)
    if frame.is_empty():
        return 0
    for required in ("run_id", "outcome"):
        if required not in frame.columns:
            raise ValueError(f"audit records need a {required!r} column")
    bad = frame.filter(~pl.col("outcome").is_in(sorted(OUTCOMES))).get_column("outcome").unique().to_list()
    if bad:
        raise ValueError(f"unknown audit outcomes {bad}; use one of {', '.join(sorted(OUTCOMES))}")
    if "payload" in frame.columns and isinstance(frame.schema["payload"], pl.Struct | pl.List):
        frame = frame.with_columns(pl.col("payload").struct.json_encode() if isinstance(
            frame.schema["payload"], pl.Struct) else pl.col("payload").cast(pl.String))
    frame = frame.with_columns(
        [pl.col(c).cast(pl.String) if c in frame.columns else pl.lit(None, dtype=pl.String).alias(c)
         for c in _TEXT_COLUMNS]
    )
    suspicious = pl.col("payload").str.contains(_SENSITIVE_KEY).fill_null(False)
    if frame.select(suspicious.any()).item():
        frame = frame.with_columns(
            pl.when(suspicious)
            .then(pl.col("payload").map_elements(scrub_payload, return_dtype=pl.String))
            .otherwise(pl.col("payload"))
            .alias("payload")
        )
    now = at or datetime.now(UTC)
    frame = frame.with_columns(
        (pl.col("http_status").cast(pl.Int32) if "http_status" in frame.columns
         else pl.lit(None, dtype=pl.Int32)).alias("http_status"),
        (pl.col("attempt").cast(pl.Int32).fill_null(1) if "attempt" in frame.columns
         else pl.lit(1, dtype=pl.Int32)).alias("attempt"),
        (pl.col("at").cast(pl.Datetime("us", "UTC")).fill_null(now) if "at" in frame.columns
         else pl.lit(now).cast(pl.Datetime("us", "UTC"))).alias("at"),
    ).select(*_TEXT_COLUMNS, "http_status", "attempt", "at")
    con.register("_audit_in", frame.to_arrow())
    try:
        con.execute(
            """INSERT INTO audit BY NAME
               SELECT * REPLACE (coalesce(payload_hash, md5(payload)) AS payload_hash) FROM _audit_in"""
        ).fetchall()
    finally:
        con.unregister("_audit_in")
    return frame.height


def audit_for_run(con: duckdb.DuckDBPyConnection, run_id: str, asset_key: str | None = None) -> pl.DataFrame:
    """Every audit row of a run (optionally of one asset), in time order."""
    return con.sql(
        """SELECT * FROM audit WHERE run_id = $run AND ($asset IS NULL OR asset_key = $asset)
           ORDER BY "at", business_key, attempt""",
        params={"run": run_id, "asset": asset_key},
    ).pl()


def audit_for_key(con: duckdb.DuckDBPyConnection, business_key: str) -> pl.DataFrame:
    """The history of one business record across runs and directions (``d365-snow trace``)."""
    return con.sql('SELECT * FROM audit WHERE business_key = ? ORDER BY "at", attempt', params=[business_key]).pl()


def failed_records(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str | None = None,
    business_key: str | None = None,
    since: datetime | None = None,
    outcomes: Sequence[str] = FAILED_OUTCOMES,
) -> pl.DataFrame:
    """Records whose latest audit row is a failure (``d365-snow replay``), that latest row each.

    A record is (direction, entity, business key). Its latest row decides, whatever run wrote it: a record that
    succeeded, was held back or failed again since is judged by that newer row. The filters (``--run``, ``--key``,
    ``--since``; none = ``--all-failed``) then narrow which of those latest failures are returned, so ``--run OLD``
    never returns a state that a later run has superseded. ``attempt`` of the result + 1 is the replay's attempt.
    """
    return con.sql(
        """WITH candidates AS (
               SELECT DISTINCT direction, entity, business_key FROM audit
               WHERE list_contains($outcomes, outcome)
                 AND ($run IS NULL OR run_id = $run)
                 AND ($key IS NULL OR business_key = $key)
                 AND ($since IS NULL OR "at" >= $since)),
           latest AS (
               SELECT a.* FROM audit a JOIN candidates c
                 ON a.direction IS NOT DISTINCT FROM c.direction AND a.entity IS NOT DISTINCT FROM c.entity
                AND a.business_key IS NOT DISTINCT FROM c.business_key
               QUALIFY row_number() OVER (
                   PARTITION BY a.direction, a.entity, a.business_key ORDER BY a."at" DESC, a.attempt DESC) = 1)
           SELECT * FROM latest
           WHERE list_contains($outcomes, outcome)
             AND ($run IS NULL OR run_id = $run)
             AND ($since IS NULL OR "at" >= $since)
           ORDER BY "at", business_key""",
        params={"outcomes": list(outcomes), "run": run_id, "key": business_key, "since": since},
    ).pl()


def outcome_counts(con: duckdb.DuckDBPyConnection, run_id: str, asset_key: str | None = None) -> dict[str, int]:
    """Rows per outcome of a run (or of one asset in it), for materialization metadata."""
    rows = con.execute(
        """SELECT outcome, count(*) FROM audit WHERE run_id = $run AND ($asset IS NULL OR asset_key = $asset)
           GROUP BY outcome ORDER BY outcome""",
        {"run": run_id, "asset": asset_key},
    ).fetchall()
    return dict(rows)


def purge_audit(
    con: duckdb.DuckDBPyConnection,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    now: datetime | None = None,
) -> int:
    """Delete audit rows older than ``retention_days``; rows younger than that are never touched."""
    if retention_days < 1:
        raise ValueError("audit retention must be at least one day")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    deleted = first(con.execute('DELETE FROM audit WHERE "at" < ?', [cutoff]).fetchall())
    return int(deleted[0]) if deleted else 0
