"""``python -m sandbox``: run the provider emulators in the foreground.

CRM (Salesforce, HubSpot) and calendar (Google Calendar, Microsoft Graph +
identity platform) emulators. Prints URLs, credentials and the CA file (JSON
with ``--json``), then serves until interrupted. Other processes drive the
knobs through each emulator's ``/__sandbox__/`` endpoints.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from sandbox.calendars import CalendarSandboxes, start_calendar_sandboxes
from sandbox.crm import CrmSandboxes, start_crm_sandboxes

EMULATORS = ("salesforce", "hubspot", "google", "graph")
GROUPS = {"crm": ("salesforce", "hubspot"), "calendars": ("google", "graph")}


def _seed(sb: CrmSandboxes | None) -> None:
    if sb is None:
        return
    if sb.salesforce is not None:
        sb.salesforce.insert("Contact", {"FirstName": "Claire", "LastName": "Durand",
                                         "Email": "claire.durand@example.fr",
                                         "Phone": "+33 1 42 00 00 01"})
        sb.salesforce.insert("Lead", {"FirstName": "Marc", "LastName": "Petit",
                                      "Company": "Petit SARL", "Phone": "+33 6 12 34 56 78"})
    if sb.hubspot is not None:
        sb.hubspot.insert("contacts", {"email": "jeanne.martin@example.fr",
                                       "firstname": "Jeanne", "lastname": "Martin",
                                       "phone": "+33 4 72 00 00 02"})


def _seed_calendars(cal: CalendarSandboxes | None) -> None:
    if cal is None:
        return
    if cal.google is not None:
        cal.google.add_calendar("dr.martin@cabinet-martin.fr", time_zone="Europe/Paris",
                                summary="Dr Martin")
        cal.google.seed_events("dr.martin@cabinet-martin.fr", [
            {"summary": "Consultations", "start": {"dateTime": "2026-03-02T09:00:00",
                                                   "timeZone": "Europe/Paris"},
             "end": {"dateTime": "2026-03-02T12:00:00", "timeZone": "Europe/Paris"},
             "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO,TU,TH"]},
        ], notify=False)
    if cal.graph is not None:
        cal.graph.add_mailbox("me.durand@avocats-durand.fr", display_name="Me Durand",
                              time_zone="Romance Standard Time")
        cal.graph.seed_events("me.durand@avocats-durand.fr", [
            {"subject": "Audience", "showAs": "oof",
             "start": {"dateTime": "2026-03-03T14:00:00", "timeZone": "Romance Standard Time"},
             "end": {"dateTime": "2026-03-03T17:00:00", "timeZone": "Romance Standard Time"}},
        ], notify=False)


def _text(info: dict[str, Any]) -> str:
    lines = [f"CA file (trust it for HTTPS): {info['ca_file']}"]
    for name in EMULATORS:
        if name not in info:
            continue
        lines.append("")
        lines.append(f"{name}: {info[name]['url']}")
        for key, value in info[name].items():
            if key != "url" and value is not None:
                lines.append(f"  {key}: {value}")
    lines += ["", "Ctrl-C to stop."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--salesforce-port", type=int, default=0)
    parser.add_argument("--hubspot-port", type=int, default=0)
    parser.add_argument("--google-port", type=int, default=0)
    parser.add_argument("--graph-port", type=int, default=0)
    parser.add_argument("--only", choices=(*EMULATORS, *GROUPS),
                        help="run one emulator (or the 'crm' / 'calendars' pair)")
    parser.add_argument("--tls-dir", help="write the CA and server certificate here")
    parser.add_argument("--seed", action="store_true", help="add a few demo records")
    parser.add_argument("--json", action="store_true", help="print the details as JSON")
    args = parser.parse_args(argv)
    wanted = set(GROUPS.get(args.only, (args.only,))) if args.only else set(EMULATORS)
    tls = None
    crm: CrmSandboxes | None = None
    cal: CalendarSandboxes | None = None
    try:
        if wanted & {"salesforce", "hubspot"}:
            crm = start_crm_sandboxes(
                salesforce="salesforce" in wanted,
                hubspot="hubspot" in wanted,
                host=args.host,
                salesforce_port=args.salesforce_port,
                hubspot_port=args.hubspot_port,
                tls_dir=args.tls_dir,
            )
            tls = crm.tls
        if wanted & {"google", "graph"}:
            cal = start_calendar_sandboxes(
                google="google" in wanted,
                graph="graph" in wanted,
                host=args.host,
                google_port=args.google_port,
                graph_port=args.graph_port,
                tls_dir=args.tls_dir,
                tls=tls,
            )
    except BaseException:
        for sb in (crm, cal):
            if sb is not None:
                sb.stop()
        raise
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.seed:
            _seed(crm)
            _seed_calendars(cal)
        info: dict[str, Any] = {}
        for sb in (crm, cal):
            if sb is not None:
                info.update(sb.describe())
        print(json.dumps(info, indent=2) if args.json else _text(info), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sb in (crm, cal):
            if sb is not None:
                sb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
