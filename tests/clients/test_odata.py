"""OData literal escaping and the filter builder (DESIGN.md §6)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d365_snow_assets.clients import odata
from d365_snow_assets.clients.odata import ODataEnum, UnsafeFilterError


def test_string_literal_doubles_quotes():
    assert odata.literal("O'Brien") == "'O''Brien'"
    assert str(odata.eq("Name", "a''b")) == "Name eq 'a''''b'"


def test_enum_and_dates():
    enum = ODataEnum("PurchStatus", "Backorder")
    assert odata.literal(enum) == "Microsoft.Dynamics.DataEntities.PurchStatus'Backorder'"
    assert odata.literal(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert odata.literal(datetime(2024, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))) == "2024-01-02T03:04:05Z"
    assert odata.literal(date(2024, 5, 1)) == "2024-05-01T12:00:00Z"
    assert odata.literal(Decimal("1250.00")) == "1250.00"
    with pytest.raises(UnsafeFilterError):
        odata.literal(datetime(2024, 1, 1))  # naive
    with pytest.raises(UnsafeFilterError):
        ODataEnum("PurchStatus", "x'y")
    with pytest.raises(UnsafeFilterError):
        odata.gt("Status", ODataEnum("PurchStatus", "Backorder"))


def test_refuses_in_has_and_wildcards():
    for text in ("Name in ('a','b')", "Flags has Ns.E'X'", "Name eq 'x"):
        with pytest.raises(UnsafeFilterError):
            odata.check_raw_filter(text)
    assert odata.check_raw_filter("Name eq 'in has'") == "Name eq 'in has'"  # inside a literal is fine
    with pytest.raises(UnsafeFilterError):
        odata.eq("InvoiceNumber", "A*")
    assert str(odata.eq("InvoiceNumber", "A*", wildcard_ok=True)) == "InvoiceNumber eq 'A*'"
    assert str(odata.one_of("Id", ["a", "b"])) == "(Id eq 'a') or (Id eq 'b')"
    with pytest.raises(UnsafeFilterError):
        odata.eq("Name) or (1 eq 1", "x")


def test_key_path():
    assert odata.key_path("VendorPaymentJournalLines", {"dataAreaId": "usmf", "JournalBatchNumber": "00282",
                                                        "LineNumber": 1}) == \
        "VendorPaymentJournalLines(dataAreaId='usmf',JournalBatchNumber='00282',LineNumber=1)"
    assert odata.key_path("X", {"k": "a/b?c#'"}) == "X(k='a%2Fb%3Fc%23''')"


# -- property: an independent tiny parser reads the value back unchanged --------------------------------------
_COMPARISON = re.compile(r"^\(?(?P<field>[A-Za-z_]\w*) (?P<op>eq|ne|gt|ge|lt|le) '(?P<body>(?:[^']|'')*)'\)?$")


def _parse_string_comparison(text: str) -> tuple[str, str, str]:
    m = _COMPARISON.match(text)
    assert m, text
    return m["field"], m["op"], m["body"].replace("''", "'")


def _split_and(text: str) -> list[str]:
    """Split a conjunction of parenthesised comparisons on ' and ' outside string literals."""
    parts, depth, buf, i, in_str = [], 0, "", 0, False
    while i < len(text):
        ch = text[i]
        if ch == "'":
            in_str = not in_str
        if not in_str and depth == 0 and text.startswith(" and ", i):
            parts.append(buf)
            buf, i = "", i + 5
            continue
        if not in_str and ch == "(":
            depth += 1
        elif not in_str and ch == ")":
            depth -= 1
        buf += ch
        i += 1
    parts.append(buf)
    return parts


@given(st.text().filter(lambda s: "*" not in s), st.text().filter(lambda s: "*" not in s))
def test_any_string_round_trips(a, b):
    flt = odata.all_of(odata.eq("Alpha", a), odata.ne("Beta", b))
    parts = _split_and(flt.text)
    assert len(parts) == 2
    assert _parse_string_comparison(parts[0]) == ("Alpha", "eq", a)
    assert _parse_string_comparison(parts[1]) == ("Beta", "ne", b)
