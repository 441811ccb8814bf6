"""Encoded-query parser and evaluator of the fake ServiceNow (reference/servicenow.md §1.5, §1.8)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d365_snow_assets.sandbox.servicenow.encoded_query import (
    candidate_rows,
    compile_query,
    escape_value,
    parse,
    resolve_value,
    sort_rows,
    split_terms,
)
from d365_snow_assets.sandbox.servicenow.store import Field, Table

TYPES = {"n": "integer", "amount": "decimal"}


def table() -> Table:
    return Table("t", [Field("a"), Field("b"), Field("c"), Field("n", "integer"), Field("amount", "decimal"),
                       Field("name")])


def run(rows: list[dict[str, str]], query: str) -> list[dict[str, str]]:
    t = table()

    def resolve(name: str):
        if not t.has_field(name):
            return None
        return (lambda r: r.get(name, "")), t.field_type(name)

    compiled = compile_query(parse(query), resolve, clock=lambda: 1_700_000_000)
    return sort_rows([r for r in rows if compiled.predicate(r)], compiled.order_by)


def ids(rows: list[dict[str, str]]) -> list[str]:
    return [r["sys_id"] for r in rows]


ROWS = [
    {"sys_id": "1", "a": "x", "b": "y", "c": "z", "n": "10", "amount": "5.50", "name": "alpha"},
    {"sys_id": "2", "a": "x", "b": "n", "c": "z", "n": "9", "amount": "100", "name": "beta^gamma"},
    {"sys_id": "3", "a": "q", "b": "y", "c": "w", "n": "", "amount": "", "name": "O'Brien"},
    {"sys_id": "4", "a": "q", "b": "n", "c": "z", "n": "100", "amount": "-1", "name": "Zürich"},
]


def test_split_terms_reads_double_caret_as_literal():
    assert split_terms("a=x^^y^b=1") == ["a=x^y", "b=1"]
    assert split_terms("a=x^^^ORb=1") == ["a=x^", "ORb=1"]
    assert escape_value("INV^1^") == "INV^^1^^"


def test_and_or_precedence_or_binds_to_adjacent_condition():
    # A^ORB^C == (A OR B) AND C
    assert ids(run(ROWS, "a=q^ORb=y^c=z")) == ["1", "4"]
    # A^B^ORC == A AND (B OR C)
    assert ids(run(ROWS, "a=x^b=n^ORc=w")) == ["2"]


def test_nq_ors_whole_groups():
    assert ids(run(ROWS, "a=x^b=y^NQa=q^c=w")) == ["1", "3"]
    # The keyset-continuation shape: (> ts) OR (= ts AND id > last)
    assert ids(run(ROWS, "n>10^NQn=10^sys_id>0")) == ["1", "4"]


def test_or_instead_of_nq_drops_rows():
    # The classic bug (reference §1.8): ^OR makes it (n>9 OR n=9) AND sys_id>2
    assert ids(run(ROWS, "n>9^ORn=9^sys_id>2")) == ["4"]


def test_literal_caret_in_value():
    assert ids(run(ROWS, "name=" + escape_value("beta^gamma"))) == ["2"]
    assert ids(run(ROWS, "nameLIKE" + escape_value("a^g") + "^a=x")) == ["2"]


def test_quote_and_unicode_values():
    assert ids(run(ROWS, "name=O'Brien")) == ["3"]
    assert ids(run(ROWS, "nameSTARTSWITHZü")) == ["4"]


@pytest.mark.parametrize(("query", "expected"), [
    ("n>9", ["1", "4"]),  # numeric, not string ("9" > "10" as strings)
    ("n<10", ["2"]),
    ("n>=10", ["1", "4"]),
    ("n<=9", ["2"]),
    ("n=10.0", ["1"]),
    ("n!=10", ["2", "3", "4"]),  # != keeps empty values
    ("nIN9,100", ["2", "4"]),
    ("nNOT IN9,100", ["1", "3"]),
    ("nBETWEEN9@10", ["1", "2"]),
    ("amount>5.5", ["2"]),
    ("amount<0", ["4"]),
    ("nISEMPTY", ["3"]),
    ("nISNOTEMPTY", ["1", "2", "4"]),
    ("nameLIKEet", ["2"]),
    ("nameNOT LIKEet", ["1", "3", "4"]),
    ("nameSTARTSWITHal", ["1"]),
    ("nameENDSWITHch", ["4"]),
    ("aINx,q^bIN y", []),
    ("a<r", ["3", "4"]),  # strings compare as strings
    ("nameANYTHING", ["1", "2", "3", "4"]),
])
def test_operators(query, expected):
    assert ids(run(ROWS, query)) == expected


def test_invalid_parts_are_ignored():
    assert ids(run(ROWS, "bogus=1^a=x")) == ["1", "2"]
    assert ids(run(ROWS, "a=x^ORBOGUS")) == ["1", "2"]
    assert ids(run(ROWS, "nonsense")) == ["1", "2", "3", "4"]
    assert ids(run(ROWS, "a=x^EQ")) == ["1", "2"]


def test_order_by_numeric_and_desc_and_multi():
    assert ids(run(ROWS, "ORDERBYn")) == ["3", "2", "1", "4"]  # empty first
    assert ids(run(ROWS, "ORDERBYDESCn")) == ["4", "1", "2", "3"]
    assert ids(run(ROWS, "ORDERBYa^ORDERBYDESCsys_id")) == ["4", "3", "2", "1"]
    assert ids(run(ROWS, "ORDERBYunknown^ORDERBYsys_id")) == ["1", "2", "3", "4"]


def test_date_generate_both_forms_and_plain_utc():
    assert resolve_value("javascript:gs.dateGenerate('2024-01-01','10:11:41')") == "2024-01-01 10:11:41"
    assert resolve_value('javascript:gs.dateGenerate("2024-01-01 10:11:41")') == "2024-01-01 10:11:41"
    rows = [{"sys_id": str(i), "a": f"2024-01-0{i} 00:00:00"} for i in range(1, 5)]
    q = "a>javascript:gs.dateGenerate('2024-01-02','00:00:00')"
    assert ids(run(rows, q)) == ["3", "4"]
    q = 'aBETWEENjavascript:gs.dateGenerate("2024-01-02 00:00:00")@javascript:gs.dateGenerate("2024-01-03 00:00:00")'
    assert ids(run(rows, q)) == ["2", "3"]
    assert resolve_value("javascript:gs.daysAgoStart(0)", clock=lambda: 86400 * 3 + 5) == "1970-01-04 00:00:00"


def _keyset_rows(seed: int, n: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"sys_id": f"{rng.getrandbits(128):032x}", "a": f"2024-01-01 00:00:0{rng.randint(0, 3)}"}
            for _ in range(n)]


@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(1, 7))
def test_keyset_query_visits_every_row_once(seed, n, page):
    rows = _keyset_rows(seed, n)
    seen: list[str] = []
    query = "ORDERBYa^ORDERBYsys_id"
    while True:
        batch = run(rows, query)[:page]
        if not batch:
            break
        seen += ids(batch)
        ts, last = batch[-1]["a"], batch[-1]["sys_id"]
        query = f"a>{ts}^NQa={ts}^sys_id>{last}^ORDERBYa^ORDERBYsys_id"
    assert sorted(seen) == sorted(ids(rows))
    assert len(seen) == len(set(seen))


def test_sys_updated_on_keyset_with_ties_exact_shape():
    rows = [{"sys_id": sid, "a": ts} for sid, ts in [
        ("b" * 32, "2024-05-01 10:00:00"), ("a" * 32, "2024-05-01 10:00:00"), ("c" * 32, "2024-05-01 10:00:00"),
        ("0" * 32, "2024-05-01 10:00:01"), ("f" * 32, "2024-05-01 09:59:59")]]
    t = Table("t", [Field("x")])

    def resolve(name: str):
        return ((lambda r: r.get("a", "")), "glide_date_time") if name == "sys_updated_on" else (
            ((lambda r: r.get(name, "")), "string") if t.has_field(name) else None)

    q = (f"sys_updated_on>2024-05-01 10:00:00^NQsys_updated_on=2024-05-01 10:00:00^sys_id>{'a' * 32}"
         "^ORDERBYsys_updated_on^ORDERBYsys_id")
    compiled = compile_query(parse(q), resolve)
    got = sort_rows([r for r in rows if compiled.predicate(r)], compiled.order_by)
    assert ids(got) == ["b" * 32, "c" * 32, "0" * 32]


_CONDITIONS = st.sampled_from(["a=x", "a=q", "a=", "aINx,q", "aINq,nope", "b=y", "bINy,n", "n=10", "nIN9,100",
                               "a!=x", "name=alpha", "c=z^ORb=y", "nope=1", "a=javascript:gs.nope()"])


@given(st.lists(st.tuples(st.sampled_from("xq"), st.sampled_from("yn"), st.sampled_from(["10", "9", ""])),
                max_size=12),
       st.lists(_CONDITIONS, min_size=1, max_size=3), st.booleans(), st.lists(st.integers(0, 11), max_size=4))
def test_candidate_rows_narrow_to_exactly_what_a_full_scan_matches(values, conditions, two_groups, edits):
    """The index fast path of the fake's Table API returns the rows a scan of every row returns, in the same
    order, also after rows changed the indexed column and for queries it cannot use an index for."""
    t = table()
    for i, (a, b, n) in enumerate(values):
        t.insert({"a": a, "b": b, "n": n, "c": "z", "name": "alpha"}, sys_id=f"{i:02d}", stamp="s", user="u")
    query = "^".join(conditions) + ("^NQa=q" if two_groups else "")
    t.find_any("a", ["x"])  # builds the index before the edits, so they must keep it current
    for i in edits:
        if f"{i:02d}" in t.rows:
            t.set_fields(f"{i:02d}", {"a": "q" if t.rows[f"{i:02d}"]["a"] == "x" else "x"})
    parsed = parse(query)

    def resolve(name: str):
        return ((lambda r: r.get(name, "")), t.field_type(name)) if t.has_field(name) else None

    compiled = compile_query(parsed, resolve, clock=lambda: 1_700_000_000)
    narrowed = [r["sys_id"] for r in candidate_rows(t, parsed) if compiled.predicate(r)]
    assert narrowed == [r["sys_id"] for r in t.rows.values() if compiled.predicate(r)]
    for value in ("x", "q"):  # coalesce updates "only the first matching record": the first inserted
        first = next((r for r in t.rows.values() if r["a"] == value), None)
        assert t.lookup(("a",), (value,)) is first
        assert t.lookup(("a",), (value.upper(),), (True,)) is first


def test_a_child_tables_index_follows_writes_made_through_its_parent_and_dropped_parent_columns():
    parent = Table("parent", [Field("st")])
    child = Table("child", [], parent=parent)
    child.insert({"st": "approved"}, sys_id="x1", stamp="s", user="u")
    assert child.find_any("st", ["approved"]) == [child.rows["x1"]]  # the index exists before the write
    parent.set_fields("x1", {"st": "paid"})  # e.g. a PATCH on the parent table
    assert child.find_any("st", ["paid"]) == [child.rows["x1"]] and child.find_any("st", ["approved"]) == []
    assert child.lookup(("st",), ("paid",)) is child.rows["x1"]

    parent.drop_field("st")
    parent.set_field(Field("st"))  # the column comes back empty on every row
    assert child.find_any("st", [""]) == [child.rows["x1"]]
