"""Turning a snapshot frame into staging rows: the whole mapping becomes one lazy polars query."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
import pyarrow as pa

from d365_snow_assets.mapping import values
from d365_snow_assets.mapping.derived import ROW_FILTERS, RULES
from d365_snow_assets.mapping.spec import Const, Derived, Field, MappingContext, MappingError, TargetMapping

FrameLike = pl.DataFrame | pl.LazyFrame | pa.Table


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
    return list(dict.fromkeys(needed))


def apply_mapping(
    mapping: TargetMapping,
    frame: FrameLike,
    ctx: MappingContext,
    related: Mapping[str, FrameLike] | None = None,
) -> pl.DataFrame:
    """Staging rows for ``mapping`` from F&O rows in ``frame``: every column a string, in spec order.

    ``related`` holds the other entities a rule needs (``PurchaseOrderLinesV2`` for ``po_amount``). Snapshot
    metadata columns (snapshot_id, row_hash, …) are ignored.
    """
    lazy = _lazy(frame)
    schema = lazy.collect_schema()
    missing = [c for c in source_columns(mapping) if c not in schema]
    if missing:
        raise MappingError(f"{mapping.staging_table}: the {mapping.source_entity} frame lacks columns {missing}")
    related_lazy = {name: _lazy(f) for name, f in (related or {}).items()}
    if mapping.row_filter:
        lazy = lazy.filter(ROW_FILTERS[mapping.row_filter].expr(ctx, schema))
    for _, source in mapping.columns:
        if isinstance(source, Derived) and RULES[source.rule].prepare is not None:
            lazy = RULES[source.rule].prepare(lazy, ctx, related_lazy)  # type: ignore[misc]
    exprs = [_expr(source, ctx, schema).cast(pl.String).fill_null("").alias(name) for name, source in mapping.columns]
    return lazy.select(exprs).collect()


def _expr(source: Field | Const | Derived, ctx: MappingContext, schema: Mapping[str, pl.DataType]) -> pl.Expr:
    if isinstance(source, Field):
        return values.format_column(source.column, source.format, schema[source.column])
    if isinstance(source, Const):
        return pl.lit(source.value, dtype=pl.String)
    rule = RULES.get(source.rule)
    if rule is None:
        raise MappingError(f"unknown derived rule {source.rule!r}; known: {', '.join(sorted(RULES))}")
    return rule.expr(ctx, schema)
