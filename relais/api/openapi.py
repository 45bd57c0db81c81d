"""``/openapi.json`` as the API really behaves, complete enough to generate a client.

Routes parse JSON themselves (``deps.json_body``: one parser with Relais's
limits), so FastAPI does not see their bodies: :func:`json_request` declares
each body's model, and :func:`install` adds the bearer scheme, every error
status a route can answer with Relais's ``{"error": …}`` shape (instead of
FastAPI's default 422), and the body models' schemas.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

_BODIES: dict[str, type[BaseModel]] = {}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {
            "code": {"type": "string", "description": "stable, e.g. invalid_request"},
            "message": {"type": "string", "description": "for people, names the field"},
            "details": {"description": "usually a list of {field, problem, hint}",
                        "anyOf": [{"type": "array", "items": {"type": "object"}},
                                  {"type": "object"}]},
        },
    }},
}

DESCRIPTIONS = {
    400: "Malformed request (JSON syntax, depth, NUL characters, parameters)",
    401: "Missing, unknown, revoked key, or an invalid webhook signature",
    403: "The key's role is not enough for this",
    404: "Not found (another tenant's resources answer 404 too)",
    409: "Conflict with the current state (slot taken, already queued, a replayed callback)",
    413: "Body too large",
    422: "Invalid content; details name each field",
    502: "The provider failed; nothing was changed",
    503: "A dependency is unavailable (database, broker, calendar)",
}

# Statuses beyond the generic ones (auth, body, parameters), per (method, path).
EXTRA: dict[tuple[str, str], tuple[int, ...]] = {
    ("post", "/v1/tenants/{tenant_id}/appointments"): (409, 502, 503),
    ("patch", "/v1/tenants/{tenant_id}/appointments/{appointment_id}"): (409, 502, 503),
    ("delete", "/v1/tenants/{tenant_id}/appointments/{appointment_id}"): (409, 502, 503),
    ("get", "/v1/tenants/{tenant_id}/availability"): (502, 503),
    ("post", "/v1/deliveries/{delivery_id}/replay"): (409,),
    ("get", "/oauth/callback"): (400, 404, 422, 502),
    ("post", "/v1/tenants/{tenant_id}/connections/{name}/authorize"): (400, 502),
    ("get", "/healthz"): (503,),
    ("get", "/metrics"): (503,),
    ("post", "/v1/webhooks/sms"): (400, 401, 409, 413),
    ("post", "/v1/webhooks/google"): (400, 401, 404, 413),
    ("post", "/v1/webhooks/graph"): (400, 401, 413, 422),
    ("post", "/v1/webhooks/hubspot"): (400, 401, 409, 413),
    ("get", "/v1/m/{token}"): (400, 401, 403, 404, 503),
    ("post", "/v1/m/{token}"): (400, 401, 403, 404, 422, 503),
    ("get", "/v1/ack/{token}"): (400, 404),
}


def json_request(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body ``model`` validates."""
    _BODIES[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def text_request(media_type: str, description: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "description": description,
                            "content": {media_type: {"schema": {"type": "string"}}}}}


def _statuses(method: str, path: str, operation: dict[str, Any], secured: bool) -> set[int]:
    found = set(EXTRA.get((method, path), ()))
    if secured:
        found |= {401, 403, 404}
    if "requestBody" in operation:
        found |= {400, 413, 422}
    if operation.get("parameters"):
        found |= {400, 422}
    return found


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        for model in _BODIES.values():
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(body.pop("$defs", {}))
            schemas[model.__name__] = body
        components["securitySchemes"] = {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "An API key: Authorization: Bearer rls_…"}}
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                # The API key is a dependency (deps.principal) reading this header:
                # it is the bearer scheme, not a parameter.
                parameters = operation.pop("parameters", [])
                kept = [p for p in parameters
                        if not (p.get("in") == "header" and p["name"] == "authorization")]
                secured = len(kept) < len(parameters)
                if kept:
                    operation["parameters"] = kept
                if secured:
                    operation["security"] = [{"bearerAuth": []}]
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)  # FastAPI's default shape; ours follows
                for status in sorted(_statuses(method, path, operation, secured)):
                    responses[str(status)] = {"description": DESCRIPTIONS[status],
                                              "content": error}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
