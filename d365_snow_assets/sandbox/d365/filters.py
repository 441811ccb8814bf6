"""OData ``$filter`` / key-predicate parsing for the F&O fake, translated to DuckDB SQL with bound parameters.

Supported (reference/d365.md §2): eq ne gt ge lt le, and or not, parentheses, string literals with ``''``
escaping, ``'*x*'`` / ``'x*'`` wildcards on eq (and ne), enum literals ``Microsoft.Dynamics.DataEntities.E'M'``
(eq/ne only), unquoted DateTimeOffset literals, numbers, null. ``in`` and ``has`` are rejected as F&O does.
String comparisons are case-insensitive: F&O runs on SQL Server with a case-insensitive collation [INF].
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .schema import ENUMS, NAMESPACE, EntitySet, Prop


class ODataError(Exception):
    """An OData error response: status plus the message F&O puts in ``error.message``."""

    def __init__(self, status: int, message: str, inner: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.inner = inner


def query_error(message: str) -> ODataError:
    # Inference: Web API OData prefixes query-option errors with this sentence; F&O's exact text is not captured.
    return ODataError(400, f"The query specified in the URI is not valid. {message}")


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<enum>[A-Za-z_][\w.]*\.[A-Za-z_]\w*'(?:[^']|'')*')
  | (?P<dt>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))?)
  | (?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[mMdDfFlL]?)
  | (?P<ident>[A-Za-z_$][\w]*)
  | (?P<punct>[(),/=])
""", re.VERBOSE)

_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str


def tokenize(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise query_error(f"Syntax error at position {pos} in '{text}'.")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append(Tok(m.lastgroup or "", m.group()))
    return out


@dataclass(frozen=True)
class Literal:
    kind: str  # str enum dt num null bool
    value: Any
    enum_type: str | None = None


def parse_literal(tok: Tok) -> Literal:
    if tok.kind == "str":
        return Literal("str", tok.text[1:-1].replace("''", "'"))
    if tok.kind == "enum":
        type_name, _, rest = tok.text.partition("'")
        return Literal("enum", rest[:-1].replace("''", "'"), type_name)
    if tok.kind == "dt":
        return Literal("dt", parse_datetime(tok.text))
    if tok.kind == "num":
        return Literal("num", Decimal(tok.text.rstrip("mMdDfFlL")))
    if tok.kind == "ident" and tok.text == "null":
        return Literal("null", None)
    if tok.kind == "ident" and tok.text in ("true", "false"):
        return Literal("bool", tok.text == "true")
    raise query_error(f"Unexpected token '{tok.text}'.")


def parse_datetime(text: str) -> dt.datetime:
    """A DateTimeOffset (or bare date, read as midnight UTC) as a naive UTC datetime."""
    try:
        if len(text) == 10:
            return dt.datetime.fromisoformat(text)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise query_error(f"The DateTimeOffset text '{text}' is not valid.") from exc
    return value.astimezone(dt.UTC).replace(tzinfo=None)


class _Parser:
    def __init__(self, es: EntitySet, toks: list[Tok]) -> None:
        self.es = es
        self.toks = toks
        self.i = 0
        self.params: list[Any] = []

    def peek(self) -> Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise query_error("Unexpected end of expression.")
        self.i += 1
        return tok

    def word(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "ident" and tok.text in words:
            self.i += 1
            return True
        return False

    def parse(self) -> str:
        sql = self.or_expr()
        if self.peek() is not None:
            tok = self.peek()
            assert tok is not None
            if tok.kind == "ident" and tok.text in ("in", "has"):
                raise self._unsupported(tok.text)
            raise query_error(f"Syntax error: unexpected '{tok.text}'.")
        return sql

    def _unsupported(self, op: str) -> ODataError:
        # reference §2: F&O does not support `in` / `has`; the message text is synthetic [INF].
        return query_error(f"The operator '{op}' is not supported.")

    def or_expr(self) -> str:
        left = self.and_expr()
        while self.word("or"):
            left = f"({left} OR {self.and_expr()})"
        return left

    def and_expr(self) -> str:
        left = self.not_expr()
        while self.word("and"):
            left = f"({left} AND {self.not_expr()})"
        return left

    def not_expr(self) -> str:
        if self.word("not"):
            return f"(NOT {self.not_expr()})"
        return self.comparison()

    def operand(self) -> Prop | Literal | str:
        tok = self.take()
        if tok.kind == "punct" and tok.text == "(":
            inner = self.or_expr()
            close = self.take()
            if close.text != ")":
                raise query_error("')' expected.")
            return f"({inner})"
        if tok.kind == "ident" and tok.text not in ("null", "true", "false"):
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                raise query_error(f"An unknown function with name '{tok.text}' was found. This may also be a "
                                  "function import or a key lookup on a navigation property, which is not allowed.")
            prop = self.es.prop(tok.text)
            if prop is None:
                raise query_error(f"Could not find a property named '{tok.text}' on type "
                                  f"'{NAMESPACE}.{self.es.entity_type}'.")
            return prop
        return parse_literal(tok)

    def comparison(self) -> str:
        left = self.operand()
        tok = self.peek()
        if tok is not None and tok.kind == "ident" and tok.text in ("in", "has"):
            raise self._unsupported(tok.text)
        if tok is None or tok.kind != "ident" or tok.text not in _OPS:
            if isinstance(left, str):
                return left
            if tok is not None and tok.kind == "ident" and tok.text in ("add", "sub", "mul", "div", "mod"):
                # Inference: F&O documents arithmetic operators; the fake does not implement them.
                raise query_error(f"The arithmetic operator '{tok.text}' is not supported by this sandbox.")
            raise query_error("A boolean comparison was expected.")
        op = self.take().text
        right = self.operand()
        if isinstance(left, Literal) and isinstance(right, Prop):
            flip = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}
            left, right, op = right, left, flip.get(op, op)
        if not isinstance(left, Prop) or not isinstance(right, Literal):
            raise query_error("Only comparisons between a property and a literal are supported.")
        return self.compare(left, op, right)

    def compare(self, prop: Prop, op: str, lit: Literal) -> str:
        col = f'"{prop.name}"'
        sql_op = _OPS[op]
        if lit.kind == "null":
            # Inference: F&O columns are NOT NULL in SQL, so `eq null` matches nothing.
            return "FALSE" if op == "eq" else "TRUE"
        if prop.kind == "e":
            if lit.kind != "enum":
                raise query_error(_incompatible(prop.edm_type, _lit_type(lit), op))
            if lit.enum_type != prop.edm_type:
                raise query_error(_incompatible(prop.edm_type, lit.enum_type or "", op))
            if lit.value not in ENUMS[prop.enum or ""]:
                raise query_error(f"The string '{lit.value}' is not a valid enumeration type constant.")
            if op not in ("eq", "ne"):
                # reference §2: only eq/ne work with enums.
                raise query_error(f"The operator '{op}' is not supported for enumeration types.")
            self.params.append(lit.value)
            return f"{col} {sql_op} ?"
        if prop.kind == "s":
            if lit.kind != "str":
                raise query_error(_incompatible("Edm.String", _lit_type(lit), op))
            if "*" in lit.value and op in ("eq", "ne"):
                pattern = re.sub(r"([\\%_])", r"\\\1", lit.value).replace("*", "%")
                self.params.append(pattern.lower())
                return f"{'NOT ' if op == 'ne' else ''}(lower({col}) LIKE ? ESCAPE '\\')"
            self.params.append(lit.value.lower())
            return f"lower({col}) {sql_op} ?"
        if prop.kind in ("D", "T"):
            if lit.kind != "dt":
                raise query_error(_incompatible("Edm.DateTimeOffset", _lit_type(lit), op))
            self.params.append(lit.value)
            # AX Date values mean T12:00:00Z (reference §2), so compare them as that instant.
            expr = f"({col}::TIMESTAMP + INTERVAL 12 HOUR)" if prop.kind == "D" else col
            return f"{expr} {sql_op} ?::TIMESTAMP"
        if lit.kind != "num":
            raise query_error(_incompatible(prop.edm_type, _lit_type(lit), op))
        self.params.append(lit.value)
        return f"{col} {sql_op} ?"


def _lit_type(lit: Literal) -> str:
    return {"str": "Edm.String", "dt": "Edm.DateTimeOffset", "num": "Edm.Decimal", "bool": "Edm.Boolean",
            "enum": lit.enum_type or ""}.get(lit.kind, "null")


def _incompatible(a: str, b: str, op: str) -> str:
    # The ODataLib wording for a type mismatch in a binary operator.
    kinds = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual", "lt": "LessThan",
             "le": "LessThanOrEqual"}
    return (f"A binary operator with incompatible types was detected. Found operand types '{a}' and '{b}' for "
            f"operator kind '{kinds[op]}'.")


def filter_to_sql(es: EntitySet, text: str) -> tuple[str, list[Any]]:
    """``$filter`` text → (SQL boolean expression, bound parameters)."""
    parser = _Parser(es, tokenize(text))
    if not parser.toks:
        raise query_error("The $filter expression is empty.")
    sql = parser.parse()
    return sql, parser.params


def parse_key(es: EntitySet, text: str) -> dict[str, Any]:
    """The inside of ``Set(...)``: all key properties, typed for DuckDB. Raises 400 when any is missing."""
    toks = tokenize(text)
    values: dict[str, Any] = {}
    i = 0
    if len(es.keys) == 1 and len(toks) == 1:
        toks = [Tok("ident", es.keys[0]), Tok("punct", "="), toks[0]]
    while i < len(toks):
        if i + 2 >= len(toks):
            raise _key_count_error(es)
        name, eq, lit_tok = toks[i], toks[i + 1], toks[i + 2]
        if name.kind != "ident" or eq.text != "=":
            raise ODataError(400, f"Bad Request - Error in query syntax: '{text}'.")
        prop = es.prop(name.text)
        if prop is None or name.text not in es.keys:
            raise _key_count_error(es)
        lit = parse_literal(lit_tok)
        values[name.text] = key_value(prop, lit)
        i += 3
        if i < len(toks):
            if toks[i].text != ",":
                raise ODataError(400, f"Bad Request - Error in query syntax: '{text}'.")
            i += 1
    if set(values) != set(es.keys):
        raise _key_count_error(es)
    return values


def _key_count_error(es: EntitySet) -> ODataError:
    # ODataLib's text for an incomplete key; reference §2: all key fields must be supplied.
    return ODataError(400, "The number of keys specified in the URI does not match number of key properties for "
                           f"the resource '{NAMESPACE}.{es.entity_type}'.")


def key_value(prop: Prop, lit: Literal) -> Any:
    if prop.kind in ("s",) and lit.kind == "str":
        return lit.value
    if prop.kind in ("d", "i", "l") and lit.kind == "num":
        return lit.value if prop.kind == "d" else int(lit.value)
    if prop.kind == "D" and lit.kind == "dt":
        return lit.value.date()
    if prop.kind == "T" and lit.kind == "dt":
        return lit.value
    if prop.kind == "e" and lit.kind in ("enum", "str"):
        return lit.value
    raise ODataError(400, f"The key value for '{prop.name}' does not have the type '{prop.edm_type}'.")
