"""The CRM sandboxes of the demo: started beside it, connected to the sample
tenants, and asked at the end what landed in them."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from relais.connections import set_credentials
from relais.models import Connection
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator


@dataclass
class CrmSandboxes:
    hubspot: HubSpotEmulator
    salesforce: SalesforceEmulator

    @classmethod
    def start(cls) -> CrmSandboxes:
        hubspot = HubSpotEmulator().start()
        salesforce = SalesforceEmulator().start()
        for emulator in (hubspot, salesforce):
            emulator.knobs.set_latency(30)  # a little of the real thing's round trip
        os.environ["RELAIS_DEMO_HUBSPOT_URL"] = hubspot.url
        os.environ["RELAIS_DEMO_SALESFORCE_URL"] = salesforce.url
        os.environ["RELAIS_DEMO_SANDBOX_CA"] = str(salesforce.ca_file)
        return cls(hubspot=hubspot, salesforce=salesforce)

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

        return {"hubspot": hubspot, "salesforce": salesforce}

    def stop(self) -> None:
        self.hubspot.stop()
        self.salesforce.stop()
