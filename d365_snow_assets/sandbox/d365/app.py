"""The F&O OData routes (``/data``) and the sandbox admin routes (``/admin/d365``)."""

from __future__ import annotations

import asyncio
import re
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .batch import (
    MAX_CHANGESET_OPS,
    TOO_MANY_OPS,
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    Changeset,
    parse_batch,
    render_batch,
)
from .filters import ODataError, parse_key
from .metadata import edmx, service_document
from .query import not_found, plan
from .schema import ENTITY_SETS, EntitySet
from .state import D365State

JSON_TYPE = "application/json; odata.metadata=minimal"
ODATA_HEADERS = {"OData-Version": "4.0"}
_KEY_SEGMENT = re.compile(r"^([A-Za-z]\w*)\((.*)\)$", re.DOTALL)


class Answer(NamedTuple):
    """One OData response, and the entity rows it served or wrote (what the server-cost model charges)."""

    status: int
    headers: dict[str, str]
    body: bytes
    rows: int = 0


class Handled(Exception):
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(status)
        self.status, self.headers, self.body = status, headers, body


def error_body(err: ODataError) -> bytes:
    body: dict[str, Any] = {"code": "", "message": err.message}
    if err.inner:
        body["innererror"] = err.inner
    return orjson.dumps({"error": body})


class D365Service:
    """Request handling independent of Starlette, so ``$batch`` parts run through the same code."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.state: D365State = world.d365

    # -- one OData request ----------------------------------------------------------------------------------
    def handle(self, method: str, path: str, raw_query: str, headers: dict[str, str], body: bytes, base: str,
               conn: Any = None) -> Answer:
        """``path`` is below ``/data/``. ``conn`` is the open changeset transaction, if any."""
        try:
            return self._handle(method, path, raw_query, headers, body, base, conn)
        except ODataError as err:
            return Answer(err.status, {"Content-Type": JSON_TYPE, **ODATA_HEADERS}, error_body(err))

    def _handle(self, method: str, path: str, raw_query: str, headers: dict[str, str], body: bytes, base: str,
                conn: Any) -> Answer:
        query = parse_qsl(raw_query, keep_blank_values=True)
        options = dict(query)
        cross = options.get("cross-company", "").lower() == "true"
        segments = path.strip("/").split("/")
        head = segments[0]
        m = _KEY_SEGMENT.match(head)
        set_name = m.group(1) if m else head
        es = ENTITY_SETS.get(set_name)
        if es is None:
            raise not_found(set_name)
        if m is None:
            if len(segments) == 2 and segments[1] == "$count" and method == "GET":
                qp = self.state.visible(es, plan(es, {k: v for k, v in options.items()
                                                      if k not in ("$top", "$skip", "$orderby")},
                                                 self.state.config.d365_default_company))
                return Answer(200, {"Content-Type": "text/plain", **ODATA_HEADERS},
                              str(self.state.count(es, qp)).encode())
            if len(segments) > 1:
                raise not_found(segments[1])
            if method == "GET":
                return self._collection(es, query, base)
            if method == "POST":
                return self._post(es, body, base, headers, conn)
            raise ODataError(405, f"The HTTP method '{method}' is not allowed on the collection '{es.name}'.")
        key = parse_key(es, m.group(2))
        if len(segments) > 1:
            raise not_found(segments[1])
        if method == "GET":
            props = None
            if options.get("$select"):
                props = plan(es, {"$select": options["$select"]}, "").props
            text = self.state.get_json(es, key, cross, props, head)
            return Answer(200, {"Content-Type": JSON_TYPE, **ODATA_HEADERS}, self._entity_body(es, text, base), 1)
        if method in ("PATCH", "PUT", "MERGE"):
            changes = _json_body(body)
            with _tx(self.state, conn) as c:
                self.state.update(c, es, key, changes, cross_company=cross, if_match=headers.get("if-match"),
                                  segment=head, in_batch=conn is not None)
            return Answer(204, dict(ODATA_HEADERS), b"", 1)
        if method == "DELETE":
            with _tx(self.state, conn) as c:
                self.state.delete(c, es, key, cross_company=cross, if_match=headers.get("if-match"), segment=head)
            return Answer(204, dict(ODATA_HEADERS), b"", 1)
        raise ODataError(405, f"The HTTP method '{method}' is not allowed on an entity.")

    def _entity_body(self, es: EntitySet, text: str, base: str) -> bytes:
        ctx = orjson.dumps(f"{base}/data/$metadata#{es.name}/$entity").decode()
        return ('{"@odata.context":' + ctx + "," + text[1:]).encode()

    def _post(self, es: EntitySet, body: bytes, base: str, headers: dict[str, str],
              conn: Any) -> Answer:
        row = _json_body(body)
        with _tx(self.state, conn) as c:
            key = self.state.insert(c, es, row, in_batch=conn is not None)
            where, params = self.state._key_where(es, key, True)
            from .query import row_json_sql

            text = c.execute(f'SELECT {row_json_sql(es, list(es.props))} FROM "{es.name}" WHERE {where}',
                             params).fetchone()[0]
        location = f"{base}/data/{es.name}({key_text(es, key)})"
        out_headers = {"Content-Type": JSON_TYPE, "Location": location, "OData-EntityId": location, **ODATA_HEADERS}
        if "return=minimal" in headers.get("prefer", ""):
            return Answer(204, out_headers, b"", 1)
        return Answer(201, out_headers, self._entity_body(es, text, base), 1)

    def _collection(self, es: EntitySet, query: list[tuple[str, str]], base: str) -> Answer:
        options = dict(query)
        qp = self.state.visible(es, plan(es, options, self.state.config.d365_default_company))
        page_size = self.state.page_size
        limit = page_size if qp.top is None else min(page_size, qp.top)
        rows = self.state.page_json(es, qp, qp.skip, limit + 1) if limit > 0 else []
        more = len(rows) > limit
        rows = rows[:limit]
        ctx_set = es.name + (f"({','.join(p.name for p in qp.props)})" if qp.selected else "")
        parts = [b'{"@odata.context":', orjson.dumps(f"{base}/data/$metadata#{ctx_set}")]
        if qp.count:
            parts += [b',"@odata.count":', str(self.state.count(es, qp)).encode()]
        parts += [b',"value":[', ",".join(rows).encode(), b"]"]
        if more and (qp.top is None or qp.top > len(rows)):
            parts += [b',"@odata.nextLink":', orjson.dumps(self._next_link(es, query, base, qp.skip + len(rows),
                                                                           None if qp.top is None else
                                                                           qp.top - len(rows)))]
        parts.append(b"}")
        return Answer(200, {"Content-Type": JSON_TYPE, **ODATA_HEADERS}, b"".join(parts), len(rows))

    def _next_link(self, es: EntitySet, query: list[tuple[str, str]], base: str, skip: int,
                   top: int | None) -> str:
        # Skip-based, carrying the original options (reference §2, OBS R2 PR #610); clients must treat it as opaque.
        kept = [(k, v) for k, v in query if k not in ("$skip", "$top")]
        if top is not None:
            kept.append(("$top", str(top)))
        kept.append(("$skip", str(skip)))
        qs = "&".join(f"{quote(k, safe='$-')}={quote(v, safe='')}" for k, v in kept)
        return f"{base}/data/{es.name}?{qs}"

    # -- $batch -------------------------------------------------------------------------------------------------
    def batch(self, body: bytes, content_type: str, base: str) -> Answer:
        try:
            items = parse_batch(body, content_type)
        except (BatchFormatError, UnicodeDecodeError) as exc:
            err = ODataError(400, str(exc))
            return Answer(400, {"Content-Type": JSON_TYPE, **ODATA_HEADERS}, error_body(err))
        for item in items:
            if isinstance(item, Changeset) and len(item.requests) > MAX_CHANGESET_OPS:
                # [INF] the whole batch fails while being read, as ODataLib throws in its reader.
                return Answer(400, {"Content-Type": JSON_TYPE, **ODATA_HEADERS},
                              error_body(ODataError(400, TOO_MANY_OPS)))
        results: list[BatchResponse | list[BatchResponse]] = []
        for item in items:
            if isinstance(item, Changeset):
                results.append(self._changeset(item, base))
            else:
                results.append(self._one(item, base, None, {}))
        out, ctype = render_batch(results)
        # Each operation is charged as one row [INF]: batching saves requests, not execution time (reference §5).
        operations = sum(len(item.requests) if isinstance(item, Changeset) else 1 for item in items)
        return Answer(200, {"Content-Type": ctype, **ODATA_HEADERS}, out, operations)

    def _one(self, req: BatchRequest, base: str, conn: Any, ids: dict[str, str]) -> BatchResponse:
        url = req.url
        if url.startswith("$"):  # $<Content-ID> refers to an entity created earlier in the changeset
            ref, _, rest = url[1:].partition("/")
            if ref in ids:
                url = ids[ref] + ("/" + rest if rest else "")
        parts = urlsplit(url)
        path = parts.path
        for prefix in (urlsplit(base).path + "/data/", "/data/"):
            if path.startswith(prefix):
                path = path[len(prefix):]
                break
        status, headers, body, _ = self.handle(req.method, path, parts.query, req.headers, req.body, base, conn)
        if "Content-Type" in headers and "json" in headers["Content-Type"]:
            headers = {**headers, "Content-Type": JSON_TYPE + "; charset=utf-8"}
        if req.content_id and "Location" in headers:
            ids[req.content_id] = headers["Location"]
        return BatchResponse(status, headers, body, req.content_id)

    def _changeset(self, cs: Changeset, base: str) -> list[BatchResponse] | BatchResponse:
        ids: dict[str, str] = {}
        responses: list[BatchResponse] = []
        failed: BatchResponse | None = None
        try:
            with self.state.transaction() as conn:
                for req in cs.requests:
                    resp = self._one(req, base, conn, ids)
                    if resp.status >= 400:
                        failed = resp
                        raise _Rollback
                    responses.append(resp)
        except _Rollback:
            # Atomic: nothing of the changeset stays; the response is the failing operation's alone.
            assert failed is not None
            return failed
        return responses

    # -- auth and throttling ------------------------------------------------------------------------------------
    def authorised(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return False
        origin = str(request.base_url).rstrip("/")
        return self.world.tokens.validate(auth[7:].strip(), issuer="entra", audience=origin) is not None



class _Rollback(Exception):
    pass


class _Served(NamedTuple):
    response: Response
    rows: int = 0


class _tx:
    """The caller's changeset transaction, or a fresh one for a standalone write."""

    def __init__(self, state: D365State, conn: Any) -> None:
        self.state, self.conn, self._cm = state, conn, None

    def __enter__(self) -> Any:
        if self.conn is not None:
            return self.conn
        self._cm = self.state.transaction()
        return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return None


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ODataError(400, "The request body is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise ODataError(400, "The request body must be a JSON object.")
    return value


def key_text(es: EntitySet, key: dict[str, Any]) -> str:
    out = []
    for k in es.keys:
        v = key[k]
        if es.by_name[k].kind in ("s", "e"):
            out.append(f"{k}='{str(v).replace(chr(39), chr(39) * 2)}'")
        else:
            out.append(f"{k}={v}")
    return ",".join(out)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _unauthorised() -> Response:
    # reference §1.1: F&O's 401 body is unknown; this is the documented guess.
    return Response(orjson.dumps({"error": {"code": "", "message": "Unauthorized"}}), status_code=401,
                    media_type="application/json", headers={"WWW-Authenticate": "Bearer"})


def build_d365_app(world: Any) -> Starlette:
    service = D365Service(world)
    state: D365State = world.d365

    async def odata(request: Request) -> Response:
        if not service.authorised(request):
            return _unauthorised()
        envelope = state.envelope
        if not envelope.enabled:
            return (await _answer(request)).response
        rejection = envelope.admit()
        if rejection is not None:
            # reference §5: 429 with the limit's message and Retry-After; the body shape is an inference (§5).
            return Response(orjson.dumps({"error": {"code": "", "message": rejection.message}}), status_code=429,
                            media_type="application/json",
                            headers={"Retry-After": str(rejection.retry_after_s), **ODATA_HEADERS})
        started = envelope.clock()
        rows = 0
        try:
            served = await _answer(request)
            rows = served.rows
            # The server's work takes the model's time at least; waiting out the rest holds no thread.
            remaining = started + envelope.server_time_s(rows) - envelope.clock()
            if remaining > 0:
                await asyncio.sleep(remaining)
            return served.response
        finally:
            envelope.finish(started, rows)

    async def _answer(request: Request) -> _Served:
        path = request.url.path
        rest = path[len("/data"):].lstrip("/")
        body = await request.body()
        base = _base(request)
        if rest == "":
            return _Served(Response(orjson.dumps(service_document(base)), media_type=JSON_TYPE,
                                    headers=ODATA_HEADERS))
        if rest == "$metadata":
            return _Served(Response(edmx(), media_type="application/xml", headers=ODATA_HEADERS))
        if rest == "$batch":
            if request.method != "POST":
                return _Served(Response(status_code=405))
            answer = await run_in_threadpool(service.batch, body, request.headers.get("content-type", ""), base)
        else:
            headers_in = {k.lower(): v for k, v in request.headers.items()}
            answer = await run_in_threadpool(service.handle, request.method, rest, request.url.query, headers_in,
                                             body, base)
            if request.method == "GET" and answer.status == 200 and "(" not in rest and state.take_cut_off():
                answer = answer._replace(body=answer.body[: len(answer.body) // 2])
        return _Served(Response(answer.body, status_code=answer.status, headers=answer.headers), answer.rows)

    from .admin import admin_routes

    routes = [Route("/data", odata, methods=["GET"]),
              Route("/data/{rest:path}", odata, methods=["GET", "POST", "PATCH", "PUT", "DELETE", "MERGE"]),
              *admin_routes(state)]
    return Starlette(routes=routes)
