"""OData filters for F&O with every literal escaped (DESIGN.md §6, reference/d365.md §2).

F&O's dialect: ``eq ne gt ge lt le and or not`` and parentheses; no ``in`` and no ``has``; a ``*`` inside a string
compared with ``eq``/``ne`` is a wildcard (``Name eq '*retail*'``) with no escape. So an exact match on a value
containing ``*`` cannot be expressed: the builder refuses it unless the caller accepts a superset
(``wildcard_ok=True``) and filters the rows itself (see ``D365Ledger._find`` in ``invoices/adapters.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from uuid import UUID

NAMESPACE = "Microsoft.Dynamics.DataEntities"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


class UnsafeFilterError(ValueError):
    """The requested condition cannot be expressed exactly in F&O's OData dialect."""


def check_identifier(name: str, what: str = "property") -> str:
    if not isinstance(name, str) or not _PATH.match(name):
        raise UnsafeFilterError(f"{what} name {name!r} is not an OData identifier")
    return name


@dataclass(frozen=True)
class ODataEnum:
    """An enum literal: ``Microsoft.Dynamics.DataEntities.<enum_type>'<member>'``."""

    enum_type: str
    member: str

    def __post_init__(self) -> None:
        if not _IDENT.match(self.enum_type) or not _IDENT.match(self.member):
            raise UnsafeFilterError(f"enum literal {self.enum_type}'{self.member}' is not a valid identifier pair")

    def literal(self) -> str:
        return f"{NAMESPACE}.{self.enum_type}'{self.member}'"


def string_literal(value: str) -> str:
    """``'…'`` with each ``'`` doubled (OData v4 ABNF ``SQUOTE-in-string``)."""
    return "'" + value.replace("'", "''") + "'"


def datetime_literal(value: datetime | date) -> str:
    """An unquoted DateTimeOffset. A ``date`` becomes ``T12:00:00Z``: how F&O stores AX Date values (§2)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UnsafeFilterError("naive datetimes are ambiguous in a filter; give a timezone-aware value (UTC)")
        value = value.astimezone(UTC)
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if value.microsecond:
            text += f".{value.microsecond:06d}".rstrip("0")
        return text + "Z"
    return f"{value.isoformat()}T12:00:00Z"


def literal(value: Any) -> str:
    """The OData literal for a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, ODataEnum):
        return value.literal()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsafeFilterError(f"{value!r} has no OData literal")
        return repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise UnsafeFilterError(f"{value!r} has no OData literal")
        return format(value, "f")
    if isinstance(value, datetime | date):
        return datetime_literal(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str):
        return string_literal(value)
    raise UnsafeFilterError(f"no OData literal for a {type(value).__name__}")


@dataclass(frozen=True)
class Filter:
    """A boolean OData expression; combine with ``&``, ``|`` and ``~`` (parenthesised, so precedence is safe)."""

    text: str

    def __and__(self, other: Filter) -> Filter:
        return Filter(f"({self.text}) and ({other.text})")

    def __or__(self, other: Filter) -> Filter:
        return Filter(f"({self.text}) or ({other.text})")

    def __invert__(self) -> Filter:
        return Filter(f"not ({self.text})")

    def __str__(self) -> str:
        return self.text


def _compare(name: str, op: str, value: Any, wildcard_ok: bool) -> Filter:
    check_identifier(name)
    if isinstance(value, str) and "*" in value and op in ("eq", "ne") and not wildcard_ok:
        raise UnsafeFilterError(f"{name} {op} {value!r}: F&O reads '*' in an eq/ne string as a wildcard and has no "
                                f"escape for it; pass wildcard_ok=True and filter the rows client-side")
    if isinstance(value, ODataEnum) and op not in ("eq", "ne"):
        raise UnsafeFilterError(f"F&O compares enums only with eq/ne, not {op}")
    return Filter(f"{name} {op} {literal(value)}")


def eq(name: str, value: Any, *, wildcard_ok: bool = False) -> Filter:
    return _compare(name, "eq", value, wildcard_ok)


def ne(name: str, value: Any, *, wildcard_ok: bool = False) -> Filter:
    return _compare(name, "ne", value, wildcard_ok)


def gt(name: str, value: Any) -> Filter:
    return _compare(name, "gt", value, True)


def ge(name: str, value: Any) -> Filter:
    return _compare(name, "ge", value, True)


def lt(name: str, value: Any) -> Filter:
    return _compare(name, "lt", value, True)


def le(name: str, value: Any) -> Filter:
    return _compare(name, "le", value, True)


def all_of(*filters: Filter | None) -> Filter | None:
    parts = [f for f in filters if f is not None]
    if not parts:
        return None
    return Filter(" and ".join(f"({f.text})" for f in parts)) if len(parts) > 1 else parts[0]


def any_of(*filters: Filter | None) -> Filter | None:
    parts = [f for f in filters if f is not None]
    if not parts:
        return None
    return Filter(" or ".join(f"({f.text})" for f in parts)) if len(parts) > 1 else parts[0]


def one_of(name: str, values: Iterable[Any], *, wildcard_ok: bool = False) -> Filter:
    """``name`` equals any of ``values``, written as an ``or`` chain because F&O has no ``in``."""
    items = list(values)
    if not items:
        raise UnsafeFilterError(f"{name}: an empty value list matches nothing; skip the request instead")
    result = any_of(*(eq(name, v, wildcard_ok=wildcard_ok) for v in items))
    assert result is not None
    return result


_TOKENS = re.compile(r"'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_.]*|\S")


def check_raw_filter(text: str) -> str:
    """Refuse a hand-written filter that uses ``in``/``has`` (unsupported by F&O) or has an unclosed string."""
    if text.count("'") % 2:
        raise UnsafeFilterError("the filter has an unbalanced quote; build it with d365_snow_assets.clients.odata")
    for token in _TOKENS.findall(text):
        if token.lower() in ("in", "has"):
            raise UnsafeFilterError(f"F&O does not support the '{token}' operator; use one_of() (an or chain)")
    return text


def _key_literal(value: Any) -> str:
    if isinstance(value, str):
        return string_literal(value)
    return literal(value)


def key_predicate(key: Mapping[str, Any]) -> str:
    """``dataAreaId='usmf',LineNumber=1`` (all key fields: F&O needs every one, reference/d365.md §2)."""
    if not key:
        raise UnsafeFilterError("an entity key needs at least one field")
    return ",".join(f"{check_identifier(k)}={_key_literal(v)}" for k, v in key.items())


def key_path(entity_set: str, key: Mapping[str, Any]) -> str:
    """The URL path segment ``EntitySet(k='v',…)``, percent-encoded for the path.

    Only characters that are unsafe in a path segment are encoded; the OData punctuation ``'(),=`` stays readable.
    A ``/`` inside a value is encoded as ``%2F`` so it cannot change the resource path.
    """
    check_identifier(entity_set, "entity set")
    return f"{entity_set}({quote(key_predicate(key), safe=chr(39) + '(),=:+-._~')})"
