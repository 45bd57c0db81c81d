"""Change notifications from the providers: each one triggers an immediate pull.

- ``POST /v1/webhooks/google``: a Google Calendar watch channel message. The
  channel id and token must match a live channel we opened (404 unknown,
  stopped or expired; 401 wrong token or resource); ``sync`` is acknowledged
  without pulling; ``exists``/``not_exists`` pull that calendar.
- ``POST /v1/webhooks/graph``: with ``?validationToken=`` it is Graph's
  subscription handshake, echoed as 200 ``text/plain``; otherwise a batch of
  change notifications, each checked against its subscription's
  ``clientState`` (202; 401 when none is valid).
- ``POST /v1/webhooks/hubspot``: signature v3 (HMAC-SHA256 of method, URI,
  body and timestamp with the app's client secret, ``X-HubSpot-Signature-v3``)
  and a timestamp at most 5 minutes away; contact events pull that CRM
  connection's contact directory now.

The pulls are started by the app's ``PullTriggers`` (``create_app(triggers=...)``,
``sync.pull_triggers``): Celery tasks unless a test or tool injects others.

Refusals are logged without secrets and never acted on.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from connectors.hubspot import webhooks as hubspot_webhooks
from relais.api.deps import Caller, parse_json, tenant_for
from relais.api.engine_errors import notification_error
from relais.api.errors import ApiError
from relais.replay import first_time
from sync import calendar_sync
from sync.pull_triggers import PullTriggers
from sync.store.db import session_scope
from sync.store.models import Connection

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

MAX_VALIDATION_TOKEN = 1024


def _refuse(exc: calendar_sync.NotificationRejected, what: str) -> ApiError:
    log.warning("%s notification refused: %s", what, exc.reason)
    return notification_error(exc)


@router.post("/v1/webhooks/google")
async def google_webhook(request: Request) -> JSONResponse:
    headers = {k.lower(): v for k, v in request.headers.items()}
    if not headers.get("x-goog-channel-id"):
        raise ApiError(400, "invalid_notification", "X-Goog-Channel-ID is missing")
    # Google numbers every message of a channel; the channel keeps the highest seen,
    # so a replay (same or lower number) is ignored. Without a number it could not be.
    number = headers.get("x-goog-message-number", "")
    if not (number.isdigit() and 0 < len(number) <= 18 and int(number) > 0):
        raise ApiError(400, "invalid_notification",
                       "X-Goog-Message-Number is missing or not a positive integer",
                       [{"field": "X-Goog-Message-Number", "problem": "missing or invalid"}])
    try:
        result = await run_in_threadpool(
            calendar_sync.google_notification, headers, _triggers(request).calendar
        )
    except calendar_sync.NotificationRejected as exc:
        raise _refuse(exc, "Google") from None
    return JSONResponse(result)


@router.post("/v1/webhooks/graph", status_code=202, responses={
    200: {"description": "Graph's validation handshake: the token echoed as text/plain"}})
async def graph_webhook(request: Request) -> Response:
    token = request.query_params.get("validationToken")
    if token is not None:
        if len(token) > MAX_VALIDATION_TOKEN:
            raise ApiError(400, "invalid_notification", "validationToken is too long")
        return PlainTextResponse(token, status_code=200)
    payload = parse_json(await request.body(), "invalid_notification")
    try:
        result = await run_in_threadpool(
            calendar_sync.graph_notification, payload, _triggers(request).calendar
        )
    except calendar_sync.NotificationRejected as exc:
        raise _refuse(exc, "Graph") from None
    return JSONResponse(result, status_code=202)


# ------------------------------------------------------------------ HubSpot


def _hubspot_candidates(portal_ids: set[str]) -> list[tuple[str, str]]:
    """(connection id, client secret) of active HubSpot connections (of these portals
    when their ``portal_id`` setting is set)."""
    from sync.store.crypto import decrypt_json

    out = []
    with session_scope(readonly=True) as session:
        for row in session.scalars(
            select(Connection).where(Connection.provider == hubspot_webhooks.PROVIDER,
                                     Connection.status == "active")
        ):  # fmt: skip
            portal = (row.settings or {}).get("portal_id")
            if portal is not None and str(portal) not in portal_ids:
                continue
            creds = decrypt_json(row.credentials) if row.credentials else {}
            secret = creds.get("webhook_secret") or creds.get("client_secret")
            if secret:
                out.append((row.id, str(secret)))
    return out


def _uris(request: Request) -> list[str]:
    from sync.settings import get_settings

    uris = [str(request.url)]
    query = f"?{request.url.query}" if request.url.query else ""
    public = str(get_settings().public_url or "").rstrip("/")
    if public:
        uris.append(public + request.url.path + query)  # behind a proxy
    return list(dict.fromkeys(uris))


@router.post("/v1/webhooks/hubspot")
async def hubspot_webhook(request: Request) -> JSONResponse:
    raw = await request.body()
    signature = request.headers.get("x-hubspot-signature-v3") or ""
    stamp = request.headers.get("x-hubspot-request-timestamp") or ""
    if not signature or not hubspot_webhooks.timestamp_fresh(stamp, time.time()):
        log.warning("HubSpot webhook refused: missing signature or stale timestamp")
        raise ApiError(401, "unauthenticated", "missing signature or stale timestamp")
    events = parse_json(raw, "invalid_notification") if raw.strip() else None
    if not isinstance(events, list):
        events = []
    portals = {str(e.get("portalId")) for e in events if isinstance(e, dict)}
    body = raw.decode("utf-8", "replace")
    uris = _uris(request)
    candidates = await run_in_threadpool(_hubspot_candidates, portals)
    matched = [
        cid
        for cid, secret in candidates
        if hubspot_webhooks.verify(secret, "POST", uris, body, stamp, signature)
    ]
    if not matched:
        log.warning("HubSpot webhook refused: no connection's secret matches the signature")
        raise ApiError(401, "unauthenticated", "invalid webhook signature")
    if not await run_in_threadpool(first_time, hubspot_webhooks.PROVIDER, signature,
                                   hubspot_webhooks.TOLERANCE_SECONDS):
        log.warning("HubSpot webhook refused: a replay of a request already received")
        raise ApiError(409, "replayed", "this signed request was already received")
    contact_events = hubspot_webhooks.contact_events(events)
    if contact_events:
        for connection_id in matched:
            await run_in_threadpool(_triggers(request).contacts, connection_id)
    return JSONResponse({"events": len(events), "contact_events": len(contact_events),
                         "pulls": len(matched) if contact_events else 0})  # fmt: skip


def _triggers(request: Request) -> PullTriggers:
    """The pulls a notification starts: the app's (``create_app(triggers=...)``)."""
    triggers: PullTriggers = request.app.state.pull_triggers
    return triggers


# ------------------------------------------------------------------ status


@router.get("/v1/tenants/{tenant_id}/sync/calendars")
def calendar_sync_status(tenant_id: str, who: Caller) -> JSONResponse:
    """Per calendar connection: state, last success, cursor age per calendar, channels,
    changes in (moved, cancelled), last error."""
    with session_scope(readonly=True) as session:
        tenant_for(session, who, tenant_id, "admin")
        return JSONResponse({"connections": calendar_sync.sync_status(session, tenant_id)})
