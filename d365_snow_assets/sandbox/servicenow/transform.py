"""Transforming staging rows into target tables, driven by the ``sys_transform_map`` / ``sys_transform_entry`` records.

Platform rules imitated (reference/servicenow-s2p-schema.md §2.3–§2.4):
- each field map copies ``source_field`` into ``target_field``; "Copy empty fields" off (the map default) means an
  empty staging value never clears a target value;
- coalesce: the target is looked up by every entry flagged ``coalesce`` (all must match; "only the first matching
  record is updated"); no coalesce entry means every row is new; an empty coalesce value skips the row unless its
  entry has ``coalesce_empty_fields``; values compare case-insensitively unless ``coalesce_case_sensitive``
  (inference: the platform's default collation is case-insensitive, which is why the flag exists);
- a reference target is matched on ``reference_value_field`` of the referenced table (its display column when
  empty); not found → the entry's ``choice_action``: create the record, ignore the field, or reject the row;
- row outcomes ``inserted`` / ``updated`` / ``ignored`` ("No field values changed") / ``skipped`` / ``error``, with
  the documented error codes in ``sys_import_set_row_error`` (100 reference value rejected, 200 choice value
  rejected, 800 invalid target field value, 900 transform script error).
Only the first active map of a staging table (lowest order) runs (inference: the sandbox ships one per table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from .schema import (
    CHOICE,
    COST_CENTER,
    GL_ACCOUNT,
    IMPORT_SET_ROW_ERROR,
    LEGAL_ENTITY,
    PURCHASE_ORDER,
    TRANSFORM_ENTRY,
    TRANSFORM_MAP,
)
from .store import NUMERIC_TYPES, Field, Table
from .transform_maps import script_name

if TYPE_CHECKING:
    from .state import SnowState

NO_CHANGE = "No field values changed"
_TRUE = frozenset({"true", "1", "yes", "y"})


class RowError(Exception):
    """The row cannot be transformed; ``code`` is the documented import-set row error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Script = Callable[[dict[str, str], str], str]


@dataclass(frozen=True)
class Entry:
    """One ``sys_transform_entry`` record, read once per chunk of rows and resolved against the target table."""

    source: str
    target: str
    field: Field
    coalesce: bool
    coalesce_empty: bool
    case_sensitive: bool
    reference_column: str  # the referenced table's column matched (its display column when not set)
    action: str  # choice action: create | ignore | reject
    script: Script | None
    script_error: str  # why a source script cannot run ("" when it can)


@dataclass(frozen=True)
class CompiledMap:
    """A transform map's records as they stand when a chunk of an import set is transformed."""

    record: dict[str, str]
    entries: tuple[Entry, ...]

    @property
    def sys_id(self) -> str:
        return self.record["sys_id"]

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def target(self) -> str:
        return self.record["target_table"]

    @property
    def coalesce(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.coalesce)


def compile_map(state: SnowState, staging: str) -> CompiledMap | None:
    """The active map reading ``staging`` (lowest order first), with its entries, or None. A field map from or to
    a column that no longer exists is left out: it does nothing (inference)."""
    maps = [m for m in state.tables[TRANSFORM_MAP].find(("source_table",), (staging,)) if m["active"] == "true"]
    if not maps:
        return None
    record = min(maps, key=lambda m: int(m.get("order") or 0))
    target = state.tables[record["target_table"]]
    source = state.tables[staging]
    entries: list[Entry] = []
    for e in state.tables[TRANSFORM_ENTRY].find(("map",), (record["sys_id"],)):
        field = target.field(e["target_field"])
        if field is None or not source.has_field(e["source_field"]):
            continue
        ref = state.tables.get(field.reference or "") if field.type == "reference" else None
        script, error = None, ""
        if e.get("use_source_script") == "true":
            name = script_name(e.get("source_script", ""))
            try:
                script = SCRIPTS[name or ""](state, staging)
            except KeyError as exc:  # an unknown script, or a column it reads was removed
                error = f"Transform script error: {exc}"
        entries.append(Entry(
            e["source_field"], e["target_field"], field, e["coalesce"] == "true", e["coalesce_empty_fields"] == "true",
            e["coalesce_case_sensitive"] == "true",
            (e.get("reference_value_field") or (ref.display_field if ref else "")), e.get("choice_action") or "create",
            script, error))
    return CompiledMap(dict(record), tuple(entries))


# -- value conversion ---------------------------------------------------------------------------------------------
def _convert(field: Field, value: str) -> str:
    """A staging string as the target column stores it."""
    if field.type in NUMERIC_TYPES:
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise RowError("800", f"Unable to format {value} using format string ###,###,##0.00 for field "
                                  f"{field.name}") from None
        if field.type == "integer" and number != number.to_integral_value():
            raise RowError("800", f"Invalid integer value {value} for field {field.name}")
        return value
    if field.type == "boolean":
        return "true" if value.strip().lower() in _TRUE else "false"
    if field.type == "glide_date_time" and len(value) == 10:
        return f"{value} 00:00:00"  # a date into a date-time column: midnight (inference)
    if field.type == "glide_date" and len(value) > 10 and value[10] in " T":
        return value[:10]
    return value


def _reference(state: SnowState, entry: Entry, value: str) -> str | None:
    """The referenced record's sys_id for ``value`` (None: not found)."""
    ref_table = state.tables.get(entry.field.reference or "")
    if ref_table is None:
        return None
    if value in ref_table.rows:  # a sys_id is taken as is
        return value
    if not ref_table.has_field(entry.reference_column):
        return None
    found = ref_table.lookup((entry.reference_column,), (value,), (True,))
    if found is not None:
        return found["sys_id"]
    if entry.action == "create":
        return state.insert(ref_table.name, {entry.reference_column: value})["sys_id"]
    return None


def _choice(state: SnowState, table: str, entry: Entry, value: str) -> str | None:
    """A choice column accepts a choice's value or label (inference); an unknown one follows the choice action."""
    choices = state.tables[CHOICE].find(("name", "element"), (table, entry.field.name))
    for choice in choices:
        if value.casefold() in (choice["value"].casefold(), choice["label"].casefold()):
            return choice["value"]
    if entry.action == "create":
        state.dictionary.add_choice(table, entry.field.name, value, value, sequence=(len(choices) + 1) * 10)
        return value
    return None


def field_values(state: SnowState, cmap: CompiledMap, row: dict[str, str]) -> dict[str, str]:
    """Target element → value for every entry (empty values included, for coalesce)."""
    values: dict[str, str] = {}
    for entry in cmap.entries:
        raw = row.get(entry.source, "")
        field = entry.field
        if entry.script is not None or entry.script_error:
            if entry.script_error:
                raise RowError("900", entry.script_error)
            resolved = entry.script(row, raw) if raw else ""  # type: ignore[misc]
            if raw and not resolved and entry.action == "reject":
                raise RowError("100", f"Reference value rejected for {field.name}: {raw!r} not found")
            raw = resolved
        elif raw and field.type == "reference":
            resolved = _reference(state, entry, raw)
            if resolved is None and entry.action == "reject":
                raise RowError("100", f"Reference value rejected for {field.name}: {raw!r} not found in "
                                      f"{field.reference}")
            raw = resolved or ""
        elif raw and field.type == "choice":
            chosen = _choice(state, cmap.target, entry, raw)
            if chosen is None and entry.action == "reject":
                raise RowError("200", f"Choice value rejected for {field.name}: {raw!r}")
            raw = chosen or ""
        elif raw:
            raw = _convert(field, raw)
        values[field.name] = raw
    return values


def transform_row(state: SnowState, cmap: CompiledMap, row: dict[str, str], user: str) -> tuple[str, str, str]:
    """Transform one staging row; returns (status, target sys_id, comment)."""
    try:
        values = field_values(state, cmap, row)
    except RowError as err:
        return "error", "", f"{err.code}\n{err.message}"
    coalesce = cmap.coalesce
    key = tuple(values.get(e.target, "") for e in coalesce)
    missing = [e.target for e, v in zip(coalesce, key, strict=True) if v == "" and not e.coalesce_empty]
    if missing:
        return "skipped", "", f"Missing coalesce value for: {', '.join(missing)}"
    copy_empty = cmap.record.get("copy_empty_fields") == "true"
    writes = {k: v for k, v in values.items() if v != "" or copy_empty}
    target: Table = state.tables[cmap.target]
    existing = None
    if coalesce:
        existing = target.lookup(tuple(e.target for e in coalesce), key,
                                 tuple(not e.case_sensitive for e in coalesce))
    run_rules = cmap.record.get("run_business_rules") != "false"
    if existing is None:
        if cmap.record.get("enforce_mandatory_fields") == "true":
            unfilled = [f.name for f in target.own_fields.values() if f.mandatory and not writes.get(f.name)]
            if unfilled:
                return "error", "", f"800\nMandatory field(s) missing: {', '.join(unfilled)}"
        created = state.insert(cmap.target, writes, user=user, run_rules=run_rules)
        return "inserted", created["sys_id"], ""
    if all(existing.get(k) == v for k, v in writes.items()):
        return "ignored", existing["sys_id"], NO_CHANGE
    state.update(cmap.target, existing["sys_id"], writes, user=user, run_rules=run_rules)
    return "updated", existing["sys_id"], ""


def row_error(state: SnowState, row_id: str, comment: str) -> tuple[str, str]:
    """Record a transform error for the row (``sys_import_set_row_error``); returns (error sys_id, message)."""
    code, _, message = comment.partition("\n")
    error = state.insert_system(IMPORT_SET_ROW_ERROR, {"row": row_id, "error_code": code, "error_message": message})
    return error["sys_id"], message


# -- the sandbox's source scripts (see transform_maps.SOURCE_SCRIPTS) -----------------------------------------------
# Each is built per chunk with the elements it reads resolved by label; a KeyError means a column is missing.
def _finder(state: SnowState, table: str, labels: tuple[str, ...]) -> Callable[..., str]:
    t = state.tables[table]
    columns = tuple(state.el(table, label) for label in labels)
    folds = (True,) * len(columns)

    def first(*key: str) -> str:
        found = t.lookup(columns, key, folds)
        return found["sys_id"] if found else ""
    return first


def _row_context(state: SnowState, staging: str) -> tuple[Callable[[dict[str, str]], str], str]:
    """(row -> the sys_id of its legal entity, the staging column holding its ERP source)."""
    table = state.tables[staging]
    source = (table.by_label("ERP source") or table.by_label("ERP Source") or [""])[0]
    le_col = state.el(staging, "Legal entity")
    legal_entity = _finder(state, LEGAL_ENTITY, ("ERP company code",))
    return (lambda row: legal_entity(row[le_col]) if row.get(le_col) else ""), source


def _purchase_order(state: SnowState, staging: str) -> Script:
    legal_entity, source = _row_context(state, staging)
    order = _finder(state, PURCHASE_ORDER, ("ERP number", "Legal entity", "ERP source"))

    def run(row: dict[str, str], value: str) -> str:
        le = legal_entity(row)
        return order(value, le, row.get(source, "")) if le else ""
    return run


def _cost_center(state: SnowState, staging: str) -> Script:
    legal_entity, source = _row_context(state, staging)
    center = _finder(state, COST_CENTER, ("Code", "ERP Source", "Legal entity"))

    def run(row: dict[str, str], value: str) -> str:
        le = legal_entity(row)
        return (center(value, row.get(source, ""), le) if le else "") or center(value, row.get(source, ""), "")
    return run


def _gl_account(state: SnowState, staging: str) -> Script:
    _, source = _row_context(state, staging)
    account = _finder(state, GL_ACCOUNT, ("Ledger account", "ERP source"))
    return lambda row, value: account(value, row.get(source, ""))


SCRIPTS: dict[str, Callable[[SnowState, str], Script]] = {
    "purchase_order": _purchase_order, "cost_center": _cost_center, "gl_account": _gl_account}
