"""Reading the instance's own schema through the Table API (DESIGN §5, reference/servicenow-s2p-schema.md §11).

Each read that the integration user may not make (ACLs on ``sys_*`` tables are common) degrades that part to the
documented defaults of :mod:`.documented` with a warning naming the role an admin would grant; discovery itself
never fails because of it. A read that fails for any other reason (the instance is down) raises: a schema made of
guesses must not be cached as if it had been read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..clients.encoded_query import EncodedQuery
from ..clients.errors import ForbiddenError, NotFoundError
from . import documented
from .model import Choice, Column, InstanceSchema, KeyMode, TableSchema, TransformEntry, TransformMap
from .resolve import normalize, resolve

log = logging.getLogger(__name__)

# Who may read what (the security jump-start ACLs and base system roles of ServiceNow's docs; sys_db_object and
# sys_rest_insert_multiple are not documented: the first was measured readable with itil, the second is assumed
# admin-only). An admin grants the role or adds a read ACL on the table for the integration user.
READ_ROLES: dict[str, str] = {
    "sys_db_object": "itil",
    "sys_dictionary": "personalize_dictionary",
    "sys_rest_insert_multiple": "admin",
    "sys_transform_map": "import_transformer",
    "sys_transform_entry": "import_transformer",
    "sys_choice": "personalize_choices",
    "sys_import_set_row": "import_admin",
}
INSERT_MULTIPLE = "sys_rest_insert_multiple"
_PAGE = 1000
_CHUNK = 100  # names per IN-list: keeps URLs short


class TableReader(Protocol):
    """What discovery needs of :class:`~d365_snow_assets.clients.servicenow.ServiceNowClient`."""

    base: str

    def iter_static(self, table: str, query: str | EncodedQuery, *, fields: Sequence[str] | None = None,
                    page_size: int = 1000) -> Iterator[list[dict[str, Any]]]: ...

    def get_page(self, table: str, query: str | EncodedQuery = "", *, fields: Sequence[str] | None = None,
                 limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], bool]: ...


class _Denied(Exception):
    def __init__(self, table: str, detail: str) -> None:
        super().__init__(table)
        self.table, self.detail = table, detail


def denied_warning(table: str, what: str) -> str:
    role = READ_ROLES.get(table, "admin")
    return (f"The integration user may not read {table}, so {what}. Grant it the {role} role (or a read ACL on "
            f"{table}) and run `d365-snow fit` again.")


@dataclass(frozen=True)
class Wanted:
    """What one discovery reads: the tables (parents are found), the staging tables among them, and the choice
    fields (table, label) whose values the connector needs."""

    tables: tuple[str, ...]
    staging: tuple[str, ...]
    choice_fields: tuple[tuple[str, str], ...]
    probes: tuple[str, ...]  # tables the connector must be able to read rows of


class Discovery:
    def __init__(self, snow: TableReader, wanted: Wanted, *, clock: Any = None) -> None:
        self.snow = snow
        self.wanted = wanted
        self.now = clock() if clock else datetime.now(UTC)
        self.schema = InstanceSchema(url=snow.base, fetched_at=self.now)
        self._table_ids: dict[str, str] = {}  # sys_db_object sys_id -> table name
        self._existing: set[str] | None = None  # tables sys_db_object shows; None when it could not be read

    # -- plumbing --------------------------------------------------------------------------------------------------
    def _rows(self, table: str, query: EncodedQuery | str, fields: Sequence[str]) -> list[dict[str, Any]]:
        try:
            return [row for page in self.snow.iter_static(table, query, fields=fields, page_size=_PAGE)
                    for row in page]
        except (ForbiddenError, NotFoundError) as exc:
            # NotFound: the Table API answers 404 on some releases when ACLs leave a query nothing it may show.
            raise _Denied(table, str(exc)) from None

    def _chunked(self, table: str, column: str, values: Iterable[str], fields: Sequence[str],
                 where: Callable[[], EncodedQuery] = EncodedQuery) -> list[dict[str, Any]]:
        """Rows of ``table`` whose ``column`` is one of ``values`` (and that match ``where``), chunk by chunk."""
        values = sorted(set(values))
        out: list[dict[str, Any]] = []
        for at in range(0, len(values), _CHUNK):
            out.extend(self._rows(table, where().in_(column, values[at:at + _CHUNK]), fields))
        return out

    def _note_access(self, table: str, ok: bool, detail: str = "") -> None:
        self.schema.access[table] = "ok" if ok else f"denied: {detail}"

    # -- the reads -------------------------------------------------------------------------------------------------
    def run(self) -> InstanceSchema:
        parents = self._parents()
        self._dictionary(parents)
        self._key_modes()
        self._transform_maps()
        self._choices()
        self._probe()
        return self.schema

    def _parents(self) -> dict[str, tuple[str, ...]]:
        """table -> its ancestors, nearest first (sys_db_object.super_class)."""
        direct: dict[str, str] = {}
        todo = set(self.wanted.tables) | {INSERT_MULTIPLE}
        seen: set[str] = set()
        existing: set[str] = set()
        try:
            while todo:
                seen |= todo
                rows = self._chunked("sys_db_object", "name", todo, ["sys_id", "name", "super_class",
                                                                      "super_class.name"])
                todo = set()
                for row in rows:
                    name = _text(row.get("name"))
                    existing.add(name)
                    self._table_ids[_text(row.get("sys_id"))] = name
                    parent = _text(row.get("super_class.name"))
                    if parent:
                        direct[name] = parent
                        if parent not in seen:
                            todo.add(parent)
            self._note_access("sys_db_object", True)
            self._existing = existing
        except _Denied as exc:
            self._note_access("sys_db_object", False, exc.detail)
            self.schema.warnings.append(denied_warning("sys_db_object", "the parents of the staging tables are "
                                                                        "assumed (sys_import_set_row)"))
            direct = {t: documented.IMPORT_SET_ROW for t in self.wanted.staging}
        chains: dict[str, tuple[str, ...]] = {}
        for table in (*self.wanted.tables, INSERT_MULTIPLE):
            chain, at = [], table
            while at in direct and direct[at] not in chain and len(chain) < 10:
                at = direct[at]
                chain.append(at)
            chains[table] = tuple(chain)
        return chains

    def _dictionary(self, parents: dict[str, tuple[str, ...]]) -> None:
        names = {t for t in parents} | {p for chain in parents.values() for p in chain}
        fields = ["name", "element", "column_label", "internal_type", "internal_type.name", "reference",
                  "reference.name", "mandatory", "active"]
        try:
            rows = self._chunked("sys_dictionary", "name", names, fields,
                                 where=lambda: EncodedQuery().is_not_empty("element"))
            if not rows:
                # Without personalize_dictionary the Table API answers 200 with no rows rather than 403.
                raise _Denied("sys_dictionary", "200 with no rows for every table")
            self._note_access("sys_dictionary", True)
        except _Denied as exc:
            self._note_access("sys_dictionary", False, exc.detail)
            self.schema.warnings.append(denied_warning(
                "sys_dictionary", "every ServiceNow field is assumed to have the column name derived from its "
                                  "documented label (a guess that is often wrong)"))
            rows = []
        own: dict[str, list[Column]] = {}
        for row in rows:
            if _text(row.get("active")).lower() == "false":
                continue
            table = _text(row.get("name"))
            reference = _text(row.get("reference.name")) or _text(row.get("reference"))
            own.setdefault(table, []).append(Column(
                element=_text(row.get("element")), label=_text(row.get("column_label")),
                type=_text(row.get("internal_type.name")) or _text(row.get("internal_type")) or "string",
                reference=self._table_ids.get(reference, reference) or None,
                mandatory=_text(row.get("mandatory")).lower() == "true", table=table))
        for table, chain in parents.items():
            columns = [*own.get(table, [])]
            for parent in chain:
                columns += own.get(parent, [])
            if own.get(table):
                self.schema.tables[table] = TableSchema(table, tuple(columns), chain, "instance")
            elif table not in documented.ALL_TABLES:
                continue
            elif rows and self._existing is not None and table not in self._existing:
                self.schema.tables[table] = TableSchema(table, (), chain, "instance")  # not on this instance
            else:
                if rows:  # the table exists (or may) but its dictionary rows are hidden from the user
                    self.schema.warnings.append(
                        f"ServiceNow shows no dictionary entries for {table}; its fields are assumed to be the "
                        "documented ones (grant personalize_dictionary to check them).")
                self.schema.tables[table] = _documented_table(table, chain)

    def _key_modes(self) -> None:
        """Which staging tables take column names in insertMultiple (a sys_rest_insert_multiple record set to
        Column name); the documented default is labels (reference §2.2)."""
        table = self.schema.tables.get(INSERT_MULTIPLE) or _inferred_table(
            INSERT_MULTIPLE, ("Source table", "Column mapping"))
        source = resolve(table, "Source table").column
        mapping = resolve(table, "Column mapping").column
        if source is None or mapping is None:
            self.schema.key_mode_origin = "documented"
            self.schema.warnings.append("ServiceNow's sys_rest_insert_multiple has no 'Source table' / 'Column "
                                        "mapping' fields the connector can recognise; insertMultiple keys are "
                                        "assumed to be labels (the documented default).")
            return
        try:
            choices = self._rows("sys_choice", EncodedQuery().eq("name", INSERT_MULTIPLE).eq("element",
                                                                                             mapping.element),
                                 ["value", "label"])
        except _Denied:
            choices = []
        by_column_name = {_text(c.get("value")) for c in choices if normalize(_text(c.get("label"))) == "columnname"}
        try:
            rows = self._rows(INSERT_MULTIPLE, "", ["sys_id", source.element, f"{source.element}.name",
                                                    mapping.element])
            self._note_access(INSERT_MULTIPLE, True)
        except _Denied as exc:
            self._note_access(INSERT_MULTIPLE, False, exc.detail)
            self.schema.key_mode_origin = "documented"
            self.schema.warnings.append(denied_warning(INSERT_MULTIPLE, "insertMultiple keys are assumed to be "
                                                                        "labels (the documented default)"))
            return
        for row in rows:
            staging = _text(row.get(f"{source.element}.name")) or _text(row.get(source.element))
            staging = self._table_ids.get(staging, staging)
            value = _text(row.get(mapping.element))
            mode: KeyMode = "column_name" if (value in by_column_name or normalize(value) in
                                              ("columnname", "column", "name")) else "label"
            self.schema.key_modes[staging] = mode

    def _transform_maps(self) -> None:
        staging = self.wanted.staging
        try:
            maps = self._chunked("sys_transform_map", "source_table", staging,
                                 ["sys_id", "name", "source_table", "target_table", "active",
                                  "enforce_mandatory_fields"])
            entries = self._chunked("sys_transform_entry", "map", [_text(m.get("sys_id")) for m in maps],
                                    ["map", "source_field", "target_field", "coalesce", "coalesce_empty_fields",
                                     "reference_value_field"]) if maps else []
            self._note_access("sys_transform_map", True)
            self._note_access("sys_transform_entry", True)
        except _Denied as exc:
            self._note_access(exc.table, False, exc.detail)
            self.schema.warnings.append(denied_warning(exc.table, "the transform maps' coalesce fields cannot be "
                                                                  "compared with the connector's keys"))
            return
        by_map: dict[str, list[TransformEntry]] = {}
        for e in entries:
            by_map.setdefault(_text(e.get("map")), []).append(TransformEntry(
                _text(e.get("source_field")), _text(e.get("target_field")), _true(e.get("coalesce")),
                _true(e.get("coalesce_empty_fields")), _text(e.get("reference_value_field"))))
        found: dict[str, list[TransformMap]] = {s: [] for s in staging}
        for m in maps:
            source = _text(m.get("source_table"))
            found.setdefault(source, []).append(TransformMap(
                _text(m.get("name")), source, _text(m.get("target_table")),
                _text(m.get("active")).lower() != "false", _true(m.get("enforce_mandatory_fields")),
                tuple(by_map.get(_text(m.get("sys_id")), ()))))
        self.schema.transform_maps = found

    def _choices(self) -> None:
        wanted: dict[tuple[str, str], str] = {}
        for table, label in self.wanted.choice_fields:
            schema = self.schema.tables.get(table)
            column = resolve(schema, label).column if schema else None
            if column is not None:
                wanted[(table, column.element)] = label
        if not wanted:
            return
        try:
            rows = self._chunked("sys_choice", "name", {t for t, _ in wanted}, ["name", "element", "value", "label",
                                                                               "sequence", "language", "inactive"],
                                 where=lambda: EncodedQuery().in_("element", sorted({e for _, e in wanted})))
            self._note_access("sys_choice", True)
            if rows and all("value" not in row for row in rows):
                # Without personalize_choices a field ACL strips everything but the label.
                raise _Denied("sys_choice", "only labels are visible")
        except _Denied as exc:
            self._note_access("sys_choice", False, exc.detail)
            self.schema.choices_origin = "documented"
            self.schema.warnings.append(denied_warning("sys_choice", "the integration status values are assumed "
                                                                     "to be the documented 10/20/30/40"))
            return
        for row in rows:
            key = (_text(row.get("name")), _text(row.get("element")))
            language = _text(row.get("language")) or "en"
            if key not in wanted or language != "en" or _true(row.get("inactive")):
                continue
            bucket = self.schema.choices.setdefault(f"{key[0]}.{key[1]}", [])
            if all(c.value != _text(row.get("value")) for c in bucket):
                bucket.append(Choice(_text(row.get("value")), _text(row.get("label")), _int(row.get("sequence"))))

    def _probe(self) -> None:
        """One-row reads of the tables whose rows the connector needs (outbound invoices, import set rows)."""
        for table in self.wanted.probes:
            try:
                self.snow.get_page(table, "", fields=["sys_id"], limit=1)
                self._note_access(table, True)
            except (ForbiddenError, NotFoundError) as exc:
                self._note_access(table, False, str(exc))


def _documented_table(table: str, parents: tuple[str, ...]) -> TableSchema:
    fields = documented.ALL_TABLES[table]
    return TableSchema(table, tuple(Column(f.element, f.label, f.type, f.reference, f.mandatory, table)
                                    for f in fields), parents, "documented")


def _inferred_table(table: str, labels: Sequence[str]) -> TableSchema:
    return TableSchema(table, tuple(Column(documented.infer_element(label), label, table=table) for label in labels),
                       (), "documented")


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return _text(value.get("value"))
    return "" if value is None else str(value)


def _true(value: Any) -> bool:
    return _text(value).lower() in ("true", "1", "yes")


def _int(value: Any) -> int:
    try:
        return int(float(_text(value) or 0))
    except ValueError:
        return 0
