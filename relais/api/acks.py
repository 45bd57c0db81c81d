"""Signed links sent to people (the token is the credential: no API key).

* ``GET /v1/m/{token}``: the message a sensitive notice points to (JSON); for a
  tenant with ``link_second_factor: sms``, a 401 first, a code sent by SMS to the
  recipient, then ``POST /v1/m/{token}`` with ``{"code": …}`` shows it;
* ``GET /v1/ack/{token}``: acknowledge an escalation (one click).

A forged, altered, expired or revoked token answers 404, like a missing record.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from relais.api.deps import json_body
from relais.api.errors import ApiError, not_found
from relais.api.messages import message_fields
from relais.api.openapi import json_request
from sync.domain import as_utc_iso
from sync.escalation import acknowledge
from sync.privacy import audit, links
from sync.queue import enqueue_connections
from sync.senders import SenderMissing
from sync.signed_links import BadLink, verify
from sync.store.db import session_scope
from sync.store.models import Escalation, Message, Tenant
from sync.tenants import parsed_config

router = APIRouter(tags=["links"])


def _open(token: str, code: str | None) -> tuple[dict[str, Any], list[str]]:
    """The message of a valid, unrevoked link (its opening on the record), or
    ``{"code_sent_to": …}`` / ``{"error": "bad_code"}``; and the connections to
    wake (a one-time code just queued for sending)."""
    try:
        claims = verify("m", token)
    except BadLink:
        raise not_found("link") from None
    with session_scope() as session:
        message = session.get(Message, str(claims.get("m")))
        if message is None or message.tenant_id != claims.get("t"):
            raise not_found("link")
        if links.is_revoked(session, claims):
            raise not_found("link")
        tenant = session.get(Tenant, message.tenant_id)
        assert tenant is not None
        config = parsed_config(tenant)
        second = links.needs_code(config) and claims.get("r") is not None
        if links.needs_code(config) and not second:
            raise ApiError(403, "second_factor_unavailable",
                           "this link needs a one-time code and names no recipient: "
                           "open the message with an API key instead")
        if second and code is None:
            try:
                phone = links.phone_for(config, claims)
            except links.SecondFactorUnavailable as exc:
                raise ApiError(403, "second_factor_unavailable", str(exc)) from None
            try:
                sent = links.send_code(session, message.tenant_id, message.id, token, phone)
            except SenderMissing as exc:
                raise ApiError(503, "second_factor_unavailable", str(exc)) from None
            # returned, not raised: the code and its SMS delivery must be committed
            return {"code_sent_to": links.masked(phone)}, [sent.connection_id] if sent else []
        if second and not links.check_code(session, token, code or ""):
            return {"error": "bad_code"}, []
        # Each opening is on the record, in the transaction that reads the content.
        audit.append(session, message.tenant_id, actor="signed link", action="link.opened",
                     subject_type="message", subject_id=message.id,
                     detail={"link_expires": int(claims.get("exp", 0)),
                             **({"second_factor": "sms"} if second else {})})
        return {"id": message.id, "tenant": message.tenant_id, **message_fields(message)}, []


def _code_needed(phone: str, wake: list[str]) -> ApiError:
    enqueue_connections(wake)  # after commit: the outbox rule
    message = (f"a one-time code was sent by SMS to {phone}; POST it to this link "
               'as {"code": "123456"}')
    return ApiError(401, "second_factor_required", message, [{
        "field": "code", "problem": "a one-time code is needed to show this message",
        "hint": f"the code sent to {phone}, within 10 minutes"}])


@router.get("/v1/m/{token}")
def read_message(token: str) -> dict[str, Any]:
    shown, wake = _open(token, None)
    if "code_sent_to" in shown:
        raise _code_needed(shown["code_sent_to"], wake)
    return shown


class LinkCodeBody(BaseModel):
    code: str


@router.post("/v1/m/{token}", openapi_extra=json_request(LinkCodeBody))
def read_message_with_code(token: str, data: Annotated[Any, Depends(json_body)]
                           ) -> dict[str, Any]:
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code.strip().isdigit():
        raise ApiError(422, "invalid_request", "code: six digits expected", [{
            "field": "code", "problem": "missing or not digits",
            "hint": 'send {"code": "123456"}, the code received by SMS'}])
    shown, _ = _open(token, code)
    if shown.get("error") == "bad_code":
        raise ApiError(401, "bad_code", "wrong, expired or spent code", [{
            "field": "code", "problem": "wrong, expired or spent code",
            "hint": "open the link again (GET) for a new code; five tries per code"}])
    return shown


@router.get("/v1/ack/{token}")
def acknowledge_link(token: str) -> dict[str, Any]:
    try:
        claims = verify("ack", token)
    except BadLink:
        raise not_found("link") from None
    with session_scope() as session:
        found = session.get(Escalation, str(claims.get("e")))
        if found is None or found.tenant_id != claims.get("t"):
            raise not_found("link")
        esc, newly = acknowledge(session, found.id, by=str(claims.get("r")), via="link")
        assert esc is not None
        return {
            "escalation": esc.id,
            "message_id": esc.message_id,
            "acknowledged": esc.outcome == "acknowledged",
            "newly": newly,
            "outcome": esc.outcome,
            "acknowledged_by": esc.acknowledged_by,
            "acknowledged_at": as_utc_iso(esc.acknowledged_at) if esc.acknowledged_at else None,
        }
