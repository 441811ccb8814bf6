"""ServiceNow encoded queries (``sysparm_query``): parser, compiler to predicates, and ordering.

Syntax per reference/servicenow.md §1.5: ``^`` is AND, ``^OR`` ORs with the adjacent condition only
(``A^ORB^C`` = ``(A OR B) AND C``), ``^NQ`` starts a new OR'ed group (``A^B^NQC^D`` = ``(A AND B) OR (C AND D)``),
``^^`` is a literal caret inside a value, ``ORDERBY``/``ORDERBYDESC`` terms order the result. An invalid part
(unknown field, unknown operator, unsupported script) is ignored and the rest still filters (§1.2).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .store import NUMERIC_TYPES, Table, utc_stamp

OPERATORS = ("NOT LIKE", "NOT IN", "ISNOTEMPTY", "ISEMPTY", "EMPTYSTRING", "ANYTHING", "STARTSWITH", "ENDSWITH",
             "LIKE", "IN", "BETWEEN", "NSAMEAS", "SAMEAS", "!=", "<=", ">=", "=", "<", ">")
_CONDITION = re.compile(r"([a-z0-9_]+(?:\.[a-z0-9_]+)*)(" + "|".join(re.escape(o) for o in OPERATORS) + r")(.*)",
                        re.DOTALL)
_DATE_GENERATE_2 = re.compile(r"""javascript:gs\.dateGenerate\(\s*['"]([^'"]*)['"]\s*,\s*['"]([^'"]*)['"]\s*\)""")
_DATE_GENERATE_1 = re.compile(r"""javascript:gs\.dateGenerate\(\s*['"]([^'"]*)['"]\s*\)""")
_RELATIVE = re.compile(r"javascript:gs\.(daysAgoStart|daysAgoEnd|daysAgo|hoursAgo|minutesAgo|beginningOfToday"
                       r"|endOfToday|nowDateTime|beginningOfYesterday)\(\s*(-?\d*)\s*\)")
_VALUELESS = frozenset({"ISEMPTY", "ISNOTEMPTY", "EMPTYSTRING", "ANYTHING"})


class QueryValueError(ValueError):
    """A value the fake cannot evaluate (e.g. an unsupported ``javascript:`` call): the condition is ignored."""


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str = ""


@dataclass
class EncodedQuery:
    """``groups`` are OR'ed (``^NQ``); a group is AND'ed clauses; a clause is OR'ed conditions (``^OR``)."""

    groups: list[list[list[Condition]]] = field(default_factory=list)
    order_by: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    ignored: list[str] = field(default_factory=list)


def split_terms(query: str) -> list[str]:
    """Split on ``^`` while reading ``^^`` as a literal caret (GlideStringUtil.escapeQueryTermSeparator)."""
    terms: list[str] = []
    buf: list[str] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch == "^":
            if i + 1 < n and query[i + 1] == "^":
                buf.append("^")
                i += 2
                continue
            terms.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    terms.append("".join(buf))
    return terms


def escape_value(value: str) -> str:
    """The client-side escape, for tests and callers: a literal ``^`` becomes ``^^``."""
    return value.replace("^", "^^")


def parse(query: str) -> EncodedQuery:
    """Parse ``query`` syntactically; field validity is checked later by :func:`compile_query`."""
    result = EncodedQuery()
    group: list[list[Condition]] = []
    for raw in split_terms(query or ""):
        term = raw
        if term in ("", "EQ"):
            continue
        if term.startswith("ORDERBYDESC"):
            result.order_by.append((term[len("ORDERBYDESC"):], True))
            continue
        if term.startswith("ORDERBY"):
            result.order_by.append((term[len("ORDERBY"):], False))
            continue
        joiner = "AND"
        if term.startswith("NQ"):
            if group:
                result.groups.append(group)
            group = []
            term = term[2:]
        elif term.startswith("OR"):
            joiner = "OR"
            term = term[2:]
        m = _CONDITION.fullmatch(term)
        if m is None:
            result.ignored.append(raw)
            continue
        cond = Condition(m.group(1), m.group(2), m.group(3))
        if joiner == "OR" and group:
            group[-1].append(cond)
        else:
            group.append([cond])
    if group:
        result.groups.append(group)
    return result


def resolve_value(value: str, clock: Callable[[], float] = time.time) -> str:
    """Evaluate the ``javascript:`` date helpers a connector might send.

    The calling user's time zone is taken to be UTC (the recommended setting for integration users, reference §1.6),
    so ``gs.dateGenerate`` returns its argument unchanged; both pysnow's one-argument form and the common
    two-argument form are accepted.
    """
    if not value.startswith("javascript:"):
        return value
    if m := _DATE_GENERATE_2.fullmatch(value):
        return f"{m.group(1)} {m.group(2)}"
    if m := _DATE_GENERATE_1.fullmatch(value):
        return m.group(1) if " " in m.group(1) else f"{m.group(1)} 00:00:00"
    if m := _RELATIVE.fullmatch(value):
        fn, arg = m.group(1), int(m.group(2) or 0)
        now = int(clock())
        midnight = now - now % 86400
        values = {"daysAgoStart": midnight - arg * 86400, "daysAgoEnd": midnight - arg * 86400 + 86399,
                  "daysAgo": now - arg * 86400, "hoursAgo": now - arg * 3600, "minutesAgo": now - arg * 60,
                  "beginningOfToday": midnight, "endOfToday": midnight + 86399, "nowDateTime": now,
                  "beginningOfYesterday": midnight - 86400}
        return utc_stamp(values[fn])
    raise QueryValueError(value)


def _num(value: str) -> Decimal | None:
    if value == "":
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


Getter = Callable[[dict[str, str]], str]
Predicate = Callable[[dict[str, str]], bool]


def _predicate(cond: Condition, get: Getter, ftype: str, other: Getter | None,
               clock: Callable[[], float]) -> Predicate:
    op = cond.op
    if op in _VALUELESS:
        return {"ISEMPTY": lambda r: get(r) == "", "EMPTYSTRING": lambda r: get(r) == "",
                "ISNOTEMPTY": lambda r: get(r) != "", "ANYTHING": lambda r: True}[op]
    if op in ("SAMEAS", "NSAMEAS"):
        if other is None:
            raise QueryValueError(cond.value)
        same = op == "SAMEAS"
        return lambda r: (get(r) == other(r)) == same
    numeric = ftype in NUMERIC_TYPES
    if op in ("IN", "NOT IN"):
        values = [resolve_value(v, clock) for v in cond.value.split(",")]
        if numeric:
            nums = {_num(v) for v in values} - {None}
            members = set(values)
            hit: Predicate = lambda r: get(r) in members or _num(get(r)) in nums  # noqa: E731
        else:
            members = set(values)
            hit = lambda r: get(r) in members  # noqa: E731
        return hit if op == "IN" else (lambda r: not hit(r))
    if op == "BETWEEN":
        low_raw, sep, high_raw = cond.value.partition("@")
        if not sep:
            raise QueryValueError(cond.value)
        low, high = resolve_value(low_raw, clock), resolve_value(high_raw, clock)
        if numeric and _num(low) is not None and _num(high) is not None:
            lo_n, hi_n = _num(low), _num(high)

            def between_num(r: dict[str, str]) -> bool:
                v = _num(get(r))
                return v is not None and lo_n <= v <= hi_n  # type: ignore[operator]
            return between_num
        return lambda r: get(r) != "" and low <= get(r) <= high
    value = resolve_value(cond.value, clock)
    if op == "LIKE":
        return lambda r: value in get(r)
    if op == "NOT LIKE":
        return lambda r: value not in get(r)
    if op == "STARTSWITH":
        return lambda r: get(r).startswith(value)
    if op == "ENDSWITH":
        return lambda r: get(r).endswith(value)
    target = _num(value) if numeric else None
    if op in ("=", "!="):
        if target is not None:
            eq: Predicate = lambda r: _num(get(r)) == target  # noqa: E731
        else:
            eq = lambda r: get(r) == value  # noqa: E731
        # != keeps empty values (inference: Glide adds "OR field IS NULL" to a not-equals condition).
        return eq if op == "=" else (lambda r: not eq(r))
    if target is not None:
        cmp_num = {"<": Decimal.__lt__, "<=": Decimal.__le__, ">": Decimal.__gt__, ">=": Decimal.__ge__}[op]

        def compare_num(r: dict[str, str]) -> bool:
            v = _num(get(r))
            return v is not None and cmp_num(v, target)
        return compare_num
    # Strings (and date-times, whose raw form sorts chronologically) compare as strings; empty never matches.
    cmp_str = {"<": str.__lt__, "<=": str.__le__, ">": str.__gt__, ">=": str.__ge__}[op]
    return lambda r: get(r) != "" and cmp_str(get(r), value)


def candidate_rows(table: Table, query: EncodedQuery,
                   clock: Callable[[], float] = time.time) -> Iterable[dict[str, str]]:
    """The rows ``query`` can match: every row, or (when one AND'ed ``=``/``IN`` condition of a one-group query
    pins a plain text column) only those the column's index holds for its values, in insertion order. The
    connector reads import-set rows by import set out of tens of thousands; a scan per page made the sandbox, not
    the connector, the demo's bottleneck."""
    if len(query.groups) == 1:
        for clause in query.groups[0]:
            if len(clause) != 1:  # an ^OR clause does not pin its column
                continue
            cond = clause[0]
            if (cond.op not in ("=", "IN") or not table.has_field(cond.field)
                    or table.field_type(cond.field) in NUMERIC_TYPES):
                continue
            try:
                values = [resolve_value(v, clock) for v in (cond.value.split(",") if cond.op == "IN" else [cond.value])]
            except QueryValueError:
                continue
            return table.find_any(cond.field, values)
    return table.rows.values()


FieldResolver = Callable[[str], tuple[Getter, str] | None]
"""field path -> (getter, field type), or None when the table has no such field."""


@dataclass
class CompiledQuery:
    predicate: Predicate
    order_by: list[tuple[Getter, str, bool]]
    ignored: list[str]


def compile_query(query: EncodedQuery, resolve: FieldResolver,
                  clock: Callable[[], float] = time.time) -> CompiledQuery:
    """Turn ``query`` into one predicate, dropping (and listing) the parts that name unknown fields."""
    ignored = list(query.ignored)
    groups: list[list[list[Predicate]]] = []
    for group in query.groups:
        clauses: list[list[Predicate]] = []
        for clause in group:
            preds: list[Predicate] = []
            for cond in clause:
                resolved = resolve(cond.field)
                other = resolve(cond.value) if cond.op in ("SAMEAS", "NSAMEAS") else None
                if resolved is None:
                    ignored.append(f"{cond.field}{cond.op}{cond.value}")
                    continue
                try:
                    preds.append(_predicate(cond, resolved[0], resolved[1], other[0] if other else None, clock))
                except QueryValueError:
                    ignored.append(f"{cond.field}{cond.op}{cond.value}")
            if preds:
                clauses.append(preds)
        groups.append(clauses)

    def clause_ok(preds: list[Predicate], row: dict[str, str]) -> bool:
        return any(p(row) for p in preds)

    def predicate(row: dict[str, str]) -> bool:
        if not groups:
            return True
        return any(all(clause_ok(c, row) for c in clauses) for clauses in groups)

    order: list[tuple[Getter, str, bool]] = []
    for name, desc in query.order_by:
        resolved = resolve(name)
        if resolved is None:
            ignored.append(f"ORDERBY{name}")
            continue
        order.append((resolved[0], resolved[1], desc))
    return CompiledQuery(predicate, order, ignored)


def sort_rows(rows: list[dict[str, str]], order: list[tuple[Getter, str, bool]]) -> list[dict[str, str]]:
    """Stable multi-key sort; numeric fields sort numerically with empty values first (inference)."""
    for get, ftype, desc in reversed(order):
        if ftype in NUMERIC_TYPES:
            def key(r: dict[str, str], get: Getter = get) -> tuple[int, Decimal]:
                v = _num(get(r))
                return (0, Decimal(0)) if v is None else (1, v)
            rows.sort(key=key, reverse=desc)
        else:
            rows.sort(key=get, reverse=desc)
    return rows
