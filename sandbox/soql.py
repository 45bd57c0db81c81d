"""A small, honest SOQL subset for the Salesforce emulator.

Supported::

    SELECT Id, Name, ... | COUNT()
    FROM SObject
    [WHERE cond {AND|OR} cond ...]      -- parentheses group; NOT negates
    [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

where ``cond`` is ``field op value`` (op: = != <> < <= > >=), ``field [NOT] IN
(v, ...)`` or ``field [NOT] LIKE 'pat%'``; values are quoted strings,
unquoted datetimes (``2024-01-31T08:00:00Z``) and dates, numbers, TRUE,
FALSE, NULL. As in real SOQL, mixing AND and OR without parentheses is a
MALFORMED_QUERY, string comparisons ignore case, quoted values on datetime
fields are rejected. Everything else (relationships, functions, date
literals such as LAST_N_DAYS, GROUP BY, sub-queries, ...) is refused with
MALFORMED_QUERY rather than half-supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["FieldInfo", "SoqlError", "SoqlQuery", "compile_soql", "parse_datetime"]

STRING_TYPES = {
    "string", "email", "phone", "picklist", "textarea", "id", "reference", "url", "combobox",
}
NUMBER_TYPES = {"int", "double", "currency", "percent"}


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str


_DT_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})"
)
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\dT:])")
_NUM_RE = re.compile(r"[+-]?\d+(?:\.\d+)?(?![\w-])")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPS = ("!=", "<>", "<=", ">=", "=", "<", ">")
_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL", "COUNT",
}


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 / Salesforce datetime (``+0000`` offsets too) to aware UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    m = re.match(r"(.*[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?)([+-])(\d{2}):?(\d{2})$", value)
    if m:
        value = f"{m.group(1)}{m.group(2)}{m.group(3)}:{m.group(4)}"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"datetime without offset: {text!r}")
    return dt.astimezone(UTC)


@dataclass
class Token:
    kind: str  # kw, ident, str, dt, date, num, op, punct, eof
    value: Any
    pos: int
    text: str


def _tokenize(query: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "'":
            j, buf = i + 1, []
            while True:
                if j >= n:
                    raise _malformed(query, i, "unterminated string literal")
                c = query[j]
                if c == "\\" and j + 1 < n:
                    nxt = query[j + 1]
                    buf.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                    j += 2
                    continue
                if c == "'":
                    break
                buf.append(c)
                j += 1
            tokens.append(Token("str", "".join(buf), i, query[i : j + 1]))
            i = j + 1
            continue
        if ch in "(),":
            tokens.append(Token("punct", ch, i, ch))
            i += 1
            continue
        op = next((o for o in _OPS if query.startswith(o, i)), None)
        if op:
            tokens.append(Token("op", "!=" if op == "<>" else op, i, op))
            i += len(op)
            continue
        m = _DT_RE.match(query, i)
        if m:
            tokens.append(Token("dt", parse_datetime(m.group()), i, m.group()))
            i = m.end()
            continue
        m = _DATE_RE.match(query, i)
        if m:
            tokens.append(Token("date", date.fromisoformat(m.group()), i, m.group()))
            i = m.end()
            continue
        m = _NUM_RE.match(query, i)
        if m:
            text = m.group()
            tokens.append(Token("num", float(text) if "." in text else int(text), i, text))
            i = m.end()
            continue
        m = _IDENT_RE.match(query, i)
        if m:
            text = m.group()
            kind = "kw" if text.upper() in _KEYWORDS else "ident"
            tokens.append(Token(kind, text.upper() if kind == "kw" else text, i, text))
            i = m.end()
            continue
        raise _malformed(query, i, f"unexpected token: '{ch}'")
    tokens.append(Token("eof", None, n, "<EOF>"))
    return tokens


def _malformed(query: str, pos: int, detail: str) -> SoqlError:
    caret = " " * pos + "^"
    return SoqlError(
        "MALFORMED_QUERY", f"\n{query}\n{caret}\nERROR at Row:1:Column:{pos + 1}\n{detail}"
    )


# ---------------------------------------------------------------- AST


@dataclass
class Cmp:
    field: str
    op: str  # = != < <= > >= in nin like nlike
    value: Any
    vkind: str  # str dt date num bool null list
    pos: int


@dataclass
class BoolOp:
    op: str  # AND OR
    items: list[Any]


@dataclass
class Not:
    item: Any


@dataclass
class OrderItem:
    field: str
    desc: bool = False
    nulls_last: bool = False


@dataclass
class SoqlQuery:
    sobject: str
    fields: list[str]
    count_only: bool
    where: Any = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    matcher: Callable[[Mapping[str, Any]], bool] = lambda r: True

    def run(self, records: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        rows = [r for r in records if self.matcher(r)]
        for item in reversed(self.order):
            present = [r for r in rows if r.get(item.field) is not None]
            absent = [r for r in rows if r.get(item.field) is None]
            present.sort(key=lambda r, f=item.field: _sort_key(r.get(f)), reverse=item.desc)
            nulls_last = item.nulls_last
            rows = present + absent if nulls_last else absent + present
        rows = rows[self.offset :]
        if self.limit is not None:
            rows = rows[: self.limit]
        return rows


def _sort_key(value: Any) -> Any:
    if isinstance(value, str):
        return value.lower()
    return value


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokenize(query)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, tok: Token | None = None) -> SoqlError:
        tok = tok or self.tok
        return _malformed(self.query, tok.pos, f"unexpected token: '{tok.text}'")

    def next(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def accept_kw(self, *words: str) -> bool:
        if self.tok.kind == "kw" and self.tok.value in words:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.accept_kw(word):
            raise self.error()

    def expect_punct(self, ch: str) -> None:
        if self.tok.kind == "punct" and self.tok.value == ch:
            self.i += 1
            return
        raise self.error()

    def ident(self) -> Token:
        tok = self.tok
        if tok.kind != "ident":
            raise self.error()
        self.i += 1
        return tok

    def parse(self) -> tuple[str, list[Token], bool, Any, list[tuple[Token, bool, bool]], Any, Any]:
        self.expect_kw("SELECT")
        fields: list[Token] = []
        count_only = False
        if self.tok.kind == "kw" and self.tok.value == "COUNT":
            self.next()
            self.expect_punct("(")
            self.expect_punct(")")
            count_only = True
        else:
            fields.append(self.ident())
            while self.tok.kind == "punct" and self.tok.value == ",":
                self.next()
                fields.append(self.ident())
        self.expect_kw("FROM")
        sobject = self.ident()
        where = None
        if self.accept_kw("WHERE"):
            where = self.expr()
        order: list[tuple[Token, bool, bool]] = []
        if self.accept_kw("ORDER"):
            self.expect_kw("BY")
            while True:
                f = self.ident()
                desc = False
                if self.accept_kw("DESC"):
                    desc = True
                else:
                    self.accept_kw("ASC")
                nulls_last = desc
                if self.accept_kw("NULLS"):
                    if self.accept_kw("LAST"):
                        nulls_last = True
                    else:
                        self.expect_kw("FIRST")
                        nulls_last = False
                order.append((f, desc, nulls_last))
                if self.tok.kind == "punct" and self.tok.value == ",":
                    self.next()
                    continue
                break
        limit = offset = None
        if self.accept_kw("LIMIT"):
            limit = self.next()
            if limit.kind != "num" or not isinstance(limit.value, int) or limit.value < 0:
                raise self.error(limit)
        if self.accept_kw("OFFSET"):
            offset = self.next()
            if offset.kind != "num" or not isinstance(offset.value, int) or offset.value < 0:
                raise self.error(offset)
        if self.tok.kind != "eof":
            raise self.error()
        if "." in sobject.value:
            raise self.error(sobject)
        return sobject.value, fields, count_only, where, order, limit, offset

    def expr(self) -> Any:
        items = [self.term()]
        op_seen: str | None = None
        while self.tok.kind == "kw" and self.tok.value in ("AND", "OR"):
            op_tok = self.next()
            if op_seen and op_tok.value != op_seen:
                raise _malformed(
                    self.query,
                    op_tok.pos,
                    f"unexpected token: '{op_tok.text}' (use parentheses to mix AND and OR)",
                )
            op_seen = op_tok.value
            items.append(self.term())
        return items[0] if len(items) == 1 else BoolOp(op_seen or "AND", items)

    def term(self) -> Any:
        if self.accept_kw("NOT"):
            return Not(self.term())
        if self.tok.kind == "punct" and self.tok.value == "(":
            self.next()
            inner = self.expr()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def value(self) -> tuple[Any, str]:
        tok = self.next()
        if tok.kind == "str":
            return tok.value, "str"
        if tok.kind in ("dt", "date", "num"):
            return tok.value, tok.kind
        if tok.kind == "kw" and tok.value in ("TRUE", "FALSE"):
            return tok.value == "TRUE", "bool"
        if tok.kind == "kw" and tok.value == "NULL":
            return None, "null"
        raise self.error(tok)

    def comparison(self) -> Cmp:
        f = self.ident()
        negate = self.accept_kw("NOT")
        if self.accept_kw("IN"):
            self.expect_punct("(")
            values = [self.value()]
            while self.tok.kind == "punct" and self.tok.value == ",":
                self.next()
                values.append(self.value())
            self.expect_punct(")")
            return Cmp(f.value, "nin" if negate else "in", values, "list", f.pos)
        if self.accept_kw("LIKE"):
            tok = self.next()
            if tok.kind != "str":
                raise self.error(tok)
            return Cmp(f.value, "nlike" if negate else "like", tok.value, "str", f.pos)
        if negate:
            raise self.error()
        op = self.next()
        if op.kind != "op":
            raise self.error(op)
        value, vkind = self.value()
        if vkind == "null" and op.value not in ("=", "!="):
            raise self.error(self.tokens[self.i - 1])
        return Cmp(f.value, op.value, value, vkind, f.pos)


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


def compile_soql(
    query: str,
    describe: Callable[[str], tuple[str, Mapping[str, FieldInfo]] | None],
    *,
    normalize_id: Callable[[str], str] = lambda v: v,
) -> SoqlQuery:
    """Parse ``query``.

    ``describe(sobject)`` returns ``(canonical name, {lower-case field name: FieldInfo})``
    or None for an unknown sObject.
    """
    sobject, field_toks, count_only, where, order, limit, offset = _Parser(query).parse()
    described = describe(sobject)
    if described is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"\n{query}\n{' ' * query.find(sobject)}^\nERROR at Row:1:Column:"
            f"{query.find(sobject) + 1}\nsObject type '{sobject}' is not supported.",
        )
    canonical_sobject, schema = described

    def resolve(name: str, pos: int) -> FieldInfo:
        info = schema.get(name.lower())
        if info is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\n"
                f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a "
                "custom field, be sure to append the '__c' after the custom field name.",
            )
        return info

    fields = []
    for tok in field_toks:
        info = resolve(tok.value, tok.pos)
        if info.name not in fields:
            fields.append(info.name)

    def check_value(info: FieldInfo, value: Any, vkind: str, pos: int) -> Any:
        if vkind == "null":
            return None
        ftype = info.type
        if ftype == "datetime":
            if vkind != "dt":
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\nvalue of filter "
                    f"criterion for field '{info.name}' must be of type dateTime and should not "
                    "be enclosed in quotes",
                )
            return value
        if ftype == "date":
            if vkind != "date":
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\nvalue of filter "
                    f"criterion for field '{info.name}' must be of type date and should not be "
                    "enclosed in quotes",
                )
            return value.isoformat()
        if ftype == "boolean":
            if vkind != "bool":
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\nvalue of filter "
                    f"criterion for field '{info.name}' must be of type boolean and should not "
                    "be enclosed in quotes",
                )
            return value
        if ftype in NUMBER_TYPES:
            if vkind != "num":
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\nvalue of filter "
                    f"criterion for field '{info.name}' must be of type {ftype} and should not "
                    "be enclosed in quotes",
                )
            return value
        if vkind != "str":
            raise SoqlError(
                "INVALID_FIELD",
                f"\n{query}\n{' ' * pos}^\nERROR at Row:1:Column:{pos + 1}\nvalue of filter "
                f"criterion for field '{info.name}' must be of type string and should be "
                "enclosed in quotes",
            )
        if ftype in ("id", "reference"):
            return normalize_id(value)
        return value

    def build(node: Any) -> Callable[[Mapping[str, Any]], bool]:
        if isinstance(node, BoolOp):
            parts = [build(item) for item in node.items]
            if node.op == "AND":
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        if isinstance(node, Not):
            inner = build(node.item)
            return lambda r: not inner(r)
        assert isinstance(node, Cmp)
        info = resolve(node.field, node.pos)
        name = info.name
        ci = info.type in STRING_TYPES and info.type not in ("id", "reference")

        def norm(v: Any) -> Any:
            return v.lower() if ci and isinstance(v, str) else v

        if node.op in ("like", "nlike"):
            if info.type not in STRING_TYPES:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"\n{query}\n{' ' * node.pos}^\nERROR at Row:1:Column:{node.pos + 1}\n"
                    f"invalid operator on {info.type} field: LIKE",
                )
            rx = _like_regex(node.value)
            neg = node.op == "nlike"
            return lambda r: (r.get(name) is not None and bool(rx.match(str(r[name])))) != neg
        if node.op in ("in", "nin"):
            values = {norm(check_value(info, v, k, node.pos)) for v, k in node.value}
            neg = node.op == "nin"
            return lambda r: (norm(r.get(name)) in values) != neg
        target = norm(check_value(info, node.value, node.vkind, node.pos))
        op = node.op
        if target is None:
            if op == "=":
                return lambda r: r.get(name) is None
            return lambda r: r.get(name) is not None

        def cmp(r: Mapping[str, Any]) -> bool:
            v = norm(r.get(name))
            if v is None:
                return op == "!="
            try:
                if op == "=":
                    return bool(v == target)
                if op == "!=":
                    return bool(v != target)
                if op == "<":
                    return bool(v < target)
                if op == "<=":
                    return bool(v <= target)
                if op == ">":
                    return bool(v > target)
                return bool(v >= target)
            except TypeError:
                return False

        return cmp

    matcher = build(where) if where is not None else (lambda r: True)
    order_items = [OrderItem(resolve(t.value, t.pos).name, d, nl) for t, d, nl in order]
    return SoqlQuery(
        sobject=canonical_sobject,
        fields=fields,
        count_only=count_only,
        where=where,
        order=order_items,
        limit=limit.value if limit is not None else None,
        offset=offset.value if offset is not None else 0,
        matcher=matcher,
    )
