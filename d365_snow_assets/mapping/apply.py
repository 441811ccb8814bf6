"""Turning a snapshot frame into staging rows: the whole mapping becomes one lazy polars query."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
import pyarrow as pa

from d365_snow_assets.mapping import values
from d365_snow_assets.mapping.derived import ROW_FILTERS, RULES, Rule
from d365_snow_assets.mapping.spec import Const, Derived, Field, MappingContext, MappingError, TargetMapping

FrameLike = pl.DataFrame | pl.LazyFrame | pa.Table
# Why a row is held back (validation.reference_data adds its own reasons in the same column).
REASON = "_reason"


def _lazy(frame: FrameLike) -> pl.LazyFrame:
    if isinstance(frame, pl.LazyFrame):
        return frame
    if isinstance(frame, pa.Table):
        return pl.from_arrow(frame).lazy()  # type: ignore[union-attr]
    return frame.lazy()


def source_columns(mapping: TargetMapping) -> list[str]:
    """The F&O fields ``mapping`` reads, e.g. for an OData ``$select``."""
    needed: list[str] = []
    for _, source in mapping.columns:
        if isinstance(source, Field):
            needed.append(source.column)
        elif isinstance(source, Derived):
            needed.extend(RULES[source.rule].reads)
    if mapping.row_filter:
        needed.extend(ROW_FILTERS[mapping.row_filter].reads)
    if mapping.hold_back:
        needed.extend(RULES[mapping.hold_back].reads)
    return list(dict.fromkeys(needed))


def related_columns(mapping: TargetMapping) -> dict[str, list[str]]:
    """The fields ``mapping`` reads from its related entities (entity -> fields), for their ``$select``."""
    needed: dict[str, list[str]] = {}
    for _, source in mapping.columns:
        if isinstance(source, Derived):
            for entity, fields in RULES[source.rule].related_reads.items():
                needed.setdefault(entity, []).extend(fields)
    return {entity: list(dict.fromkeys(fields)) for entity, fields in needed.items()}


def apply_mapping(
    mapping: TargetMapping,
    frame: FrameLike,
    ctx: MappingContext,
    related: Mapping[str, FrameLike] | None = None,
) -> pl.DataFrame:
    """Staging rows for ``mapping`` from F&O rows in ``frame``: one column per label, every value a string, in spec
    order; plus ``_reason`` (why the row must be held back, "" when it may go) when the mapping has a hold-back rule.

    ``related`` holds the other entities a rule needs (``PurchaseOrderLinesV2`` for ``po_amount``). Snapshot
    metadata columns (snapshot_id, row_hash, …) are ignored.
    """
    lazy = _lazy(frame)
    schema = lazy.collect_schema()
    missing = [c for c in source_columns(mapping) if c not in schema]
    if missing:
        raise MappingError(f"{mapping.staging_table}: the {mapping.source_entity} frame lacks columns {missing}")
    related_lazy = {name: _lazy(f) for name, f in (related or {}).items()}
    # The preparations see every source row, the row filter's leftovers included: the party check and the supplier
    # collapse count an account's companies, and a company that is out of scope still has the record (DESIGN §5.1:
    # out of scope is not "gone"), so narrowing the configured companies changes no shared supplier.
    rules = [mapping.hold_back] if mapping.hold_back else []
    rules += [source.rule for _, source in mapping.columns if isinstance(source, Derived)]
    for rule in dict.fromkeys(rules):
        prepare = _rule(rule).prepare
        if prepare is not None:
            lazy = prepare(lazy, ctx, related_lazy)
    schema = lazy.collect_schema()
    if mapping.row_filter:
        lazy = lazy.filter(ROW_FILTERS[mapping.row_filter].expr(ctx, schema))
    exprs = [_expr(source, ctx, schema).cast(pl.String).fill_null("").alias(name) for name, source in mapping.columns]
    if mapping.hold_back:
        exprs.append(_rule(mapping.hold_back).expr(ctx, schema).fill_null("").alias(REASON))
    return lazy.select(exprs).collect()


def _rule(name: str) -> Rule:
    rule = RULES.get(name)
    if rule is None:
        raise MappingError(f"unknown derived rule {name!r}; known: {', '.join(sorted(RULES))}")
    return rule


def _expr(source: Field | Const | Derived, ctx: MappingContext, schema: Mapping[str, pl.DataType]) -> pl.Expr:
    if isinstance(source, Field):
        return values.format_column(source.column, source.format, schema[source.column])
    if isinstance(source, Const):
        return pl.lit(source.value, dtype=pl.String)
    return _rule(source.rule).expr(ctx, schema)
