"""Key ranges (clients/key_ranges.py): how a read is split, and that the ranges' filters cut the key space into
parts that hold every key, judged by the sandbox's own OData filter engine (the one F&O reads are tested against)."""

from __future__ import annotations

from itertools import pairwise

import duckdb
import pytest

from d365_snow_assets.clients import key_ranges
from d365_snow_assets.clients.key_ranges import (
    at_least,
    below,
    between,
    probe_offsets,
    range_count,
    shortest_prefix,
    usable_boundary,
)
from d365_snow_assets.sandbox.d365.filters import filter_to_sql
from d365_snow_assets.sandbox.d365.schema import ENTITY_SETS

KEYS = ["PurchaseOrderNumber", "LineNumber"]
# Keys F&O could hold: quotes, a '*' (a wildcard to eq), case variants, unicode, a prefix of another key.
ORDERS = ["A", "a*b", "A*B2", "O'Brien", "o'brien-2", "USMF-000001", "USMF-0000010", "Zürich", "zz", "Ω-1", "''"]


@pytest.fixture(scope="module")
def lines() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute('CREATE TABLE t ("PurchaseOrderNumber" VARCHAR, "LineNumber" BIGINT)')
    con.executemany("INSERT INTO t VALUES (?, ?)", [[o, n] for o in ORDERS for n in (1, 2, 3, 10)])
    return con


def range_filters(keys: list[str], boundaries: list[tuple]) -> list:
    """The ranges a read cuts the key space into at these boundaries, as paging.RangeRead builds them one by one."""
    columns = shortest_prefix(boundaries)
    return [between(keys, lower, upper, columns) for lower, upper in pairwise([None, *boundaries, None])]


def members(con: duckdb.DuckDBPyConnection, text: str | None) -> list[tuple[str, int]]:
    if text is None:
        return con.execute("SELECT * FROM t").fetchall()
    sql, params = filter_to_sql(ENTITY_SETS["PurchaseOrderLinesV2"], text)
    return con.execute(f"SELECT * FROM t WHERE {sql}", params).fetchall()


def in_server_order(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    # The sandbox's $orderby on a string key is case-insensitive (as F&O's SQL collation).
    return con.execute('SELECT * FROM t ORDER BY "PurchaseOrderNumber" COLLATE NOCASE, "LineNumber"').fetchall()


def test_every_key_is_in_exactly_one_range(lines):
    ordered = in_server_order(lines)
    boundaries = [ordered[i] for i in probe_offsets(len(ordered), 7)]
    parts = [members(lines, None if f is None else f.text) for f in range_filters(KEYS, boundaries)]
    assert len(parts) == 7 and all(parts)
    seen = [row for part in parts for row in part]
    assert sorted(seen) == sorted(lines.execute("SELECT * FROM t").fetchall())  # each row once, none lost


def test_boundaries_between_and_beyond_the_data_still_cover_everything(lines):
    # A boundary sampled before a delete need not exist any more; one may even sort after the next one when the
    # data moved between two probes: the ranges still cover every key (some then twice, which the snapshot
    # de-duplicates).
    boundaries = [("A*", 5), ("zz", 2), ("O'Brien", 3), ("ÿ", 0)]
    seen = [row for f in range_filters(KEYS, boundaries) for row in members(lines, None if f is None else f.text)]
    assert set(seen) == set(lines.execute("SELECT * FROM t").fetchall())


def test_a_range_is_the_half_open_interval_of_its_boundaries(lines):
    low, high = ("O'Brien", 2), ("USMF-000001", 3)
    got = members(lines, (at_least(KEYS, low) & below(KEYS, high)).text)
    assert sorted(got) == [("O'Brien", 2), ("O'Brien", 3), ("O'Brien", 10), ("USMF-000001", 1), ("USMF-000001", 2),
                           ("o'brien-2", 1), ("o'brien-2", 2), ("o'brien-2", 3), ("o'brien-2", 10)]


def test_literals_are_escaped_and_never_compared_with_eq():
    text = range_filters(KEYS, [("a*b'c", 3)])[1].text
    assert "'a*b''c'" in text and " eq " not in text  # '*' in an eq would be a wildcard to F&O
    assert range_filters(["LineNumber"], [(7,)])[0].text == "LineNumber lt 7"


def test_ranges_use_the_shortest_key_prefix_that_separates_the_boundaries(lines):
    # Orders differ: the order number alone (whole orders per range, a cheaper filter, a shorter URL).
    by_order = range_filters(KEYS, [("O'Brien", 3), ("zz", 1)])
    assert "LineNumber" not in "".join(f.text for f in by_order if f is not None)
    assert [len(members(lines, f.text)) for f in by_order if f is not None] == [16, 16, 12]  # 4 lines an order
    # Two boundaries in one order: the line number is needed to tell them apart.
    within = range_filters(KEYS, [("O'Brien", 2), ("O'Brien", 10)])
    assert [sorted(members(lines, f.text)) for f in within if f is not None][1] == [("O'Brien", 2), ("O'Brien", 3)]


def test_unusable_boundaries_are_refused():
    assert usable_boundary(KEYS, {"PurchaseOrderNumber": "P1", "LineNumber": 3}) == ("P1", 3)
    assert usable_boundary(KEYS, None) is None
    assert usable_boundary(KEYS, {"PurchaseOrderNumber": "P1", "LineNumber": 3.5}) is None   # a JSON number
    assert usable_boundary(KEYS, {"PurchaseOrderNumber": "P1", "LineNumber": True}) is None
    assert usable_boundary(KEYS, {"PurchaseOrderNumber": "P1"}) is None
    long = "x" * (key_ranges.BOUNDARY_MAX_CHARS + 1)
    assert usable_boundary(KEYS, {"PurchaseOrderNumber": long, "LineNumber": 1}) is None


@pytest.mark.parametrize(("total", "streams", "ranges"), [
    (1_000_000, 4, 20),       # five ranges per stream
    (100_000, 4, 10),         # but never below a page per range
    (60_000, 4, 6),
    (10_000_000, 4, 100),     # nor above RANGE_MAX_ROWS per range
    (1_000_000, 1, 10),
    (1_000_000, 16, 100),     # one page per range at the least
    (0, 4, 1),
])
def test_range_count(total, streams, ranges):
    assert range_count(total, streams) == ranges


def test_probe_offsets_split_evenly():
    assert probe_offsets(1000, 4) == [250, 500, 750]
    assert probe_offsets(10, 1) == []
