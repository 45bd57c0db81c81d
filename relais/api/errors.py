"""One error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

HINTS = {
    "timezone_aware": "add a UTC offset, e.g. 2026-11-27T10:15:00+01:00",
    "missing": "add this field",
    "extra_forbidden": "remove this field; it is not part of the schema",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def field_errors(exc: ValidationError | RequestValidationError, skip: int = 0) -> list[dict]:
    """Pydantic errors as ``{field, problem, hint}``; ``skip`` drops leading loc parts."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"][skip:]]
        field = ".".join(p if not p.isdigit() else f"[{p}]" for p in loc).replace(".[", "[")
        problem = str(err["msg"]).removeprefix("Value error, ")
        item = {"field": field or "(body)", "problem": problem}
        if err["type"] in HINTS:
            item["hint"] = HINTS[err["type"]]
        out.append(item)
    return out


def summary(details: list[dict]) -> str:
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{first['field']}: {first['problem']}{more}"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = field_errors(exc)
        return JSONResponse(
            error_body("invalid_request", summary(details), details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
