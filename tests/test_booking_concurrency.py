"""No double booking across processes: twenty secretaries, each in her own
process, click the same slot at the same instant; two real ``relais serve``
processes share one PostgreSQL database. Exactly one booking wins."""

from __future__ import annotations

import json
import multiprocessing
import socket
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from booking_helpers import CLAIRE, TENANT, booking, live_events, setup_tenant
from booking_race import post_booking
from conftest import make_env
from sqlalchemy import func, select

from sandbox.testing import google_emulator, google_server  # noqa: F401  (fixtures)
from sync.store.db import session_scope
from sync.store.models import Appointment, Delivery

SECRETARIES = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def next_working_morning(days_ahead: int = 7) -> datetime:
    """10:00 Paris on a weekday at least ``days_ahead`` days out that is no French holiday."""
    import holidays

    paris = ZoneInfo("Europe/Paris")
    day = datetime.now(paris).date() + timedelta(days=days_ahead)
    closed = holidays.country_holidays("FR", years=[day.year, day.year + 1])
    while day.weekday() >= 5 or day in closed:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=paris)


@pytest.mark.services
def test_twenty_processes_one_slot_one_booking_on_postgres(
        pg_url, monkeypatch, tmp_path, spawn, google_emulator):
    env = make_env(monkeypatch, tmp_path, pg_url, None)
    keys = setup_tenant(google_emulator, monkeypatch)
    ports = [free_port(), free_port()]
    for port in ports:
        spawn(["serve", "--port", str(port)], env, ready="Uvicorn running")
    slot = next_working_morning()
    body = booking(slot.isoformat())

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(SECRETARIES), ctx.Queue()
    procs = [
        ctx.Process(target=post_booking, args=(
            f"http://127.0.0.1:{ports[n % 2]}/v1/tenants/{TENANT}/appointments",
            keys["secretary"], f"secretary-{n}", body, barrier, results))
        for n in range(SECRETARIES)
    ]  # fmt: skip
    for proc in procs:
        proc.start()
    answers = [results.get(timeout=90) for _ in procs]
    for proc in procs:
        proc.join(30)

    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * (SECRETARIES - 1), answers
    won = next(json.loads(text) for status, text in answers if status == 201)
    assert won["status"] == "confirmed"
    for status, text in answers:
        if status == 409:
            error = json.loads(text)["error"]
            assert error["code"] == "slot_taken"
            next_slots = error["details"]["next_slots"]
            assert next_slots and next_slots[0]["start"] != slot.isoformat()
    [event] = live_events(google_emulator, CLAIRE)
    assert event["id"] == won["event"]["event_id"]
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Appointment)) == 1
        assert session.scalar(select(func.count()).select_from(Delivery)) == 1
