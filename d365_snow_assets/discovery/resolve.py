"""Label → element resolution on one table (DESIGN §5): the exact label, then the label compared without case,
spaces and punctuation; an override from ``[mapping]`` wins. A label that matches nothing or several columns is a
finding for ``fit``, never a guess."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .model import Column, TableSchema

Status = Literal["exact", "loose", "override", "missing", "ambiguous", "bad_override"]


@dataclass(frozen=True)
class Resolved:
    label: str
    status: Status
    column: Column | None = None
    candidates: tuple[Column, ...] = ()

    @property
    def ok(self) -> bool:
        return self.column is not None

    def describe(self) -> str:
        """The finding in words, for ``fit`` and error messages."""
        if self.status == "exact":
            return f"{self.column.element}" if self.column else ""
        if self.status == "loose" and self.column:
            return f"{self.column.element} (label {self.column.label!r})"
        if self.status == "override" and self.column:
            return f"{self.column.element} ([mapping] override)"
        if self.status == "ambiguous":
            return "ambiguous: " + ", ".join(f"{c.element} ({c.label!r})" for c in self.candidates)
        if self.status == "bad_override":
            return "the [mapping] override names a column the table does not have"
        return "missing"


def normalize(label: str) -> str:
    return re.sub(r"[^0-9a-z]", "", label.casefold())


def resolve(table: TableSchema, label: str, override: str | None = None) -> Resolved:
    if override:
        column = table.column(override)
        return Resolved(label, "override", column) if column else Resolved(label, "bad_override")
    exact = _unique(c for c in table.columns if c.label == label)
    if len(exact) == 1:
        return Resolved(label, "exact", exact[0])
    if len(exact) > 1:
        return Resolved(label, "ambiguous", candidates=tuple(exact))
    wanted = normalize(label)
    loose = _unique(c for c in table.columns if normalize(c.label) == wanted)
    if len(loose) == 1:
        return Resolved(label, "loose", loose[0])
    if len(loose) > 1:
        return Resolved(label, "ambiguous", candidates=tuple(loose))
    return Resolved(label, "missing")


def _unique(columns: object) -> list[Column]:
    # A child table may redefine a parent's column (same element): the child's own definition wins.
    seen: dict[str, Column] = {}
    for column in columns:  # type: ignore[attr-defined]
        seen.setdefault(column.element, column)
    return list(seen.values())
