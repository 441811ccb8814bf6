"""In-memory tables of the fake ServiceNow instance: dictionary (schema), rows, sys fields, coalesce indexes.

Every stored value is a string, as on a real instance (reference/servicenow.md §1.3): the Table API never returns a
JSON number, boolean or null. ``sys_updated_on`` has one-second resolution (§1.6), so rows written in the same second
tie, which is exactly what keyset clients must survive.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

NUMERIC_TYPES = frozenset({"integer", "decimal", "currency"})
SYS_FIELDS = ("sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count")


@dataclass(frozen=True)
class Field:
    """One column of a table's dictionary entry."""

    name: str
    type: str = "string"  # string | integer | decimal | boolean | glide_date | glide_date_time | reference
    reference: str | None = None  # target table of a reference field


def utc_stamp(epoch: float) -> str:
    """ServiceNow's raw date-time: UTC, ``YYYY-MM-DD HH:MM:SS``, whole seconds."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(epoch)))


def to_snow_string(value: Any) -> str:
    """Coerce a JSON value the way the REST APIs store it: everything becomes a string.

    Nested objects/arrays are stringified with ``:`` turned into ``=``, which is what the Import Set API doc says it
    does with nested JSON (reference/servicenow.md §2); the Table API is assumed to do the same (inference).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, dict) and set(value) <= {"value", "link", "display_value"} and "value" in value:
        # A reference object read back from the Table API and sent again: its value is the sys_id.
        return to_snow_string(value["value"])
    return orjson.dumps(value).decode().replace(":", "=")


class Table:
    """One table: dictionary, rows in insertion order, and exact-match indexes (used for coalesce, O(1))."""

    def __init__(self, name: str, fields: Iterable[Field], *, display_field: str = "sys_id",
                 label: str | None = None, open_schema: bool = False) -> None:
        self.name = name
        self.label = label or name
        self.fields: dict[str, Field] = {f.name: f for f in fields}
        for sys_field in SYS_FIELDS:
            ftype = "integer" if sys_field == "sys_mod_count" else (
                "glide_date_time" if sys_field.endswith("_on") else "string")
            self.fields.setdefault(sys_field, Field(sys_field, ftype))
        self.display_field = display_field
        # An open schema (sys_import_set_row, the parent of every staging table) shows whatever columns its rows
        # carry; a real parent table would show only its own columns, the brief asks for the staging columns too.
        self.open_schema = open_schema
        self.rows: dict[str, dict[str, str]] = {}
        self.indexes: dict[tuple[str, ...], dict[tuple[str, ...], str]] = {}

    # -- dictionary -------------------------------------------------------------------------------------------
    def has_field(self, name: str) -> bool:
        return name in self.fields or self.open_schema

    def field_type(self, name: str) -> str:
        f = self.fields.get(name)
        return f.type if f else "string"

    def reference_of(self, name: str) -> str | None:
        f = self.fields.get(name)
        return f.reference if f and f.type == "reference" else None

    # -- indexes ----------------------------------------------------------------------------------------------
    def add_index(self, columns: tuple[str, ...]) -> None:
        index: dict[tuple[str, ...], str] = {}
        for sys_id, row in self.rows.items():
            index.setdefault(tuple(row.get(c, "") for c in columns), sys_id)
        self.indexes[columns] = index

    def lookup(self, columns: tuple[str, ...], key: tuple[str, ...]) -> dict[str, str] | None:
        """The first row whose ``columns`` equal ``key`` (coalesce: "only the first matching record is updated")."""
        index = self.indexes.get(columns)
        if index is None:
            self.add_index(columns)
            index = self.indexes[columns]
        sys_id = index.get(key)
        return self.rows.get(sys_id) if sys_id else None

    def _unindex(self, row: dict[str, str]) -> None:
        for cols, index in self.indexes.items():
            key = tuple(row.get(c, "") for c in cols)
            if index.get(key) == row["sys_id"]:
                del index[key]

    def _index(self, row: dict[str, str]) -> None:
        for cols, index in self.indexes.items():
            index.setdefault(tuple(row.get(c, "") for c in cols), row["sys_id"])

    # -- rows -------------------------------------------------------------------------------------------------
    def clean(self, values: dict[str, Any]) -> dict[str, str]:
        """Known, writable columns only, as strings: unknown fields are ignored like on a real instance."""
        out: dict[str, str] = {}
        for key, value in values.items():
            if key in SYS_FIELDS and key != "sys_id":
                continue
            if key in self.fields or self.open_schema:
                out[key] = to_snow_string(value)
        return out

    def insert(self, values: dict[str, str], *, sys_id: str, stamp: str, user: str) -> dict[str, str]:
        row = {name: "" for name in self.fields}
        row.update(values)
        row.update(sys_id=sys_id, sys_created_on=stamp, sys_updated_on=stamp, sys_created_by=user,
                   sys_updated_by=user, sys_mod_count="0")
        self.rows[sys_id] = row
        self._index(row)
        return row

    def update(self, sys_id: str, values: dict[str, str], *, stamp: str, user: str) -> tuple[dict[str, str], bool]:
        """Apply ``values``; a write that changes nothing is not a write (no stamp, no mod count; inference from
        GlideRecord.update() skipping unchanged records)."""
        row = self.rows[sys_id]
        changes = {k: v for k, v in values.items() if k != "sys_id" and row.get(k) != v}
        if not changes:
            return row, False
        self._unindex(row)
        row.update(changes)
        row["sys_updated_on"] = stamp
        row["sys_updated_by"] = user
        row["sys_mod_count"] = str(int(row.get("sys_mod_count") or 0) + 1)
        self._index(row)
        return row, True

    def set_fields(self, sys_id: str, values: dict[str, str]) -> None:
        """Change columns as part of the current write (a before-rule's effect): no new stamp or mod count."""
        row = self.rows[sys_id]
        self._unindex(row)
        row.update(values)
        self._index(row)

    def delete(self, sys_id: str) -> bool:
        row = self.rows.pop(sys_id, None)
        if row is None:
            return False
        self._unindex(row)
        return True

    def display_value(self, row: dict[str, str]) -> str:
        return row.get(self.display_field, "")


@dataclass
class IdFactory:
    """sys_ids (32 lowercase hex) and ``ISET…``-style numbers, deterministic for a given seed."""

    seed: int
    _rng: random.Random = field(init=False)
    _counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"snow-sys-id:{self.seed}")

    def sys_id(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def number(self, prefix: str, start: int = 10001) -> str:
        n = self._counters.get(prefix, start - 1) + 1
        self._counters[prefix] = n
        return f"{prefix}{n:07d}"


Clock = Callable[[], float]
