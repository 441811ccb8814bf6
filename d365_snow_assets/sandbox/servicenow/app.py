"""The ASGI app of the fake ServiceNow instance."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import apo, import_api, table_api
from .admin import admin_routes
from .apo import catch_up
from .auth import OAuthEndpoint, authenticate, unauthenticated
from .schema import IMPORT_SET
from .state import SnowState
from .store import Table
from .table_api import base_url, json_response, snow_error
from .transform import compile_map

Handler = Callable[[Request, str], Awaitable[Response]]
TRANSFORM_CHUNK = 500


class ImportWorker:
    """Transforms asynchronous import sets in the background, one at a time and in order (like the scheduled
    import job), yielding to the event loop between chunks so reads stay responsive."""

    def __init__(self, state: SnowState, user: str) -> None:
        self.state = state
        self.user = user
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        state = self.state
        await asyncio.sleep(state.settings.async_delay_s)
        while True:
            with state.lock:
                if not state.pending_imports:
                    return
                set_id = state.pending_imports[0]
                rows = list(state.import_set_rows.get(set_id, []))
                import_set = state.tables[IMPORT_SET].rows.get(set_id)
            if import_set is None:
                with state.lock:
                    if set_id in state.pending_imports:
                        state.pending_imports.remove(set_id)
                continue
            staging = import_set["table_name"]
            cmap = None
            for i in range(0, len(rows), TRANSFORM_CHUNK):
                with state.lock:
                    cmap = compile_map(state, staging)
                    import_api.transform_rows(state, staging, rows[i: i + TRANSFORM_CHUNK], self.user, cmap)
                await asyncio.sleep(0)
            with state.lock:
                if set_id in state.pending_imports:  # drain_imports() may have finished it meanwhile
                    import_api.finish_import_set(state, cmap or compile_map(state, staging), import_set, rows)
                    state.pending_imports.remove(set_id)


def build_snow_app(world: Any) -> Starlette:
    """The fake instance for ``world`` (a :class:`SandboxWorld` or anything with ``config``, ``tokens``, ``snow``
    and ``token_lifetime``)."""
    state: SnowState = world.snow
    worker = ImportWorker(state, world.config.credentials.snow_username)

    def api(name: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            user = authenticate(request, world)
            if user is None:
                return unauthenticated()
            decision = state.rate_limiter.check(user, name)
            if decision is not None and not decision.allowed:
                return Response(decision.body, status_code=429, media_type="application/json",
                                headers=decision.headers)
            with state.lock:
                catch_up(state)  # approved invoices due by now appear before anything is read or written
            response = await handler(request, user)
            if decision is not None:
                response.headers.update(decision.headers)
            return response
        return endpoint

    def version(request: Request) -> str:
        return request.path_params.get("version", "")

    async def table_collection(request: Request, user: str) -> Response:
        table = request.path_params["table"]
        if request.method in ("GET", "HEAD"):
            return table_api.list_records(request, state, table, version(request))
        return await table_api.create_record(request, state, table, user)

    async def table_record(request: Request, user: str) -> Response:
        table, sys_id = request.path_params["table"], request.path_params["sys_id"]
        if request.method in ("GET", "HEAD"):
            return table_api.get_record(request, state, table, sys_id)
        if request.method == "DELETE":
            return table_api.delete_record(state, table, sys_id)
        return await table_api.update_record(request, state, table, sys_id, user)

    async def _records(request: Request) -> Any:
        raw = await request.body()
        if "json" not in request.headers.get("content-type", "").lower():
            return snow_error(415, "Unsupported Media Type", "Only application/json is supported")
        try:
            return orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            return snow_error(400, "Exception while reading request", "The payload is not valid JSON.")

    async def _import_request(request: Request) -> tuple[Table, Any] | Response:
        """The staging table and the parsed JSON body, or the error ServiceNow answers."""
        staging = import_api.staging_table(state, request.path_params["staging"])
        if staging is None:
            return snow_error(400, f"Invalid table {request.path_params['staging']}", None)
        data = await _records(request)
        return data if isinstance(data, Response) else (staging, data)

    async def import_single(request: Request, user: str) -> Response:
        parsed = await _import_request(request)
        if isinstance(parsed, Response):
            return parsed
        staging, data = parsed
        with state.lock:
            import_set = import_api.open_sync_import_set(state, staging.name)
            rows = import_api.load_rows(state, staging, import_set, [data], user, by="column_name")
            cmap = compile_map(state, staging.name)
            import_api.transform_rows(state, staging.name, rows, user, cmap)
            apo.check_planned(state)
            body = import_api.import_response(state, staging.name, rows, base_url(request))
        return json_response(body, 201)

    async def import_multiple(request: Request, user: str) -> Response:
        parsed = await _import_request(request)
        if isinstance(parsed, Response):
            return parsed
        staging, data = parsed
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, list):
            return snow_error(400, "Invalid request body", "Expected {\"records\":[...]}")  # inference: wording
        with state.lock:
            mapping, synchronous = import_api.insert_multiple_settings(state, staging.name)
            import_set = import_api.new_import_set(state, staging.name, "asynchronous",
                                                   request.query_params.get("multi_import_set_id", ""))
            rows = import_api.load_rows(state, staging, import_set, records, user, by=mapping)
            body: dict[str, Any] = {"import_set_id": import_set["sys_id"],
                                    "multi_import_set_id": import_set["multi_import_set"]}
            if synchronous:
                cmap = compile_map(state, staging.name)
                import_api.transform_rows(state, staging.name, rows, user, cmap)
                import_api.finish_import_set(state, cmap, import_set, rows)
                # The synchronous insertMultiple body is undocumented (reference §2.2); the sandbox adds the
                # single-import shape per row (inference).
                body.update(import_api.import_response(state, staging.name, rows, base_url(request)))
            else:
                state.pending_imports.append(import_set["sys_id"])
        if not synchronous:
            worker.kick()
        return json_response(body, 201)

    async def import_row(request: Request, user: str) -> Response:
        staging, sys_id = request.path_params["staging"], request.path_params["sys_id"]
        if import_api.staging_table(state, staging) is None:
            return snow_error(400, f"Invalid table {staging}", None)
        with state.lock:
            row = state.tables[staging].rows.get(sys_id)
            if row is None:
                return table_api.not_found()
            return json_response(import_api.import_response(state, staging, [row], base_url(request)))

    oauth = OAuthEndpoint(world)

    async def oauth_token(request: Request) -> Response:
        return await oauth(request)

    routes: list[Route] = [Route("/oauth_token.do", oauth_token, methods=["POST"])]
    for prefix in ("/api/now", "/api/now/{version:str}"):
        routes += [
            Route(prefix + "/table/{table}", api("Table API", table_collection), methods=["GET", "POST"]),
            Route(prefix + "/table/{table}/{sys_id}", api("Table API", table_record),
                  methods=["GET", "PUT", "PATCH", "DELETE"]),
            Route(prefix + "/import/{staging}/insertMultiple", api("Import Set API", import_multiple),
                  methods=["POST"]),
            Route(prefix + "/import/{staging}", api("Import Set API", import_single), methods=["POST"]),
            Route(prefix + "/import/{staging}/{sys_id}", api("Import Set API", import_row), methods=["GET"]),
        ]
    routes += admin_routes(world)
    return Starlette(routes=routes)
