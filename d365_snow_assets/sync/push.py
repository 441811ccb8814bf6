"""Send a plan through the Import Set API and record, in one warehouse transaction, what ServiceNow answered:
pushed state for accepted rows and an audit row for every record (DESIGN §7)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson
import polars as pl

from ..clients.errors import ConnectorError
from ..discovery.binding import BoundTarget
from ..mapping.spec import TargetMapping
from ..warehouse import Warehouse, audit, state
from ..warehouse.diff import payload_columns
from ..warehouse.state import BUSINESS_KEY, DEACTIVATED, ROW_HASH
from .plan import SyncPlan

DIRECTION = "d365_to_snow"


class ImportRowResult(Protocol):
    status: str
    target_sys_id: str | None
    message: str | None
    http_status: int | None


class ImportClient(Protocol):
    def insert_multiple(self, staging_table: str, rows: Sequence[dict[str, str]], *,
                        progress: Callable[[int, int], None] | None = None,
                        parallel: int = 1) -> list[ImportRowResult]: ...


@dataclass(frozen=True)
class AuditContext:
    run_id: str
    asset_key: str
    partition: str | None
    attempt: int = 1


# Rows per insert_multiple call: small enough that one failing call loses little, large enough to keep the
# client's pipelined batches (200 rows, several in flight) busy.
CHUNK_ROWS = 2_000
# insertMultiple batches in flight at once: a diff has one row per business key, so no two versions of a record
# can overtake each other. Two hide one batch's round trip behind the instance's work on the other (bench/: push);
# more would only queue on the instance's API semaphore (reference/servicenow.md §4). A chunk whose keys differ only
# in case goes one batch at a time: the instance's coalesce match may ignore case (inference), and two such rows
# transformed at once would both find no match and both insert.
PARALLEL_BATCHES = 2


@dataclass(frozen=True)
class PushSummary:
    outcomes: dict[str, int]
    errors: pl.DataFrame  # business key + message of rows ServiceNow refused or that could not be sent
    unsent_chunks: int = 0  # calls that failed as a whole (instance unreachable, retries exhausted)

    @property
    def pushed(self) -> int:
        return sum(self.outcomes.values())


class BlockedTargetError(ConnectorError):
    """The mapping does not fit the instance's staging table (a blocking ``fit`` finding): nothing is sent."""


def push_plan(plan: SyncPlan, client: ImportClient, warehouse: Warehouse, audit_ctx: AuditContext, *,
              progress: Callable[[int, int], None] | None = None) -> PushSummary:
    """Push inserts, changes and deactivations of ``plan``; audit them and the held-back rows.

    The plan must have been bound to the instance (``build_plan(..., schema=…)``); a plan with a blocking finding
    is refused before anything is sent (DESIGN §5: a key field that cannot be sent, or a transform map that would
    merge records)."""
    bound = plan.bound
    if bound is None:
        raise ValueError("the plan was built without the instance's schema; pass schema= to build_plan")
    if plan.blocked:
        raise BlockedTargetError(f"{bound.staging_table} does not fit this ServiceNow instance, so nothing was sent: "
                                 + " ".join(f.message for f in plan.blocked) + " Run `d365-snow fit` for the report.",
                                 system="ServiceNow")
    mapping = bound.mapping
    frames = [frame for frame in (plan.diff.to_push, plan.diff.deletions) if frame.height]
    chunks = [chunk for frame in frames for chunk in frame.iter_slices(CHUNK_ROWS)]
    total = sum(chunk.height for chunk in chunks)
    sent = []
    for chunk in chunks:
        before = sum(frame.height for frame, _ in sent)
        chunk_progress = (lambda done, _of, before=before: progress(before + done, total)) if progress else None
        sent.append(_send(chunk, bound, client, chunk_progress))
    results = [frame for frame, _ in sent]
    unsent = sum(1 for _, delivered in sent if not delivered)
    outcome_frame = pl.concat(results, how="diagonal_relaxed") if results else None
    if outcome_frame is not None and plan.deactivation_note:
        # The operator's acceptance of a mass deactivation travels with each record it let through.
        note = pl.lit(plan.deactivation_note)
        outcome_frame = outcome_frame.with_columns(
            pl.when(pl.col(DEACTIVATED)).then(pl.concat_str([note, pl.col("message")], separator="; ",
                                                            ignore_nulls=True))
            .otherwise(pl.col("message")).alias("message"))
    now = datetime.now(UTC)
    audit_rows = [_audit_frame(outcome_frame, mapping, audit_ctx, now)] if outcome_frame is not None else []
    if plan.held_back.height:
        audit_rows.append(_rejected_audit_frame(plan.held_back, mapping, audit_ctx, now))
    with warehouse.writer() as con:
        if outcome_frame is not None:
            state.record_push_results(con, mapping.target_table, outcome_frame, at=now)
        for frame in audit_rows:
            audit.write_audit(con, frame, at=now)
    if outcome_frame is None:
        return PushSummary({}, pl.DataFrame(schema={BUSINESS_KEY: pl.String, "message": pl.String}))
    counts = outcome_frame.group_by("outcome").len()
    errors = outcome_frame.filter(pl.col("outcome") == "error").select(BUSINESS_KEY, "message")
    return PushSummary(dict(zip(counts["outcome"], counts["len"], strict=True)), errors, unsent)


def send_rows(bound: BoundTarget, client: ImportClient, rows: Sequence[dict[str, str]], *, parallel: int = 1,
              progress: Callable[[int, int], None] | None = None) -> list[ImportRowResult]:
    """Label-keyed rows to the instance's staging table, each value under the key the instance takes (its label or
    its column name), unresolved fields left out: the one way every F&O → ServiceNow record is sent."""
    return list(client.insert_multiple(bound.staging_table, bound.encode(rows), progress=progress,
                                       parallel=parallel))


def _send(frame: pl.DataFrame, bound: BoundTarget, client: ImportClient,
          progress: Callable[[int, int], None] | None) -> tuple[pl.DataFrame, bool]:
    """The chunk with ServiceNow's answer per row, and whether the call got through at all."""
    mapping = bound.mapping
    rows = payload_columns(frame).to_dicts()
    delivered = True
    keys = frame.get_column(BUSINESS_KEY)
    parallel = PARALLEL_BATCHES if keys.str.to_lowercase().n_unique() == keys.len() else 1
    try:
        answers: Sequence[ImportRowResult] = send_rows(bound, client, rows, parallel=parallel, progress=progress)
    except ConnectorError as exc:
        delivered = False
        # The rows may or may not have arrived (coalesce makes re-sending safe); either way pushed state must not
        # move, and the audit must say why, so `d365-snow replay` and the next sync can pick them up.
        answers = [_Unsent(f"not sent: {exc}")] * len(rows)
    if len(answers) != len(rows):
        raise RuntimeError(f"ServiceNow answered {len(answers)} results for {len(rows)} rows sent to "
                           f"{mapping.staging_table}; nothing was recorded, the next sync sends them again")
    return frame.with_columns(
        pl.Series("outcome", [a.status for a in answers], dtype=pl.String),
        pl.Series("target_id", [a.target_sys_id for a in answers], dtype=pl.String),
        pl.Series("message", [a.message for a in answers], dtype=pl.String),
        pl.Series("http_status", [a.http_status for a in answers], dtype=pl.Int32),
        pl.Series("payload", [orjson.dumps(r).decode() for r in rows], dtype=pl.String),
    ), delivered


@dataclass(frozen=True)
class _Unsent:
    message: str
    status: str = "error"
    target_sys_id: str | None = None
    http_status: int | None = None


def _audit_frame(outcomes: pl.DataFrame, mapping: TargetMapping, ctx: AuditContext, at: datetime) -> pl.DataFrame:
    return outcomes.select(
        pl.lit(ctx.run_id).alias("run_id"), pl.lit(ctx.asset_key).alias("asset_key"),
        pl.lit(ctx.partition).alias("partition"), pl.lit(DIRECTION).alias("direction"),
        pl.lit(mapping.target_table).alias("entity"), pl.col(BUSINESS_KEY).alias("business_key"),
        pl.col(ROW_HASH).alias("payload_hash"), pl.col("payload"), pl.lit(mapping.staging_table).alias("target"),
        pl.col("target_id"), pl.col("http_status"), pl.col("outcome"), pl.col("message"),
        pl.lit(ctx.attempt).alias("attempt"), pl.lit(at).alias("at"),
    )


def _rejected_audit_frame(held_back: pl.DataFrame, mapping: TargetMapping, ctx: AuditContext,
                          at: datetime) -> pl.DataFrame:
    payload = payload_columns(held_back)
    return pl.DataFrame({
        "run_id": ctx.run_id, "asset_key": ctx.asset_key, "partition": ctx.partition, "direction": DIRECTION,
        "entity": mapping.target_table, "business_key": held_back.get_column(BUSINESS_KEY),
        "payload_hash": None, "payload": [orjson.dumps(r).decode() for r in payload.to_dicts()],
        "target": mapping.staging_table, "target_id": None, "http_status": None, "outcome": "rejected",
        "message": held_back.get_column("_reason"), "attempt": ctx.attempt, "at": at,
    }, schema_overrides={"payload_hash": pl.String, "target_id": pl.String, "http_status": pl.Int32,
                         "partition": pl.String})
