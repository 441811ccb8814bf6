"""String formatting rules of DESIGN §5: every Import Set value is a string.

Each rule is a polars expression builder so a whole snapshot is formatted column-at-a-time. The rule depends on
the source dtype because F&O decimals may arrive as JSON numbers (Float64/Int64), as strings
(``IEEE754Compatible=true``) or as Decimal after a round trip through DuckDB.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

Format = Literal["text", "upper", "enum", "amount", "decimal", "integer", "date"]
FORMATS: frozenset[str] = frozenset({"text", "upper", "enum", "amount", "decimal", "integer", "date"})

# F&O writes an empty Date as 1900-01-01T12:00:00Z and an empty UtcDateTime as 1900-01-01T00:00:00Z (d365.md §2).
NULL_DATE_PREFIX = "1900-01-01"
# Scale wide enough for F&O reals (prices carry up to 6 dp) while still fitting 10^26 in Decimal(38, ·).
_WIDE_SCALE = 12


def text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Any value as a string; null becomes ``""``."""
    if dtype == pl.String:
        return expr.fill_null("")
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return decimal(expr, dtype)
    return expr.cast(pl.String).fill_null("")


def upper(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Legal entity codes are compared case-insensitively and written upper-case (§5)."""
    return text(expr, dtype).str.to_uppercase()


def amount(expr: pl.Expr, dtype: pl.DataType, scale: int = 2) -> pl.Expr:
    """A money amount with F&O's 2 dp, e.g. ``"1250.00"``; unparseable strings pass through unchanged."""
    if dtype == pl.Null:
        return pl.lit("")
    if dtype == pl.String:
        parsed = expr.str.strip_chars().cast(pl.Decimal(38, scale), strict=False).cast(pl.String)
        return pl.coalesce(parsed, expr).fill_null("")
    if dtype.is_float():
        # round() first: a float-to-decimal cast alone could show binary noise such as 2.67499… as 2.67.
        expr = expr.round(scale)
    return expr.cast(pl.Decimal(38, scale), strict=False).cast(pl.String).fill_null("")


def decimal(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A quantity or price with the precision it came with: no exponent, no thousand separators, no
    trailing zeros beyond what the value needs (``10``, ``10.5``, ``0.0001``)."""
    if dtype == pl.Null:
        return pl.lit("")
    if dtype == pl.String:
        return expr.str.strip_chars().fill_null("")
    if dtype.is_integer():
        return expr.cast(pl.String).fill_null("")
    wide = expr.cast(pl.Decimal(38, _WIDE_SCALE), strict=False).cast(pl.String)
    trimmed = wide.str.replace(r"(\.\d*?)0+$", "$1").str.strip_suffix(".")
    # Values too large for Decimal(38, 12) fall back to polars' own float text.
    return pl.coalesce(trimmed, expr.cast(pl.String)).fill_null("")


def integer(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Line numbers: ``1`` not ``1.0`` even when JSON parsing produced floats."""
    if dtype == pl.String:
        return expr.fill_null("")
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return expr.cast(pl.Int64, strict=False).cast(pl.String).fill_null("")
    return text(expr, dtype)


def date(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """``YYYY-MM-DD``; F&O null dates and nulls become ``""``."""
    if dtype == pl.Null:
        return pl.lit("")
    if dtype == pl.String:
        day = expr.str.slice(0, 10)
        return pl.when(day.str.starts_with(NULL_DATE_PREFIX)).then(pl.lit("")).otherwise(day).fill_null("")
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            expr = expr.dt.convert_time_zone("UTC")
        expr = expr.dt.date()
    day = expr.dt.strftime("%Y-%m-%d")
    return pl.when(day == NULL_DATE_PREFIX).then(pl.lit("")).otherwise(day).fill_null("")


def boolean(condition: pl.Expr) -> pl.Expr:
    """ServiceNow booleans on the wire are the strings ``"true"`` / ``"false"``."""
    return pl.when(condition).then(pl.lit("true")).otherwise(pl.lit("false"))


def format_column(column: str, fmt: str, dtype: pl.DataType) -> pl.Expr:
    """The expression formatting F&O column ``column`` (of ``dtype``) with rule ``fmt``."""
    expr = pl.col(column)
    if fmt in ("text", "enum"):
        return text(expr, dtype)
    if fmt == "upper":
        return upper(expr, dtype)
    if fmt == "amount":
        return amount(expr, dtype)
    if fmt == "decimal":
        return decimal(expr, dtype)
    if fmt == "integer":
        return integer(expr, dtype)
    if fmt == "date":
        return date(expr, dtype)
    raise ValueError(f"unknown value format {fmt!r}; use one of {', '.join(sorted(FORMATS))}")
