import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from d365_snow_assets.mapping.dimensions import (
    build_display_value,
    parse_segment,
    segment_expr,
    split_display_value,
)

FORMAT = ["BusinessUnit", "CostCenter", "Department"]


def test_build_and_parse_plain():
    value = build_display_value({"BusinessUnit": "001", "CostCenter": "007", "Department": "022"}, FORMAT)
    assert value == "001-007-022"
    assert parse_segment(value, "CostCenter", FORMAT) == "007"


def test_escaped_delimiter_and_backslash():
    value = build_display_value({"BusinessUnit": "US-1", "CostCenter": "a\\b"}, FORMAT)
    assert value == "US\\-1-a\\\\b-"
    assert split_display_value(value, "-") == ["US-1", "a\\b", ""]
    assert parse_segment(value, "CostCenter", FORMAT) == "a\\b"


def test_short_and_empty_values():
    assert parse_segment("", "CostCenter", FORMAT) == ""
    assert parse_segment("001", "CostCenter", FORMAT) == ""
    assert parse_segment("001--", "Department", FORMAT) == ""


def test_bad_inputs():
    with pytest.raises(ValueError, match="not in the dimension format"):
        parse_segment("x", "Project", FORMAT)
    with pytest.raises(ValueError, match="one character"):
        build_display_value({}, FORMAT, "--")


values_st = st.text(alphabet=st.sampled_from(list("ab-|\\\n é^,\"'")), max_size=12)


@given(st.lists(values_st, min_size=1, max_size=4), st.sampled_from(["-", "|", "."]))
def test_round_trip(values, delimiter):
    fmt = [f"S{i}" for i in range(len(values))]
    display = build_display_value(dict(zip(fmt, values, strict=True)), fmt, delimiter)
    assert split_display_value(display, delimiter) == values
    frame = pl.DataFrame({"d": [display]})
    for name, expected in zip(fmt, values, strict=True):
        assert parse_segment(display, name, fmt, delimiter) == expected
        assert frame.select(segment_expr("d", name, fmt, delimiter)).item() == expected
