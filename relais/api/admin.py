"""Tenant administration: configuration, deliveries, replay, rule explain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from mappings.errors import ConfigError
from mappings.plan import PlanError, explain_text, plan_for
from mappings.rules import CallContext
from relais.api.deps import DB, Caller, json_body, tenant_for
from relais.api.errors import ApiError, field_errors, not_found, summary
from relais.api.listing import Cursor, From, Limit, To, bad_filter, page_body, read_filters
from relais.api.messages import delivery_view
from relais.api.openapi import json_request, text_request
from relais.auth import Principal
from sync.config_versions import (
    UnknownVersion,
    dry_run,
    get_version,
    rollback,
    unified_diff,
    version_view,
)
from sync.config_versions import history as config_history
from sync.delivery import ReplayRefused, replay, replay_dead
from sync.domain import as_utc_iso, check_instant
from sync.lists import BadFilter, connection_names
from sync.lists import list_deliveries as list_deliveries_of
from sync.queue import enqueue_connections
from sync.settings import get_settings
from sync.store.config_versions import ConfigVersion
from sync.store.db import session_scope
from sync.store.models import Delivery, Tenant, utcnow
from sync.tenants import ApplyResult, apply_config, parsed_config

router = APIRouter(tags=["admin"])
Status = Literal["pending", "in_flight", "delivered", "dead"]


async def _yaml_body(request: Request) -> str:
    raw = await request.body()
    if len(raw) > get_settings().max_message_bytes * 4:
        raise ApiError(413, "too_large", "configuration file too large")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_yaml", "the configuration must be UTF-8 YAML") from None


def _may_configure(session: Session, who: Principal, tenant_id: str) -> None:
    if session.get(Tenant, tenant_id) is None:
        # Creating a tenant is the operator's; a tenant key learns nothing.
        if not (who.role == "operator"):
            raise not_found(f"tenant {tenant_id!r}")
    else:
        tenant_for(session, who, tenant_id, "admin")


def _applied(result: ApplyResult) -> dict[str, Any]:
    return {
        "tenant": result.tenant_id,
        "created": result.created,
        "version": result.version,
        "connections_added": result.connections_added,
        "connections_disabled": result.connections_disabled,
        "new_webhook_secrets": result.new_secrets,
    }


@router.put("/v1/tenants/{tenant_id}/config",
            openapi_extra=text_request("application/yaml", "the tenant's YAML file"))
async def put_config(tenant_id: str, request: Request, who: Caller) -> dict[str, Any]:
    text = await _yaml_body(request)
    filename = f"{tenant_id}.yaml"
    with session_scope() as session:
        _may_configure(session, who, tenant_id)
        try:
            result = apply_config(session, text, filename, expect_tenant=tenant_id, actor=who.label)
        except ConfigError as exc:
            raise ApiError(422, "invalid_config", str(exc), exc.as_json()) from None
    return _applied(result)


@router.post("/v1/tenants/{tenant_id}/config/validate",
             openapi_extra=text_request("application/yaml", "the candidate YAML file"))
async def validate_config(tenant_id: str, request: Request, who: Caller) -> dict[str, Any]:
    """A dry run: the candidate's problems (line and column) and the unified diff
    from the applied configuration. Nothing is stored; 200 whether valid or not."""
    text = await _yaml_body(request)
    with session_scope(readonly=True) as session:
        _may_configure(session, who, tenant_id)
        found = dry_run(session, tenant_id, text)
    return {"valid": found.valid, "errors": found.errors, "diff": found.diff,
            "changed": found.changed, "applied_version": found.applied_version}


@router.get("/v1/tenants/{tenant_id}/config/versions")
def list_config_versions(tenant_id: str, who: Caller, session: DB) -> dict[str, Any]:
    """Every applied version, newest first: who, when, hash (the text: ``/{n}``)."""
    tenant = tenant_for(session, who, tenant_id, "admin")
    return {"current": tenant.config_version,
            "versions": [version_view(row, tenant.config_version)
                         for row in config_history(session, tenant_id)]}


def _version(session: Session, tenant_id: str, version: int) -> ConfigVersion:
    try:
        return get_version(session, tenant_id, version)
    except UnknownVersion as exc:
        raise ApiError(404, "not_found", str(exc), [
            {"field": "version", "problem": str(exc),
             "hint": f"see GET /v1/tenants/{tenant_id}/config/versions"}]) from None


@router.get("/v1/tenants/{tenant_id}/config/versions/{version}")
def get_config_version(
    tenant_id: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], who: Caller, session: DB,
) -> dict[str, Any]:
    tenant = tenant_for(session, who, tenant_id, "admin")
    row = _version(session, tenant_id, version)
    return {**version_view(row, tenant.config_version), "yaml": row.config_yaml,
            "diff_to_current": unified_diff(row.config_yaml, tenant.config_yaml,
                                            f"{tenant_id} v{version}",
                                            f"{tenant_id} v{tenant.config_version} (applied)")}


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]


@router.post("/v1/tenants/{tenant_id}/config/rollback",
             openapi_extra=json_request(RollbackBody))
def rollback_config(
    tenant_id: str, who: Caller, data: Annotated[Any, Depends(json_body)]
) -> dict[str, Any]:
    """Apply an earlier version again, through the same checks as a PUT: it
    becomes a new version (``restored_from``)."""
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        body = RollbackBody.model_validate(data)
    except ValidationError as exc:
        details = field_errors(exc)
        raise ApiError(422, "invalid_request", summary(details), details) from None
    with session_scope() as session:
        tenant_for(session, who, tenant_id, "admin")
        _version(session, tenant_id, body.version)
        try:
            result = rollback(session, tenant_id, body.version, actor=who.label)
        except ConfigError as exc:
            raise ApiError(422, "invalid_config", f"version {body.version} no longer applies: "
                           f"{exc}", exc.as_json()) from None
    return {**_applied(result), "restored_from": body.version}


@router.get("/v1/tenants/{tenant_id}/config", response_class=PlainTextResponse)
def get_config(tenant_id: str, who: Caller, session: DB) -> PlainTextResponse:
    tenant = tenant_for(session, who, tenant_id, "admin")
    return PlainTextResponse(
        tenant.config_yaml,
        media_type="application/yaml",
        headers={"Relais-Config-Version": str(tenant.config_version)},
    )


@router.get("/v1/tenants/{tenant_id}/deliveries")
def list_deliveries(
    tenant_id: str,
    who: Caller,
    session: DB,
    status: Status | None = None,
    connection: Annotated[str | None, Query(
        max_length=64, description="a connection's name, or a provider")] = None,
    start: From = None,
    to: To = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Newest first; a dead one carries its reason in ``last_error``."""
    tenant_for(session, who, tenant_id, "admin")
    filters = read_filters(start=start, end=to, status=status, connection=connection)
    try:
        page = list_deliveries_of(session, tenant_id, filters, limit=limit, cursor=cursor)
    except BadFilter as exc:
        raise bad_filter(exc) from None
    connections = connection_names(session, tenant_id)
    return page_body("deliveries", page, [
        {
            **delivery_view(d, connections.get(d.connection_id)),
            "message_id": d.message_id,
            "appointment_id": d.appointment_id,
            "created_at": as_utc_iso(d.created_at),
        }
        for d in page.items
    ])


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]],
                   Field(min_length=1, max_length=500)]


@router.post("/v1/tenants/{tenant_id}/deliveries/replay", openapi_extra=json_request(ReplayBody))
def replay_selection(
    tenant_id: str, who: Caller, data: Annotated[Any, Depends(json_body)]
) -> dict[str, Any]:
    """Requeue the dead deliveries named in ``ids`` (each once, whoever else is
    replaying them at the same moment); the others are listed in ``refused``."""
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        body = ReplayBody.model_validate(data)
    except ValidationError as exc:
        details = field_errors(exc)
        raise ApiError(422, "invalid_request", summary(details), details) from None
    with session_scope() as session:
        tenant_for(session, who, tenant_id, "admin")
        outcome = replay_dead(session, tenant_id, body.ids, actor=who.label)
        replayed = [{"id": d.id, "status": d.status} for d in outcome.replayed]
        connection_ids = outcome.connection_ids
    if connection_ids:
        enqueue_connections(connection_ids)  # after commit: the outbox rule
    return {"replayed": replayed, "refused": outcome.refused}


@router.post("/v1/deliveries/{delivery_id}/replay")
def replay_delivery(delivery_id: str, who: Caller) -> dict[str, Any]:
    with session_scope() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None or not who.can_see(delivery.tenant_id):
            raise not_found(f"delivery {delivery_id!r}")
        tenant_for(session, who, delivery.tenant_id, "admin")
        try:
            replay(session, delivery, actor=who.label)
        except ReplayRefused as exc:
            raise ApiError(409, "already_queued", str(exc)) from None
        connection_id, status = delivery.connection_id, delivery.status
    enqueue_connections([connection_id])
    return {"id": delivery_id, "status": status}


class ExplainRequest(BaseModel):
    call_type: str
    urgency: Literal["low", "normal", "high", "urgent"] | None = None
    # The instant of the call; without an offset it is read in the tenant's zone.
    # Default: now.
    at: Annotated[datetime, AfterValidator(check_instant)] | None = None
    staff_id: str | None = None
    intake: dict[str, Any] = {}
    known_contact: bool | None = None


@router.post("/v1/tenants/{tenant_id}/rules/explain", openapi_extra=json_request(ExplainRequest))
def explain(
    tenant_id: str, data: Annotated[Any, Depends(json_body)], who: Caller, session: DB
) -> dict[str, Any]:
    tenant = tenant_for(session, who, tenant_id, "secretary")
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "body must be a JSON object")
    try:
        body = ExplainRequest.model_validate(data)
    except ValidationError as exc:
        details = field_errors(exc)
        raise ApiError(422, "invalid_request", summary(details), details) from None
    config = parsed_config(tenant)
    at = body.at or utcnow()
    if at.tzinfo is None or at.utcoffset() is None:
        at = at.replace(tzinfo=config.zone)
    try:
        plan = plan_for(
            config,
            CallContext(
                call_type=body.call_type,
                urgency=body.urgency,
                at=at,
                known_contact=body.known_contact,
                staff_id=body.staff_id,
                intake=body.intake,
            ),
        )
    except PlanError as exc:
        field = "staff_id" if "staff" in str(exc) else "call_type"
        known = [ct.id for ct in config.call_types]
        raise ApiError(
            422,
            "invalid_request",
            str(exc),
            [{"field": field, "problem": str(exc), "hint": f"call types: {', '.join(known)}"}],
        ) from None
    data = plan.model_dump(mode="json")
    return {
        **data,
        "dropped": plan.dropped,
        "rules": data["trace"],
        "text": explain_text(plan),
    }
