"""Relais's own email and SMS senders, for rules that send without a tenant connection.

The operator configures them once (``RELAIS_EMAIL_*``, ``RELAIS_SMS_*``). Each
tenant that uses one gets a system connection row (``relais-email`` /
``relais-sms``) created on demand with those settings (credentials encrypted),
so the per-connection engine (claims, limiter, retries, dead letters, replay)
applies unchanged and no tenant's queue slows another's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.settings import Settings, get_settings
from sync.store.crypto import decrypt_json, encrypt_json
from sync.store.models import AuditEvent, Connection
from sync.tenants import SYSTEM_CONNECTIONS

SENDER_NAMES = {"email": "relais-email", "sms": "relais-sms"}
assert set(SENDER_NAMES.values()) == SYSTEM_CONNECTIONS


class SenderMissing(LookupError):
    """The operator has not configured Relais's own sender for this channel."""

    def __init__(self, channel: str, missing: list[str]) -> None:
        self.channel, self.missing = channel, missing
        super().__init__(
            f"Relais's own {channel} sender is not configured: the operator must set "
            + ", ".join(missing)
        )


def sender_config(channel: str, settings: Settings | None = None
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(connection settings, credentials)`` of Relais's own ``channel`` sender."""
    s = settings or get_settings()
    if channel == "email":
        missing = s.missing_sender_settings()["email"]
        if missing:
            raise SenderMissing(channel, missing)
        out: dict[str, Any] = {"host": s.email_host, "security": s.email_security,
                               "from_address": s.email_from_address}
        for key, value in (("port", s.email_port), ("username", s.email_username),
                           ("from_name", s.email_from_name), ("ca_file", s.email_ca_file)):
            if value:
                out[key] = value
        return out, ({"password": s.email_password} if s.email_password else {})
    if channel == "sms":
        missing = s.missing_sender_settings()["sms"]
        if missing:
            raise SenderMissing(channel, missing)
        out = {"gateway": "sinch", "service_plan_id": s.sms_service_plan_id,
               # delivery receipts come back to our webhook
               "callback_url": f"{s.public_url.rstrip('/')}/v1/webhooks/sms"}
        for key, value in (("base_url", s.sms_base_url), ("from", s.sms_from),
                           ("ca_file", s.sms_ca_file)):
            if value:
                out[key] = value
        return out, {"api_token": s.sms_api_token}
    raise ValueError(f"no Relais sender for channel {channel!r}")


def ensure_sender(session: Session, tenant_id: str, channel: str) -> Connection:
    """The tenant's system connection for ``channel``, created or refreshed from settings.

    Raises :class:`SenderMissing` when the operator has not configured it.
    """
    settings, credentials = sender_config(channel)
    name = SENDER_NAMES[channel]
    row = session.scalar(
        select(Connection).where(Connection.tenant_id == tenant_id, Connection.name == name)
    )
    if row is None:
        row = Connection(tenant_id=tenant_id, name=name, provider=channel, role="notify",
                         status="active", settings=settings,
                         credentials=encrypt_json(credentials))
        session.add(row)
        session.flush()
        session.add(AuditEvent(tenant_id=tenant_id, kind="connection.system_created",
                               subject_type="connection", subject_id=row.id,
                               detail={"connection": name}))
        return row
    if row.settings != settings:
        row.settings = settings
    if decrypt_json(row.credentials) != credentials:
        row.credentials = encrypt_json(credentials)
    if row.status != "active":  # a config apply disables connections it does not list
        row.status = "active"
    return row
