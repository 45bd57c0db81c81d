"""Start the calendar emulators together (tests, demo mode, ``python -m sandbox``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.google_calendar import GoogleCalendarConfig, GoogleCalendarEmulator
from sandbox.graph import GraphConfig, GraphEmulator
from sandbox.knobs import Clock
from sandbox.server import EmulatorGroup
from sandbox.tls import TLSMaterial, create_tls, shared_tls

__all__ = ["CalendarSandboxes", "start_calendar_sandboxes"]


@dataclass
class CalendarSandboxes(EmulatorGroup):
    """Handles of the running calendar emulators (either may be None).

    ``google.url`` (plain HTTP by default) and ``graph.url`` (HTTPS: trust
    ``ca_file``); ``describe()`` lists URLs, credentials and control endpoints.
    """

    google: GoogleCalendarEmulator | None
    graph: GraphEmulator | None
    tls: TLSMaterial


def start_calendar_sandboxes(
    *,
    google: bool = True,
    graph: bool = True,
    host: str = "127.0.0.1",
    google_port: int = 0,
    graph_port: int = 0,
    tls_dir: str | Path | None = None,
    google_config: GoogleCalendarConfig | None = None,
    graph_config: GraphConfig | None = None,
    clock: Clock | None = None,
    google_tls: bool = False,
    tls: TLSMaterial | None = None,
) -> CalendarSandboxes:
    """Start the Google Calendar (HTTP) and Microsoft Graph + identity (HTTPS) emulators.

    ``tls_dir`` writes the CA and server certificate there (a stable path for
    other processes); otherwise the per-process sandbox CA is used. Ports 0
    pick free ports. A shared ``clock`` makes time travel move both at once.
    ``tls`` reuses an existing CA (e.g. the CRM sandboxes' one). Webhook
    deliveries to ``https`` receivers trust the same CA unless the configs
    say otherwise (``webhook_verify``).
    """
    if tls is None:
        tls = create_tls(tls_dir) if tls_dir is not None else shared_tls()
    g = m = None
    try:
        if google:
            g = GoogleCalendarEmulator(config=google_config, clock=clock)
            if g.config.webhook_verify is None:
                g.config.webhook_verify = str(tls.ca_file)
            g.start(host=host, port=google_port, tls=tls if google_tls else False)
        if graph:
            m = GraphEmulator(config=graph_config, clock=clock)
            if m.config.webhook_verify is None:
                m.config.webhook_verify = str(tls.ca_file)
            m.start(host=host, port=graph_port, tls=tls)
    except BaseException:
        for emu in (g, m):
            if emu is not None:
                emu.stop()
        raise
    return CalendarSandboxes(google=g, graph=m, tls=tls)
