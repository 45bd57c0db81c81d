"""The connectors' ``ConnectionInfo`` for the email and SMS sandboxes (kept out of
``sandbox/``, which imports nothing of ours)."""

from __future__ import annotations

from typing import Any

from connectors.base import ConnectionInfo
from sandbox.sms_gateway import SmsGatewayEmulator
from sandbox.smtp import SmtpSandbox


def email_connection(smtp: SmtpSandbox, *, password: str | None = None,
                     **settings: Any) -> Any:
    """The email connector's ``ConnectionInfo`` for this SMTP sandbox."""

    credentials = {"password": smtp.password if password is None else password}
    return ConnectionInfo(id="conn-email", tenant_id="tenant-sandbox", name="email",
                          provider="email", settings=smtp.settings(**settings),
                          credentials=credentials)

def sms_connection(gateway: SmsGatewayEmulator, *, api_token: str | None = None,
                   **settings: Any) -> Any:
    """The SMS connector's ``ConnectionInfo`` for this gateway emulator."""

    credentials = {"api_token": gateway.api_token if api_token is None else api_token,
                   "webhook_secret": gateway.config.webhook_secret}
    return ConnectionInfo(id="conn-sms", tenant_id="tenant-sandbox", name="sms",
                          provider="sms", settings=gateway.settings(**settings),
                          credentials=credentials)

