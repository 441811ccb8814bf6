"""Import sets: loading staging rows, transforming them through a map with coalesce, and the result shapes
(reference/servicenow.md §2).

Transform semantics: columns map 1:1 (see :mod:`.transform_maps`); "Copy empty fields" is off, the transform map
default, so an empty staging value never clears a target field; coalesce looks the target up by all coalesce
columns through an index (O(1)); identical data → ``ignored`` ("No field values changed"), changed data →
``updated``, no match → ``inserted``; an empty coalesce value → ``skipped``; a value the target column cannot hold
(a non-number in a decimal column) → ``error`` (inference: the documented error status with a Glide-like message).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from .schema import IMPORT_SET, IMPORT_SET_ROW, IMPORT_SET_RUN, MULTI_IMPORT_SET
from .store import to_snow_string
from .transform_maps import MAPS_BY_STAGING, TransformMap

if TYPE_CHECKING:
    from .state import SnowState

NO_CHANGE = "No field values changed"


def transform_map(staging: str) -> TransformMap | None:
    return MAPS_BY_STAGING.get(staging)


def new_import_set(state: SnowState, staging: str, mode: str, multi_import_set_id: str = "") -> dict[str, str]:
    """A ``sys_import_set`` record (state ``loading``) plus, for insertMultiple, its ``sys_multi_import_set``."""
    if mode == "asynchronous" and not multi_import_set_id:
        multi = state.insert(MULTI_IMPORT_SET, {"number": state.ids.number("MISET"), "state": "loading"})
        multi_import_set_id = multi["sys_id"]
    return state.insert(IMPORT_SET, {"number": state.ids.number("ISET"), "table_name": staging, "state": "loading",
                                     "mode": mode, "multi_import_set": multi_import_set_id,
                                     "short_description": f"REST import into {staging}"})


def open_sync_import_set(state: SnowState, staging: str) -> dict[str, str]:
    """Single-row REST imports share one synchronous import set per staging table (real ones close at midnight)."""
    set_id = state.open_import_sets.get(staging)
    if set_id and set_id in state.tables[IMPORT_SET].rows:
        return state.tables[IMPORT_SET].rows[set_id]
    row = new_import_set(state, staging, "synchronous")
    state.open_import_sets[staging] = row["sys_id"]
    return row


def load_rows(state: SnowState, tmap: TransformMap, import_set: dict[str, str], records: list[Any],
              user: str) -> list[dict[str, str]]:
    """Insert staging rows (``sys_import_state`` pending); values are coerced to strings like the API does."""
    staging = state.tables[tmap.staging]
    parent = state.tables[IMPORT_SET_ROW]
    set_rows = state.import_set_rows.setdefault(import_set["sys_id"], [])
    start = len(set_rows)  # row numbers continue within an import set
    stamp = state.stamp()
    rows: list[dict[str, str]] = []
    for i, record in enumerate(records):
        values: dict[str, str] = {}
        error = ""
        if isinstance(record, dict):
            for key, value in record.items():
                if key in tmap.fields:
                    values[key] = to_snow_string(value)
        else:
            error = "Record is not a JSON object"  # inference: the row is kept and marked error
        values.update(sys_import_set=import_set["sys_id"], sys_import_row=str(start + i), sys_import_state="pending",
                      sys_class_name=tmap.staging, sys_transform_map=tmap.name, sys_target_table=tmap.target)
        row = staging.insert(values, sys_id=state.ids.sys_id(), stamp=stamp, user=user)
        parent.rows[row["sys_id"]] = row  # the parent table sees every staging row (table extension)
        if error:
            _set_state(state, row, "error", comment=error, error=error)
        rows.append(row)
    set_rows.extend(rows)
    return rows


def _set_state(state: SnowState, row: dict[str, str], status: str, *, target_id: str = "", comment: str = "",
               error: str = "") -> None:
    row.update(sys_import_state=status, sys_target_sys_id=target_id, sys_import_state_comment=comment,
               sys_row_error=error, sys_updated_on=state.stamp(),
               sys_mod_count=str(int(row.get("sys_mod_count") or 0) + 1))


def transform_row(state: SnowState, tmap: TransformMap, row: dict[str, str], user: str) -> str:
    """Transform one pending staging row into the target table; returns its status."""
    if row.get("sys_import_state") != "pending":
        return row.get("sys_import_state", "")
    values = {tgt: row[stg] for stg, tgt in tmap.fields.items() if row.get(stg, "") != ""}
    for col in tmap.numeric:
        if col in values:
            try:
                Decimal(values[col])
            except InvalidOperation:
                msg = f"Unable to format {values[col]} using format string ###,###,##0.00 for field {col}"
                _set_state(state, row, "error", comment=msg, error=msg)
                return "error"
    key = tuple(values.get(c, "") for c in tmap.coalesce)
    missing = [c for c, v in zip(tmap.coalesce, key, strict=True) if v == "" and c not in tmap.coalesce_empty]
    if missing:
        # The row itself is the answer (SOAP insertMultiple doc: skipped rows report the import set row sys_id).
        _set_state(state, row, "skipped", comment=f"Missing coalesce value for: {', '.join(missing)}")
        return "skipped"
    target = state.tables[tmap.target]
    existing = target.lookup(tmap.coalesce, key)
    if existing is None:
        created = state.insert(tmap.target, values, user=user)
        _set_state(state, row, "inserted", target_id=created["sys_id"])
        return "inserted"
    if all(existing.get(k) == v for k, v in values.items()):
        _set_state(state, row, "ignored", target_id=existing["sys_id"], comment=NO_CHANGE)
        return "ignored"
    state.update(tmap.target, existing["sys_id"], values, user=user)
    _set_state(state, row, "updated", target_id=existing["sys_id"])
    return "updated"


def finish_import_set(state: SnowState, tmap: TransformMap, import_set: dict[str, str],
                      rows: list[dict[str, str]]) -> None:
    """Mark an insertMultiple import set processed and record its transform history (``sys_import_set_run``)."""
    tally = {s: 0 for s in ("inserted", "updated", "ignored", "skipped", "error")}
    for row in rows:
        tally[row["sys_import_state"]] = tally.get(row["sys_import_state"], 0) + 1
    state.insert(IMPORT_SET_RUN, {"set": import_set["sys_id"], "transform_map": tmap.name, "state": "complete",
                                  "total": len(rows), "inserts": tally["inserted"], "updates": tally["updated"],
                                  "ignored": tally["ignored"], "skipped": tally["skipped"], "errors": tally["error"],
                                  "completed": state.stamp()})
    state.update(IMPORT_SET, import_set["sys_id"], {"state": "processed"})
    multi = import_set.get("multi_import_set")
    if multi:
        state.update(MULTI_IMPORT_SET, multi, {"state": "complete"})


def result_entry(state: SnowState, tmap: TransformMap, row: dict[str, str], base_url: str) -> dict[str, str]:
    """One element of ``result`` (reference §2.1)."""
    status = row.get("sys_import_state", "")
    target_id = row.get("sys_target_sys_id", "")
    target_row = state.tables[tmap.target].rows.get(target_id) if target_id else None
    if target_row is not None:
        sys_id, table = target_id, tmap.target
    else:
        sys_id, table = row["sys_id"], tmap.staging
    entry = {"transform_map": tmap.name, "table": tmap.target, "display_name": tmap.display_field,
             "display_value": target_row.get(tmap.display_field, "") if target_row else "",
             "record_link": f"{base_url}/api/now/table/{table}/{sys_id}", "status": status, "sys_id": sys_id}
    if status == "error":
        entry["error_message"] = row.get("sys_row_error") or row.get("sys_import_state_comment", "")
    elif row.get("sys_import_state_comment"):
        entry["status_message"] = row["sys_import_state_comment"]
    return entry


def import_response(state: SnowState, tmap: TransformMap, rows: list[dict[str, str]],
                    base_url: str) -> dict[str, Any]:
    import_set = state.tables[IMPORT_SET].rows.get(rows[0]["sys_import_set"], {}) if rows else {}
    return {"import_set": import_set.get("number", ""), "staging_table": tmap.staging,
            "result": [result_entry(state, tmap, r, base_url) for r in rows]}


def process_import_set(state: SnowState, set_id: str, user: str) -> None:
    """Transform every pending row of one import set (used by the async worker and :meth:`drain_imports`)."""
    with state.lock:
        import_set = state.tables[IMPORT_SET].rows.get(set_id)
        if import_set is None:
            return
        tmap = MAPS_BY_STAGING[import_set["table_name"]]
        rows = state.import_set_rows.get(set_id, [])
        for row in rows:
            transform_row(state, tmap, row, user)
        finish_import_set(state, tmap, import_set, rows)
        if set_id in state.pending_imports:
            state.pending_imports.remove(set_id)
