"""The provider catalogue is the data the code reads: a changed limit or batch size
in ``providers.yaml`` is the one in force (pacers, claims, request chunks)."""

from __future__ import annotations

import pytest

from connectors import catalog
from connectors.base import ConnectionInfo, Runtime
from connectors.registry import (
    calendar_connector_class,
    connector_class,
    contact_reader_class,
    max_batch,
)
from sync.connection_use import build, extra_pacers, pacer_for


def info(provider: str, **settings: object) -> ConnectionInfo:
    return ConnectionInfo("c-cat", "t", "conn", provider, dict(settings),
                          {"access_token": "x", "instance_url": "https://sf.invalid"})


def test_catalogue_limits_drive_pacers_claims_and_chunks() -> None:
    hubspot = info("hubspot")
    kind = connector_class("hubspot")
    before = pacer_for(kind, hubspot)
    assert (before.limit, before.window) == (100, 10.0)  # type: ignore[attr-defined]
    assert extra_pacers(kind, hubspot)["search"].limit == 4  # type: ignore[attr-defined]
    assert max_batch("hubspot") == 300
    with catalog.overridden("hubspot", limits={"requests": 7, "window_seconds": 3,
                                               "search_per_second": 2},
                            batch={"claim": 9, "objects": 5}):
        pacer = pacer_for(kind, hubspot)
        assert (pacer.limit, pacer.window) == (7, 3.0)  # type: ignore[attr-defined]
        assert extra_pacers(kind, hubspot)["search"].limit == 2  # type: ignore[attr-defined]
        assert max_batch("hubspot") == 9
        assert kind(hubspot, Runtime()).chunk == 5
        reader = build("contacts", hubspot)
        try:
            assert reader.search_pacer.limit == 2
            assert reader.connector.runtime.pacer.limit == 7
        finally:
            reader.close()
    # The block's end restores the catalogue; a connection's settings still win.
    assert max_batch("hubspot") == 300
    assert pacer_for(kind, info("hubspot", rate_limit=190)).limit == 190  # type: ignore[attr-defined]


def test_calendar_and_salesforce_limits_come_from_the_catalogue() -> None:
    google = calendar_connector_class("google_calendar")
    assert google.rate_limit(info("google_calendar")) == (600, 60.0)
    with catalog.overridden("google_calendar", limits={"requests": 30}):
        assert google.rate_limit(info("google_calendar")) == (30, 60.0)
    salesforce = connector_class("salesforce")
    assert salesforce.rate_limit(info("salesforce")) is None  # a daily allocation only
    with catalog.overridden("salesforce", batch={"collections": 3}):
        connector = salesforce(info("salesforce"), Runtime())
        try:
            assert connector.collection_size == 3
        finally:
            connector.close()


def test_classes_are_named_in_the_catalogue() -> None:
    assert contact_reader_class("hubspot").__name__ == "HubSpotContactReader"
    assert catalog.with_part("contacts") == ("salesforce", "hubspot")
    assert catalog.with_part("calendar") == ("google_calendar", "outlook")
    with pytest.raises(LookupError, match="no contact reader"):
        contact_reader_class("outlook")
    with pytest.raises(LookupError, match="no connector for provider 'nope'"):
        connector_class("nope")
