"""The ServiceNow instance's own schema as discovery read it (DESIGN §5): dictionary with parents, insertMultiple
key mapping per staging table, transform maps with their coalesce entries, and choices. Plain data with a JSON
form, so it can be cached in the warehouse and shown by ``d365-snow fit``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

KeyMode = Literal["label", "column_name"]
Origin = Literal["instance", "documented"]


@dataclass(frozen=True)
class Column:
    element: str
    label: str
    type: str = "string"
    reference: str | None = None
    mandatory: bool = False
    table: str = ""  # the table that defines it: the table itself or a parent


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]  # own columns first, then inherited ones
    parents: tuple[str, ...] = ()
    origin: Origin = "instance"

    def column(self, element: str) -> Column | None:
        return next((c for c in self.columns if c.element == element), None)


@dataclass(frozen=True)
class TransformEntry:
    source_field: str
    target_field: str
    coalesce: bool = False
    coalesce_empty: bool = False
    reference_value_field: str = ""


@dataclass(frozen=True)
class TransformMap:
    name: str
    source_table: str
    target_table: str
    active: bool = True
    enforce_mandatory: bool = False
    entries: tuple[TransformEntry, ...] = ()

    @property
    def coalesce_fields(self) -> tuple[str, ...]:
        """Staging elements the map matches existing target records on."""
        return tuple(e.source_field for e in self.entries if e.coalesce)


@dataclass(frozen=True)
class Choice:
    value: str
    label: str
    sequence: int = 0


@dataclass
class InstanceSchema:
    """Everything discovery learnt; ``access`` says, per system table, ``ok`` or why it could not be read."""

    url: str
    fetched_at: datetime
    tables: dict[str, TableSchema] = field(default_factory=dict)
    key_modes: dict[str, KeyMode] = field(default_factory=dict)  # staging table -> insertMultiple keys
    key_mode_origin: Origin = "instance"
    transform_maps: dict[str, list[TransformMap]] | None = None  # by staging table; None = could not be read
    choices: dict[str, list[Choice]] = field(default_factory=dict)  # "table.element" -> choices
    choices_origin: Origin = "instance"
    access: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def key_mode(self, staging: str) -> KeyMode:
        return self.key_modes.get(staging, "label")

    def choices_of(self, table: str, element: str) -> list[Choice]:
        return self.choices.get(f"{table}.{element}", [])

    def maps_of(self, staging: str) -> list[TransformMap] | None:
        if self.transform_maps is None:
            return None
        return [m for m in self.transform_maps.get(staging, []) if m.active]

    # -- JSON form, for the warehouse cache ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fetched_at"] = self.fetched_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceSchema:
        tables = {name: TableSchema(t["name"], tuple(Column(**c) for c in t["columns"]), tuple(t["parents"]),
                                    t["origin"]) for name, t in data["tables"].items()}
        maps = None
        if data.get("transform_maps") is not None:
            maps = {staging: [TransformMap(m["name"], m["source_table"], m["target_table"], m["active"],
                                           m["enforce_mandatory"], tuple(TransformEntry(**e) for e in m["entries"]))
                              for m in found] for staging, found in data["transform_maps"].items()}
        return cls(url=data["url"], fetched_at=datetime.fromisoformat(data["fetched_at"]), tables=tables,
                   key_modes=dict(data["key_modes"]), key_mode_origin=data["key_mode_origin"], transform_maps=maps,
                   choices={k: [Choice(**c) for c in v] for k, v in data["choices"].items()},
                   choices_origin=data["choices_origin"], access=dict(data["access"]),
                   warnings=list(data["warnings"]))
