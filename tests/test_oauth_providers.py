"""OAuth as the real authorization servers do it (issue 11): the authorize URL the
connector builds, followed through the emulator, then the code redeemed."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from connectors.catalog import provider
from connectors.oauth import InvalidGrant, authorize_url, exchange_code, pkce_pair, refresh
from sandbox.google_calendar import GoogleCalendarEmulator
from sandbox.testing import (  # noqa: F401
    graph_emulator,
    graph_server,
    hubspot_emulator,
    hubspot_server,
    salesforce_emulator,
    salesforce_server,
)

REDIRECT = "http://127.0.0.1:9/oauth/callback"


@pytest.fixture
def google():
    emu = GoogleCalendarEmulator()
    emu.start()
    yield emu
    emu.stop()


def _google_settings(emu) -> dict:
    return {"authorization_url": f"{emu.url}/o/oauth2/v2/auth", "token_url": f"{emu.url}/token"}


def _authorize(url: str) -> str:
    answer = httpx.get(url, follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return parse_qs(urlparse(answer.headers["location"]).query)["code"][0]


def test_google_connection_gets_a_refresh_token_every_time(google):
    """Google gives a refresh token only for access_type=offline, and on a second
    consent only with prompt=consent: the catalogue asks for both."""
    spec, settings = provider("google_calendar"), _google_settings(google)
    client = {"client_id": google.client_id, "client_secret": google.client_secret}
    for _ in range(2):  # the second connection of the same account too
        verifier, challenge = pkce_pair()
        url = authorize_url(spec, settings, google.client_id, REDIRECT, "st", challenge)
        tokens = exchange_code(spec, settings, client, _authorize(url), REDIRECT, verifier)
        assert tokens.refresh_token
        again = refresh(spec, settings, {**client, **tokens.as_credentials()})
        assert again.access_token != tokens.access_token


def test_google_emulator_is_as_strict_as_google(google):
    spec, settings = provider("google_calendar"), _google_settings(google)
    client = {"client_id": google.client_id, "client_secret": google.client_secret}
    base = f"{settings['authorization_url']}?response_type=code&client_id={google.client_id}" \
           f"&redirect_uri={REDIRECT}&scope=x"  # fmt: skip
    online = exchange_code(spec, settings, client, _authorize(base), REDIRECT, None)
    assert online.refresh_token is None  # no access_type=offline: no refresh token
    first = exchange_code(spec, settings, client, _authorize(base + "&access_type=offline"),
                          REDIRECT, None)  # fmt: skip
    assert first.refresh_token
    second = exchange_code(spec, settings, client, _authorize(base + "&access_type=offline"),
                           REDIRECT, None)  # fmt: skip
    assert second.refresh_token is None  # consent already given, no prompt=consent
    # PKCE: the verifier must match the challenge sent to the authorize endpoint.
    verifier, challenge = pkce_pair()
    pkce = f"{base}&code_challenge={challenge}&code_challenge_method=S256"
    with pytest.raises(InvalidGrant, match="code verifier"):
        exchange_code(spec, settings, client, _authorize(pkce), REDIRECT, "wrong" * 10)
    with pytest.raises(InvalidGrant, match="code verifier"):
        exchange_code(spec, settings, client, _authorize(pkce), REDIRECT, None)
    assert exchange_code(spec, settings, client, _authorize(pkce), REDIRECT, verifier).access_token


def test_salesforce_checks_pkce(salesforce_emulator):
    emu = salesforce_emulator
    spec = provider("salesforce")
    settings = {"authorization_url": f"{emu.url}/services/oauth2/authorize",
                "token_url": f"{emu.url}/services/oauth2/token", "ca_file": str(emu.ca_file)}
    client = {"client_id": emu.client_id, "client_secret": emu.client_secret}

    def code(challenge: str) -> str:
        url = authorize_url(spec, settings, emu.client_id, REDIRECT, "st", challenge)
        answer = httpx.get(url, verify=str(emu.ca_file), follow_redirects=False, timeout=10)
        return parse_qs(urlparse(answer.headers["location"]).query)["code"][0]

    verifier, challenge = pkce_pair()
    with pytest.raises(InvalidGrant, match="code verifier"):
        exchange_code(spec, settings, client, code(challenge), REDIRECT, "x" * 64)
    tokens = exchange_code(spec, settings, client, code(challenge), REDIRECT, verifier)
    assert tokens.refresh_token and tokens.extra["instance_url"]


def test_hubspot_connection_asks_every_scope_it_uses(hubspot_emulator):
    """Issue 11: HubSpot checks scopes per endpoint (403 MISSING_SCOPES); a connection
    made through the catalogue's authorize URL can do all the connector does: write
    contacts, calls, tasks and meetings, associate them, and read properties."""
    from connectors.base import ConnectionInfo, Runtime
    from connectors.hubspot.client import HubSpotConnector
    from sync.crm_mapping import crm_mapping

    emu = hubspot_emulator
    spec = provider("hubspot")
    settings = {"authorization_url": f"{emu.url}/oauth/authorize",
                "token_url": f"{emu.url}/oauth/v1/token", "api_base_url": emu.url}
    client = {"client_id": emu.client_id, "client_secret": emu.client_secret}
    url = authorize_url(spec, settings, emu.client_id, REDIRECT, "st", None)
    tokens = exchange_code(spec, settings, client, _authorize(url), REDIRECT, None)
    info = ConnectionInfo("conn-scopes", "t", "hubspot", "hubspot", settings,
                          tokens.as_credentials(), crm_mapping("hubspot"))  # fmt: skip
    connector = HubSpotConnector(info, Runtime())
    assert connector.check_fields({"contacts": ["phone"], "calls": ["hs_call_title"]}) == []
    from test_hubspot import _message

    request = _message(1)
    request.payload["message"]["callback_requested"] = True
    results = connector.deliver([request])
    assert [r.error for r in results] == [None]
    assert emu.knobs.counters().get("hs.missing_scopes", 0) == 0
    # A token without the write scope is refused as HubSpot does.
    narrow = emu.issue_auth_code(redirect_uri=REDIRECT, scopes=("crm.objects.contacts.read",))
    weak = exchange_code(spec, settings, client, narrow, REDIRECT, None)
    refused = HubSpotConnector(replace(info, credentials=weak.as_credentials()),
                               Runtime()).deliver([_message(2)])  # fmt: skip
    assert "MISSING_SCOPES" in str(refused[0].error) or "required scopes" in str(
        refused[0].error)


def test_outlook_sends_its_scopes_on_redemption_and_refresh(graph_emulator):
    """Issue 11: Microsoft identity wants ``scope`` on the token requests too
    (AADSTS900144 without); the catalogue says so and the connector sends them."""
    emu = graph_emulator
    spec = provider("outlook")
    settings = {"authorization_url": f"{emu.authority}/oauth2/v2.0/authorize",
                "token_url": f"{emu.authority}/oauth2/v2.0/token", "ca_file": str(emu.ca_file)}
    client = {"client_id": emu.client_id, "client_secret": emu.client_secret}
    verifier, challenge = pkce_pair()
    url = authorize_url(spec, settings, emu.client_id, REDIRECT, "st", challenge)
    answer = httpx.get(url, verify=str(emu.ca_file), follow_redirects=False, timeout=10)
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    tokens = exchange_code(spec, settings, client, code, REDIRECT, verifier)
    assert tokens.refresh_token and "Calendars.ReadWrite" in tokens.extra["scope"]
    again = refresh(spec, settings, {**client, **tokens.as_credentials()})
    assert again.access_token != tokens.access_token
