"""What a sync would push: map the current snapshots, hold back invalid rows, diff against pushed state, and check
the mapping against the ServiceNow instance it is for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import polars as pl

from ..discovery.binding import BoundTarget, Finding, bind, coalesce_findings
from ..discovery.model import InstanceSchema
from ..mapping import MappingContext, apply_mapping
from ..mapping.apply import REASON
from ..mapping.spec import TargetMapping
from ..validation.reference_data import ReferenceData, split_valid
from ..warehouse import DiffResult, Warehouse, snapshots
from ..warehouse.diff import business_key_expr
from ..warehouse.state import BUSINESS_KEY
from .targets import SHARED, SyncTarget

# The PO line labels the account rule reads (DESIGN §5.1: a blank account or cost center is no reference).
LINE_ACCOUNT_COLUMNS = {"legal_entity_column": "Legal entity", "gl_column": "General Ledger Account",
                        "cost_center_column": "Cost center"}


class MissingSnapshotError(RuntimeError):
    """A plan was asked for before its source entity was ever extracted."""


@dataclass(frozen=True)
class SyncPlan:
    """The rows one push would send for one target (and one legal entity, or all for shared data), and how the
    mapping fits the instance (``bound``, ``findings``; None when the plan was made without ServiceNow)."""

    target: SyncTarget
    legal_entity: str | None
    diff: DiffResult
    held_back: pl.DataFrame  # staging columns + _business_key + _reason
    bound: BoundTarget | None = None
    findings: list[Finding] = field(default_factory=list)
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

    @property
    def blocked(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "blocking"]


def reference_data(warehouse: Warehouse) -> ReferenceData:
    with warehouse.reader() as con:
        return _reference_data(con)


def _reference_data(con: duckdb.DuckDBPyConnection) -> ReferenceData:
    return ReferenceData.from_snapshots(snapshots.read_snapshot(con, "MainAccounts"),
                                        snapshots.read_snapshot(con, "FinancialDimensionValues"))


def _scope(con: duckdb.DuckDBPyConnection, entity: str, legal_entity: str | None,
           configured: Sequence[str]) -> list[str] | None:
    """The snapshot scope to read ``entity`` in: its shared snapshot, the company, or for a plan across companies
    every company with a snapshot: the configured ones, and those configured before, whose last snapshot still
    speaks for the records they share (the mapping's row filter decides which rows are pushed). Raises when a
    needed snapshot is missing: without one, every pushed record of the scope would look deleted and be
    deactivated."""
    if snapshots.current_snapshot(con, entity, SHARED) is not None:
        return None
    wanted = [legal_entity] if legal_entity else list(configured)
    missing = [le for le in wanted if snapshots.current_snapshot(con, entity, le) is None]
    if missing or not wanted:
        where = ", ".join(le.upper() for le in missing) or "the shared data"
        raise MissingSnapshotError(f"there is no snapshot of {entity} for {where} yet; extract it first "
                                   "(d365-snow sync runs the extract assets)")
    return wanted if legal_entity else None


def build_plan(target: SyncTarget, warehouse: Warehouse, ctx: MappingContext, *, legal_entity: str | None,
               configured_legal_entities: Sequence[str], mapping: TargetMapping | None = None,
               schema: InstanceSchema | None = None) -> SyncPlan:
    """Plan ``target`` for ``legal_entity`` (per-company targets) or for all configured companies (shared).

    With ``schema`` the mapping is also bound to the instance and checked against its transform map with the rows
    about to be planned (the records a narrower coalesce would merge are named)."""
    mapping = mapping or target.mapping()
    bound: BoundTarget | None = None
    if schema is not None:
        bound = bind(mapping, schema, dict(mapping.element_overrides))
        mapping = bound.mapping  # as adapted to the instance's release (discovery.binding.adapt_to_instance)
    staging, references = mapped_rows(mapping, warehouse, ctx, legal_entity=legal_entity,
                                      configured_legal_entities=configured_legal_entities,
                                      validate_accounts=target.validate_accounts)

    # The legal entities this plan speaks for: its partition, or for shared data the configured companies plus ""
    # (records shared by all). Pushed records outside it are out of scope, never "gone" (DESIGN §5.1); the mapping's
    # row filters already leave other companies' rows out of the staging rows.
    scope = (legal_entity.upper(),) if legal_entity else ("", *(le.upper() for le in configured_legal_entities))

    held_back = staging.head(0).with_columns(pl.lit("").alias(BUSINESS_KEY), pl.lit("").alias(REASON))
    if REASON in staging.columns:
        held = staging.filter(pl.col(REASON) != "")
        staging = staging.filter(pl.col(REASON) == "").drop(REASON)
        held_back = held.with_columns(business_key_expr(mapping.coalesce).alias(BUSINESS_KEY))
    if references is not None:
        staging, rejected = split_valid(staging, references, **LINE_ACCOUNT_COLUMNS)
        rejected = rejected.with_columns(business_key_expr(mapping.coalesce).alias(BUSINESS_KEY))
        held_back = pl.concat([held_back, rejected.select(held_back.columns)]) if held_back.height else rejected

    findings: list[Finding] = []
    if bound is not None and schema is not None:
        rows = staging
        if legal_entity and any(f.code == "coalesce_narrower" for f in coalesce_findings(bound, schema)):
            # A map narrower than the key may merge records of different companies (the same PO number in two of
            # them): the collisions are looked for across every configured company, not only this partition's.
            rows, _ = mapped_rows(mapping, warehouse, ctx, legal_entity=None,
                                  configured_legal_entities=configured_legal_entities)
        keys = rows.select(business_key_expr(mapping.coalesce).alias(BUSINESS_KEY)).to_series()
        findings = [*bound.findings, *coalesce_findings(bound, schema, rows, keys)]

    diff = warehouse.diff(mapping, staging, erp_source=ctx.erp_source, legal_entities=scope)
    if held_back.height:
        # A held-back row still exists in F&O: it must not look deleted and be deactivated in ServiceNow.
        keys = held_back.get_column(BUSINESS_KEY)
        diff = DiffResult(diff.target, diff.inserts, diff.changes,
                          diff.deletions.filter(~pl.col(BUSINESS_KEY).is_in(keys.implode())), diff.orphans,
                          diff.unchanged, diff.duplicate_keys)
    return SyncPlan(target, legal_entity, diff, held_back, bound, findings, scope)


def mapped_rows(mapping: TargetMapping, warehouse: Warehouse, ctx: MappingContext, *, legal_entity: str | None,
                configured_legal_entities: Sequence[str], validate_accounts: bool = False
                ) -> tuple[pl.DataFrame, ReferenceData | None]:
    """The current snapshots of ``legal_entity`` (or of every configured company) mapped to staging rows, and the
    reference data account validation needs."""
    # Every read in one connection: a warehouse connection costs milliseconds (it grows with the file), which
    # dominated the CPU of a no-change cycle when each read opened its own (bench/: no-change).
    with warehouse.reader() as con:
        source = snapshots.read_snapshot(
            con, mapping.source_entity, _scope(con, mapping.source_entity, legal_entity, configured_legal_entities),
            bookkeeping=False)
        related = {name: snapshots.read_snapshot(con, name, _scope(con, name, legal_entity,
                                                                  configured_legal_entities), bookkeeping=False)
                   for name in mapping.related_entities}
        references = _reference_data(con) if validate_accounts else None
    staging = _empty_staging(mapping) if source.height == 0 else apply_mapping(mapping, source, ctx, related)
    return staging, references


def _empty_staging(mapping: TargetMapping) -> pl.DataFrame:
    columns = {name: pl.String for name in mapping.column_names}
    if mapping.hold_back:
        columns[REASON] = pl.String
    return pl.DataFrame(schema=columns)
