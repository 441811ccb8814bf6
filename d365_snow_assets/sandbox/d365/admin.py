"""Admin routes under ``/admin/d365``: scenario drivers for tests and demos (not part of F&O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .envelope import EnvelopeProfile
from .filters import ODataError
from .schema import ENTITY_SETS
from .state import D365State


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value, default=str), status_code=status, media_type="application/json")


def admin_routes(state: D365State) -> list[Route]:
    def route(path: str, fn: Callable[[dict[str, Any], Request], Any], methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                payload = orjson.loads(raw) if raw.strip() else {}
                result = await run_in_threadpool(fn, payload, request)
            except ODataError as err:
                return _json({"error": err.message, "innererror": err.inner}, err.status)
            except (KeyError, ValueError, TypeError) as exc:
                return _json({"error": f"{type(exc).__name__}: {exc}"}, 400)
            return result if isinstance(result, Response) else _json(result)

        endpoint.__name__ = path.replace("/", "_")
        return Route(f"/admin/d365/{path}", endpoint, methods=methods)

    def register(p: dict[str, Any], _: Request) -> Any:
        url = p["url"]
        if not url.startswith(("http://", "https://")):
            raise ValueError("endpoint url must be http or https")
        state.events.register(url, p.get("verify", True))
        return {"endpoints": [e.url for e in state.events.endpoints]}

    def events(_: dict[str, Any], __: Request) -> Any:
        return {"endpoints": [e.url for e in state.events.endpoints], "sent": state.events.sent,
                "errors": state.events.errors}

    def rows(p: dict[str, Any], request: Request) -> Any:
        entity = request.path_params["entity"]
        if entity not in ENTITY_SETS:
            raise KeyError(entity)
        if request.method == "GET":
            return state.dump(entity)
        if request.method == "POST":
            return {"key": state.admin_insert(entity, p)}
        if request.method == "PATCH":
            state.admin_update(entity, p["key"], p["set"])
            return {"ok": True}
        state.admin_delete(entity, p["key"])
        return {"ok": True}

    def envelope(p: dict[str, Any], request: Request) -> Any:
        """The server-cost model and user-based limits (envelope.py): POST sets a profile and zeroes the counters."""
        if request.method == "POST":
            state.envelope.set(EnvelopeProfile.model_validate(p))
        return state.envelope.snapshot()

    def reset(_: dict[str, Any], __: Request) -> Any:
        state.reset()
        return {"ok": True}

    handlers: list[tuple[str, Callable[[dict[str, Any], Request], Any], list[str]]] = [
        ("events/endpoints", register, ["POST"]),
        ("events", events, ["GET"]),
        ("invoices/post", lambda p, _: state.post_invoices(p.get("header_references")), ["POST"]),
        ("invoices/pay", lambda p, _: state.pay_invoices(p["invoices"]), ["POST"]),
        ("purchase-orders/confirm", lambda p, _: state.confirm_po(p["dataAreaId"], p["PurchaseOrderNumber"]),
         ["POST"]),
        ("vendors/hold", lambda p, _: state.put_vendor_on_hold(p["dataAreaId"], p["VendorAccountNumber"],
                                                               p.get("status", "All")), ["POST"]),
        ("purchase-order-lines/price", lambda p, _: state.set_po_line_price(
            p["dataAreaId"], p["PurchaseOrderNumber"], int(p["LineNumber"]), p["PurchasePrice"]), ["POST"]),
        ("cost-centers/update", lambda p, _: {"rows": state.update_cost_center(
            p["DimensionValue"], p["set"], p.get("LegalEntityId"))}, ["POST"]),
        ("main-accounts/suspend", lambda p, _: state.suspend_main_account(p["MainAccountId"],
                                                                          p.get("suspended", True)), ["POST"]),
        ("parameters/duplicate-check", lambda p, _: state.set_duplicate_check(p["mode"], p.get("dataAreaId")),
         ["POST"]),
        ("reads/cut-off", lambda p, _: state.cut_off_next_reads(int(p.get("count", 1))) or
         {"remaining": state.cut_off_reads_remaining}, ["POST"]),
        ("page-size", lambda p, _: state.set_page_size(int(p["size"])) or {"page_size": state.page_size},
         ["POST"]),
        ("reads/withhold", lambda p, _: state.withhold_reads(p["entity"], int(p.get("visible_percent", 0)),
                                                             p.get("dataAreaId")) or {"ok": True}, ["POST"]),
        ("envelope", envelope, ["GET", "POST"]),
        ("state/{entity}", rows, ["GET"]),
        ("rows/{entity}", rows, ["POST", "PATCH", "DELETE"]),
        ("reset", reset, ["POST"]),
    ]
    return [route(path, fn, methods) for path, fn, methods in handlers]


__all__ = ["admin_routes"]
