"""Start the CRM emulators together (tests, demo mode, ``python -m sandbox``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.hubspot import HubSpotConfig, HubSpotEmulator
from sandbox.knobs import Clock
from sandbox.salesforce import SalesforceConfig, SalesforceEmulator
from sandbox.server import EmulatorGroup
from sandbox.tls import TLSMaterial, create_tls, shared_tls

__all__ = ["CrmSandboxes", "start_crm_sandboxes"]


@dataclass
class CrmSandboxes(EmulatorGroup):
    """Handles of the running CRM emulators (either may be None)."""

    salesforce: SalesforceEmulator | None
    hubspot: HubSpotEmulator | None
    tls: TLSMaterial


def start_crm_sandboxes(
    *,
    salesforce: bool = True,
    hubspot: bool = True,
    host: str = "127.0.0.1",
    salesforce_port: int = 0,
    hubspot_port: int = 0,
    tls_dir: str | Path | None = None,
    salesforce_config: SalesforceConfig | None = None,
    hubspot_config: HubSpotConfig | None = None,
    clock: Clock | None = None,
    hubspot_tls: bool = False,
) -> CrmSandboxes:
    """Start the Salesforce (HTTPS) and HubSpot (HTTP) emulators.

    ``tls_dir`` writes the CA and server certificate there (stable path for
    other processes); otherwise a per-process temporary CA is used. Ports 0
    pick free ports. A shared ``clock`` makes time travel move both at once.
    """
    tls = create_tls(tls_dir) if tls_dir is not None else shared_tls()
    sf = hs = None
    try:
        if salesforce:
            sf = SalesforceEmulator(config=salesforce_config, clock=clock)
            sf.start(host=host, port=salesforce_port, tls=tls)
        if hubspot:
            hs = HubSpotEmulator(config=hubspot_config, clock=clock)
            hs.start(host=host, port=hubspot_port, tls=tls if hubspot_tls else False)
    except BaseException:
        for emu in (sf, hs):
            if emu is not None:
                emu.stop()
        raise
    return CrmSandboxes(salesforce=sf, hubspot=hs, tls=tls)
