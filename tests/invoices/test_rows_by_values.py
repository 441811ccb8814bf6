"""A lookup of many values in ServiceNow leaves out a value no encoded query can carry instead of failing: the
posted-status step asks for every invoice number F&O posted, hand-keyed ones included, and one with a line break
would otherwise fail that step (and the payments after it) on every run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from d365_snow_assets.clients.encoded_query import EncodedQuery, UnsafeQueryError
from d365_snow_assets.invoices.adapters import rows_by_values


class RecordingClient:
    """Records each query ``rows_by_values`` sends; answers no rows, as an instance holding none of them does."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def iter_static(self, table: str, query: EncodedQuery, *, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        self.queries.append(str(query))
        yield []


def test_values_no_encoded_query_can_carry_are_left_out_and_the_rest_asked() -> None:
    client = RecordingClient()
    rows = rows_by_values(client, "t", None, "number",  # type: ignore[arg-type]
                          ["INV-1", "INV\n2", "javascript:gs.log(1)", "INV,3"], ["sys_id"])
    assert rows == []
    assert client.queries == ["number=INV-1^ORnumber=INV,3"]
    with pytest.raises(UnsafeQueryError):  # the same values, asked directly, are refused
        EncodedQuery().in_("number", ["INV-1", "INV\n2"])


def test_nothing_askable_sends_nothing() -> None:
    client = RecordingClient()
    assert rows_by_values(client, "t", None, "number", ["a\tb"], ["sys_id"]) == []  # type: ignore[arg-type]
    assert client.queries == []
