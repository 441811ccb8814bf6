"""Financial dimension display values (DESIGN §5.3, d365.md §3.3).

A display value joins the segments of the configured dimension format with a one-character delimiter; a
delimiter inside a value is escaped with a backslash (``US\\-108``). A backslash inside a value is escaped the same
way so that every value round-trips. The same escape-aware split also serves the business-key strings of the
warehouse, which is why a vectorized polars form sits next to the scalar one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

ESCAPE = "\\"
# Private-use code points stand in for escaped characters while a column is split; F&O values do not use them.
_ESCAPED_BACKSLASH = "\ue000"
_ESCAPED_DELIMITER = "\ue001"


def _check_delimiter(delimiter: str) -> None:
    if len(delimiter) != 1 or delimiter == ESCAPE:
        raise ValueError(f"dimension delimiter must be one character other than a backslash, got {delimiter!r}")


def escape_value(value: str, delimiter: str) -> str:
    """``value`` with backslashes and ``delimiter`` escaped by a backslash."""
    return value.replace(ESCAPE, ESCAPE + ESCAPE).replace(delimiter, ESCAPE + delimiter)


def split_display_value(display_value: str, delimiter: str) -> list[str]:
    """The unescaped segments of a display value; empty segments are kept (``"001--"`` has three)."""
    _check_delimiter(delimiter)
    segments: list[str] = []
    current: list[str] = []
    chars = iter(display_value)
    for char in chars:
        if char == ESCAPE:
            current.append(next(chars, ESCAPE))
        elif char == delimiter:
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    return segments


def build_display_value(values: Mapping[str, str], format: Sequence[str], delimiter: str = "-") -> str:
    """The display value for ``values`` (segment name → value) in the order of ``format``; missing segments are
    empty."""
    _check_delimiter(delimiter)
    unknown = set(values) - set(format)
    if unknown:
        raise ValueError(f"segments {sorted(unknown)} are not in the dimension format {list(format)}")
    return delimiter.join(escape_value(values.get(name, ""), delimiter) for name in format)


def parse_segment(display_value: str, segment: str, format: Sequence[str], delimiter: str = "-") -> str:
    """The value of ``segment`` in ``display_value``; ``""`` when the value is shorter than the format."""
    index = _segment_index(segment, format)
    segments = split_display_value(display_value or "", delimiter)
    return segments[index] if index < len(segments) else ""


def _segment_index(segment: str, format: Sequence[str]) -> int:
    try:
        return list(format).index(segment)
    except ValueError:
        raise ValueError(f"segment {segment!r} is not in the dimension format {list(format)}") from None


def escape_expr(expr: pl.Expr, delimiter: str) -> pl.Expr:
    """Vectorized :func:`escape_value`."""
    return expr.str.replace_all(ESCAPE, ESCAPE + ESCAPE, literal=True).str.replace_all(
        delimiter, ESCAPE + delimiter, literal=True
    )


def split_part_expr(expr: pl.Expr, index: int, delimiter: str) -> pl.Expr:
    """Vectorized ``split_display_value(value, delimiter)[index]`` (``""`` when out of range or null)."""
    _check_delimiter(delimiter)
    # Escapes pair from the left, and replace_all scans left to right without overlap, so `\\` is consumed before
    # `\-` can be mistaken for an escaped delimiter.
    protected = (
        expr.fill_null("")
        .str.replace_all(ESCAPE + ESCAPE, _ESCAPED_BACKSLASH, literal=True)
        .str.replace_all(ESCAPE + delimiter, _ESCAPED_DELIMITER, literal=True)
        .str.replace_all(r"(?s)\\(.)", "$1")
    )
    part = protected.str.split(delimiter).list.get(index, null_on_oob=True).fill_null("")
    return part.str.replace_all(_ESCAPED_DELIMITER, delimiter, literal=True).str.replace_all(
        _ESCAPED_BACKSLASH, ESCAPE, literal=True
    )


def segment_expr(column: str, segment: str, format: Sequence[str], delimiter: str = "-") -> pl.Expr:
    """Vectorized :func:`parse_segment` over an F&O display-value column."""
    return split_part_expr(pl.col(column).cast(pl.String), _segment_index(segment, format), delimiter)
