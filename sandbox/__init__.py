"""Wire-faithful local emulators of the providers Relais talks to.

The real SDKs talk to them over real sockets. Shared pieces:
``SandboxServer`` (uvicorn in a thread), ``Emulator`` (clock, knobs,
control endpoints under ``/__sandbox__/``), ``Knobs`` (latency, faults,
counters), the test CA (``shared_tls``). CRM emulators:
``SalesforceEmulator``, ``HubSpotEmulator``, ``start_crm_sandboxes()``.
Calendar emulators: ``GoogleCalendarEmulator`` (Calendar v3 + Google OAuth),
``GraphEmulator`` (Microsoft Graph v1.0 + identity platform, HTTPS),
``start_calendar_sandboxes()``. Email and SMS: ``SmtpSandbox`` (aiosmtpd,
STARTTLS or implicit TLS, AUTH) and ``SmsGatewayEmulator`` (Sinch SMS REST
API, signed delivery reports and inbound replies); a tenant's webhook
endpoint: ``WebhookReceiver``. Run them all in the foreground with
``python -m sandbox`` (``relais sandbox``), which prints each connection's settings.
"""

from sandbox.calendars import CalendarSandboxes, start_calendar_sandboxes
from sandbox.crm import CrmSandboxes, start_crm_sandboxes
from sandbox.google_calendar import GoogleCalendarConfig, GoogleCalendarEmulator
from sandbox.graph import GraphConfig, GraphEmulator
from sandbox.hubspot import HubSpotConfig, HubSpotEmulator
from sandbox.knobs import Clock, Fault, Knobs
from sandbox.salesforce import SalesforceConfig, SalesforceEmulator
from sandbox.server import Emulator, SandboxServer
from sandbox.sms_gateway import SmsGatewayConfig, SmsGatewayEmulator
from sandbox.smtp import ReceivedMail, SmtpSandbox
from sandbox.tls import TLSMaterial, create_tls, shared_tls

__all__ = [
    "CalendarSandboxes",
    "Clock",
    "CrmSandboxes",
    "Emulator",
    "Fault",
    "GoogleCalendarConfig",
    "GoogleCalendarEmulator",
    "GraphConfig",
    "GraphEmulator",
    "HubSpotConfig",
    "HubSpotEmulator",
    "Knobs",
    "ReceivedMail",
    "SalesforceConfig",
    "SalesforceEmulator",
    "SandboxServer",
    "SmsGatewayConfig",
    "SmsGatewayEmulator",
    "SmtpSandbox",
    "TLSMaterial",
    "create_tls",
    "shared_tls",
    "start_calendar_sandboxes",
    "start_crm_sandboxes",
]
