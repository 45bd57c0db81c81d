"""The HTTP API (FastAPI): ``relais.api:create_app``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from relais.api import (
    acks,
    admin,
    appointments,
    availability,
    connections,
    errors,
    messages,
    openapi,
    ops,
    webhooks,
)
from relais.api import contacts as contacts_api
from relais.api.outage import DatabaseOutageRetry
from relais.settings import get_settings

MAX_REQUEST_BYTES = 1024 * 1024


def _nul_in_url(request: Request) -> str | None:
    """The path or query parameter holding a NUL character (no store can keep one)."""
    if "\x00" in request.url.path:
        return "path"
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            return key.replace("\x00", "") or "query"
    return None


def create_app() -> FastAPI:
    app = FastAPI(
        title="Relais",
        version="1",
        description="Integration hub of a telephone answering service.",
    )
    errors.install(app)
    openapi.install(app)
    # Innermost: retried requests are already size-checked (outage.py buffers them).
    app.add_middleware(DatabaseOutageRetry)

    @app.middleware("http")
    async def _size_guard(request: Request, call_next):  # type: ignore[no-untyped-def]
        # Refuse oversized bodies before reading them; routes check exact limits.
        length = request.headers.get("content-length")
        limit = max(MAX_REQUEST_BYTES, get_settings().max_message_bytes * 4)
        if length and length.isdigit() and int(length) > limit:
            return JSONResponse(
                errors.error_body("too_large", f"body is {length} bytes; the limit is {limit}"),
                status_code=413,
            )
        refused = _nul_in_url(request)
        if refused:
            return JSONResponse(errors.error_body(
                "invalid_request", f"{refused}: contains a NUL character",
                [{"field": refused, "problem": "contains a NUL character"}]), status_code=400)
        return await call_next(request)

    for module in (messages, availability, appointments, admin, connections, ops, webhooks, acks):
        app.include_router(module.router)
    app.include_router(contacts_api.router)
    app.include_router(__import__("relais.api.notifications", fromlist=["router"]).router)
    app.include_router(__import__("relais.api.conflicts", fromlist=["router"]).router)
    return app
