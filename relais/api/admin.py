"""Tenant administration: configuration, deliveries, replay, rule explain."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from sqlalchemy import select

from mappings.errors import ConfigError
from mappings.plan import plan_deliveries
from relais.api.deps import DB, Caller, tenant_for
from relais.api.errors import ApiError, not_found
from relais.api.messages import delivery_view
from relais.db import session_scope
from relais.models import Connection, Delivery, Tenant
from relais.queue import enqueue_connections
from relais.settings import get_settings
from relais.tenants import apply_config, parsed_config
from sync.delivery import ReplayRefused, replay

router = APIRouter(tags=["admin"])
Status = Literal["pending", "in_flight", "delivered", "dead"]


@router.put("/v1/tenants/{tenant_id}/config")
async def put_config(tenant_id: str, request: Request, who: Caller) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > get_settings().max_message_bytes * 4:
        raise ApiError(413, "too_large", "configuration file too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_yaml", "the configuration must be UTF-8 YAML") from None
    filename = f"{tenant_id}.yaml"
    with session_scope() as session:
        if session.get(Tenant, tenant_id) is None:
            # Creating a tenant is the operator's; a tenant key learns nothing.
            if not (who.role == "operator"):
                raise not_found(f"tenant {tenant_id!r}")
        else:
            tenant_for(session, who, tenant_id, "admin")
        try:
            result = apply_config(session, text, filename, expect_tenant=tenant_id, actor=who.label)
        except ConfigError as exc:
            raise ApiError(422, "invalid_config", str(exc), exc.as_json()) from None
    return {
        "tenant": result.tenant_id,
        "created": result.created,
        "version": result.version,
        "connections_added": result.connections_added,
        "connections_disabled": result.connections_disabled,
        "new_webhook_secrets": result.new_secrets,
    }


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
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    tenant_for(session, who, tenant_id, "admin")
    query = select(Delivery).where(Delivery.tenant_id == tenant_id)
    if status:
        query = query.where(Delivery.status == status)
    rows = list(session.scalars(query.order_by(Delivery.created_at.desc()).limit(limit)))
    connections = {
        c.id: c
        for c in session.scalars(select(Connection).where(Connection.tenant_id == tenant_id))
    }
    return {
        "deliveries": [
            {**delivery_view(d, connections.get(d.connection_id)), "message_id": d.message_id}
            for d in rows
        ]
    }


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


@router.post("/v1/tenants/{tenant_id}/rules/explain")
def explain(tenant_id: str, body: ExplainRequest, who: Caller, session: DB) -> dict[str, Any]:
    tenant = tenant_for(session, who, tenant_id, "secretary")
    config = parsed_config(tenant)
    call_type = config.call_type(body.call_type)
    if call_type is None:
        known = ", ".join(ct.id for ct in config.call_types)
        raise ApiError(
            422,
            "invalid_request",
            f"unknown call type {body.call_type!r}",
            [{"field": "call_type", "problem": "unknown", "hint": f"use one of: {known}"}],
        )
    urgency = body.urgency or str(
        getattr(call_type.urgency_default, "value", call_type.urgency_default)
    )
    plan = plan_deliveries(config, body.call_type, urgency)
    return {
        "call_type": body.call_type,
        "urgency": urgency,
        "dropped": plan.dropped,
        "rules": [{"rule": t.rule, "matched": t.matched, "reason": t.reason} for t in plan.trace],
        "deliveries": [
            {"rule": d.rule, "connection": d.connection, "provider": d.provider}
            for d in plan.deliveries
        ],
    }
