"""ServiceNow encoded queries with every value escaped (DESIGN.md §6, reference/servicenow.md §1.5).

Rules enforced here:
- a literal ``^`` in a value is written ``^^`` (GlideStringUtil.escapeQueryTermSeparator);
- values that could change the query's meaning, not only its operands, are refused: line breaks and other control
  characters, a ``javascript:`` prefix (the instance would *evaluate* it), ``=`` at the start of a ``<``/``>``
  value (``a>`` + ``=5`` would read as ``a>=5``), and an empty value with ``=`` (use ``is_empty``);
- a comma inside an ``IN`` value has no escape, so such lists are written as an ``^OR`` chain of ``=`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_VALUE_OPS = ("=", "!=", "<", "<=", ">", ">=", "LIKE", "NOT LIKE", "STARTSWITH", "ENDSWITH")
_NO_VALUE_OPS = ("ISEMPTY", "ISNOTEMPTY")


class UnsafeQueryError(ValueError):
    """The condition cannot be written safely as an encoded query."""


def escape(value: str) -> str:
    """``^`` → ``^^``."""
    return value.replace("^", "^^")


def split_terms(query: str) -> list[str]:
    """Split on ``^`` reading ``^^`` as a literal caret, left to right (for checks on hand-written queries)."""
    terms: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(query):
        if query[i] == "^":
            if query[i + 1: i + 2] == "^":
                buf.append("^")
                i += 2
                continue
            terms.append("".join(buf))
            buf = []
        else:
            buf.append(query[i])
        i += 1
    terms.append("".join(buf))
    return terms


def has_new_query(query: str) -> bool:
    """True when the (escaped) query holds a ``^NQ`` group separator."""
    return any(t.startswith("NQ") for t in split_terms(query)[1:])


def check_field(name: str) -> str:
    if not isinstance(name, str) or not _FIELD.match(name):
        raise UnsafeQueryError(f"{name!r} is not a ServiceNow field name")
    return name


def check_value(name: str, op: str, value: str) -> str:
    if not isinstance(value, str):
        raise UnsafeQueryError(f"{name}{op}: values must be strings (ServiceNow compares strings), got "
                               f"{type(value).__name__}")
    if _CONTROL.search(value):
        raise UnsafeQueryError(f"{name}{op}: the value contains a line break or control character, which an encoded "
                               f"query cannot carry")
    if value.lstrip().lower().startswith("javascript:"):
        raise UnsafeQueryError(f"{name}{op}: a value starting with 'javascript:' would be executed by the instance")
    if op in ("<", ">") and value.startswith("="):
        raise UnsafeQueryError(f"{name}{op}: a value starting with '=' would turn {op} into {op}=")
    if op in ("=", "!=", "LIKE", "NOT LIKE", "STARTSWITH", "ENDSWITH") and value == "":
        raise UnsafeQueryError(f"{name}{op}: an empty value; use is_empty()/is_not_empty()")
    return value


def queryable(name: str, value: str) -> bool:
    """Whether ``name=value`` can be asked at all (:func:`check_value`): a value with a line break, say, cannot be
    matched by any encoded query, so a lookup of many values leaves it out rather than failing for all of them."""
    try:
        check_value(name, "=", value)
    except UnsafeQueryError:
        return False
    return True


@dataclass
class EncodedQuery:
    """A builder: ``EncodedQuery().eq("a", "x").or_eq("a", "y").gt("n", "5").order_by("sys_id")``.

    ``^OR`` binds to the condition just before it (``A^ORB^C`` = ``(A OR B) AND C``); ``nq()`` starts a new
    OR'ed group. ``str(query)`` is the escaped text for ``sysparm_query``.
    """

    terms: list[str] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    has_nq: bool = False
    _pending_nq: bool = False

    def _join(self, joiner: str) -> str:
        if not self.terms:
            return ""
        if self._pending_nq:
            if joiner == "^OR":
                raise UnsafeQueryError("an ^OR condition cannot start a new query group")
            self._pending_nq = False
            return "^NQ"
        return joiner

    def _add(self, joiner: str, name: str, op: str, value: str | None) -> EncodedQuery:
        check_field(name)
        if op in _NO_VALUE_OPS:
            text = f"{name}{op}"
        elif op in _VALUE_OPS:
            text = f"{name}{op}{escape(check_value(name, op, value or ''))}"
        else:
            raise UnsafeQueryError(f"unsupported operator {op!r}")
        if joiner == "^OR" and not self.terms:
            raise UnsafeQueryError("an ^OR condition needs a condition before it")
        self.terms.append(self._join(joiner) + text)
        return self

    def where(self, name: str, op: str, value: str | None = None) -> EncodedQuery:
        return self._add("^", name, op, value)

    def or_where(self, name: str, op: str, value: str | None = None) -> EncodedQuery:
        return self._add("^OR", name, op, value)

    def eq(self, name: str, value: str) -> EncodedQuery:
        return self.where(name, "=", value)

    def or_eq(self, name: str, value: str) -> EncodedQuery:
        return self.or_where(name, "=", value)

    def ne(self, name: str, value: str) -> EncodedQuery:
        return self.where(name, "!=", value)

    def gt(self, name: str, value: str) -> EncodedQuery:
        return self.where(name, ">", value)

    def ge(self, name: str, value: str) -> EncodedQuery:
        return self.where(name, ">=", value)

    def lt(self, name: str, value: str) -> EncodedQuery:
        return self.where(name, "<", value)

    def le(self, name: str, value: str) -> EncodedQuery:
        return self.where(name, "<=", value)

    def starts_with(self, name: str, value: str) -> EncodedQuery:
        return self.where(name, "STARTSWITH", value)

    def is_empty(self, name: str) -> EncodedQuery:
        return self.where(name, "ISEMPTY")

    def is_not_empty(self, name: str) -> EncodedQuery:
        return self.where(name, "ISNOTEMPTY")

    def in_(self, name: str, values: Iterable[str]) -> EncodedQuery:
        """``nameINa,b`` — or, when a value holds a comma (no escape exists), ``name=a^ORname=b``."""
        items = list(values)
        if not items:
            raise UnsafeQueryError(f"{name}IN: an empty list matches nothing; skip the request instead")
        for v in items:
            check_value(name, "=", v)
        if any("," in v for v in items) or len(items) == 1:
            self.eq(name, items[0])
            for v in items[1:]:
                self.or_eq(name, v)
            return self
        check_field(name)
        self.terms.append(self._join("^") + f"{name}IN" + ",".join(escape(v) for v in items))
        return self

    def not_in(self, name: str, values: Iterable[str]) -> EncodedQuery:
        items = list(values)
        for v in items:
            check_value(name, "!=", v)
        if any("," in v for v in items):
            for v in items:
                self.ne(name, v)
            return self
        if items:
            check_field(name)
            self.terms.append(self._join("^") + f"{name}NOT IN" + ",".join(escape(v) for v in items))
        return self

    def nq(self) -> EncodedQuery:
        if self.terms:
            self._pending_nq = True
            self.has_nq = True
        return self

    def order_by(self, name: str, *, descending: bool = False) -> EncodedQuery:
        self.orders.append(("ORDERBYDESC" if descending else "ORDERBY") + check_field(name))
        return self

    def copy(self) -> EncodedQuery:
        return EncodedQuery(list(self.terms), list(self.orders), self.has_nq, self._pending_nq)

    def __str__(self) -> str:
        return "^".join(x for x in ("".join(self.terms), *self.orders) if x)
