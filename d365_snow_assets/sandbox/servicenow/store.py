"""In-memory tables of the fake ServiceNow instance: columns, rows, sys fields, table extension, lookup indexes.

Every stored value is a string, as on a real instance (reference/servicenow.md §1.3): the Table API never returns a
JSON number, boolean or null. ``sys_updated_on`` has one-second resolution (§1.6), so rows written in the same second
tie, which is exactly what keyset clients must survive.

A table may extend another (staging tables extend ``sys_import_set_row``, ``sn_shop_invoice`` extends
``sn_fin_base_invoice``; reference/servicenow-s2p-schema.md §11): the child has its parent's columns, and every
child row is also a row of each ancestor, as a query on a parent table returns the rows of its children.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections.abc import Callable, Collection, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

NUMERIC_TYPES = frozenset({"integer", "decimal", "currency", "float"})
SYS_FIELDS = ("sys_id", "sys_created_on", "sys_created_by", "sys_updated_on", "sys_updated_by", "sys_mod_count")
_SYS_LABELS = {"sys_id": "Sys ID", "sys_created_on": "Created", "sys_created_by": "Created by",
               "sys_updated_on": "Updated", "sys_updated_by": "Updated by", "sys_mod_count": "Updates"}


@dataclass(frozen=True)
class Field:
    """One column of a table, as its ``sys_dictionary`` entry describes it."""

    name: str  # the element
    type: str = "string"  # the internal_type: string | integer | decimal | boolean | glide_date | reference | ...
    reference: str | None = None  # target table of a reference field
    label: str = ""
    mandatory: bool = False
    max_length: int = 255
    # The referenced table's column a stored value names. sys_id for ordinary references; a few dictionary fields
    # store a name instead (sys_dictionary.reference holds a table name, .internal_type a type name).
    reference_key: str = "sys_id"

    @property
    def column_label(self) -> str:
        return self.label or _SYS_LABELS.get(self.name, self.name.replace("_", " ").capitalize())


def utc_stamp(epoch: float) -> str:
    """ServiceNow's raw date-time: UTC, ``YYYY-MM-DD HH:MM:SS``, whole seconds."""
    return _stamp_of_second(int(epoch))


@functools.lru_cache(maxsize=256)  # every write stamps its row, thousands of them in the same second
def _stamp_of_second(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))


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


IndexKey = tuple[tuple[str, ...], tuple[bool, ...]]
_INSERTED = itertools.count()  # a row's place in insertion order, shared by every table of its class chain


def _norm(values: Iterable[str], folds: tuple[bool, ...]) -> tuple[str, ...]:
    if True not in folds:
        return tuple(values)
    if False not in folds:
        return tuple(v.casefold() for v in values)
    return tuple(v.casefold() if fold else v for v, fold in zip(values, folds, strict=True))


class Table:
    """One table: its columns (own and inherited), rows in insertion order, and lookup indexes."""

    _column_changes = 0  # of every table: keys each table's cache of its merged columns

    def __init__(self, name: str, fields: Iterable[Field], *, display_field: str = "sys_id",
                 label: str | None = None, parent: Table | None = None, scope: str = "global") -> None:
        self.name = name
        self.label = label or name
        self.parent = parent
        self.scope = scope
        self.own_fields: dict[str, Field] = {}
        if parent is None:
            for sys_field in SYS_FIELDS:
                ftype = "integer" if sys_field == "sys_mod_count" else (
                    "glide_date_time" if sys_field.endswith("_on") else "GUID" if sys_field == "sys_id" else "string")
                self.own_fields[sys_field] = Field(sys_field, ftype, max_length=40 if ftype != "string" else 255)
        for f in fields:
            self.own_fields[f.name] = f
        self.display_field = display_field
        self._cache: tuple[int, dict[str, Field], dict[str, list[str]]] | None = None
        self.rows: dict[str, dict[str, str]] = {}
        self.children: list[Table] = []
        self.indexes: dict[IndexKey, dict[tuple[str, ...], list[str]]] = {}
        # Index buckets lose insertion order when a row's indexed value changes (it is re-added at the end).
        self._inserted: dict[str, int] = {}
        if parent is not None:
            parent.children.append(self)

    # -- dictionary -------------------------------------------------------------------------------------------
    @property
    def ancestors(self) -> list[Table]:
        out, cur = [], self.parent
        while cur is not None:
            out.append(cur)
            cur = cur.parent
        return out

    def _columns(self) -> tuple[dict[str, Field], dict[str, list[str]]]:
        # Valid until any table's columns change (a parent's change is a child's too); checked on every row write.
        key = Table._column_changes
        if self._cache is None or self._cache[0] != key:
            merged: dict[str, Field] = {}
            for table in [*reversed(self.ancestors), self]:
                merged.update(table.own_fields)
            labels: dict[str, list[str]] = {}
            for name, f in merged.items():
                labels.setdefault(f.column_label, []).append(name)
            self._cache = (key, merged, labels)
        return self._cache[1], self._cache[2]

    @property
    def fields(self) -> dict[str, Field]:
        """Every column, inherited ones first (a child row carries its parents' columns)."""
        return self._columns()[0]

    def owner_of(self, name: str) -> Table | None:
        """The table (this one or an ancestor) whose own column ``name`` is."""
        for table in [self, *self.ancestors]:
            if name in table.own_fields:
                return table
        return None

    def field(self, name: str) -> Field | None:
        return self._columns()[0].get(name)

    def has_field(self, name: str) -> bool:
        return name in self._columns()[0]

    def field_type(self, name: str) -> str:
        f = self.field(name)
        return f.type if f else "string"

    def reference_of(self, name: str) -> str | None:
        f = self.field(name)
        return f.reference if f and f.type == "reference" else None

    def by_label(self, label: str) -> list[str]:
        """Elements whose column label is exactly ``label``, inherited columns included, in dictionary order."""
        return self._columns()[1].get(label, [])

    def set_field(self, f: Field) -> None:
        """Add or replace one of this table's own columns; existing rows get it empty."""
        self.own_fields[f.name] = f
        Table._column_changes += 1
        for row in self.rows.values():
            row.setdefault(f.name, "")

    def update_field(self, name: str, **changes: Any) -> Field:
        self.own_fields[name] = replace(self.own_fields[name], **changes)
        Table._column_changes += 1
        return self.own_fields[name]

    def drop_field(self, name: str) -> None:
        """Remove an own column and its values (a real instance drops the column's data with it)."""
        del self.own_fields[name]
        Table._column_changes += 1
        tables = [self]
        for table in tables:  # this table and every table that inherits the column
            tables.extend(table.children)
            table.indexes = {k: v for k, v in table.indexes.items() if name not in k[0]}
        for row in self.rows.values():
            row.pop(name, None)

    # -- indexes ----------------------------------------------------------------------------------------------
    def _bucket_index(self, columns: tuple[str, ...], folds: tuple[bool, ...]) -> dict[tuple[str, ...], list[str]]:
        index = self.indexes.get((columns, folds))
        if index is None:
            index = {}
            for sys_id, row in self.rows.items():
                index.setdefault(_norm((row.get(c, "") for c in columns), folds), []).append(sys_id)
            self.indexes[(columns, folds)] = index
        return index

    def find(self, columns: tuple[str, ...], key: tuple[str, ...],
             folds: tuple[bool, ...] | None = None) -> list[dict[str, str]]:
        """Rows whose ``columns`` equal ``key`` in insertion order; a True in ``folds`` compares that column
        without regard to case."""
        return self._in_order(self._ids(columns, key, folds))

    def find_any(self, column: str, values: Iterable[str]) -> list[dict[str, str]]:
        """Rows whose ``column`` equals one of ``values`` (case-sensitive), in insertion order."""
        index = self._bucket_index((column,), (False,))
        return self._in_order({sys_id for value in set(values) for sys_id in index.get((value,), [])})

    def _ids(self, columns: tuple[str, ...], key: tuple[str, ...], folds: tuple[bool, ...] | None) -> list[str]:
        folds = folds or (False,) * len(columns)
        return self._bucket_index(columns, folds).get(_norm(key, folds), [])

    def _in_order(self, ids: Collection[str]) -> list[dict[str, str]]:
        if len(ids) > 1:
            ids = sorted(ids, key=self._inserted.__getitem__)
        return [self.rows[i] for i in ids]

    def lookup(self, columns: tuple[str, ...], key: tuple[str, ...],
               folds: tuple[bool, ...] | None = None) -> dict[str, str] | None:
        """The first matching row (coalesce: "only the first matching record is updated")."""
        ids = self._ids(columns, key, folds)
        # min, not _in_order: one row is wanted, and sorting the whole bucket for it is wasted on every transform
        return self.rows[min(ids, key=self._inserted.__getitem__)] if ids else None

    def _unindex(self, row: dict[str, str], columns: AbstractSet[str] | None = None) -> None:
        """Take ``row`` out of the indexes (only those on ``columns``, when given)."""
        for (cols, folds), index in self.indexes.items():
            if columns is not None and columns.isdisjoint(cols):
                continue
            bucket = index.get(_norm((row.get(c, "") for c in cols), folds))
            if bucket and row["sys_id"] in bucket:
                bucket.remove(row["sys_id"])

    def _index(self, row: dict[str, str], columns: AbstractSet[str] | None = None) -> None:
        for (cols, folds), index in self.indexes.items():
            if columns is not None and columns.isdisjoint(cols):
                continue
            index.setdefault(_norm((row.get(c, "") for c in cols), folds), []).append(row["sys_id"])

    def _chain(self) -> list[Table]:
        return [self, *self.ancestors]

    # -- rows -------------------------------------------------------------------------------------------------
    def clean(self, values: dict[str, Any]) -> dict[str, str]:
        """Known, writable columns only, as strings: unknown fields are ignored like on a real instance."""
        fields = self.fields
        return {key: to_snow_string(value) for key, value in values.items()
                if key in fields and (key not in SYS_FIELDS or key == "sys_id")}

    def insert(self, values: dict[str, str], *, sys_id: str, stamp: str, user: str) -> dict[str, str]:
        row = {name: "" for name in self.fields}
        row.update(values)
        row.update(sys_id=sys_id, sys_created_on=stamp, sys_updated_on=stamp, sys_created_by=user,
                   sys_updated_by=user, sys_mod_count="0")
        if "sys_class_name" in row:
            row["sys_class_name"] = self.name
        inserted = next(_INSERTED)
        for table in self._chain():
            table.rows[sys_id] = row
            table._inserted[sys_id] = inserted
            table._index(row)
        return row

    def update(self, sys_id: str, values: dict[str, str], *, stamp: str, user: str) -> tuple[dict[str, str], bool]:
        """Apply ``values``; a write that changes nothing is not a write (no stamp, no mod count; inference from
        GlideRecord.update() skipping unchanged records)."""
        row = self.rows[sys_id]
        changes = {k: v for k, v in values.items() if k != "sys_id" and row.get(k) != v}
        if not changes:
            return row, False
        changes.update(sys_updated_on=stamp, sys_updated_by=user,
                       sys_mod_count=str(int(row.get("sys_mod_count") or 0) + 1))
        self.set_fields(sys_id, changes)
        return row, True

    def set_fields(self, sys_id: str, values: dict[str, str]) -> None:
        """Change columns as part of the current write (a before-rule's effect): no new stamp or mod count."""
        row = self.rows[sys_id]
        # Written through a parent, the row is still in its own class's table and that table's indexes.
        chain = self._owner(sys_id)._chain()
        changed = values.keys()
        for table in chain:
            table._unindex(row, changed)
        row.update(values)
        for table in chain:
            table._index(row, changed)

    def _owner(self, sys_id: str) -> Table:
        """The table of the row's own class (this one, or the child of a child… that holds it)."""
        owner = self
        while (deeper := next((c for c in owner.children if sys_id in c.rows), None)) is not None:
            owner = deeper
        return owner

    def delete(self, sys_id: str) -> bool:
        """Delete a row from its own class's table and every ancestor (deleting through a parent deletes it)."""
        row = self.rows.get(sys_id)
        if row is None:
            return False
        for table in self._owner(sys_id)._chain():
            table._unindex(row)
            table.rows.pop(sys_id, None)
            table._inserted.pop(sys_id, None)
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
