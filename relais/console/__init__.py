"""The console: the people's side of Relais, server-rendered by the API's FastAPI app
(Jinja2 templates and htmx, vendored; no build step). ``install(app)`` mounts it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from relais.console import desk, people
from relais.console.web import (
    COOKIE,
    HERE,
    ConsoleError,
    NeedsSignIn,
    load_viewer,
    render,
    router,
    sign_in_redirect,
)


def install(app: Any) -> None:
    """Mount the console on the API's app: routes, static files, its error pages."""
    @app.exception_handler(ConsoleError)
    async def _console_error(request: Request, exc: ConsoleError) -> Response:
        token = request.cookies.get(COOKIE, "")
        viewer = await run_in_threadpool(load_viewer, token) if token else None
        return render(request, "error.html", {"status": exc.status, "code": exc.message},
                      exc.status, viewer)

    @app.exception_handler(NeedsSignIn)
    async def _needs_sign_in(request: Request, _exc: NeedsSignIn) -> Response:
        return sign_in_redirect(request)

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="console-static")
    app.include_router(router)
    app.include_router(desk.router)
    app.include_router(people.router)
