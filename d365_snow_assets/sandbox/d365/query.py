"""Query options → SQL, and rows → F&O JSON, done inside DuckDB so pages are encoded without per-row Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .data import RECID_BASE
from .filters import ODataError, filter_to_sql, query_error
from .schema import EntitySet, Prop


def json_expr(p: Prop) -> str:
    """The SQL producing the F&O JSON value of a property (reference §2: Date → T12:00:00Z, decimals numbers)."""
    col = f'"{p.name}"'
    if p.kind == "D":
        return f"strftime({col}, '%Y-%m-%dT12:00:00Z')"
    if p.kind == "T":
        return f"strftime({col}, '%Y-%m-%dT%H:%M:%SZ')"
    if p.kind == "d":
        return f"{col}::DOUBLE"
    return col


def etag_expr(es: EntitySet) -> str:
    """``W/"base64('<RecVersion>,<RecId>')"``: RecVersion from a hash of the row, so it changes on every update;
    RecId is SourceKey on BI entities, else derived from the key [INF on the derivation]."""
    all_cols = ", ".join(f'"{p.name}"' for p in es.props)
    recid = '"SourceKey"' if "SourceKey" in es.keys else (
        f"({RECID_BASE} + hash({', '.join(chr(34) + k + chr(34) for k in es.keys)}) % 10000000000)")
    return (f"'W/\"' || to_base64(encode('''' || (hash({all_cols}) % 2147483647)::VARCHAR || ',' || "
            f"{recid}::VARCHAR || '''')) || '\"'")


def row_json_sql(es: EntitySet, props: list[Prop]) -> str:
    fields = [f'"@odata.etag" := {etag_expr(es)}'] + [f'"{p.name}" := {json_expr(p)}' for p in props]
    return f"to_json(struct_pack({', '.join(fields)}))"


@dataclass
class QueryPlan:
    where: str
    params: list[Any]
    order: str
    props: list[Prop]
    selected: bool
    top: int | None
    skip: int
    count: bool
    extra: dict[str, str] = field(default_factory=dict)


def _int_option(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise query_error(f"Invalid value '{value}' for {name} query option found. The {name} query option "
                          "requires a non-negative integer value.")
    return int(value)


def company_clause(es: EntitySet, cross_company: bool, default_company: str) -> tuple[str, list[Any]]:
    if not es.company_scoped or cross_company:
        return "TRUE", []
    return 'lower("dataAreaId") = ?', [default_company.lower()]


def plan(es: EntitySet, options: dict[str, str], default_company: str) -> QueryPlan:
    known = {"$filter", "$select", "$top", "$skip", "$orderby", "$count", "cross-company", "$format", "$expand"}
    for name in options:
        if name.startswith("$") and name not in known:
            raise query_error(f"The query parameter '{name}' is not supported.")
    if options.get("$expand"):
        raise query_error("The sandbox serves no navigation properties, so $expand is not available.")
    cross = options.get("cross-company", "").lower() == "true"
    where, params = company_clause(es, cross, default_company)
    if options.get("$filter"):
        fsql, fparams = filter_to_sql(es, options["$filter"])
        where = f"({where}) AND ({fsql})"
        params = params + fparams
    props = list(es.props)
    selected = False
    if options.get("$select") and options["$select"].strip() != "*":
        names = [n.strip() for n in options["$select"].split(",") if n.strip()]
        props = []
        for n in names:
            p = es.prop(n)
            if p is None:
                raise query_error(f"Could not find a property named '{n}' on type "
                                  f"'Microsoft.Dynamics.DataEntities.{es.entity_type}'.")
            if p not in props:
                props.append(p)
        selected = True
    order_parts: list[str] = []
    if options.get("$orderby"):
        for part in options["$orderby"].split(","):
            bits = part.split()
            if not bits or len(bits) > 2 or (len(bits) == 2 and bits[1] not in ("asc", "desc")):
                raise query_error(f"Syntax error in $orderby: '{part.strip()}'.")
            p = es.prop(bits[0])
            if p is None:
                raise query_error(f"Could not find a property named '{bits[0]}' on type "
                                  f"'Microsoft.Dynamics.DataEntities.{es.entity_type}'.")
            collate = " COLLATE NOCASE" if p.kind in ("s", "e") else ""
            order_parts.append(f'"{p.name}"{collate} {"DESC" if len(bits) == 2 and bits[1] == "desc" else "ASC"}')
    # The key as the final tiebreaker keeps skip-based pages stable (F&O orders by the clustered key) [INF].
    order_parts += [f'"{k}"' for k in es.keys]
    count = options.get("$count", "false").lower()
    if count not in ("true", "false"):
        raise query_error(f"'{options['$count']}' is not a valid count option.")
    return QueryPlan(where, params, ", ".join(order_parts), props, selected,
                     _int_option("$top", options.get("$top")), _int_option("$skip", options.get("$skip")) or 0,
                     count == "true")


def not_found(path: str) -> ODataError:
    # Inference: Web API OData's text for a missing entity; F&O's exact 404 body is not captured.
    return ODataError(404, f"Resource not found for the segment '{path}'.")


__all__ = ["ODataError", "QueryPlan", "company_clause", "etag_expr", "json_expr", "not_found", "plan",
           "row_json_sql"]
