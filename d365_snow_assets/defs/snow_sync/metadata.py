"""Materialization metadata that reads well in the Dagster UI: counts, small previews as tables, records grouped by
reason, and the way from a run to its audit (``d365-snow trace`` / ``replay`` lines, the ServiceNow list)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

import dagster as dg
import polars as pl

from ...clients.encoded_query import EncodedQuery
from ...warehouse.state import BUSINESS_KEY

PREVIEW_ROWS = 20
PREVIEW_COLUMNS = 6
SAMPLES = 2  # business keys per reason: enough to `d365-snow trace` one, few enough to read


# Internal column names → what a person reading the UI calls them.
_LABELS = {BUSINESS_KEY: "record", "_reason": "reason"}


def preview_table(frame: pl.DataFrame, columns: list[str] | None = None) -> dg.MetadataValue:
    """At most 20 rows and a few columns: metadata must stay small (reference/dagster.md §4.3)."""
    chosen = columns or [c for c in frame.columns if not c.startswith("_")][:PREVIEW_COLUMNS]
    head = frame.select(chosen).head(PREVIEW_ROWS).rename(lambda c: _LABELS.get(c, c))
    cols = head.columns
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in cols])
    records = [dg.TableRecord({c: ("" if v is None else str(v)[:120]) for c, v in row.items()})
               for row in head.to_dicts()]
    return dg.MetadataValue.table(records, schema=schema)


def reasons_table(frame: pl.DataFrame, reason: str) -> dg.MetadataValue:
    """Records grouped by ``reason``: one row per reason, most records first, with how many and sample keys.

    Hundreds of held-back lines usually share a handful of reasons (one suspended cost center); a flat list shows
    twenty of them and hides the rest."""
    grouped = (frame.select(pl.col(reason).fill_null("").alias("reason"), pl.col(BUSINESS_KEY))
               .group_by("reason").agg(pl.len().alias("records"), pl.col(BUSINESS_KEY).sort().head(SAMPLES))
               .sort(["records", "reason"], descending=[True, False]).head(PREVIEW_ROWS))
    schema = dg.TableSchema(columns=[dg.TableColumn("reason", "string"), dg.TableColumn("records", "int"),
                                     dg.TableColumn("sample records", "string")])
    records = [dg.TableRecord({"reason": (row["reason"] or "no reason recorded")[:300], "records": row["records"],
                               "sample records": ", ".join(row[BUSINESS_KEY])})
               for row in grouped.to_dicts()]
    return dg.MetadataValue.table(records, schema=schema)


def audit_commands(run_id: str | None, samples: Sequence[tuple[str, str]]) -> dg.MetadataValue:
    """Command lines that open this run's audit: ``d365-snow trace`` per sample key (``replay --key`` too for a
    failed one), and ``replay --run`` for every failure of the run (only with a ``run_id``: replay re-sends F&O
    records, not invoices). ``samples`` are (what happened, key) pairs.

    Keys are F&O data: each is shell-quoted, and the block's fence is longer than any backtick run inside it, so
    no key can end the code block or the command line early."""
    lines = []
    for what, key in samples:
        lines.append(f"d365-snow trace {shlex.quote(key)}    # {what}")
        if what == "failed":
            lines.append(f"d365-snow replay --key {shlex.quote(key)}")
    if run_id is not None:
        lines.append(f"d365-snow replay --run {shlex.quote(run_id)}    # every record this run failed, sent again")
    if not lines:
        return dg.MetadataValue.md("Nothing this run.")
    body = "\n".join(lines)
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", body)), default=0))
    return dg.MetadataValue.md(f"The audit of this run, record by record (run these where the connector runs):\n\n"
                               f"{fence}sh\n{body}\n{fence}\n")


def servicenow_list_url(instance_url: str, table: str, since: datetime, until: datetime) -> dg.MetadataValue:
    """The instance's list of ``table`` filtered to the records updated while the step ran (``since``..``until``,
    UTC, whole seconds: ServiceNow's ``sys_updated_on`` has one-second resolution, reference/servicenow.md §1.6).

    A plain date-time literal in an encoded query is read as UTC (reference/servicenow.md §1.6; that the list
    view's ``sysparm_query`` reads it as the Table API does is an inference). The query is built by the escaping
    builder and percent-encoded as a whole."""
    query = (EncodedQuery().ge("sys_updated_on", f"{since.replace(microsecond=0):%Y-%m-%d %H:%M:%S}")
             .le("sys_updated_on", f"{(until + timedelta(seconds=1)).replace(microsecond=0):%Y-%m-%d %H:%M:%S}")
             .order_by("sys_updated_on", descending=True))
    return dg.MetadataValue.url(f"{instance_url.rstrip('/')}/{quote(table, safe='')}_list.do?"
                                + urlencode({"sysparm_query": str(query)}))
