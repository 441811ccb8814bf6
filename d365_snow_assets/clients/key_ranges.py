"""Splitting one F&O read into key ranges that stay correct while F&O changes underneath (DESIGN.md §10).

A range is a condition on the entity's key, ``boundary[i] <= key < boundary[i+1]`` in the order F&O itself
compares keys, so every row falls in exactly one range whatever is inserted or deleted during the read: unlike
``$skip`` offsets, a boundary cannot move. The boundaries are sampled from the data (the key at evenly spaced
offsets, one row each), which only decides how evenly the rows spread over the ranges, never whether a row is read.
Comparisons are written only with ``gt ge lt le`` and F&O evaluates them, so its collation decides, as it does for
its own ordering; there is no ``eq``, which would read a ``*`` in a key as a wildcard (reference/d365.md §2). Every
literal goes through :mod:`.odata`.

Even when boundaries sampled at different moments come out of order, the ranges still cover every key (a key
belongs to the first range whose lower bound it passes and whose upper bound it does not); it may then be read
twice, which the snapshot's de-duplication by key absorbs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from . import odata

PARALLEL_MIN_ROWS = 50_000    # below this one nextLink stream is as good: the ranges' probes would cost more
RANGE_MIN_ROWS = 10_000       # one F&O page (reference §2): a smaller range costs a probe for less than a page
RANGE_MAX_ROWS = 100_000      # bounds what re-reading a range costs and what one range holds before it is passed on
RANGES_PER_STREAM = 5         # enough ranges that the streams finish together and the limit has room to move
BOUNDARY_MAX_CHARS = 200      # a boundary goes into the URL of every page of two ranges


def range_count(total: int, streams: int) -> int:
    """How many ranges a read of ``total`` rows with up to ``streams`` streams is split into: ranges of whole
    pages, about ``RANGES_PER_STREAM`` per stream, at most ``RANGE_MAX_ROWS`` rows each."""
    pages = math.ceil(max(total, 0) / RANGE_MIN_ROWS)
    if pages <= 1:
        return 1
    per_range = max(1, min(RANGE_MAX_ROWS // RANGE_MIN_ROWS, pages // (RANGES_PER_STREAM * streams)))
    return math.ceil(pages / per_range)


def probe_offsets(total: int, ranges: int) -> list[int]:
    """Where the boundaries are sampled: the row offsets that split ``total`` rows into ``ranges`` equal parts."""
    return [round(i * total / ranges) for i in range(1, ranges)]


def usable_boundary(keys: Sequence[str], row: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    """The key values of a probed row as a boundary, or None when they cannot be one: a missing row, a value
    that is not a string or an integer (a JSON number or date text would not compare as F&O compares the
    column), or a string too long for a URL."""
    if row is None:
        return None
    values = []
    for key in keys:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        if isinstance(value, str) and len(value) > BOUNDARY_MAX_CHARS:
            return None
        values.append(value)
    return tuple(values)


def at_least(keys: Sequence[str], values: Sequence[Any]) -> odata.Filter:
    """Rows whose key is at or after ``values`` in F&O's order: ``k1 ≥ v1 and (k1 > v1 or rest ≥ rest)``, which is
    the lexicographic order without an equality (F&O's ``eq`` would read ``*`` as a wildcard)."""
    first = odata.ge(keys[0], values[0])
    if len(keys) == 1:
        return first
    return first & (odata.gt(keys[0], values[0]) | at_least(keys[1:], values[1:]))


def below(keys: Sequence[str], values: Sequence[Any]) -> odata.Filter:
    """Rows whose key is before ``values`` in F&O's order: ``k1 ≤ v1 and (k1 < v1 or rest < rest)``."""
    if len(keys) == 1:
        return odata.lt(keys[0], values[0])
    return odata.le(keys[0], values[0]) & (odata.lt(keys[0], values[0]) | below(keys[1:], values[1:]))


def shortest_prefix(boundaries: Sequence[Sequence[Any]]) -> int:
    """How many leading key columns tell the boundaries apart: ranges on fewer columns make cheaper filters and
    shorter URLs (purchase order lines split between orders, on the order number alone)."""
    width = len(boundaries[0]) if boundaries else 1
    for columns in range(1, width):
        if len({tuple(b[:columns]) for b in boundaries}) == len(boundaries):
            return columns
    return width


def between(keys: Sequence[str], lower: Sequence[Any] | None, upper: Sequence[Any] | None,
            columns: int) -> odata.Filter | None:
    """The range ``lower <= key < upper`` on the first ``columns`` key columns; None bounds are open."""
    keys = keys[:columns]
    return odata.all_of(None if lower is None else at_least(keys, lower[:columns]),
                        None if upper is None else below(keys, upper[:columns]))


__all__ = ["BOUNDARY_MAX_CHARS", "PARALLEL_MIN_ROWS", "RANGES_PER_STREAM", "RANGE_MAX_ROWS", "RANGE_MIN_ROWS",
           "at_least", "below", "between", "probe_offsets", "range_count", "shortest_prefix",
           "usable_boundary"]
