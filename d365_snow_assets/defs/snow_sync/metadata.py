"""Materialization metadata that reads well in the Dagster UI: counts, and small previews as tables."""

from __future__ import annotations

import dagster as dg
import polars as pl

PREVIEW_ROWS = 20
PREVIEW_COLUMNS = 6


# Internal column names → what a person reading the UI calls them.
_LABELS = {"_business_key": "record", "_reason": "reason"}


def preview_table(frame: pl.DataFrame, columns: list[str] | None = None) -> dg.MetadataValue:
    """At most 20 rows and a few columns: metadata must stay small (reference/dagster.md §4.3)."""
    chosen = columns or [c for c in frame.columns if not c.startswith("_")][:PREVIEW_COLUMNS]
    head = frame.select(chosen).head(PREVIEW_ROWS).rename(lambda c: _LABELS.get(c, c))
    cols = head.columns
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in cols])
    records = [dg.TableRecord({c: ("" if v is None else str(v)[:120]) for c, v in row.items()})
               for row in head.to_dicts()]
    return dg.MetadataValue.table(records, schema=schema)
