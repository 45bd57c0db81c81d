"""Helpers to point the real SDKs at the emulators (tests and demos).

Import the pytest fixtures in a test module (both names of a pair)::

    from sandbox.testing import (  # noqa: F401
        hubspot_emulator, hubspot_server, salesforce_emulator, salesforce_server)

``salesforce_server``/``hubspot_server`` run one emulator per test module;
``salesforce_emulator``/``hubspot_emulator`` hand it to a test after a reset
(records, knobs, clock, settings, and the ready-made credentials valid again).
Then ``salesforce_client(emu)`` / ``hubspot_client(emu)`` build real SDK
clients pointed at it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import requests

from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator

__all__ = [
    "hubspot_client",
    "hubspot_emulator",
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
