"""Scenario controls under ``/admin/snow/...`` (no auth: the sandbox listens on loopback only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .table_api import invalid_table, json_response


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    data = orjson.loads(raw) if raw else {}
    return data if isinstance(data, dict) else {}


def admin_routes(world: Any) -> list[Route]:
    state = world.snow

    async def dump(request: Request) -> Response:
        table = request.path_params["table"]
        if state.table(table) is None:
            return invalid_table(table)
        rows = state.dump(table, request.query_params.get("sysparm_query", ""))
        return json_response({"table": table, "count": len(rows), "rows": rows})

    async def counts(request: Request) -> Response:
        return json_response(state.counts())

    async def approve(request: Request) -> Response:
        count = int((await _json(request)).get("count", 1))
        return json_response({"created": state.approve_invoices(count)})

    async def settings(request: Request) -> Response:
        if request.method == "POST":
            try:
                state.set_switches(**await _json(request))
            except (KeyError, TypeError, ValueError) as exc:
                return json_response({"error": f"unknown or invalid setting: {exc}"}, 400)
        return json_response(state.settings.as_dict())

    async def rate_limit(request: Request) -> Response:
        if request.method == "POST":
            data = await _json(request)
            state.set_rate_limit(data.get("limit"), int(data.get("window_s") or 3600))
        limiter = state.rate_limiter
        return json_response({"limit": limiter.limit, "window_s": limiter.window_s, "denied": limiter.denied})

    async def cancelled(request: Request) -> Response:
        state.cancel_next_gets(int((await _json(request)).get("count", 1)))
        return json_response({"remaining": len(state.broken_gets)})

    async def cut_off(request: Request) -> Response:
        state.cut_off_next_gets(int((await _json(request)).get("count", 1)))
        return json_response({"remaining": len(state.broken_gets)})

    async def reset(request: Request) -> Response:
        state.reset()
        return json_response(state.counts())

    async def invalid(request: Request) -> Response:
        return json_response(state.invalid_invoices)

    async def drain(request: Request) -> Response:
        return json_response({"processed": state.drain_imports()})

    async def expire_tokens(request: Request) -> Response:
        return json_response({"expired": world.tokens.expire_all("snow")})

    async def invoices(request: Request) -> Response:
        return json_response({"waiting": state.invoices_waiting(), "scheduled": state.invoices_scheduled(),
                              "invalid": state.invalid_invoices})

    def schema(action: Callable[[dict[str, Any]], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                result = action(await _json(request))
            except (KeyError, TypeError, ValueError) as exc:
                return json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)
            return json_response({"ok": True, "result": result})
        return endpoint

    schema_routes = {
        "add_column": lambda p: state.add_column(p["table"], p["element"], p["label"], type=p.get("type", "string"),
                                                 mandatory=bool(p.get("mandatory", False)),
                                                 reference=p.get("reference")),
        "remove_column": lambda p: state.remove_column(p["table"], p["element"]),
        "mandatory": lambda p: state.set_mandatory(p["table"], p["element"], bool(p.get("mandatory", True))),
        "coalesce": lambda p: state.set_coalesce(p["staging"], list(p["fields"])),
        "insert_multiple": lambda p: state.set_insert_multiple(p["staging"], p.get("column_mapping", "label"),
                                                               p.get("transformation")),
        "deny_reads": lambda p: sorted(state.deny_reads(list(p.get("tables", [])))),
    }

    return [
        Route("/admin/snow/state/{table}", dump, methods=["GET"]),
        Route("/admin/snow/counts", counts, methods=["GET"]),
        Route("/admin/snow/approve", approve, methods=["POST"]),
        Route("/admin/snow/settings", settings, methods=["GET", "POST"]),
        Route("/admin/snow/rate_limit", rate_limit, methods=["GET", "POST"]),
        Route("/admin/snow/transaction_cancelled", cancelled, methods=["POST"]),
        Route("/admin/snow/cut_off", cut_off, methods=["POST"]),
        Route("/admin/snow/reset", reset, methods=["POST"]),
        Route("/admin/snow/invalid_invoices", invalid, methods=["GET"]),
        Route("/admin/snow/drain_imports", drain, methods=["POST"]),
        Route("/admin/snow/expire_tokens", expire_tokens, methods=["POST"]),
        Route("/admin/snow/invoices", invoices, methods=["GET"]),
        *(Route(f"/admin/snow/schema/{name}", schema(action), methods=["POST"])
          for name, action in schema_routes.items()),
    ]
