"""``python -m sandbox``: run the provider emulators in the foreground.

CRM (Salesforce, HubSpot), calendar (Google Calendar, Microsoft Graph +
identity platform), SMTP server, SMS gateway (Sinch's API) and a webhook
receiver. Prints, for each, what a tenant's connection needs: the exact
``settings:`` block and the ``relais connect`` command (or the
``RELAIS_EMAIL_*`` / ``RELAIS_SMS_*`` environment of Relais's own senders),
then serves until interrupted (JSON with ``--json``). Other processes drive
the knobs through each emulator's ``/__sandbox__/`` endpoints.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

import yaml

from sandbox.calendars import CalendarSandboxes, start_calendar_sandboxes
from sandbox.crm import CrmSandboxes, start_crm_sandboxes
from sandbox.sms_gateway import SmsGatewayEmulator
from sandbox.smtp import SmtpSandbox
from sandbox.tls import TLSMaterial, create_tls, shared_tls
from sandbox.webhook_receiver import SECRETS_PATH, WebhookReceiver

EMULATORS = ("salesforce", "hubspot", "google", "graph", "smtp", "sms", "webhook")
GROUPS = {"crm": ("salesforce", "hubspot"), "calendars": ("google", "graph"),
          "messaging": ("smtp", "sms", "webhook")}
# The connection names the printed YAML uses (any name works).
NAMES = {"salesforce": "crm", "hubspot": "crm", "google": "agenda", "graph": "agenda"}
PROVIDERS = {"salesforce": "salesforce", "hubspot": "hubspot", "google": "google_calendar",
             "graph": "outlook"}
# Never printed as connection details: SDK-level endpoints that are not settings
# (Google's discovery ``api_endpoint`` is not the connector's ``api_base_url``).
SDK_ONLY = frozenset({"api_endpoint", "batch_uri"})


@dataclass
class Running:
    tls: TLSMaterial
    crm: CrmSandboxes | None = None
    cal: CalendarSandboxes | None = None
    smtp: SmtpSandbox | None = None
    sms: SmsGatewayEmulator | None = None
    webhook: WebhookReceiver | None = None

    def stop(self) -> None:
        for sb in (self.crm, self.cal, self.smtp, self.sms, self.webhook):
            if sb is not None:
                sb.stop()


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


def _connection(name: str, settings: dict[str, Any], connect: str) -> dict[str, Any]:
    """A provider's part of the description: the connection's ``settings:`` (as the
    connectors read them: connectors/*.py, providers.yaml) and how to connect it."""
    return {"provider": PROVIDERS[name], "connection": NAMES[name], "settings": settings,
            "connect": f"relais connect TENANT {NAMES[name]} {connect}"}


# Each emulator's OAuth endpoints (authorize, token, revocation), as its module
# docstring lists them.
OAUTH_PATHS = {"salesforce": ("/services/oauth2/authorize", "/services/oauth2/token",
                              "/services/oauth2/revoke"),
               "hubspot": ("/oauth/authorize", "/oauth/v1/token",
                           "/oauth/v1/refresh-tokens/{token}"),
               "google": ("/o/oauth2/v2/auth", "/token", "/revoke")}


def _oauth(name: str, url: str) -> dict[str, str]:
    authorize, token, revoke = OAUTH_PATHS[name]
    return {"authorization_url": url + authorize, "token_url": url + token,
            "revocation_url": url + revoke}


def describe(run: Running, relais_url: str) -> dict[str, Any]:
    """URLs, credentials, connection settings and env lines, JSON-serialisable."""
    info: dict[str, Any] = {"ca_file": str(run.tls.ca_file)}
    crm, cal = run.crm, run.cal
    for sb in (crm, cal):
        if sb is not None:
            info.update(sb.describe())
    if crm is not None and crm.salesforce is not None:
        sf = crm.salesforce
        info["salesforce"].update(_connection("salesforce", {
            "instance_url": sf.url, **_oauth("salesforce", sf.url), "ca_file": str(sf.ca_file),
        }, f"--client-id {sf.client_id} --client-secret {sf.client_secret} "
           "--client-credentials"))
    if crm is not None and crm.hubspot is not None:
        hs = crm.hubspot
        info["hubspot"].update(_connection("hubspot", {
            "api_base_url": hs.url, **_oauth("hubspot", hs.url),
        }, f"--token {hs.private_app_token}"))
    if cal is not None and cal.google is not None:
        g = cal.google
        info["google"].update(_connection("google", {
            "api_base_url": g.url, **_oauth("google", g.url),
        }, f"--client-id {g.client_id} --client-secret {g.client_secret} --authorize"))
        # the quick way: a token of the sandbox's default user (valid one hour)
        info["google"]["connect_with_token"] = (
            f"relais connect TENANT {NAMES['google']} --token {g.access_token}")
    if cal is not None and cal.graph is not None:
        ms = cal.graph
        info["graph"].update(_connection("graph", {
            "auth": "client_credentials",  # app-only: msal asks the identity platform
            "authority": ms.authority,
            "directory_tenant": ms.tenant_id,
            "graph_base_url": ms.graph_url,
            "token_url": f"{ms.authority}/oauth2/v2.0/token",
            "scopes": ["https://graph.microsoft.com/.default"],
            "ca_file": str(ms.ca_file),
        }, f"--client-id {ms.client_id} --client-secret {ms.client_secret} "
           "--client-credentials"))
    if run.smtp is not None:
        smtp = run.smtp
        mail = smtp.settings()
        info["smtp"] = {"host": smtp.host, "port": smtp.port, "security": smtp.mode,
                        "username": smtp.username, "password": smtp.password,
                        "settings": mail, "env": {
                            "RELAIS_EMAIL_HOST": smtp.host,
                            "RELAIS_EMAIL_PORT": str(smtp.port),
                            "RELAIS_EMAIL_SECURITY": smtp.mode,
                            "RELAIS_EMAIL_USERNAME": smtp.username,
                            "RELAIS_EMAIL_PASSWORD": smtp.password,
                            "RELAIS_EMAIL_FROM_ADDRESS": str(mail["from_address"]),
                            "RELAIS_EMAIL_CA_FILE": str(smtp.ca_file),
                        }}  # fmt: skip
    if run.sms is not None:
        sms = run.sms
        info["sms"] = {"url": sms.url, "control": sms.url + "/__sandbox__/",
                       **sms.credentials(), "settings": sms.settings(),
                       "inbound_url": sms.config.inbound_url, "env": {
                           "RELAIS_PUBLIC_URL": relais_url,
                           "RELAIS_SMS_BASE_URL": sms.url,
                           "RELAIS_SMS_SERVICE_PLAN_ID": sms.config.service_plan_id,
                           "RELAIS_SMS_API_TOKEN": sms.api_token,
                           "RELAIS_SMS_FROM": str(sms.settings()["from"]),
                           "RELAIS_SMS_WEBHOOK_SECRET": str(sms.config.webhook_secret),
                       }}  # fmt: skip
    if run.webhook is not None:
        url = run.webhook.url
        info["webhook"] = {
            "url": url,
            "connection_url": f"{url}/hooks/TENANT/hook",
            "secrets": f"{url}{SECRETS_PATH}/hooks/TENANT/hook",
        }
    return info


def _yaml_block(name: str, entry: dict[str, Any]) -> list[str]:
    text = yaml.safe_dump({"connections": {entry["connection"]: {
        "provider": entry["provider"], "settings": entry["settings"]}}},
        sort_keys=False, default_flow_style=False)
    return [f"    {line}" for line in text.splitlines()]


def _text(info: dict[str, Any]) -> str:
    lines = [f"CA file (trust it for HTTPS): {info['ca_file']}"]
    for name in ("salesforce", "hubspot", "google", "graph"):
        if name not in info:
            continue
        entry = info[name]
        lines += ["", f"{name}: {entry['url']}", "  in the tenant's YAML:"]
        lines += _yaml_block(name, entry)
        lines.append(f"  then: {entry['connect']}")
        if "connect_with_token" in entry:
            lines.append(f"    or: {entry['connect_with_token']}   (valid one hour)")
        shown = {"url", "settings", "connect", "connect_with_token", "provider", "connection"}
        for key, value in entry.items():
            if key not in shown | SDK_ONLY and value is not None:
                lines.append(f"  {key}: {value}")
    if "smtp" in info:
        smtp = info["smtp"]
        lines += ["", f"smtp: {smtp['host']}:{smtp['port']} ({smtp['security']}, AUTH "
                  f"{smtp['username']})", "  Relais's own email sender (set before relais "
                  "serve and relais worker):"]
        lines += [f"    export {k}={shlex.quote(v)}" for k, v in smtp["env"].items()]
    if "sms" in info:
        sms = info["sms"]
        lines += ["", f"sms: {sms['url']} (Sinch's REST API; receipts and replies go to "
                  f"{sms['inbound_url']})", "  Relais's own SMS sender:"]
        lines += [f"    export {k}={shlex.quote(v)}" for k, v in sms["env"].items()]
        lines.append(f"  control: {sms['control']}")
    if "webhook" in info:
        hook = info["webhook"]
        lines += ["", f"webhook receiver: {hook['url']}", "  in the tenant's YAML:",
                  "    connections:", "      hook:", "        provider: webhook",
                  f"        url: {hook['connection_url']}",
                  "  then give it the signing secret relais tenants apply prints:",
                  f"    curl -X PUT --data whsec_… {hook['secrets']}"]
    lines += ["", "TENANT is the tenant's id. Ctrl-C to stop."]
    return "\n".join(lines)


def start(wanted: set[str], args: argparse.Namespace) -> Running:
    tls = create_tls(args.tls_dir) if args.tls_dir is not None else shared_tls()
    run = Running(tls=tls)
    try:
        if wanted & {"salesforce", "hubspot"}:
            run.crm = start_crm_sandboxes(
                salesforce="salesforce" in wanted, hubspot="hubspot" in wanted,
                host=args.host, salesforce_port=args.salesforce_port,
                hubspot_port=args.hubspot_port, tls_dir=args.tls_dir)  # fmt: skip
            run.tls = run.crm.tls
        if wanted & {"google", "graph"}:
            run.cal = start_calendar_sandboxes(
                google="google" in wanted, graph="graph" in wanted, host=args.host,
                google_port=args.google_port, graph_port=args.graph_port,
                tls_dir=args.tls_dir, tls=run.tls)  # fmt: skip
        if "smtp" in wanted:
            run.smtp = SmtpSandbox("starttls", tls=run.tls).start()
        if "sms" in wanted:
            run.sms = SmsGatewayEmulator().start(host=args.host, port=args.sms_port)
            # replies and receipts are signed (Sinch's callback signing) and go to Relais
            run.sms.configure(webhook_secret=secrets.token_urlsafe(24),
                              inbound_url=f"{args.relais_url.rstrip('/')}/v1/webhooks/sms")
        if "webhook" in wanted:
            run.webhook = WebhookReceiver()
            run.webhook.start(port=args.webhook_port)
    except BaseException:
        run.stop()
        raise
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    for name in ("salesforce", "hubspot", "google", "graph", "sms", "webhook"):
        parser.add_argument(f"--{name}-port", type=int, default=0)
    parser.add_argument("--only", choices=(*EMULATORS, *GROUPS),
                        help="run one emulator (or the 'crm', 'calendars' or 'messaging' group)")
    parser.add_argument("--relais-url", default="http://127.0.0.1:8000",
                        help="where Relais's API listens (SMS replies and receipts go there)")
    parser.add_argument("--tls-dir", help="write the CA and server certificate here")
    parser.add_argument("--seed", action="store_true", help="add a few demo records")
    parser.add_argument("--json", action="store_true", help="print the details as JSON")
    args = parser.parse_args(argv)
    wanted = set(GROUPS.get(args.only, (args.only,))) if args.only else set(EMULATORS)
    run = start(wanted, args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.seed:
            _seed(run.crm)
            _seed_calendars(run.cal)
        info = describe(run, args.relais_url)
        print(json.dumps(info, indent=2) if args.json else _text(info), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        run.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
