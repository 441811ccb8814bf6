"""Splitting one F&O read into key ranges that stay correct while F&O changes underneath (DESIGN.md §10).

A range is a condition on the entity's key, ``boundary[i] <= key < boundary[i+1]`` in the order F&O itself
compares keys, so every row falls in exactly one range whatever is inserted or deleted during the read: unlike
``$skip`` offsets, a boundary cannot move. The boundaries are sampled from the data (the key at evenly spaced
offsets, one row each), which only decides how evenly the rows spread over the ranges, never whether a row is read.
Comparisons are written only with ``gt ge lt le`` and F&O evaluates them, so its collation decides, as it does for
its own ordering; equality is ``ge`` and ``le`` together because ``eq`` would read a ``*`` in a key as a wildcard
(reference/d365.md §2). Every literal goes through :mod:`.odata`.

Even when boundaries sampled at different moments come out of order, the ranges still cover every key (a key
belongs to the first range whose lower bound it passes and whose upper bound it does not); it may then be read
twice, which the snapshot's de-duplication by key absorbs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from . import odata

PARALLEL_MIN_ROWS = 50_000    # below this one nextLink stream is as good: the ranges' probes would cost more
RANGE_MIN_ROWS = 10_000       # one F&O page (reference §2): a smaller range costs a probe for less than a page
RANGE_MAX_ROWS = 100_000      # bounds what re-reading a range costs and what one range holds before it is passed on
RANGES_PER_STREAM = 5         # enough ranges that the streams finish together and the limit has room to move
BOUNDARY_MAX_CHARS = 200      # a boundary goes into the URL of every page of two ranges


def range_count(total: int, streams: int) -> int:
    """How many ranges a read of ``total`` rows with up to ``streams`` streams is split into."""
    if total <= 0:
        return 1
    wanted = max(RANGES_PER_STREAM * streams, math.ceil(total / RANGE_MAX_ROWS))
    return max(1, min(wanted, math.ceil(total / RANGE_MIN_ROWS)))


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


def _equal(name: str, value: Any) -> odata.Filter:
    if isinstance(value, str):
        return odata.ge(name, value) & odata.le(name, value)
    return odata.eq(name, value)


Compare = Callable[[str, Any], odata.Filter]


def _lexicographic(keys: Sequence[str], values: Sequence[Any], strict: Compare, last: Compare) -> odata.Filter:
    """A comparison of the key tuple with ``values``: for some column, the columns before it equal and it
    ``strict``-ly beyond; for the last column, compared with ``last`` (the inclusive or exclusive end)."""
    alternatives: list[odata.Filter | None] = []
    for index, name in enumerate(keys):
        compare = last if index == len(keys) - 1 else strict
        alternatives.append(odata.all_of(*(_equal(k, v) for k, v in zip(keys[:index], values[:index], strict=True)),
                                         compare(name, values[index])))
    combined = odata.any_of(*alternatives)
    assert combined is not None
    return combined


def at_least(keys: Sequence[str], values: Sequence[Any]) -> odata.Filter:
    """Rows whose key is at or after ``values`` in F&O's order."""
    return _lexicographic(keys, values, odata.gt, odata.ge)


def below(keys: Sequence[str], values: Sequence[Any]) -> odata.Filter:
    """Rows whose key is before ``values`` in F&O's order."""
    return _lexicographic(keys, values, odata.lt, odata.lt)


def range_filters(keys: Sequence[str], boundaries: Sequence[Sequence[Any]]) -> list[odata.Filter | None]:
    """The conditions of the ranges the boundaries cut the key space into: below the first, between each two, at
    or after the last. No boundaries: one range, no condition."""
    if not boundaries:
        return [None]
    filters: list[odata.Filter | None] = [below(keys, boundaries[0])]
    for lower, upper in pairwise(boundaries):
        filters.append(at_least(keys, lower) & below(keys, upper))
    filters.append(at_least(keys, boundaries[-1]))
    return filters


__all__ = ["BOUNDARY_MAX_CHARS", "PARALLEL_MIN_ROWS", "RANGES_PER_STREAM", "RANGE_MAX_ROWS", "RANGE_MIN_ROWS",
           "at_least", "below", "probe_offsets", "range_count", "range_filters", "usable_boundary"]
