"""Table API: ``/api/now/[v1|v2/]table/{table}[/{sys_id}]`` (reference/servicenow.md §1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .encoded_query import Getter, parse
from .schema import CHOICE
from .state import SnowState
from .store import Table

DEFAULT_LIMIT = 10_000
TRANSACTION_CANCELLED = {"error": {"detail": "Transaction cancelled: maximum execution time exceeded Check logs for "
                                             "error trace or enable glide.rest.debug property to verify REST request "
                                             "processing",
                                   "message": "Transaction cancelled: maximum execution time exceeded"},
                         "status": "failure"}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def snow_error(status: int, message: str, detail: str | None) -> Response:
    return json_response({"error": {"message": message, "detail": detail}, "status": "failure"}, status)


def invalid_table(name: str) -> Response:
    return snow_error(400, f"Invalid table {name}", None)


def not_found() -> Response:
    return snow_error(404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")


# A user without read access to a table. Collection reads answer 403 "Insufficient rights to query records": the
# body the REST APIs give without a table-level read ACL (ServiceNow KB0744425, "No permission to read table
# '<table>'"; the same 403 message and shape in public ServiceNow client fixtures, and ServiceNowDocs
# c_RuntimeAccessToAppTables.md: a web service call a table's access settings forbid "produces a 403 Forbidden
# HTTP error"). ServiceNow's own PySNC raises RoleException on that 403. A single record read answers the usual
# 404 "ACL restricts the record retrieval" (PySNC issue #81: get(sys_id) shows no ACL error where query() does).
# A query or ORDERBY that dot-walks into such a table gets the field-level variant of the same 403.
def read_denied(table: str) -> Response:
    return snow_error(403, "Insufficient rights to query records", f"No permission to read table '{table}'")


def query_fields_denied() -> Response:
    return snow_error(403, "Insufficient rights to query records",
                      "Field(s) present in the query do not have permission to be read")


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


@dataclass(frozen=True)
class _Column:
    key: str  # the requested path, also the response key
    get: Getter
    reference: Table | None  # the referenced table of a reference field
    reference_key: str
    choices: dict[str, str]  # value -> label of a field with a choice list
    denied: bool  # the path passes through a table the user may not read: the value is silenced


class RowFormatter:
    """Renders rows the way the Table API does: strings, reference objects, display values (labels of choices,
    display fields of referenced records), dot-walked paths as response keys (§1.3, reference §8)."""

    def __init__(self, state: SnowState, table: Table, request: Request) -> None:
        self.state = state
        self.base = base_url(request)
        display = request.query_params.get("sysparm_display_value", "false").lower()
        self.display = display if display in ("true", "all") else "false"
        self.exclude_link = _flag(request, "sysparm_exclude_reference_link")
        fields = request.query_params.get("sysparm_fields", "")
        wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else list(table.fields)
        resolve = state.resolver(table)
        self.columns: list[_Column] = []
        for name in wanted:
            resolved = resolve(name)
            hops = state.walk(table, name)
            if resolved is None or hops is None:
                continue  # unknown fields are ignored (§1.2)
            last, element = hops[-1], name.split(".")[-1]
            field = last.field(element)
            ref = state.tables.get(field.reference or "") if field and field.type == "reference" else None
            owner = last.owner_of(element)
            choices = {c["value"]: c["label"] for c in state.tables[CHOICE].find(
                ("name", "element"), (owner.name if owner else last.name, element))}
            self.columns.append(_Column(name, resolved[0], ref, field.reference_key if field else "sys_id", choices,
                                        any(h.name in state.denied_reads for h in hops[1:])))

    def _cell(self, value: str, col: _Column) -> Any:
        if col.denied:
            value = ""
        if col.reference is None:
            shown = col.choices.get(value, value)
            if self.display == "all":
                return {"display_value": shown, "value": value}
            return shown if self.display == "true" else value
        if value == "":
            return {"display_value": "", "value": ""} if self.display == "all" else ""
        ref = col.reference
        link = f"{self.base}/api/now/table/{ref.name}/{value}"
        if self.display == "false":
            return value if self.exclude_link else {"link": link, "value": value}
        target = ref.rows.get(value) if col.reference_key == "sys_id" else ref.lookup((col.reference_key,), (value,))
        shown = ref.display_value(target) if target and ref.name not in self.state.denied_reads else ""
        cell: dict[str, str] = {"display_value": shown}
        if not self.exclude_link:
            cell["link"] = link
        if self.display == "all":
            cell["value"] = value
        elif self.exclude_link:
            return shown
        return cell

    def __call__(self, row: dict[str, str]) -> dict[str, Any]:
        return {col.key: self._cell(col.get(row), col) for col in self.columns}


def _walks_into_denied(state: SnowState, table: Table, query: str) -> bool:
    parsed = parse(query)
    paths = [c.field for group in parsed.groups for clause in group for c in clause] + [f for f, _ in parsed.order_by]
    return any(h.name in state.denied_reads for p in paths if "." in p for h in (state.walk(table, p) or [])[1:])


def _link_header(request: Request, offset: int, limit: int, total: int | None, page_full: bool) -> str | None:
    """``Link`` per reference §1.4: prev/next only when applicable, omitted entirely for a single page; ``last``
    at floor((total-1)/limit)*limit. Without a count (sysparm_no_count) there is no ``last`` and ``next`` appears
    while pages come back full (inference: undocumented)."""
    if limit <= 0:
        return None
    if total is not None and offset == 0 and total <= limit:
        return None
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in ("sysparm_offset", "sysparm_limit")]
    url = f"{base_url(request)}{request.url.path}"

    def link(off: int, rel: str) -> str:
        query = urlencode([*params, ("sysparm_offset", str(off)), ("sysparm_limit", str(limit))])
        return f"<{url}?{query}>;rel=\"{rel}\""

    links = [link(0, "first")]
    if offset > 0:
        links.append(link(max(0, offset - limit), "prev"))
    has_next = (offset + limit < total) if total is not None else page_full
    if has_next:
        links.append(link(offset + limit, "next"))
    if total is not None and total > 0:
        links.append(link((total - 1) // limit * limit, "last"))
    return ",".join(links)


def _int_param(request: Request, name: str, default: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return value if value >= 0 else default


def list_records(request: Request, state: SnowState, table_name: str, version: str) -> Response:
    table = state.table(table_name)
    if table is None:
        return invalid_table(table_name)
    params = request.query_params
    query = params.get("sysparm_query")
    if query is None:
        # name=value pairs are the alternative to sysparm_query (§1.2).
        query = "^".join(f"{k}={v.replace('^', '^^')}" for k, v in params.multi_items()
                         if not k.startswith("sysparm_") and table.has_field(k))
    if table_name in state.denied_reads:
        return read_denied(table_name)
    if _walks_into_denied(state, table, query):
        return query_fields_denied()
    limit = _int_param(request, "sysparm_limit", DEFAULT_LIMIT)
    offset = _int_param(request, "sysparm_offset", 0)
    no_count = _flag(request, "sysparm_no_count")
    broken = state.take_broken_get()
    with state.lock:
        rows = state.select(table_name, query)
        total = len(rows)
        page = rows[offset: offset + limit]
        # ACLs are evaluated after the limit: hidden rows use up the page but are not returned (§1.2).
        visible = [r for r in page if not state.is_acl_hidden(table_name, r["sys_id"])]
        fmt = RowFormatter(state, table, request)
        result = [fmt(r) for r in visible]
    if version == "v1" and not result:
        return not_found()
    headers: dict[str, str] = {}
    if not no_count:
        headers["X-Total-Count"] = str(total)
    if not _flag(request, "sysparm_suppress_pagination_header"):
        link = _link_header(request, offset, limit, None if no_count else total, len(page) == limit)
        if link:
            headers["Link"] = link
    body = orjson.dumps({"result": result})
    if broken:
        body = body[: max(12, len(body) * 2 // 3)]
        if broken == "cancelled":
            # The quota kill arrives mid-stream: the page so far, cut off, then the error object (reference §1.7).
            body += orjson.dumps(TRANSACTION_CANCELLED)
    return Response(body, media_type="application/json", headers=headers)


def get_record(request: Request, state: SnowState, table_name: str, sys_id: str) -> Response:
    table = state.table(table_name)
    if table is None:
        return invalid_table(table_name)
    with state.lock:
        row = table.rows.get(sys_id)
        if row is None or state.is_acl_hidden(table_name, sys_id) or table_name in state.denied_reads:
            return not_found()
        return json_response({"result": RowFormatter(state, table, request)(row)})


async def _body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if not raw:
        return {}
    if not ctype:
        return snow_error(400, "Content-Type header is required", None)  # inference: message text
    if "json" not in ctype.lower():
        return snow_error(415, "Unsupported Media Type", f"Content type {ctype} is not supported")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return snow_error(400, "Exception while reading request", "The payload is not valid JSON.")
    if isinstance(data, list):
        # "If you pass multiple records ... only the first record is processed".
        data = data[0] if data else {}
    if not isinstance(data, dict):
        return snow_error(400, "Exception while reading request", "The payload is not a JSON object.")
    return data


def _written(request: Request, state: SnowState, table: Table, row: dict[str, str], status: int,
             headers: dict[str, str] | None = None) -> Response:
    if request.headers.get("x-no-response-body", "").lower() == "true":
        return Response(status_code=status, headers=headers)
    with state.lock:
        return json_response({"result": RowFormatter(state, table, request)(row)}, status, headers)


async def create_record(request: Request, state: SnowState, table_name: str, user: str) -> Response:
    table = state.table(table_name)
    if table is None:
        return invalid_table(table_name)
    data = await _body(request)
    if isinstance(data, Response):
        return data
    sys_id = str(data.get("sys_id") or "")
    if sys_id and sys_id in table.rows:
        return snow_error(403, "Operation Failed", "Error during insert of " + table_name)  # inference
    row = state.insert(table_name, data, user=user, sys_id=sys_id or None)
    location = f"{base_url(request)}/api/now/table/{table_name}/{row['sys_id']}"
    return _written(request, state, table, row, 201, {"Location": location})


async def update_record(request: Request, state: SnowState, table_name: str, sys_id: str, user: str) -> Response:
    table = state.table(table_name)
    if table is None:
        return invalid_table(table_name)
    data = await _body(request)
    if isinstance(data, Response):
        return data
    row = state.update(table_name, sys_id, data, user=user)
    if row is None:
        return not_found()
    return _written(request, state, table, row, 200)


def delete_record(state: SnowState, table_name: str, sys_id: str) -> Response:
    if state.table(table_name) is None:
        return invalid_table(table_name)
    if not state.delete(table_name, sys_id):
        return not_found()
    return Response(status_code=204)
