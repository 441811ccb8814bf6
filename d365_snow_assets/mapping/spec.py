"""Declarative mapping types: one :class:`TargetMapping` per ServiceNow staging table (DESIGN §5.1).

A mapping is data, not code: each staging column names its source (an F&O field with a value format, a constant,
or a named derived rule from :mod:`.derived`). That keeps customer overrides (:mod:`.overrides`) a matter of
replacing entries, and lets :func:`d365_snow_assets.mapping.apply.apply_mapping` turn a whole spec into one
vectorized polars ``select``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from d365_snow_assets.mapping.values import FORMATS


class MappingError(ValueError):
    """A mapping or an override is inconsistent with the targets, the F&O entity or the data."""


@dataclass(frozen=True)
class Field:
    """An F&O column formatted by a rule of :mod:`.values` (``text``, ``upper``, ``enum``, ``amount``, ``decimal``,
    ``integer``, ``date``)."""

    column: str
    format: str = "text"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise MappingError(f"unknown value format {self.format!r} for {self.column}; use one of "
                               f"{', '.join(sorted(FORMATS))}")


@dataclass(frozen=True)
class Const:
    """The same string on every row."""

    value: str


@dataclass(frozen=True)
class Derived:
    """A named rule of :mod:`.derived` (it may read several F&O columns, the config, or a related entity)."""

    rule: str


Source = Field | Const | Derived


@dataclass(frozen=True)
class MappingContext:
    """Configuration the rules need; built by the settings layer."""

    erp_source: str = "D365FO"
    dimension_format: tuple[str, ...] = ("CostCenter",)
    dimension_delimiter: str = "-"
    cost_center_dimension: str = "CostCenter"
    # F&O method-of-payment codes (upper-case) → ServiceNow payment_method choices (servicenow.md §5.4).
    payment_methods: Mapping[str, str] = field(default_factory=dict)
    default_payment_method: str = "bank_transfer"


@dataclass(frozen=True)
class TargetMapping:
    """How one F&O entity becomes the rows of one ServiceNow staging table.

    ``on_delete`` holds the column values that deactivate a record in ServiceNow when its F&O record is gone;
    ``None`` means deletions are reported but never pushed (see :mod:`.targets` for the choice per target).
    """

    staging_table: str
    target_table: str
    source_entity: str
    coalesce: tuple[str, ...]
    columns: tuple[tuple[str, Source], ...]
    erp_source_column: str
    legal_entity_column: str
    source_fields: frozenset[str]
    on_delete: tuple[tuple[str, str], ...] | None = None
    row_filter: str | None = None
    related_entities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [name for name, _ in self.columns]
        if len(set(names)) != len(names):
            raise MappingError(f"{self.staging_table}: duplicate staging columns")
        required = {*self.coalesce, self.erp_source_column, self.legal_entity_column, *dict(self.on_delete or ())}
        missing = sorted(required - set(names))
        if missing:
            raise MappingError(f"{self.staging_table}: columns {missing} are needed (coalesce key, scope or "
                               "deactivation) but not mapped")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Staging columns in payload (and hash) order."""
        return tuple(name for name, _ in self.columns)

    @property
    def sources(self) -> dict[str, Source]:
        """Staging column → source."""
        return dict(self.columns)

    def with_columns(self, columns: Mapping[str, Source]) -> TargetMapping:
        """A copy with ``columns`` as its (ordered) column list."""
        return replace(self, columns=tuple(columns.items()))
