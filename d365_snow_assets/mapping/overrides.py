"""Customer overrides of the default mappings, from the ``[mapping]`` table of ``d365snow.toml``.

```toml
[mapping.sn_fcms_intg_imp_supplier]
name = "VendorSearchName"                              # staging column ← F&O field (as text)
credit_limit = { field = "CreditLimit", format = "amount" }
region = { const = "EMEA" }
remove = ["tax_id", "phone"]                           # columns not sent at all
extra_source_fields = ["ZZRegionCode"]                 # custom F&O fields (extensions) the overrides may read

[mapping.sn_fcms_intg_imp_supplier.constants]
u_channel = "erp"
```
Everything is checked before the first sync so a typo fails fast with a sentence naming the table and the column.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from d365_snow_assets.mapping.derived import RULES
from d365_snow_assets.mapping.spec import Const, Derived, Field, MappingError, Source, TargetMapping
from d365_snow_assets.mapping.targets import DEFAULT_MAPPINGS

_RESERVED = frozenset({"remove", "constants", "extra_source_fields"})


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
) -> dict[str, TargetMapping]:
    """``defaults`` with ``overrides`` (staging table → column entries) applied and validated."""
    result = dict(defaults)
    for staging, entries in overrides.items():
        if staging not in defaults:
            raise MappingError(f"[mapping.{staging}]: unknown staging table; known: {', '.join(sorted(defaults))}")
        if not isinstance(entries, Mapping):
            raise MappingError(f"[mapping.{staging}] must be a table")
        result[staging] = _override_one(defaults[staging], entries)
    return result


def _override_one(mapping: TargetMapping, entries: Mapping[str, Any]) -> TargetMapping:
    where = f"[mapping.{mapping.staging_table}]"
    extra = entries.get("extra_source_fields", [])
    if not isinstance(extra, list) or not all(isinstance(f, str) for f in extra):
        raise MappingError(f"{where} extra_source_fields must be a list of F&O field names")
    known_fields = mapping.source_fields | frozenset(extra)
    columns: dict[str, Source] = dict(mapping.columns)

    for name, spec in entries.items():
        if name in _RESERVED:
            continue
        columns[name] = _source(where, name, spec, known_fields, mapping.source_entity)

    constants = entries.get("constants", {})
    if not isinstance(constants, Mapping):
        raise MappingError(f"{where}.constants must be a table of column = \"value\"")
    for name, value in constants.items():
        if not isinstance(value, str | int | float | bool):
            raise MappingError(f"{where}.constants.{name} must be a plain value")
        columns[name] = Const(_as_text(value))

    remove = entries.get("remove", [])
    if not isinstance(remove, list):
        raise MappingError(f"{where} remove must be a list of staging column names")
    protected = {*mapping.coalesce, mapping.erp_source_column, mapping.legal_entity_column,
                 *dict(mapping.on_delete or ())}
    for name in remove:
        if name not in columns:
            raise MappingError(f"{where} cannot remove {name!r}: no such staging column "
                               f"(columns: {', '.join(columns)})")
        if name in protected:
            raise MappingError(f"{where} cannot remove {name!r}: it is part of the coalesce key, the scope or the "
                               "deactivation of deleted records")
        del columns[name]
    return mapping.with_columns(columns)


def _source(where: str, name: str, spec: Any, known_fields: frozenset[str], entity: str) -> Source:
    if isinstance(spec, str):
        spec = {"field": spec}
    if not isinstance(spec, Mapping) or len({"field", "const", "rule"} & set(spec)) != 1:
        raise MappingError(f"{where} {name}: give an F&O field name, or a table with exactly one of field, const, "
                           "rule")
    unexpected = set(spec) - {"field", "const", "rule", "format"}
    if unexpected:
        raise MappingError(f"{where} {name}: unknown keys {sorted(unexpected)}")
    if "const" in spec:
        return Const(_as_text(spec["const"]))
    if "rule" in spec:
        if spec["rule"] not in RULES:
            raise MappingError(f"{where} {name}: unknown rule {spec['rule']!r}; known: {', '.join(sorted(RULES))}")
        return Derived(spec["rule"])
    field = spec["field"]
    if field not in known_fields:
        raise MappingError(f"{where} {name}: {field!r} is not a known {entity} field; check the spelling (F&O "
                           "names are case-sensitive) or list it in extra_source_fields")
    return Field(field, spec.get("format", "text"))


def _as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
