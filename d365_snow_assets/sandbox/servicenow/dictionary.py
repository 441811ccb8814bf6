"""The instance's own schema as records: ``sys_db_object``, ``sys_dictionary``, ``sys_documentation``, ``sys_choice``
(and the ``sys_scope`` / ``sys_glide_object`` rows they reference), the seeded transform maps and insertMultiple
settings, and the admin knobs that change a table's columns.

These are the reads a connector makes to discover an instance (reference/servicenow-s2p-schema.md §11), so they
describe exactly the columns the tables have: the knobs change a :class:`~.store.Table` and its records together.
Inherited columns live in the parent's dictionary rows only, and every table has one ``collection`` row (element
empty) carrying its label, as on a real instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .schema import (
    CHOICE,
    DB_OBJECT,
    DICTIONARY,
    DOCUMENTATION,
    GLIDE_OBJECT,
    REST_INSERT_MULTIPLE,
    SCOPE,
    SPECS,
    TRANSFORM_ENTRY,
    TRANSFORM_MAP,
    choices_for,
    column_scope,
    element_for,
)
from .store import Field, Table
from .transform_maps import default_maps, script_text

if TYPE_CHECKING:
    from .state import SnowState

_TYPE_LABELS = {"string": "String", "integer": "Integer", "decimal": "Decimal", "float": "Floating Point Number",
                "boolean": "True/False", "glide_date": "Date", "glide_date_time": "Date/Time",
                "reference": "Reference", "currency": "Currency", "choice": "Choice", "collection": "Collection",
                "GUID": "Sys ID (GUID)", "table_name": "Table Name", "script": "Script", "email": "Email",
                "url": "URL", "document_id": "Document ID", "sys_class_name": "System Class Name"}
# insertMultiple switched to column names on these staging tables of the variant instance (§2.2's documented knob).
VARIANT_COLUMN_NAME_TABLES = ("sn_fcms_intg_imp_supplier", "sn_fcms_intg_imp_order_line",
                              "sn_fcms_intg_imp_cost_center", "sn_fcms_intg_legal_entity_stage")


def _flag(value: bool) -> str:
    return "true" if value else "false"


class Dictionary:
    """Writes and rewrites the schema records of one :class:`SnowState`."""

    def __init__(self, state: SnowState) -> None:
        self.state = state
        self.scopes: dict[str, str] = {}
        self.objects: dict[str, str] = {}

    # -- seeding ----------------------------------------------------------------------------------------------
    def seed(self) -> None:
        tables = self.state.tables
        for scope in sorted({t.scope for t in tables.values()} | {"global"}):
            self.scopes[scope] = self._raw(SCOPE, {"name": scope, "scope": scope})
        for name in sorted({f.type for t in tables.values() for f in t.own_fields.values()} | {"collection"}):
            self._raw(GLIDE_OBJECT, {"name": name, "label": _TYPE_LABELS.get(name, name)})
        for table in self._parents_first():
            parent = self.objects.get(table.parent.name, "") if table.parent else ""
            self.objects[table.name] = self._raw(DB_OBJECT, {"name": table.name, "label": table.label,
                                                             "super_class": parent,
                                                             "sys_scope": self.scopes[table.scope]})
            self._raw(DICTIONARY, {"name": table.name, "element": "", "column_label": table.label,
                                   "internal_type": "collection", "active": "true", "mandatory": "false",
                                   "max_length": "40", "display": "false", "sys_scope": self.scopes[table.scope]})
            for f in table.own_fields.values():
                self._write_column(table, f)
        self._seed_maps()
        if self.state.profile == "variant":
            for staging in VARIANT_COLUMN_NAME_TABLES:
                self.set_insert_multiple(staging, "column_name")

    def _parents_first(self) -> list[Table]:
        tables = list(self.state.tables.values())
        return sorted(tables, key=lambda t: (len(t.ancestors), t.name))

    def _raw(self, table: str, values: dict[str, str]) -> str:
        return self.state.insert_system(table, values)["sys_id"]

    def _scope_of(self, table: Table, f: Field) -> str:
        profile = self.state.profile
        spec = SPECS.get(table.name)
        col = next((c for c in spec.cols if element_for(spec, c, profile) == f.name), None) if spec else None
        scope = column_scope(spec, col, profile) if spec and col else (
            "global" if f.name.startswith("u_") else table.scope)
        return self.scopes.get(scope) or self.scopes["global"]

    def _write_column(self, table: Table, f: Field) -> None:
        values = {"name": table.name, "element": f.name, "column_label": f.column_label, "internal_type": f.type,
                  "reference": f.reference or "", "mandatory": _flag(f.mandatory), "max_length": str(f.max_length),
                  "active": "true", "display": _flag(table.display_field == f.name),
                  "sys_scope": self._scope_of(table, f)}
        existing = self.state.tables[DICTIONARY].lookup(("name", "element"), (table.name, f.name))
        if existing:
            self.state.update_system(DICTIONARY, existing["sys_id"], values)
        else:
            self._raw(DICTIONARY, values)
        doc = self.state.tables[DOCUMENTATION].lookup(("name", "element", "language"), (table.name, f.name, "en"))
        doc_values = {"name": table.name, "element": f.name, "label": f.column_label, "language": "en"}
        if doc:
            self.state.update_system(DOCUMENTATION, doc["sys_id"], doc_values)
        else:
            self._raw(DOCUMENTATION, doc_values)
        if f.label and not self.state.tables[CHOICE].lookup(("name", "element"), (table.name, f.name)):
            for seq, (value, label) in enumerate(choices_for(table.name, f.label, self.state.profile)):
                self.add_choice(table.name, f.name, value, label, sequence=seq * 10)

    def add_choice(self, table: str, element: str, value: str, label: str, sequence: int = 0) -> None:
        self._raw(CHOICE, {"name": table, "element": element, "value": value, "label": label,
                           "sequence": str(sequence), "inactive": "false", "language": "en"})

    def _seed_maps(self) -> None:
        state = self.state
        for order, spec in enumerate(default_maps(state.profile), start=1):
            scope = self.scopes[state.tables[spec.staging].scope]
            map_id = self._raw(TRANSFORM_MAP, {
                "name": spec.name, "source_table": spec.staging, "target_table": spec.target, "active": "true",
                "order": str(order * 100), "run_business_rules": "true", "enforce_mandatory_fields": "false",
                "copy_empty_fields": "false", "sys_scope": scope})
            target = state.tables[spec.target]
            for e in spec.entries:
                source_field = state.el(spec.staging, e.source)
                target_field = state.el(spec.target, e.target)
                ref = target.reference_of(target_field)
                ref_value = state.el(ref, e.ref_value) if ref and e.ref_value else ""
                self._raw(TRANSFORM_ENTRY, {
                    "map": map_id, "source_table": spec.staging, "source_field": source_field,
                    "target_table": spec.target, "target_field": target_field, "coalesce": _flag(e.coalesce),
                    "coalesce_empty_fields": _flag(e.coalesce_empty), "coalesce_case_sensitive": "false",
                    "reference_value_field": ref_value, "choice_action": e.choice_action,
                    "use_source_script": _flag(e.script is not None),
                    "source_script": script_text(e.script, source_field) if e.script else "", "sys_scope": scope})

    # -- admin knobs --------------------------------------------------------------------------------------------
    def add_column(self, table_name: str, element: str, label: str, *, type: str = "string",
                   mandatory: bool = False, reference: str | None = None) -> Field:
        """Add a column as an admin would in System Definition > Tables (a label already used elsewhere on the
        table makes that label ambiguous)."""
        table = self.state.tables[table_name]
        if table.has_field(element):
            raise ValueError(f"{table_name} already has a column {element!r}")
        if type == "reference" and reference not in self.state.tables:
            raise ValueError(f"reference column {element!r} needs an existing reference table")
        if not self.state.tables[GLIDE_OBJECT].lookup(("name",), (type,)):
            self._raw(GLIDE_OBJECT, {"name": type, "label": _TYPE_LABELS.get(type, type)})
        f = Field(element, type, reference if type == "reference" else None, label, mandatory)
        table.set_field(f)
        self._write_column(table, f)
        return f

    def remove_column(self, table_name: str, element: str) -> None:
        """Delete a column (and its dictionary, label and choice rows); its values go with it."""
        table = self.state.tables[table_name]
        if element not in table.own_fields:
            raise KeyError(f"{table_name} has no column {element!r} of its own")
        table.drop_field(element)
        for name in (DICTIONARY, DOCUMENTATION, CHOICE):
            for row in list(self.state.tables[name].find(("name", "element"), (table_name, element))):
                self.state.tables[name].delete(row["sys_id"])

    def set_mandatory(self, table_name: str, element: str, mandatory: bool = True) -> None:
        table = self.state.tables[table_name]
        if element not in table.own_fields:
            raise KeyError(f"{table_name} has no column {element!r} of its own")
        self._write_column(table, table.update_field(element, mandatory=mandatory))

    def set_coalesce(self, staging: str, target_fields: list[str]) -> list[str]:
        """Make exactly ``target_fields`` (target elements) the coalesce fields of ``staging``'s transform map."""
        state = self.state
        map_row = state.tables[TRANSFORM_MAP].lookup(("source_table",), (staging,))
        if map_row is None:
            raise KeyError(f"no transform map reads {staging}")
        entries = state.tables[TRANSFORM_ENTRY].find(("map",), (map_row["sys_id"],))
        unknown = set(target_fields) - {e["target_field"] for e in entries}
        if unknown:
            raise KeyError(f"the map {map_row['name']!r} has no field map to {sorted(unknown)}")
        for entry in entries:
            state.update_system(TRANSFORM_ENTRY, entry["sys_id"],
                                {"coalesce": _flag(entry["target_field"] in target_fields)})
        return sorted(target_fields)

    def set_insert_multiple(self, staging: str, column_mapping: str = "label",
                            transformation: str | None = None) -> dict[str, str]:
        """Create or change the ``sys_rest_insert_multiple`` record of ``staging`` (§2.2)."""
        if column_mapping not in ("label", "column_name"):
            raise ValueError("column_mapping is 'label' or 'column_name'")
        if transformation not in (None, "asynchronous", "synchronous"):
            raise ValueError("transformation is 'asynchronous' or 'synchronous'")
        table = self.state.tables[REST_INSERT_MULTIPLE]
        values = {"source_table": staging, "column_mapping": column_mapping,
                  "transformation": transformation or "asynchronous", "use_data_source_format": "false"}
        existing = table.lookup(("source_table",), (staging,))
        if existing:
            if transformation is None:
                values.pop("transformation")
            self.state.update_system(REST_INSERT_MULTIPLE, existing["sys_id"], values)
            return dict(existing)
        return self.state.insert_system(REST_INSERT_MULTIPLE, values)
