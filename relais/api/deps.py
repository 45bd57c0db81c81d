"""Request dependencies: the database session and the caller's API key."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from relais.api.errors import ApiError, not_found
from relais.auth import BadKey, Principal, authenticate, touch_key, verified
from sync.settings import get_settings
from sync.store.db import session_factory, session_scope
from sync.store.models import Tenant

MAX_REQUEST_BYTES = 1024 * 1024


def request_limit() -> int:
    """Bytes a request body may have (routes check their own, exact limits)."""
    return max(MAX_REQUEST_BYTES, get_settings().max_message_bytes * 4)


def db() -> Iterator[Session]:
    """A read-only session for routes that only read (writes use session_scope)."""
    session = session_factory(readonly=True)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()


DB = Annotated[Session, Depends(db)]


async def principal(authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The caller's key. A key verified moments ago is answered here, on the event
    loop; otherwise the store is read in the thread pool (``_verify``)."""
    if not authorization:
        raise ApiError(
            401, "unauthenticated", "missing API key: send 'Authorization: Bearer rls_…'"
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthenticated", "use 'Authorization: Bearer rls_…'")
    token = token.strip()
    known = verified.get(token)
    if known is not None:
        return known
    return await run_in_threadpool(_verify, token)


def _verify(token: str) -> Principal:
    try:
        with session_scope(readonly=True) as session:
            who, stale = authenticate(session, token)
    except BadKey as exc:
        raise ApiError(401, "unauthenticated", str(exc)) from None
    if stale:
        with session_scope() as session:
            touch_key(session, who.key_id)
    verified.remember(token, who)
    return who


Caller = Annotated[Principal, Depends(principal)]


def tenant_for(session: Session, who: Principal, tenant_id: str, role: str) -> Tenant:
    """The tenant, if this key may act on it with ``role``.

    Another tenant's resources answer 404, exactly like missing ones, so a key
    cannot even learn which tenants exist.
    """
    if not who.can_see(tenant_id):
        raise not_found(f"tenant {tenant_id!r}")
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise not_found(f"tenant {tenant_id!r}")
    if not who.at_least(role):
        raise ApiError(403, "forbidden", f"this needs the {role} role; your key is {who.role}")
    return tenant


MAX_JSON_DEPTH = 32
MAX_INT_DIGITS = 30


class _Refused:
    """A JSON token refused at parse time, reported once its field is known."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _parse_int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _Refused(f"an integer of {len(text.lstrip('-'))} digits is too large")
    return int(text)


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"{text} is out of range")


def _parse_constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a number JSON allows")


def _field(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(body)"


def _refuse(status: int, code: str, field: str, problem: str, hint: str) -> ApiError:
    return ApiError(status, code, f"{field}: {problem}",
                    [{"field": field, "problem": problem, "hint": hint}])


def _check_tree(value: Any, code: str) -> None:
    """Refuse, naming the field, what no route can store: nesting deeper than
    ``MAX_JSON_DEPTH``, NaN/Infinity, huge integers, NUL characters (PostgreSQL
    text cannot hold them). Iterative: the depth is bounded before any recursion."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise _refuse(400, code, _field(path[:MAX_JSON_DEPTH]),
                          f"nested deeper than {MAX_JSON_DEPTH} levels", "flatten the data")
        if isinstance(item, _Refused):
            raise _refuse(422, code, _field(path), item.problem, "send a finite, plain number")
        if isinstance(item, str) and "\x00" in item:
            raise _refuse(422, code, _field(path), "contains a NUL character",
                          "remove the \\u0000 characters")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise _refuse(422, code, _field(path), "a key contains a NUL character",
                                  "remove the \\u0000 characters")
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            stack.extend((child, [*path, n]) for n, child in enumerate(item))


_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]')


def _deep_field(raw: bytes) -> str:
    """The field where ``raw`` nests too deep (scanned only after parsing gave up)."""
    path: list[str | int] = []
    kinds: list[bytes] = []
    last_string = b""
    for match in _TOKEN.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            if len(kinds) >= MAX_JSON_DEPTH:
                break
            kinds.append(token)
            path.append(0 if token == b"[" else "")
        elif token in (b"]", b"}") and kinds:
            kinds.pop()
            path.pop()
        elif token == b"," and kinds and kinds[-1] == b"[":
            path[-1] = int(path[-1]) + 1
        elif token == b":" and kinds:
            path[-1] = json.loads(last_string) if last_string else ""
        elif token.startswith(b'"'):
            last_string = token
    return _field(path)


def parse_json(raw: bytes, code: str = "invalid_json") -> Any:
    """The one way request JSON enters Relais: syntax, depth, numbers and characters
    checked, each refusal a 400/422 naming the field (``code`` names the route's kind)."""
    if not raw.strip():
        raise ApiError(400, code, "empty body: send a JSON object")
    try:
        value = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant)
    except RecursionError:
        raise _refuse(400, code, _deep_field(raw), f"nested deeper than {MAX_JSON_DEPTH} levels",
                      "flatten the data") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        raise ApiError(
            400,
            code,
            f"body is not valid JSON{where}: {exc}",
            [{"field": "(body)", "problem": str(exc), "hint": "send UTF-8 JSON"}],
        ) from None
    _check_tree(value, code)
    return value


async def json_body(request: Request) -> Any:
    raw = await request.body()
    limit = get_settings().max_message_bytes
    if len(raw) > limit:
        raise ApiError(413, "too_large", f"body is {len(raw)} bytes; the limit is {limit}")
    return parse_json(raw)
