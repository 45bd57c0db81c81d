"""Helpers to point the real SDKs at the emulators (tests and demos).

Import the pytest fixtures in a test module (both names of a pair)::

    from sandbox.testing import (  # noqa: F401
        hubspot_emulator, hubspot_server, salesforce_emulator, salesforce_server)

``salesforce_server``/``hubspot_server`` run one emulator per test module;
``salesforce_emulator``/``hubspot_emulator`` hand it to a test after a reset
(records, knobs, clock, settings, and the ready-made credentials valid again).
Then ``salesforce_client(emu)`` / ``hubspot_client(emu)`` build real SDK
clients pointed at it.

Calendars, the same way: ``google_server``/``google_emulator`` and
``graph_server``/``graph_emulator``; ``google_service(emu)`` (googleapiclient
``build("calendar", "v3", ...)`` with refreshable credentials),
``google_batch(emu)``, ``msal_app(emu)`` (ConfidentialClientApplication),
``ms_session(emu)`` and ``graph_client(emu, token)`` (httpx, TLS trusting the
sandbox CA). ``NotificationReceiver`` (fixture ``notification_receiver``)
records webhook POSTs and answers Graph's validation handshake.

Email and SMS: ``smtp_server``/``smtp_sandbox`` (STARTTLS + AUTH) and
``smtps_server``/``smtps_sandbox`` (implicit TLS), ``sms_server``/
``sms_gateway`` (the Sinch SMS emulator, callbacks signed with
``SMS_WEBHOOK_SECRET``). The sandbox imports nothing of ours: the connectors'
``ConnectionInfo`` for these is built in ``tests/channels_helpers.py``.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from sandbox.google_calendar import GoogleCalendarEmulator
from sandbox.graph import GraphEmulator
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.sms_gateway import SmsGatewayConfig, SmsGatewayEmulator
from sandbox.smtp import SmtpSandbox
from sandbox.tls import TLSMaterial, shared_tls
from sandbox.webhook_receiver import BackloggedHTTPServer

__all__ = [
    "SMS_WEBHOOK_SECRET",
    "NotificationReceiver",
    "Received",
    "sms_gateway",
    "sms_server",
    "smtp_sandbox",
    "smtp_server",
    "smtps_sandbox",
    "smtps_server",
    "google_batch",
    "google_credentials",
    "google_emulator",
    "google_service",
    "graph_client",
    "graph_emulator",
    "hubspot_client",
    "hubspot_emulator",
    "ms_session",
    "msal_app",
    "notification_receiver",
    "salesforce_client",
    "salesforce_emulator",
    "salesforce_session",
]



def salesforce_session(emulator: SalesforceEmulator) -> requests.Session:
    """A requests session trusting the sandbox CA only.

    ``trust_env = False`` matters: ``REQUESTS_CA_BUNDLE`` (set on this machine)
    would otherwise silently override ``session.verify``.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulator.ca_file) if emulator.ca_file else True
    return session


def salesforce_client(emulator: SalesforceEmulator, session_id: str | None = None,
                      **kwargs: Any) -> Any:
    from simple_salesforce import Salesforce

    return Salesforce(instance_url=emulator.url, session_id=session_id or emulator.session_id,
                      session=salesforce_session(emulator), version=emulator.config.api_version,
                      **kwargs)


def hubspot_client(emulator: HubSpotEmulator, access_token: str | None = None,
                   **kwargs: Any) -> Any:
    from hubspot import HubSpot

    return HubSpot(access_token=access_token or emulator.private_app_token, host=emulator.url,
                   **kwargs)


# ------------------------------------------------------------------ calendars


def google_credentials(emulator: GoogleCalendarEmulator, *, token: str | None = None,
                       refresh_token: str | None = None) -> Any:
    """google-auth user credentials that refresh through the emulator's ``/token``."""
    from google.oauth2.credentials import Credentials

    info = emulator.credentials()
    return Credentials(token=token if token is not None else info["access_token"],
                       refresh_token=refresh_token or info["refresh_token"],
                       token_uri=info["token_uri"], client_id=info["client_id"],
                       client_secret=info["client_secret"])


def google_service(emulator: GoogleCalendarEmulator, credentials: Any = None) -> Any:
    """``build("calendar", "v3")`` on the static discovery document, pointed at the emulator."""
    from googleapiclient.discovery import build

    return build("calendar", "v3", credentials=credentials or google_credentials(emulator),
                 static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": f"{emulator.url}/calendar/v3/"})


def google_batch(emulator: GoogleCalendarEmulator, callback: Any = None) -> Any:
    """A BatchHttpRequest on the emulator (batches ignore ``api_endpoint``)."""
    from googleapiclient.http import BatchHttpRequest

    return BatchHttpRequest(callback=callback, batch_uri=f"{emulator.url}/batch/calendar/v3")


def ms_session(emulator: GraphEmulator) -> requests.Session:
    """requests session for msal: trusts the sandbox CA only (``trust_env = False``)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(emulator.ca_file) if emulator.ca_file else True
    return session


def msal_app(emulator: GraphEmulator, **kwargs: Any) -> Any:
    """A fresh msal ConfidentialClientApplication on the emulator's authority.

    msal caches (and replays) throttled and failed token answers per app:
    build a new one per fault test.
    """
    import msal

    return msal.ConfidentialClientApplication(
        emulator.client_id, client_credential=emulator.client_secret,
        authority=emulator.authority, instance_discovery=False,
        http_client=ms_session(emulator), **kwargs)


def graph_client(emulator: GraphEmulator, token: str | None = None, **kwargs: Any) -> Any:
    """httpx client on ``{url}/v1.0`` with a bearer token (an app token by default)."""
    import httpx

    bearer = token or emulator.issue_app_token()
    verify: Any = ssl.create_default_context(cafile=str(emulator.ca_file)) \
        if emulator.ca_file else True
    return httpx.Client(base_url=emulator.graph_url, verify=verify,
                        trust_env=False, headers={"Authorization": f"Bearer {bearer}"},
                        **kwargs)


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


class NotificationReceiver:
    """A webhook endpoint that records what the emulators POST to it.

    Answers ``status`` (202) to notifications and echoes Graph's
    ``validationToken`` as ``text/plain`` (``validation_status``,
    ``validation_body`` and ``validation_content_type`` let a test break the
    handshake). ``delay`` seconds before answering; ``tls`` serves HTTPS with
    the sandbox CA.
    """

    def __init__(self, *, status: int = 202, validation_status: int = 200,
                 validation_content_type: str = "text/plain; charset=utf-8",
                 validation_body: str | None = None, delay: float = 0.0,
                 tls: bool | TLSMaterial = False) -> None:
        self.status = status
        self.validation_status = validation_status
        self.validation_content_type = validation_content_type
        self.validation_body = validation_body
        self.delay = delay
        self.tls = shared_tls() if tls is True else (tls or None)
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def _record(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                query = dict(parse_qsl(split.query, keep_blank_values=True))
                # recorded before answering: the sender may act on the answer
                # (Graph's 201 after the handshake) before this thread runs on
                receiver._record(Received("POST", split.path, query,
                                          {k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                if "validationToken" in query:
                    text = receiver.validation_body if receiver.validation_body is not None \
                        else query["validationToken"]
                    data = text.encode()
                    self.send_response(receiver.validation_status)
                    self.send_header("Content-Type", receiver.validation_content_type)
                else:
                    data = b""
                    self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        server = BackloggedHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.tls.cert_file), str(self.tls.key_file))
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "receiver not started"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    def wait_for(self, count: int = 1, *, where: Callable[[Received], bool] | None = None,
                 timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` matching requests arrived; return the matching ones."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [r for r in self.received if where is None or where(r)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {count} request(s), got {len(hits)}: "
                                       f"{[(r.path, r.query) for r in self.received]}")
                self._cond.wait(left)

    def clear(self) -> None:
        with self._cond:
            self.received.clear()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> NotificationReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------- email and SMS

SMS_WEBHOOK_SECRET = "sandbox-sms-webhook-secret"


def _reset(emulator: Any, defaults: Any) -> None:
    emulator.config = copy.deepcopy(defaults)
    emulator.reset(data=True)
    emulator.configure()  # rebuild derived state (schemas)


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is a test dependency
    pass
else:

    @pytest.fixture(scope="module")
    def salesforce_server() -> Iterator[SalesforceEmulator]:
        emulator = SalesforceEmulator().start()
        try:
            yield emulator
        finally:
            emulator.stop()

    @pytest.fixture
    def salesforce_emulator(salesforce_server: SalesforceEmulator) -> SalesforceEmulator:
        _reset(salesforce_server, salesforce_server.__dict__.setdefault(
            "_pristine_config", copy.deepcopy(salesforce_server.config)))
        return salesforce_server

    @pytest.fixture(scope="module")
    def hubspot_server() -> Iterator[HubSpotEmulator]:
        emulator = HubSpotEmulator().start()
        try:
            yield emulator
        finally:
            emulator.stop()

    @pytest.fixture
    def hubspot_emulator(hubspot_server: HubSpotEmulator) -> HubSpotEmulator:
        _reset(hubspot_server, hubspot_server.__dict__.setdefault(
            "_pristine_config", copy.deepcopy(hubspot_server.config)))
        return hubspot_server

    @pytest.fixture(scope="module")
    def google_server() -> Iterator[GoogleCalendarEmulator]:
        emulator = GoogleCalendarEmulator().start()
        try:
            yield emulator
        finally:
            emulator.stop()

    @pytest.fixture
    def google_emulator(google_server: GoogleCalendarEmulator) -> GoogleCalendarEmulator:
        google_server.wait_notifications(5)
        google_server.config = copy.deepcopy(google_server.__dict__.setdefault(
            "_pristine_config", copy.deepcopy(google_server.config)))
        google_server.reset(data=True)
        return google_server

    @pytest.fixture(scope="module")
    def graph_server() -> Iterator[GraphEmulator]:
        emulator = GraphEmulator().start()
        try:
            yield emulator
        finally:
            emulator.stop()

    @pytest.fixture
    def graph_emulator(graph_server: GraphEmulator) -> GraphEmulator:
        graph_server.wait_notifications(5)
        graph_server.config = copy.deepcopy(graph_server.__dict__.setdefault(
            "_pristine_config", copy.deepcopy(graph_server.config)))
        graph_server.reset(data=True)
        return graph_server

    @pytest.fixture
    def notification_receiver() -> Iterator[NotificationReceiver]:
        receiver = NotificationReceiver()
        receiver.start()
        try:
            yield receiver
        finally:
            receiver.stop()

    @pytest.fixture(scope="module")
    def smtp_server() -> Iterator[SmtpSandbox]:
        with SmtpSandbox("starttls") as server:
            yield server

    @pytest.fixture
    def smtp_sandbox(smtp_server: SmtpSandbox) -> SmtpSandbox:
        smtp_server.reset()
        return smtp_server

    @pytest.fixture(scope="module")
    def smtps_server() -> Iterator[SmtpSandbox]:
        with SmtpSandbox("tls") as server:
            yield server

    @pytest.fixture
    def smtps_sandbox(smtps_server: SmtpSandbox) -> SmtpSandbox:
        smtps_server.reset()
        return smtps_server

    @pytest.fixture(scope="module")
    def sms_server() -> Iterator[SmsGatewayEmulator]:
        emulator = SmsGatewayEmulator(
            config=SmsGatewayConfig(webhook_secret=SMS_WEBHOOK_SECRET)).start()
        try:
            yield emulator
        finally:
            emulator.stop()

    @pytest.fixture
    def sms_gateway(sms_server: SmsGatewayEmulator) -> SmsGatewayEmulator:
        sms_server.config = copy.deepcopy(sms_server.__dict__.setdefault(
            "_pristine_config", copy.deepcopy(sms_server.config)))
        sms_server.reset(data=True)
        return sms_server
