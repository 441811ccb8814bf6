"""Customer overrides of the default mappings, from the ``[mapping]`` table of ``d365snow.toml``.

Fields are named by their ServiceNow label (the documented one, or one the instance's dictionary shows once
discovery has read it):

```toml
[mapping.sn_fcms_intg_imp_supplier]
"Legal name" = "VendorSearchName"                      # ServiceNow field (label) ← F&O field (as text)
"Short description" = { field = "VendorGroupId" }
"Duns" = { const = "000000000" }
remove = ["Tax id", "Primary phone number"]            # fields not sent at all
extra_source_fields = ["ZZRegionCode"]                 # custom F&O fields (extensions) the overrides may read

[mapping.sn_fcms_intg_imp_supplier.constants]
"Industry" = "Manufacturing"

[mapping.sn_fcms_intg_imp_supplier.elements]           # label → the instance's column, when the label is ambiguous
"Legal name" = "u_legal_name"
```
Everything is checked before the first sync so a typo fails fast with a sentence naming the table and the field.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from d365_snow_assets.discovery.documented import documented_labels
from d365_snow_assets.discovery.model import InstanceSchema
from d365_snow_assets.mapping.derived import RULES
from d365_snow_assets.mapping.spec import Const, Derived, Field, MappingError, Source, TargetMapping
from d365_snow_assets.mapping.targets import DEFAULT_MAPPINGS

_RESERVED = frozenset({"remove", "constants", "extra_source_fields", "elements"})


def overrides_from_toml(path: Path) -> dict[str, dict[str, Any]]:
    """The ``[mapping]`` table of a TOML file (empty when the file or the table is absent)."""
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        table = tomllib.load(handle).get("mapping", {})
    if not isinstance(table, dict):
        raise MappingError(f"{path}: [mapping] must be a table of staging tables")
    return table


def apply_overrides(
    overrides: Mapping[str, Mapping[str, Any]],
    defaults: Mapping[str, TargetMapping] = DEFAULT_MAPPINGS,
    schema: InstanceSchema | None = None,
) -> dict[str, TargetMapping]:
    """``defaults`` with ``overrides`` (staging table → field entries) applied and validated. Field names must be
    documented labels of the staging table, or (with ``schema``, the instance's discovered schema) its own labels or
    column names."""
    result = dict(defaults)
    for staging, entries in overrides.items():
        if staging not in defaults:
            raise MappingError(f"[mapping.{staging}]: unknown staging table{_suggest(staging, defaults)}; known: "
                               f"{', '.join(sorted(defaults))}")
        if not isinstance(entries, Mapping):
            raise MappingError(f"[mapping.{staging}] must be a table")
        result[staging] = _override_one(defaults[staging], entries, schema)
    return result


class _Fields:
    """The field names an override of one staging table may use, and how to say a name is not one of them."""

    def __init__(self, mapping: TargetMapping, schema: InstanceSchema | None) -> None:
        self.table = mapping.staging_table
        self.labels = {*documented_labels(self.table), *mapping.column_names}
        self.elements: dict[str, str] = {}
        instance = schema.tables.get(self.table) if schema else None
        if instance is not None:
            self.labels |= {c.label for c in instance.columns}
            self.elements = {c.element: c.label for c in instance.columns}
        self.checked_instance = instance is not None and instance.origin == "instance"

    def label(self, where: str, name: str) -> str:
        if name in self.labels:
            return name
        if name in self.elements:
            return self.elements[name]
        hint = ("" if self.checked_instance else " (fields of your own instance are known once `d365-snow fit` has "
                                                 "read its dictionary)")
        raise MappingError(f"{where} {name!r}: {self.table} has no field labelled {name!r}"
                           f"{_suggest(name, self.labels)}{hint}")


def _override_one(mapping: TargetMapping, entries: Mapping[str, Any],
                  schema: InstanceSchema | None) -> TargetMapping:
    where = f"[mapping.{mapping.staging_table}]"
    known = _Fields(mapping, schema)
    extra = entries.get("extra_source_fields", [])
    if not isinstance(extra, list) or not all(isinstance(f, str) for f in extra):
        raise MappingError(f"{where} extra_source_fields must be a list of F&O field names")
    known_fields = mapping.source_fields | frozenset(extra)
    columns: dict[str, Source] = dict(mapping.columns)

    for name, spec in entries.items():
        if name in _RESERVED:
            continue
        columns[known.label(where, name)] = _source(where, name, spec, known_fields, mapping.source_entity)

    constants = _table(entries, "constants", where, 'label = "value"')
    for name, value in constants.items():
        if not isinstance(value, str | int | float | bool):
            raise MappingError(f"{where}.constants.{name} must be a plain value")
        columns[known.label(f"{where}.constants", name)] = Const(_as_text(value))

    elements = _table(entries, "elements", where, 'label = "column_name"')
    element_overrides = dict(mapping.element_overrides)
    for name, element in elements.items():
        if not isinstance(element, str) or not element:
            raise MappingError(f"{where}.elements.{name} must be the instance's column name as text")
        element_overrides[known.label(f"{where}.elements", name)] = element

    remove = entries.get("remove", [])
    if not isinstance(remove, list):
        raise MappingError(f"{where} remove must be a list of ServiceNow field labels")
    for name in remove:
        if name not in columns:
            raise MappingError(f"{where} cannot remove {name!r}: the mapping does not send it{_suggest(name, columns)}")
        if name in mapping.protected:
            raise MappingError(f"{where} cannot remove {name!r}: it is part of the connector's key, the scope or the "
                               "deactivation of deleted records")
        del columns[name]
    return mapping.with_columns(columns).with_element_overrides(element_overrides)


def _table(entries: Mapping[str, Any], name: str, where: str, shape: str) -> Mapping[str, Any]:
    value = entries.get(name, {})
    if not isinstance(value, Mapping):
        raise MappingError(f"{where}.{name} must be a table of {shape}")
    return value


def _source(where: str, name: str, spec: Any, known_fields: frozenset[str], entity: str) -> Source:
    if isinstance(spec, str):
        spec = {"field": spec}
    if not isinstance(spec, Mapping) or len({"field", "const", "rule"} & set(spec)) != 1:
        raise MappingError(f"{where} {name!r}: give an F&O field name, or a table with exactly one of field, const, "
                           "rule")
    unexpected = set(spec) - {"field", "const", "rule", "format"}
    if unexpected:
        raise MappingError(f"{where} {name!r}: unknown keys {sorted(unexpected)}")
    if "const" in spec:
        return Const(_as_text(spec["const"]))
    if "rule" in spec:
        if spec["rule"] not in RULES:
            raise MappingError(f"{where} {name!r}: unknown rule {spec['rule']!r}; known: {', '.join(sorted(RULES))}")
        return Derived(spec["rule"])
    field = spec["field"]
    if field not in known_fields:
        raise MappingError(f"{where} {name!r}: {field!r} is not a known {entity} field"
                           f"{_suggest(field, known_fields)}; check the spelling (F&O names are case-sensitive) or "
                           "list it in extra_source_fields")
    return Field(field, spec.get("format", "text"))


def _suggest(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
