"""Declarative mapping types: one :class:`TargetMapping` per ServiceNow staging table (DESIGN §5.1).

A mapping is data, not code: each ServiceNow field, named by its DOCUMENTED LABEL (the column name is the instance's
business and is resolved by :mod:`d365_snow_assets.discovery`), names its source: an F&O field with a value format, a
constant, or a named derived rule from :mod:`.derived`. That keeps customer overrides (:mod:`.overrides`) a matter
of replacing entries, and lets :func:`d365_snow_assets.mapping.apply.apply_mapping` turn a whole spec into one
vectorized polars ``select`` whose columns are the labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

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
    # The configured companies (dataAreaIds, lower case); rows of other companies are out of scope. Empty = all.
    legal_entities: tuple[str, ...] = ()
    dimension_format: tuple[str, ...] = ("CostCenter",)
    dimension_delimiter: str = "-"
    cost_center_dimension: str = "CostCenter"
    # F&O method-of-payment codes (upper-case) → ServiceNow payment_method choices (servicenow.md §5.4).
    payment_methods: Mapping[str, str] = field(default_factory=dict)
    default_payment_method: str = "bank_transfer"
    # The run's date (UTC): the Valid to a cost center gets on the day the connector first sees it suspended.
    today: date = field(default_factory=lambda: datetime.now(UTC).date())


class Today:
    """The date of the run, as a deactivation value (a cost center's Valid to)."""

    def __repr__(self) -> str:
        return "TODAY"


TODAY = Today()
DeleteValue = str | Today


@dataclass(frozen=True)
class TargetMapping:
    """How one F&O entity becomes the rows of one ServiceNow staging table. Column names are documented labels.

    - ``coalesce``: the connector's own key of a record (its pushed state and audit key), by label; ``fit`` compares
      it with the coalesce fields of the instance's transform map.
    - ``internal``: labels kept for the key, the scope or the change detection but never sent (the payment detail's
      legal entity, which the staging table has no field for).
    - ``volatile``: labels sent but left out of the row hash (a value that may differ from run to run without the
      record having changed, such as the day a cost center was first seen suspended).
    - ``on_delete``: the values that deactivate a record in ServiceNow when its F&O record is gone; ``None`` means
      deletions are reported but never pushed (see :mod:`.targets` for the choice per target).
    - ``hold_back``: a rule of :mod:`.derived` giving, per row, why it must not be pushed ("" = push it).
    - ``legal_entity_column``: the label holding the row's legal entity scope; ``None`` for data shared by all
      companies (GL accounts).
    """

    staging_table: str
    target_table: str
    source_entity: str
    coalesce: tuple[str, ...]
    columns: tuple[tuple[str, Source], ...]
    erp_source_column: str
    legal_entity_column: str | None
    source_fields: frozenset[str]
    on_delete: tuple[tuple[str, DeleteValue], ...] | None = None
    row_filter: str | None = None
    related_entities: tuple[str, ...] = ()
    internal: frozenset[str] = frozenset()
    volatile: frozenset[str] = frozenset()
    hold_back: str | None = None
    # label -> the instance's element, from [mapping.<table>.elements]: wins over discovery's label resolution.
    element_overrides: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        names = [name for name, _ in self.columns]
        if len(set(names)) != len(names):
            raise MappingError(f"{self.staging_table}: duplicate ServiceNow fields")
        required = {*self.coalesce, self.erp_source_column, *self.internal, *self.volatile,
                    *dict(self.on_delete or ())}
        if self.legal_entity_column:
            required.add(self.legal_entity_column)
        missing = sorted(required - set(names))
        if missing:
            raise MappingError(f"{self.staging_table}: fields {missing} are needed (key, scope or deactivation) but "
                               "not mapped")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Labels in payload order (internal ones included: they travel with the row until it is sent)."""
        return tuple(name for name, _ in self.columns)

    @property
    def sent(self) -> tuple[str, ...]:
        """The labels that go to ServiceNow."""
        return tuple(name for name, _ in self.columns if name not in self.internal)

    @property
    def hashed(self) -> tuple[str, ...]:
        """The labels whose values decide whether a record changed."""
        return tuple(name for name, _ in self.columns if name not in self.volatile)

    @property
    def protected(self) -> frozenset[str]:
        """Labels an override may not remove: the key, the scope, the deactivation."""
        scope = {self.legal_entity_column} if self.legal_entity_column else set()
        return frozenset({*self.coalesce, self.erp_source_column, *scope, *dict(self.on_delete or ())})

    @property
    def sources(self) -> dict[str, Source]:
        """Staging column → source."""
        return dict(self.columns)

    def with_columns(self, columns: Mapping[str, Source]) -> TargetMapping:
        """A copy with ``columns`` as its (ordered) column list."""
        return replace(self, columns=tuple(columns.items()))

    def with_element_overrides(self, overrides: Mapping[str, str]) -> TargetMapping:
        return replace(self, element_overrides=tuple(sorted(overrides.items())))
