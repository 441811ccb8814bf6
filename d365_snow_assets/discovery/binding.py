"""A mapping bound to one instance: each documented label resolved to the instance's element, the key each value is
sent under (the label as the instance spells it, or the element, per its insertMultiple mode), and every problem
found on the way, for ``fit`` and for the push (DESIGN §5: "the connector never sends a field it could not
resolve").

Severity: ``blocking`` findings stop the connector from writing to that table (a key field that cannot be sent, a
transform map that would merge or duplicate records); ``warning`` findings are shown and the push goes on (a field
ServiceNow would not receive); ``info`` says how something was resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import polars as pl

from ..mapping.spec import Const, Derived, Field, Source, TargetMapping
from . import documented
from .model import Column, InstanceSchema, KeyMode, TableSchema, TransformMap
from .resolve import Resolved, resolve

Severity = Literal["blocking", "warning", "info"]
# Value formats whose text a numeric column cannot hold.
_TEXT_FORMATS = frozenset({"text", "upper", "enum"})
_NUMERIC_TYPES = frozenset({"integer", "decimal", "float", "currency", "price", "longint"})
# Derived rules whose value is the same on every row of a run.
_CONSTANT_RULES = frozenset({"erp_source"})


@dataclass(frozen=True)
class Finding:
    table: str
    severity: Severity
    code: str
    message: str
    label: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"table": self.table, "severity": self.severity, "code": self.code, "message": self.message,
                "label": self.label}


@dataclass(frozen=True)
class FieldBinding:
    label: str
    resolved: Resolved
    wire_key: str | None  # None: not sent

    @property
    def element(self) -> str | None:
        return self.resolved.column.element if self.resolved.column else None


@dataclass(frozen=True)
class BoundTarget:
    mapping: TargetMapping
    mode: KeyMode
    fields: dict[str, FieldBinding]
    findings: list[Finding] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return any(f.severity == "blocking" for f in self.findings)

    @property
    def staging_table(self) -> str:
        return self.mapping.staging_table

    def encode(self, rows: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        """Label-keyed rows as the instance takes them: resolved fields only, under their wire keys."""
        keys = [(b.label, b.wire_key) for b in self.fields.values() if b.wire_key is not None]
        return [{wire: row[label] for label, wire in keys if label in row} for row in rows]

    def element_of(self, label: str) -> str | None:
        binding = self.fields.get(label)
        return binding.element if binding else None


def source_identity(source: Source) -> tuple[str, str]:
    """What a value is made of, regardless of its format: equal identities carry equal information."""
    if isinstance(source, Field):
        return ("field", source.column)
    if isinstance(source, Derived):
        return ("rule", source.rule)
    return ("const", source.value)


def is_constant(source: Source) -> bool:
    return isinstance(source, Const) or (isinstance(source, Derived) and source.rule in _CONSTANT_RULES)


def adapt_to_instance(mapping: TargetMapping, table: TableSchema | None) -> tuple[TargetMapping, list[Finding]]:
    """Mapping changes a documented release difference calls for (reference §9): on a release whose GL Account
    Stage has no "Number", "GL Account" is the account number (xanadu) and becomes the key."""
    if (mapping.staging_table != documented.GL_ACCOUNT_STAGE or table is None or not table.columns
            or resolve(table, "Number").ok or not resolve(table, "GL Account").ok):
        return mapping, []
    columns = {label: source for label, source in mapping.columns if label not in ("Number", "GL Account")}
    columns = {"GL Account": Field("MainAccountId"), **columns}
    adapted = replace(mapping, columns=tuple(columns.items()),
                      coalesce=tuple("GL Account" if c == "Number" else c for c in mapping.coalesce))
    return adapted, [Finding(mapping.staging_table, "info", "gl_account_is_number",
                             "This release's GL Account Stage has no Number field, so its GL Account is the account "
                             "number (as documented for xanadu): it is filled with MainAccountId.", "GL Account")]


def bind(mapping: TargetMapping, schema: InstanceSchema, overrides: Mapping[str, str] | None = None) -> BoundTarget:
    """Resolve every label ``mapping`` sends on the instance's staging table; ``overrides`` (label → element, from
    ``[mapping.<table>.elements]``) win over the dictionary."""
    staging = mapping.staging_table
    table = schema.tables.get(staging)
    mapping, findings = adapt_to_instance(mapping, table)
    mode = schema.key_mode(staging)
    if table is None or not table.columns:
        findings.append(Finding(staging, "blocking", "no_table",
                                f"ServiceNow has no staging table {staging} the integration user can see: install "
                                "the S2P integration framework or grant read access."))
        return BoundTarget(mapping, mode, {}, findings)
    overrides = overrides or {}
    fields: dict[str, FieldBinding] = {}
    for label in mapping.sent:
        resolved = resolve(table, label, overrides.get(label))
        wire = None
        if resolved.column is not None:
            wire = resolved.column.label if mode == "label" else resolved.column.element
        fields[label] = FieldBinding(label, resolved, wire)
        findings.extend(_field_findings(mapping, staging, resolved, dict(mapping.columns)[label]))
    deactivating = [label for label, _ in mapping.on_delete or () if not fields[label].resolved.ok]
    if deactivating:
        findings.append(Finding(staging, "warning", "no_deactivation",
                                f"{staging} has no usable {', '.join(map(repr, deactivating))} field, so records gone "
                                "from Dynamics 365 cannot be deactivated in ServiceNow on this instance; they are "
                                "reported as orphans instead.", deactivating[0]))
        mapping = replace(mapping, on_delete=None)
    if mode == "label":
        findings.extend(_label_clashes(mapping, table, fields))
    findings.extend(_mandatory_unfilled(mapping, schema, table, fields))
    return BoundTarget(mapping, mode, fields, findings)


def _field_findings(mapping: TargetMapping, staging: str, resolved: Resolved, source: Source) -> list[Finding]:
    label = resolved.label
    # A deactivation field that cannot be sent only disables deactivation (see bind); key and scope fields block.
    key_part = label in mapping.protected - {name for name, _ in mapping.on_delete or ()}
    if resolved.status == "bad_override":
        return [Finding(staging, "blocking", "bad_override", f"[mapping.{staging}.elements] names a column for "
                        f"{label!r} that {staging} does not have.", label)]
    if resolved.status == "missing":
        severity: Severity = "blocking" if key_part else "warning"
        why = ("it is part of the connector's key, scope or deactivation" if key_part
               else "its values would not reach ServiceNow; map it to a column with [mapping.<table>.elements] or "
                    "remove it")
        return [Finding(staging, severity, "missing", f"{staging} has no field labelled {label!r}: {why}.", label)]
    if resolved.status == "ambiguous":
        return [Finding(staging, "blocking" if key_part else "warning", "ambiguous",
                        f"{label!r} matches several columns of {staging} ({resolved.describe()}); name the one to use "
                        f"in [mapping.{staging}.elements].", label)]
    column = resolved.column
    assert column is not None
    out = []
    if resolved.status == "loose":
        out.append(Finding(staging, "info", "loose_label", f"{label!r} is labelled {column.label!r} on this "
                           f"instance (column {column.element}).", label))
    fmt = source.format if isinstance(source, Field) else None
    if column.type in _NUMERIC_TYPES and fmt in _TEXT_FORMATS:
        out.append(Finding(staging, "warning", "type_mismatch", f"{label!r} ({column.element}) is a {column.type} "
                           "column but the connector sends text there.", label))
    return out


def _label_clashes(mapping: TargetMapping, table: TableSchema,
                   fields: Mapping[str, FieldBinding]) -> list[Finding]:
    """In label mode ServiceNow matches keys to labels: a label two columns share cannot be sent unambiguously."""
    staging = mapping.staging_table
    out = []
    for binding in fields.values():
        column = binding.resolved.column
        if column is None:
            continue
        twins = [c.element for c in table.columns if c.label == column.label and c.element != column.element]
        if twins:
            out.append(Finding(staging, "blocking" if binding.label in mapping.protected else "warning", "label_clash",
                               f"{staging} has several columns labelled {column.label!r} ({column.element}, "
                               f"{', '.join(twins)}): insertMultiple maps keys by label here, so ServiceNow cannot "
                               "tell which one a value is for. Rename one, or switch the table to column names "
                               "(sys_rest_insert_multiple).", binding.label))
    return out


def _mandatory_unfilled(mapping: TargetMapping, schema: InstanceSchema, table: TableSchema,
                        fields: Mapping[str, FieldBinding]) -> list[Finding]:
    filled = {b.element for b in fields.values() if b.element}
    maps = schema.maps_of(mapping.staging_table) or []
    enforced = any(m.enforce_mandatory for m in maps)
    out = []
    for column in table.columns:
        if column.table != table.name or not column.mandatory or column.element in filled:
            continue
        out.append(Finding(mapping.staging_table, "blocking" if enforced else "warning", "mandatory_unfilled",
                           f"{column.label!r} ({column.element}) is mandatory on {table.name} but Dynamics 365 has no "
                           f"source for it; fill it with a constant in [mapping.{table.name}.constants]"
                           + (" (the transform map enforces mandatory fields, so every row would fail)." if enforced
                              else "."), column.label))
    return out


# -- coalesce ---------------------------------------------------------------------------------------------------------
def coalesce_findings(bound: BoundTarget, schema: InstanceSchema, staging_rows: pl.DataFrame | None = None,
                      business_keys: pl.Series | None = None) -> list[Finding]:
    """The instance's transform map(s) for the staging table against the connector's key (DESIGN §5 "Keys").

    A map that coalesces on less than the key merges records the connector keeps apart: with ``staging_rows`` (the
    current F&O data, mapped) the records that would collide are named. One that coalesces on a field outside the
    key would create a second record whenever that field changes in F&O."""
    mapping = bound.mapping
    staging = mapping.staging_table
    maps = schema.maps_of(staging)
    if maps is None:
        return [Finding(staging, "warning", "coalesce_unknown", "The transform maps could not be read, so their "
                        "coalesce fields were not compared with the connector's key.")]
    if not maps:
        return [Finding(staging, "blocking", "no_transform_map", f"No active transform map reads {staging}: rows "
                        "would stay in the staging table.")]
    by_element = {b.element: b.label for b in bound.fields.values() if b.element}
    sources = dict(mapping.columns)
    key = [label for label in mapping.coalesce if label not in mapping.internal]
    out = []
    for tmap in maps:
        out.extend(_compare(tmap, staging, key, by_element, sources, staging_rows, business_keys))
    return out


def _compare(tmap: TransformMap, staging: str, key: list[str], by_element: Mapping[str, str],
             sources: Mapping[str, Source], rows: pl.DataFrame | None,
             business_keys: pl.Series | None) -> list[Finding]:
    where = f"Transform map {tmap.name!r}"
    if not tmap.coalesce_fields:
        return [Finding(staging, "blocking", "no_coalesce", f"{where} coalesces on nothing: every row sent again "
                        "would insert another record.")]
    unknown = [e for e in tmap.coalesce_fields if e not in by_element]
    if unknown:
        return [Finding(staging, "blocking", "coalesce_unfilled", f"{where} coalesces on {', '.join(unknown)}, which "
                        "the connector does not fill: every row would be skipped or inserted again.")]
    labels = [by_element[e] for e in tmap.coalesce_fields]
    theirs = {source_identity(sources[label]) for label in labels if not is_constant(sources[label])}
    ours = {source_identity(sources[label]) for label in key if not is_constant(sources[label])}
    out: list[Finding] = []
    if not any(is_constant(sources[label]) for label in labels) and any(is_constant(sources[k]) for k in key):
        out.append(Finding(staging, "warning", "coalesce_without_erp_source", f"{where} does not coalesce on the ERP "
                           "source: a record of another ERP with the same code would be updated by this connector."))
    if theirs == ours:
        varying = sorted(label for label in labels if not is_constant(sources[label]))
        if varying != sorted(k for k in key if not is_constant(sources[k])):
            out.append(Finding(staging, "info", "coalesce_equivalent", f"{where} coalesces on {', '.join(labels)}, "
                               "which the connector fills from the same Dynamics 365 values as its key."))
        return out
    extra = sorted(label for label in labels if source_identity(sources[label]) not in ours
                   and not is_constant(sources[label]))
    if extra:
        return [*out, Finding(staging, "blocking", "coalesce_wider", f"{where} coalesces on {', '.join(extra)} "
                              f"besides the key: a change of {', '.join(extra)} in Dynamics 365 would create a second "
                              "ServiceNow record.")]
    missing = sorted(k for k in key if source_identity(sources[k]) not in theirs and not is_constant(sources[k]))
    collisions = _collisions(rows, labels, business_keys) if rows is not None else None
    if collisions:
        sample = "; ".join(collisions[:3])
        return [*out, Finding(staging, "blocking", "coalesce_narrower", f"{where} does not coalesce on "
                              f"{', '.join(missing)}, so records the connector keeps apart would be merged into one; "
                              f"in the current Dynamics 365 data {len(collisions)} would collide, e.g. {sample}. Add "
                              f"{', '.join(missing)} to the map's coalesce fields.")]
    detail = ("no records collide in the current data, but any future one would" if collisions is not None
              else "run `d365-snow fit` after an extract to see which records would collide")
    return [*out, Finding(staging, "warning", "coalesce_narrower", f"{where} does not coalesce on "
                          f"{', '.join(missing)}: records the connector keeps apart would be merged ({detail}).")]


def _collisions(rows: pl.DataFrame, labels: list[str], business_keys: pl.Series | None) -> list[str]:
    """Groups of rows that share the map's coalesce values but not the connector's key."""
    if rows.height == 0 or any(label not in rows.columns for label in labels):
        return []
    frame = rows.select(labels)
    keys = business_keys if business_keys is not None else pl.Series("_k", range(rows.height))
    frame = frame.with_columns(keys.alias("__key"))
    groups = (frame.group_by(labels).agg(pl.col("__key").unique().sort().alias("__keys"))
              .filter(pl.col("__keys").list.len() > 1).sort(labels))
    return [" vs ".join(str(k) for k in row["__keys"][:3]) for row in groups.iter_rows(named=True)]


def column_for(schema: InstanceSchema, table: str, label: str) -> Column | None:
    """The instance's column for a documented label of a table the connector reads, or None."""
    found = schema.tables.get(table)
    return resolve(found, label).column if found else None
