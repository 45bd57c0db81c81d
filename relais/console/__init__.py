"""The console: the people's side of Relais, server-rendered by the API's FastAPI app
(Jinja2 templates and htmx, vendored; no build step). ``install(app)`` mounts it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from relais.console import (
    admin,
    audit,
    booking,
    client,
    desk,
    operator,
    people,
    reports,
    staff,
    sync_health,
)
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


class VersionedStatic(StaticFiles):
    """The console's static files, cacheable for a year: their URLs carry a digest
    of the files (``?v=``), so a new release is fetched at once."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


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

    app.mount("/static", VersionedStatic(directory=str(HERE / "static")), name="console-static")
    app.include_router(router)
    app.include_router(desk.router)
    app.include_router(people.router)
    app.include_router(admin.router)
    app.include_router(audit.router)
    app.include_router(booking.router)
    app.include_router(client.router)
    app.include_router(reports.router)
    app.include_router(sync_health.router)
    app.include_router(staff.router)
    app.include_router(operator.router)
