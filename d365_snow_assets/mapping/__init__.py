"""Declarative F&O → ServiceNow field mappings (DESIGN §5): pure data and polars, no HTTP, no Dagster."""

from d365_snow_assets.mapping.apply import apply_mapping, related_columns, source_columns
from d365_snow_assets.mapping.dimensions import build_display_value, parse_segment, split_display_value
from d365_snow_assets.mapping.overrides import apply_overrides, overrides_from_toml
from d365_snow_assets.mapping.spec import Const, Derived, Field, MappingContext, MappingError, TargetMapping
from d365_snow_assets.mapping.targets import DEFAULT_MAPPINGS

__all__ = [
    "DEFAULT_MAPPINGS",
    "Const",
    "Derived",
    "Field",
    "MappingContext",
    "MappingError",
    "TargetMapping",
    "apply_mapping",
    "apply_overrides",
    "build_display_value",
    "overrides_from_toml",
    "parse_segment",
    "related_columns",
    "source_columns",
    "split_display_value",
]
