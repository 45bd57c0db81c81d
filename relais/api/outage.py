"""Riding through a database restart: every request's work is retried while
PostgreSQL is unreachable, for a bounded time, then answered 503 (never 500).

One ASGI middleware wraps every route (present and future). It buffers the
request body (already bounded by the size guard) so that the route can run
again from the start: each attempt opens fresh transactions, and only
connection-level failures are retried (``sync.store.db.is_outage``: a dropped
connection, "the database system is shutting down", connection refused, an
administrator's shutdown); any other error propagates unchanged. A dropped
connection invalidates SQLAlchemy's pool and ``pool_pre_ping`` tests the rest,
so a retry never reuses a dead connection.

Retrying re-runs a transaction whose COMMIT may already have reached the
server. Routes that write must therefore be idempotent per request:
``request_attempt()`` gives each request one random token, kept across its
attempts, and says whether this is a retry (POST /messages stores the token
as the message's idempotency key when the client sent none; booking already
requires an ``Idempotency-Key``).

Past ``RELAIS_DB_OUTAGE_SECONDS`` (20 s) the request is answered 503
``database_unavailable`` with ``Retry-After``; a client retrying with the same
``Idempotency-Key`` cannot store anything twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import random
import secrets
import time
from dataclasses import dataclass, field

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relais.api.deps import request_limit
from relais.api.errors import error_body
from sync.settings import get_settings
from sync.store.db import is_outage

log = logging.getLogger(__name__)

FIRST_DELAY = 0.1
MAX_DELAY = 2.0


# Request tokens: this process's random prefix and a counter, unique across
# processes and restarts without reading the system's random source each time.
_PROCESS = secrets.token_hex(8)
_serial = itertools.count()


def _token() -> str:
    return f"{_PROCESS}-{next(_serial)}"  # next() on a count is atomic under the GIL


@dataclass
class RequestAttempt:
    """One request across its attempts: ``token`` is the same in each; ``retries``
    counts the attempts before this one."""

    token: str = field(default_factory=_token)
    retries: int = 0


_attempt: contextvars.ContextVar[RequestAttempt | None] = contextvars.ContextVar(
    "relais_request_attempt", default=None)


def request_attempt() -> RequestAttempt:
    """The current request's attempt (a fresh one outside a request: tests, CLI)."""
    return _attempt.get() or RequestAttempt()


def _outage_in(exc: BaseException) -> BaseException | None:
    """The connection-level database error in ``exc`` (or in a group of them)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _outage_in(inner)
            if found is not None:
                return found
        return None
    return exc if is_outage(exc) else None


class DatabaseOutageRetry:
    """ASGI middleware: run the request again while the database is unreachable."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, request_limit())
        if body is None:
            limit = request_limit()
            await JSONResponse(error_body("too_large", f"body is over the limit of {limit} bytes"),
                               status_code=413)(scope, receive, send)
            return
        attempt = RequestAttempt()
        _attempt.set(attempt)
        deadline = time.monotonic() + get_settings().db_outage_seconds
        delay = FIRST_DELAY
        while True:
            started = False

            async def send_once(message: Message) -> None:
                nonlocal started
                started = True
                await send(message)

            try:
                await self.app(scope, _replay(body, receive), send_once)
                return
            except BaseException as exc:  # noqa: BLE001 - re-raised unless an outage
                outage = _outage_in(exc)
                if outage is None or started:
                    raise
                what = _describe(outage)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("database unreachable for %d attempt(s) of %s %s (%s): answering 503",
                            attempt.retries + 1, scope["method"], scope["path"], what)
                await _unavailable(scope, receive, send)
                return
            if attempt.retries == 0:
                log.warning("database unreachable during %s %s (%s); retrying",
                            scope["method"], scope["path"], what)
            # Jitter: clients do not retry in step; the last attempt is at the deadline.
            await asyncio.sleep(min(delay * random.uniform(0.5, 1.0), remaining))
            delay = min(delay * 2, MAX_DELAY)
            attempt.retries += 1


def _describe(exc: BaseException) -> str:
    """The failure's kind without its text (which may quote SQL)."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    return f"{type(orig).__name__}{f' {state}' if state else ''}"


async def _read_body(receive: Receive, limit: int) -> list[Message] | None:
    """The request's body events, or None past ``limit`` bytes (a chunked body
    announces no Content-Length for the guard to refuse)."""
    messages, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if message["type"] != "http.request" or not message.get("more_body"):
            return messages


def _replay(body: list[Message], receive: Receive) -> Receive:
    """The buffered body again, then the client's own events (its disconnect)."""
    pending = list(body)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _unavailable(scope: Scope, receive: Receive, send: Send) -> None:
    retry_after = max(1, round(get_settings().db_outage_seconds / 4))
    response = JSONResponse(
        error_body("database_unavailable",
                   "the database is unreachable: retry later, with the same "
                   "Idempotency-Key so that a retry cannot store anything twice"),
        status_code=503, headers={"Retry-After": str(retry_after)})
    await response(scope, receive, send)

