"""The operator's OAuth apps (one per provider): register, list, remove.

Operator keys only. The client secret goes in once and never comes out: lists
show the client id, who registered it and when.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.catalog import oauth_providers
from relais.api.deps import Caller, json_body
from relais.api.errors import ApiError, field_errors, not_found, summary
from relais.api.openapi import json_request
from relais.auth import Principal
from sync.domain import as_utc_iso
from sync.store.db import session_scope
from sync.store.provider_apps import ProviderApp, list_apps, register_app, remove_app

router = APIRouter(prefix="/v1/operator/provider-apps", tags=["operator"])


class AppBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    client_id: Annotated[str, Field(min_length=1, max_length=500)]
    client_secret: Annotated[str, Field(min_length=1, max_length=2000)]
    # The operator's endpoints for this app (a sandbox, a Salesforce My Domain):
    # authorization_url, token_url, revocation_url, ca_file. Tenants' overrides
    # are never used with the operator's app.
    settings: dict[Literal["authorization_url", "token_url", "revocation_url", "ca_file"],
                   Annotated[str, Field(max_length=500)]] = {}


def _operator(who: Principal) -> None:
    if who.role != "operator":
        raise ApiError(403, "forbidden", f"this needs the operator role; your key is {who.role}")


def _provider(name: str) -> str:
    known = oauth_providers()
    if name not in known:
        raise ApiError(404, "not_found", f"no OAuth provider {name!r}", [
            {"field": "provider", "problem": "unknown", "hint": f"one of: {', '.join(known)}"}])
    return name


def app_view(row: ProviderApp) -> dict[str, Any]:
    return {"provider": row.provider, "client_id": row.client_id, "settings": row.settings,
            "registered_by": row.registered_by, "updated_at": as_utc_iso(row.updated_at)}


@router.get("")
def get_apps(who: Caller) -> dict[str, Any]:
    _operator(who)
    with session_scope(readonly=True) as session:
        return {"apps": [app_view(row) for row in list_apps(session)],
                "providers": list(oauth_providers())}


@router.put("/{provider}", openapi_extra=json_request(AppBody))
def put_app(provider: str, who: Caller, data: Annotated[Any, Depends(json_body)]
            ) -> dict[str, Any]:
    """Register (or replace) the operator's app for ``provider``: tenants' OAuth
    connections without client credentials of their own use it."""
    _operator(who)
    _provider(provider)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        body = AppBody.model_validate(data)
    except ValidationError as exc:
        details = field_errors(exc)
        raise ApiError(422, "invalid_request", summary(details), details) from None
    with session_scope() as session:
        created = register_app(session, provider, body.client_id, body.client_secret,
                               actor=who.label, settings=dict(body.settings))
    return {"provider": provider, "client_id": body.client_id, "created": created}


@router.delete("/{provider}")
def delete_app(provider: str, who: Caller) -> dict[str, Any]:
    _operator(who)
    _provider(provider)
    with session_scope() as session:
        if not remove_app(session, provider, actor=who.label):
            raise not_found(f"an app for {provider}")
    return {"provider": provider, "removed": True}
