"""ServiceNow encoded-query builder and escaping (DESIGN.md §6)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d365_snow_assets.clients.encoded_query import EncodedQuery, UnsafeQueryError, has_new_query

OPS = ("!=", "<=", ">=", "=", "<", ">", "STARTSWITH", "IN")


def tiny_parse(query: str) -> list[tuple[str, str, str, str]]:
    """Independent reader: (joiner, field, op, value) per term; '^^' is a literal caret, read left to right."""
    terms, buf, i = [], "", 0
    while i < len(query):
        if query[i] == "^":
            if query[i + 1:i + 2] == "^":
                buf += "^"
                i += 2
                continue
            terms.append(buf)
            buf = ""
        else:
            buf += query[i]
        i += 1
    terms.append(buf)
    out = []
    for term in terms:
        joiner = "AND"
        if term.startswith("ORDERBY"):
            out.append(("ORDER", term[7:], "", ""))
            continue
        for prefix, name in (("NQ", "NQ"), ("OR", "OR")):
            if term.startswith(prefix):
                joiner, term = name, term[len(prefix):]
                break
        m = re.match(r"([a-z_][a-z0-9_.]*)(" + "|".join(re.escape(o) for o in OPS) + r")(.*)$", term, re.S)
        assert m, term
        out.append((joiner, m[1], m[2], m[3]))
    return out


safe_text = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
                    min_size=1).filter(lambda s: not s.lstrip().lower().startswith("javascript:"))


@given(safe_text, safe_text)
def test_values_round_trip(a, b):
    q = EncodedQuery().eq("short_description", a).or_eq("number", b).order_by("sys_id")
    assert tiny_parse(str(q)) == [("AND", "short_description", "=", a), ("OR", "number", "=", b),
                                  ("ORDER", "sys_id", "", "")]


@given(safe_text.filter(lambda s: not s.startswith("=")))
def test_comparison_values_round_trip(a):
    q = EncodedQuery().gt("sys_updated_on", a).nq().lt("sys_id", a)
    assert tiny_parse(str(q)) == [("AND", "sys_updated_on", ">", a), ("NQ", "sys_id", "<", a)]


def test_caret_escaping_and_in():
    assert str(EncodedQuery().eq("name", "a^ORb=c")) == "name=a^^ORb=c"
    assert str(EncodedQuery().in_("state", ["a", "b^c"])) == "stateINa,b^^c"
    # a comma has no escape inside IN: the builder writes an ^OR chain instead
    assert str(EncodedQuery().eq("x", "1").in_("name", ["Acme, Inc.", "B"])) == "x=1^name=Acme, Inc.^ORname=B"


@pytest.mark.parametrize("value", ["a\nb", "x\r", "javascript:gs.getUserID()", " JavaScript:1", "\x00"])
def test_rejects_unsafe_values(value):
    with pytest.raises(UnsafeQueryError):
        EncodedQuery().eq("name", value)


def test_rejects_ambiguous_operators_and_fields():
    with pytest.raises(UnsafeQueryError):
        EncodedQuery().gt("n", "=5")
    with pytest.raises(UnsafeQueryError):
        EncodedQuery().eq("name", "")
    with pytest.raises(UnsafeQueryError):
        EncodedQuery().eq("name^ORx", "1")
    with pytest.raises(UnsafeQueryError):
        EncodedQuery().or_eq("name", "1")


def test_has_new_query():
    assert has_new_query("a=1^NQb=2")
    assert not has_new_query("a=1^^NQb=2")
    assert not has_new_query(str(EncodedQuery().eq("a", "x^NQy")))
