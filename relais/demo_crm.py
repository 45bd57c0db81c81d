"""The provider sandboxes of the demo (CRMs, SMTP server, SMS gateway): started
beside it, connected to the sample tenants, and asked at the end what landed."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.email import message_id_for
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.sms_gateway import SmsGatewayEmulator
from sandbox.smtp import SmtpSandbox
from sync.connections import set_credentials
from sync.store.models import Connection


@dataclass
class CrmSandboxes:
    hubspot: HubSpotEmulator
    salesforce: SalesforceEmulator
    smtp: SmtpSandbox
    sms: SmsGatewayEmulator

    @classmethod
    def start(cls, public_url: str) -> CrmSandboxes:
        hubspot = HubSpotEmulator().start()
        salesforce = SalesforceEmulator().start()
        for emulator in (hubspot, salesforce):
            emulator.knobs.set_latency(30)  # a little of the real thing's round trip
        os.environ["RELAIS_DEMO_HUBSPOT_URL"] = hubspot.url
        os.environ["RELAIS_DEMO_SALESFORCE_URL"] = salesforce.url
        os.environ["RELAIS_DEMO_SANDBOX_CA"] = str(salesforce.ca_file)
        smtp = SmtpSandbox(mode="starttls").start()
        sms = SmsGatewayEmulator().start()
        secret = "demo-webhook-secret"
        sms.configure(webhook_secret=secret, inbound_url=f"{public_url}/v1/webhooks/sms")
        mail = smtp.settings()
        # Relais's own senders, as an operator configures them (worker and API inherit them).
        os.environ.update(
            {
                "RELAIS_PUBLIC_URL": public_url,
                "RELAIS_EMAIL_HOST": str(mail["host"]),
                "RELAIS_EMAIL_PORT": str(mail["port"]),
                "RELAIS_EMAIL_SECURITY": str(mail["security"]),
                "RELAIS_EMAIL_USERNAME": str(mail["username"]),
                "RELAIS_EMAIL_PASSWORD": smtp.password,
                "RELAIS_EMAIL_FROM_ADDRESS": "permanence@relais-demo.test",
                "RELAIS_EMAIL_CA_FILE": str(mail["ca_file"]),
                "RELAIS_SMS_BASE_URL": sms.url,
                "RELAIS_SMS_SERVICE_PLAN_ID": sms.config.service_plan_id,
                "RELAIS_SMS_API_TOKEN": sms.api_token,
                "RELAIS_SMS_FROM": "Permanence",
                "RELAIS_SMS_WEBHOOK_SECRET": secret,
            }
        )
        return cls(hubspot=hubspot, salesforce=salesforce, smtp=smtp, sms=sms)

    def connect_all(self, session: Session) -> None:
        """Give every sample CRM connection its sandbox account's credentials."""
        for row in session.scalars(select(Connection).where(Connection.provider == "hubspot")):
            set_credentials(
                session, row.tenant_id, row.name, {"access_token": self.hubspot.private_app_token}
            )
        for row in session.scalars(select(Connection).where(Connection.provider == "salesforce")):
            set_credentials(
                session,
                row.tenant_id,
                row.name,
                {"access_token": self.salesforce.session_id, "instance_url": self.salesforce.url},
            )

    def landings(self) -> dict[str, Callable[[], Counter[str]]]:
        """Per provider: records per delivery idempotency key, read from the sandbox."""

        def hubspot() -> Counter[str]:
            return Counter(o["properties"].get("relais_id") for o in self.hubspot.objects("calls"))

        def salesforce() -> Counter[str]:
            return Counter(
                r.get("Relais_Id__c")
                for r in self.salesforce.records("Task")
                if not str(r.get("Relais_Id__c", "")).endswith(":callback")
            )

        def email() -> Counter[str]:
            return Counter(m.message_id for m in self.smtp.messages)

        def sms() -> Counter[str]:
            return Counter(m.client_reference for m in self.sms.messages)

        return {"hubspot": hubspot, "salesforce": salesforce, "email": email, "sms": sms}

    @staticmethod
    def landing_key(provider: str, idempotency_key: str) -> str:
        """How a destination names a delivery (email: by its Message-ID)."""
        return message_id_for(idempotency_key) if provider == "email" else idempotency_key

    def stop(self) -> None:
        self.hubspot.stop()
        self.salesforce.stop()
        self.smtp.stop()
        self.sms.stop()
