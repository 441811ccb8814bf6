"""The Import Set API's side of import sets: which keys a request may use, loading staging rows, running the
transform, and the documented result shapes (reference/servicenow-s2p-schema.md §2).

insertMultiple maps JSON keys to the staging table's columns by COLUMN LABEL unless a ``sys_rest_insert_multiple``
record for the table sets "Column mapping" to "Column name" (§2.2, documented). A label matches exactly, case
included (inference: the docs show labels verbatim and say nothing of case). A key that names no column is dropped
silently, as a real instance does. The single-row ``POST /api/now/import/{table}`` takes column names (its
documented sample does). Values are coerced to strings ("accepts only name-value pairs of String data types").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import apo
from .schema import IMPORT_SET, IMPORT_SET_ROW, IMPORT_SET_RUN, MULTI_IMPORT_SET, REST_INSERT_MULTIPLE
from .store import Table, to_snow_string
from .transform import CompiledMap, compile_map, row_error, transform_row

if TYPE_CHECKING:
    from .state import SnowState


def staging_table(state: SnowState, name: str) -> Table | None:
    """``name`` if it is an import-set staging table (it extends ``sys_import_set_row``)."""
    table = state.tables.get(name)
    return table if table is not None and table.parent is not None and table.parent.name == IMPORT_SET_ROW else None


def insert_multiple_settings(state: SnowState, staging: str) -> tuple[str, bool]:
    """(column mapping, synchronous?) for ``staging``: its ``sys_rest_insert_multiple`` record, else the documented
    defaults (labels, asynchronous) unless the sandbox-wide switch made transforms synchronous."""
    record = state.tables[REST_INSERT_MULTIPLE].lookup(("source_table",), (staging,))
    mapping = (record or {}).get("column_mapping") or "label"
    transformation = (record or {}).get("transformation") or ""
    synchronous = transformation == "synchronous" if transformation else not state.settings.insert_multiple_async
    return mapping, synchronous


def key_map(table: Table, by: str) -> dict[str, str]:
    """Request key → element over the staging table's own columns (inherited ``sys_import_*`` columns are the
    platform's, not data). By label, the first column carrying a label wins (inference: ambiguous labels)."""
    keys: dict[str, str] = {}
    for name, f in table.own_fields.items():
        keys.setdefault(f.column_label if by == "label" else name, name)
    return keys


def new_import_set(state: SnowState, staging: str, mode: str, multi_import_set_id: str = "") -> dict[str, str]:
    """A ``sys_import_set`` record (state ``loading``) plus, for insertMultiple, its ``sys_multi_import_set``."""
    if mode == "asynchronous" and not multi_import_set_id:
        multi = state.insert_system(MULTI_IMPORT_SET, {"number": state.ids.number("MISET"), "state": "loading"})
        multi_import_set_id = multi["sys_id"]
    return state.insert_system(IMPORT_SET, {
        "number": state.ids.number("ISET"), "table_name": staging, "state": "loading", "mode": mode,
        "multi_import_set": multi_import_set_id, "short_description": f"REST import into {staging}"})


def open_sync_import_set(state: SnowState, staging: str) -> dict[str, str]:
    """Single-row REST imports share one synchronous import set per staging table (real ones close at midnight)."""
    set_id = state.open_import_sets.get(staging)
    if set_id and set_id in state.tables[IMPORT_SET].rows:
        return state.tables[IMPORT_SET].rows[set_id]
    row = new_import_set(state, staging, "synchronous")
    state.open_import_sets[staging] = row["sys_id"]
    return row


def load_rows(state: SnowState, staging: Table, import_set: dict[str, str], records: list[Any], user: str,
              by: str) -> list[dict[str, str]]:
    """Insert staging rows (``sys_import_state`` pending) from request records keyed ``by`` label or column name."""
    keys = key_map(staging, by)
    set_rows = state.import_set_rows.setdefault(import_set["sys_id"], [])
    start = len(set_rows)  # row numbers continue within an import set
    stamp = state.stamp()
    rows: list[dict[str, str]] = []
    for i, record in enumerate(records):
        values: dict[str, str] = {}
        if isinstance(record, dict):
            for key, value in record.items():
                element = keys.get(key)
                if element is not None:
                    values[element] = to_snow_string(value)
        values.update(sys_import_set=import_set["sys_id"], sys_import_row=str(start + i), sys_import_state="pending")
        row = staging.insert(values, sys_id=state.ids.sys_id(), stamp=stamp, user=user)
        if not isinstance(record, dict):
            _set_state(state, row, "error", comment="Record is not a JSON object")  # inference: kept, marked error
        rows.append(row)
    set_rows.extend(rows)
    return rows


def _set_state(state: SnowState, row: dict[str, str], status: str, *, target_id: str = "", comment: str = "",
               error_id: str = "", cmap: CompiledMap | None = None) -> None:
    values = {"sys_import_state": status, "sys_target_sys_id": target_id, "sys_import_state_comment": comment,
              "sys_row_error": error_id, "sys_updated_on": state.stamp(),
              "sys_mod_count": str(int(row.get("sys_mod_count") or 0) + 1)}
    if cmap is not None:
        values.update(sys_transform_map=cmap.sys_id, sys_target_table=cmap.target)
    state.tables[row["sys_class_name"]].set_fields(row["sys_id"], values)


def transform_rows(state: SnowState, staging: str, rows: list[dict[str, str]], user: str,
                   cmap: CompiledMap | None) -> None:
    """Transform the pending ``rows`` through ``cmap`` (read once per call, so an edited entry applies to the next
    chunk or import set)."""
    for row in rows:
        if row.get("sys_import_state") != "pending":
            continue
        if cmap is None:
            _set_state(state, row, "skipped", comment="No active transform map for " + staging)  # inference
            continue
        status, target_id, comment = transform_row(state, cmap, row, user)
        if status == "error":
            error_id, message = row_error(state, row["sys_id"], comment)
            _set_state(state, row, status, comment=message, error_id=error_id, cmap=cmap)
        else:
            _set_state(state, row, status, target_id=target_id, comment=comment, cmap=cmap)


def finish_import_set(state: SnowState, cmap: CompiledMap | None, import_set: dict[str, str],
                      rows: list[dict[str, str]]) -> None:
    """Mark an import set processed, record its transform history (``sys_import_set_run``), and let the APO
    rules see whether approved invoices now have every record they reference."""
    tally = {s: 0 for s in ("inserted", "updated", "ignored", "skipped", "error")}
    for row in rows:
        tally[row["sys_import_state"]] = tally.get(row["sys_import_state"], 0) + 1
    state.insert_system(IMPORT_SET_RUN, {
        "set": import_set["sys_id"], "transform_map": cmap.sys_id if cmap else "", "state": "complete",
        "total": str(len(rows)), "inserts": str(tally["inserted"]), "updates": str(tally["updated"]),
        "ignored": str(tally["ignored"]), "skipped": str(tally["skipped"]), "errors": str(tally["error"]),
        "completed": state.stamp()})
    state.update_system(IMPORT_SET, import_set["sys_id"], {"state": "processed"})
    multi = import_set.get("multi_import_set")
    if multi:
        state.update_system(MULTI_IMPORT_SET, multi, {"state": "complete"})
    apo.check_planned(state)


def result_entry(state: SnowState, cmap: CompiledMap | None, row: dict[str, str], base_url: str) -> dict[str, str]:
    """One element of ``result`` (reference §2.1)."""
    status = row.get("sys_import_state", "")
    target_name = cmap.target if cmap else ""
    target_id = row.get("sys_target_sys_id", "")
    target_table = state.tables.get(target_name)
    target_row = target_table.rows.get(target_id) if target_table is not None and target_id else None
    sys_id, table = (target_id, target_name) if target_row is not None else (row["sys_id"], row["sys_class_name"])
    display = target_table.display_field if target_table is not None else ""
    entry = {"transform_map": cmap.name if cmap else "", "table": target_name, "display_name": display,
             "display_value": target_row.get(display, "") if target_row else "",
             "record_link": f"{base_url}/api/now/table/{table}/{sys_id}", "status": status, "sys_id": sys_id}
    if status == "error":
        entry["error_message"] = row.get("sys_import_state_comment", "")
    elif row.get("sys_import_state_comment"):
        entry["status_message"] = row["sys_import_state_comment"]
    return entry


def import_response(state: SnowState, staging: str, rows: list[dict[str, str]], base_url: str) -> dict[str, Any]:
    cmap = compile_map(state, staging)
    import_set = state.tables[IMPORT_SET].rows.get(rows[0]["sys_import_set"], {}) if rows else {}
    return {"import_set": import_set.get("number", ""), "staging_table": staging,
            "result": [result_entry(state, cmap, r, base_url) for r in rows]}


def process_import_set(state: SnowState, set_id: str, user: str) -> None:
    """Transform every pending row of one import set (used by the async worker and :meth:`drain_imports`)."""
    with state.lock:
        import_set = state.tables[IMPORT_SET].rows.get(set_id)
        if import_set is not None:
            staging = import_set["table_name"]
            cmap = compile_map(state, staging)
            rows = state.import_set_rows.get(set_id, [])
            transform_rows(state, staging, rows, user, cmap)
            finish_import_set(state, cmap, import_set, rows)
        if set_id in state.pending_imports:
            state.pending_imports.remove(set_id)
