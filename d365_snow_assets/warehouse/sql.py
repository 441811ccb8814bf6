"""Identifier handling: values are always bound parameters; identifiers come only from allow-lists or pass a
strict pattern and are quoted."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def quote(name: str) -> str:
    """``name`` as a quoted DuckDB identifier; anything but letters, digits and ``_`` is refused."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain column or table name (letters, digits and _ only)")
    return f'"{name}"'


def text_of(column: str) -> str:
    """SQL for the column as text with NULL kept distinguishable from ``""`` (for row hashes)."""
    return f"coalesce(CAST({quote(column)} AS VARCHAR), chr(30))"


def row_hash(columns: list[str]) -> str:
    """SQL for a stable row hash: md5 over the columns in the given order, separated by a unit separator.

    md5 (not DuckDB's or polars' ``hash``) because the value is stored and must not change with a library upgrade:
    a changed hash would re-push every record.
    """
    if not columns:
        return "md5('')"
    return "md5(concat_ws(chr(31), " + ", ".join(text_of(c) for c in columns) + "))"


def first(rows: list[tuple]) -> tuple | None:
    """The first row of a fully fetched result (DuckDB 2 keeps a connection busy until a result is drained,
    so results are always read with ``fetchall``)."""
    return rows[0] if rows else None
