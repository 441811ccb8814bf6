"""What a sync would push: map the current snapshots, hold back invalid rows, diff against pushed state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import polars as pl

from ..mapping import MappingContext, apply_mapping
from ..mapping.spec import TargetMapping
from ..validation.reference_data import REASON, ReferenceData, split_valid
from ..warehouse import DiffResult, Warehouse, snapshots
from ..warehouse.diff import business_key_expr
from ..warehouse.state import BUSINESS_KEY
from .targets import SHARED, SyncTarget


class MissingSnapshotError(RuntimeError):
    """A plan was asked for before its source entity was ever extracted."""


@dataclass(frozen=True)
class SyncPlan:
    """The rows one push would send for one target (and one legal entity, or all for shared data)."""

    target: SyncTarget
    legal_entity: str | None
    diff: DiffResult
    held_back: pl.DataFrame  # staging columns + _business_key + _reason
    # The legal entities (upper-case, "" = shared records) whose pushed records the diff compared: only they can be
    # deactivated. A legal entity that is not configured is out of scope, never "gone" (DESIGN §5.1).
    scope: tuple[str, ...] = ()
    # Set when the operator accepted this plan's mass deactivation (sync/mass_change.py): audited with each one.
    deactivation_note: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        return {**self.diff.counts, "held_back": self.held_back.height}

    @property
    def is_empty(self) -> bool:
        return self.diff.to_push.height == 0 and self.diff.deletions.height == 0


def reference_data(warehouse: Warehouse) -> ReferenceData:
    with warehouse.reader() as con:
        return _reference_data(con)


def _reference_data(con: duckdb.DuckDBPyConnection) -> ReferenceData:
    return ReferenceData.from_snapshots(snapshots.read_snapshot(con, "MainAccounts"),
                                        snapshots.read_snapshot(con, "FinancialDimensionValues"))


def build_plan(target: SyncTarget, warehouse: Warehouse, ctx: MappingContext, *, legal_entity: str | None,
               configured_legal_entities: Sequence[str], mapping: TargetMapping | None = None) -> SyncPlan:
    """Plan ``target`` for ``legal_entity`` (per-company targets) or for all configured companies (shared)."""
    mapping = mapping or target.mapping()
    companies = [legal_entity] if legal_entity else None
    # Every read in one connection: a warehouse connection costs milliseconds (it grows with the file), which
    # dominated the CPU of a no-change cycle when each read opened its own (bench/: no-change).
    with warehouse.reader() as con:
        for entity in (mapping.source_entity, *mapping.related_entities):
            # Without a snapshot every pushed record of the scope would look deleted and be deactivated.
            if snapshots.current_snapshot(con, entity, legal_entity or SHARED) is None:
                raise MissingSnapshotError(f"there is no snapshot of {entity} for {legal_entity or 'the shared data'} "
                                           f"yet; extract it first (d365-snow sync runs the extract assets)")
        source = snapshots.read_snapshot(con, mapping.source_entity, companies, bookkeeping=False)
        related = {name: snapshots.read_snapshot(con, name, companies, bookkeeping=False)
                   for name in mapping.related_entities}
        references = _reference_data(con) if target.validate_accounts else None
    staging = _empty_staging(mapping) if source.height == 0 else apply_mapping(mapping, source, ctx, related)

    # The legal entities this plan speaks for: its partition, or for shared data the configured companies plus ""
    # (records shared by all). Pushed records outside it are out of scope, never "gone" (DESIGN §5.1).
    scope = (legal_entity.upper(),) if legal_entity else ("", *(le.upper() for le in configured_legal_entities))
    if not target.per_company:
        # Shared data is read for every company F&O has; push only what the configured companies use.
        staging = staging.filter(pl.col(mapping.legal_entity_column).is_in(list(scope)))

    held_back = staging.head(0).with_columns(pl.lit("").alias(BUSINESS_KEY), pl.lit("").alias(REASON))
    if references is not None:
        staging, rejected = split_valid(staging, references)
        held_back = rejected.with_columns(business_key_expr(mapping.coalesce).alias(BUSINESS_KEY))

    diff = warehouse.diff(mapping, staging, erp_source=ctx.erp_source, legal_entities=scope)
    if held_back.height:
        # A held-back row still exists in F&O: it must not look deleted and be deactivated in ServiceNow.
        keys = held_back.get_column(BUSINESS_KEY)
        diff = DiffResult(diff.target, diff.inserts, diff.changes,
                          diff.deletions.filter(~pl.col(BUSINESS_KEY).is_in(keys.implode())), diff.orphans,
                          diff.unchanged, diff.duplicate_keys)
    return SyncPlan(target, legal_entity, diff, held_back, scope)


def _empty_staging(mapping: TargetMapping) -> pl.DataFrame:
    return pl.DataFrame(schema={name: pl.String for name in mapping.column_names})
