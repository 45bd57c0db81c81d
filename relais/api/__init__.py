"""The HTTP API (FastAPI): ``relais.api:create_app``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from relais.api import (
    acks,
    admin,
    appointments,
    availability,
    calls,
    connections,
    errors,
    messages,
    openapi,
    ops,
    privacy,
    provider_apps,
    webhooks,
)
from relais.api import contacts as contacts_api
from relais.api.deps import request_limit
from relais.api.outage import DatabaseOutageRetry
from sync.pull_triggers import QUEUED, PullTriggers


def _nul_in_url(request: Request) -> str | None:
    """The path or query parameter holding a NUL character (no store can keep one)."""
    if "\x00" in request.url.path:
        return "path"
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            return key.replace("\x00", "") or "query"
    return None


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # The start-up heap (~150k objects: modules, models, routes) never dies: out of
    # the collector's sight, a full pass costs ~10 ms instead of ~100 ms.
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()  # an app stopped in a longer-lived process (tests): collectable again


class RequestGuard:
    """Refuse oversized bodies (by Content-Length, before reading them) and NUL
    characters in the URL. Plain ASGI: ``BaseHTTPMiddleware`` cost each request
    a task group and a streamed copy of the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = _refusal(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(request: Request) -> JSONResponse | None:
    length = request.headers.get("content-length")
    limit = request_limit()
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
    return None


def create_app(triggers: PullTriggers = QUEUED) -> FastAPI:
    """The API. ``triggers``: what a provider's change notification starts (by default
    a Celery task per pull; ``sync.pull_triggers``)."""
    app = FastAPI(
        title="Relais",
        version="1",
        description="Integration hub of a telephone answering service.",
        lifespan=_lifespan,
    )
    app.state.pull_triggers = triggers
    errors.install(app)
    openapi.install(app)
    # Inside the guard: what it buffers to retry is already size-checked.
    app.add_middleware(DatabaseOutageRetry)

    app.add_middleware(RequestGuard)  # outermost

    for module in (messages, availability, appointments, admin, connections, ops, webhooks, acks,
                   calls, privacy):
        app.include_router(module.router)
    app.include_router(contacts_api.router)
    app.include_router(provider_apps.router)
    app.include_router(__import__("relais.api.notifications", fromlist=["router"]).router)
    app.include_router(__import__("relais.api.conflicts", fromlist=["router"]).router)
    from relais.console import install as install_console

    install_console(app)  # the people's side: HTML pages, out of the OpenAPI document
    return app
