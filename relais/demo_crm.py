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


@dataclass
class CrmSandboxes:
    hubspot: HubSpotEmulator

    @classmethod
    def start(cls) -> CrmSandboxes:
        hubspot = HubSpotEmulator().start()
        hubspot.knobs.set_latency(30)  # a little of the real thing's round trip
        os.environ["RELAIS_DEMO_HUBSPOT_URL"] = hubspot.url
        return cls(hubspot=hubspot)

    def connect_all(self, session: Session) -> None:
        """Give every sample CRM connection its sandbox account's credentials."""
        for row in session.scalars(select(Connection).where(Connection.provider == "hubspot")):
            set_credentials(
                session, row.tenant_id, row.name, {"access_token": self.hubspot.private_app_token}
            )

    def landings(self) -> dict[str, Callable[[], Counter[str]]]:
        """Per provider: records per delivery idempotency key, read from the sandbox."""

        def hubspot() -> Counter[str]:
            return Counter(o["properties"].get("relais_id") for o in self.hubspot.objects("calls"))

        return {"hubspot": hubspot}

    def stop(self) -> None:
        self.hubspot.stop()
