"""``python -m sandbox``: run the CRM emulators in the foreground.

Prints URLs, credentials and the CA file (JSON with ``--json``), then serves
until interrupted. Other processes drive the knobs through each emulator's
``/__sandbox__/`` endpoints.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from sandbox.crm import CrmSandboxes, start_crm_sandboxes


def _seed(sb: CrmSandboxes) -> None:
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


def _text(info: dict[str, Any]) -> str:
    lines = [f"CA file (trust it for HTTPS): {info['ca_file']}"]
    for name in ("salesforce", "hubspot"):
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
    parser.add_argument("--only", choices=("salesforce", "hubspot"))
    parser.add_argument("--tls-dir", help="write the CA and server certificate here")
    parser.add_argument("--seed", action="store_true", help="add a few demo records")
    parser.add_argument("--json", action="store_true", help="print the details as JSON")
    args = parser.parse_args(argv)
    sb = start_crm_sandboxes(
        salesforce=args.only in (None, "salesforce"),
        hubspot=args.only in (None, "hubspot"),
        host=args.host,
        salesforce_port=args.salesforce_port,
        hubspot_port=args.hubspot_port,
        tls_dir=args.tls_dir,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.seed:
            _seed(sb)
        info = sb.describe()
        print(json.dumps(info, indent=2) if args.json else _text(info), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sb.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
