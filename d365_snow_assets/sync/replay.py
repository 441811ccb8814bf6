"""Replay (DESIGN §7): re-send exactly the audited payloads of failed records through the same idempotent path.

F&O → ServiceNow rows go back through ``insertMultiple``, which coalesces on the business key, so a replay of a
row that did arrive after all updates or ignores it instead of inserting a second record. Each replay is itself
audited, with the attempt number one higher than the failure it repairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import polars as pl

from ..mapping.spec import TargetMapping
from ..warehouse import Warehouse, audit, state
from ..warehouse.diff import DEACTIVATED_HASH
from ..warehouse.state import BUSINESS_KEY, DEACTIVATED, ERP_SOURCE, LEGAL_ENTITY, ROW_HASH
from .push import DIRECTION as TO_SERVICENOW
from .push import ImportClient


@dataclass
class ReplaySummary:
    outcomes: dict[str, int] = field(default_factory=dict)
    not_replayable: list[str] = field(default_factory=list)  # business keys whose direction has no replay path here

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def replay_to_servicenow(failed: pl.DataFrame, client: ImportClient, warehouse: Warehouse,
                         mappings: Mapping[str, TargetMapping], run_id: str) -> ReplaySummary:
    """Re-send the failed F&O → ServiceNow rows in ``failed`` (rows of ``Warehouse.failed_records``)."""
    summary = ReplaySummary()
    for row in failed.filter(pl.col("direction") != TO_SERVICENOW).iter_rows(named=True):
        summary.not_replayable.append(row["business_key"])
    mine = failed.filter(pl.col("direction") == TO_SERVICENOW)
    for (staging,), group in mine.group_by(["target"], maintain_order=True):
        mapping = mappings[str(staging)]
        payloads = [orjson.loads(p) for p in group.get_column("payload")]
        answers = client.insert_multiple(mapping.staging_table, payloads)
        now = datetime.now(UTC)
        results = group.select(
            pl.col("business_key").alias(BUSINESS_KEY), pl.col("payload_hash").alias(ROW_HASH),
            pl.Series(ERP_SOURCE, [p[mapping.erp_source_column] for p in payloads], dtype=pl.String),
            pl.Series(LEGAL_ENTITY, [p[mapping.legal_entity_column] for p in payloads], dtype=pl.String),
            (pl.col("payload_hash") == DEACTIVATED_HASH).alias(DEACTIVATED),
            pl.Series("outcome", [a.status for a in answers], dtype=pl.String),
            pl.Series("target_id", [a.target_sys_id for a in answers], dtype=pl.String),
        )
        audit_rows = group.with_columns(
            pl.lit(run_id).alias("run_id"), results.get_column("outcome"), results.get_column("target_id"),
            pl.Series("message", [a.message for a in answers], dtype=pl.String),
            pl.Series("http_status", [a.http_status for a in answers], dtype=pl.Int32),
            (pl.col("attempt") + 1).alias("attempt"), pl.lit(now).alias("at"),
        )
        with warehouse.writer() as con:
            state.record_push_results(con, mapping.target_table, results, at=now)
            audit.write_audit(con, audit_rows, at=now)
        for answer in answers:
            summary.add(answer.status)
    return summary
