"""The warm availability path: heap frozen at API start-up, cheap busy intervals."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from sync.availability import BusyInterval, BusyKind

NOW = datetime(2027, 3, 23, 9, 0, tzinfo=UTC)


def test_api_start_up_freezes_the_heap(env):
    gc.unfreeze()
    from relais.api import create_app

    with TestClient(create_app()) as client:  # runs the lifespan, as uvicorn does
        assert client.get("/healthz").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0  # unfrozen at shutdown


def test_external_interval_equals_the_checked_constructor():
    fast = BusyInterval.external(NOW, NOW + timedelta(minutes=30))
    assert fast == BusyInterval(NOW, NOW + timedelta(minutes=30), BusyKind.EXTERNAL)
    assert hash(fast) == hash(BusyInterval(NOW, NOW + timedelta(minutes=30)))


def test_external_interval_still_checks_what_it_cannot_trust():
    paris = NOW.astimezone(ZoneInfo("Europe/Paris"))  # not UTC: the full checks
    assert BusyInterval.external(paris, paris + timedelta(hours=1)).start == paris
    with pytest.raises(ValueError, match="before start"):
        BusyInterval.external(NOW, NOW - timedelta(minutes=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        BusyInterval.external(NOW.replace(tzinfo=None), NOW)
