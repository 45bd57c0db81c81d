"""Helpers for the availability and booking tests: a tenant whose staff calendars
live in the Google Calendar sandbox, API keys, and small readers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conftest import FIXTURES
from sqlalchemy import select

from relais.auth import create_key
from sandbox.google_calendar import GoogleCalendarEmulator
from sync import busy
from sync.connections import set_credentials
from sync.store.db import session_scope
from sync.store.models import Appointment, Delivery
from sync.tenants import apply_config

TENANT = "cabinet-test"
PARIS = "Europe/Paris"
CLAIRE, PAUL = "claire@cabinet.test", "paul@cabinet.test"


def setup_tenant(emu: GoogleCalendarEmulator, monkeypatch) -> dict[str, str]:
    """Apply tests/fixtures/booking.yaml, connect its Google calendar to ``emu``;
    return API keys by role."""
    monkeypatch.setenv("RELAIS_TENANT_CABINET_TEST_GOOGLE_URL", emu.url)
    monkeypatch.setenv("RELAIS_TENANT_CABINET_TEST_CRM_URL", "http://127.0.0.1:9/crm")
    for calendar in (CLAIRE, PAUL):
        emu.add_calendar(calendar, time_zone=PARIS)
    creds = emu.credentials()
    with session_scope() as session:
        apply_config(session, (FIXTURES / "booking.yaml").read_text(), "booking.yaml",
                     actor="test")
    with session_scope() as session:
        set_credentials(session, TENANT, "agenda", {
            "access_token": creds["access_token"], "refresh_token": creds["refresh_token"],
            "client_id": creds["client_id"], "client_secret": creds["client_secret"]})
        keys = {"secretary": create_key(session, "secretary", TENANT, "sophie"),
                "admin": create_key(session, "admin", TENANT, "admin")}
    busy.CACHE.clear()
    busy.POOL.clear()
    return keys


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def at(day: str, clock: str, tz: str = PARIS) -> dict[str, str]:
    return {"dateTime": f"{day}T{clock}:00", "timeZone": tz}


def event(summary: str, day: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "start": at(day, start), "end": at(day, end), **extra}


def booking(start: str, staff: str = "claire", type_: str = "consultation",
            **extra: Any) -> dict[str, Any]:
    return {"staff_id": staff, "type": type_, "start": start,
            "caller": {"name": "Jeanne Petit", "phone": "06 11 22 33 44"},
            "subject": "Divorce — premier rendez-vous", "notes": "Rappeler avant 18 h", **extra}


def live_events(emu: GoogleCalendarEmulator, calendar: str) -> list[dict[str, Any]]:
    return [e for e in emu.events(calendar) if e.get("status") != "cancelled"]


def deliveries(appointment_id: str) -> list[tuple[str, str]]:
    with session_scope(readonly=True) as session:
        return [(d.action, d.status) for d in session.scalars(
            select(Delivery).where(Delivery.appointment_id == appointment_id)
            .order_by(Delivery.created_at, Delivery.id))]


def appointments() -> list[Appointment]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(select(Appointment).order_by(Appointment.created_at)))


def starts(body: dict[str, Any], staff: str | None = None) -> list[str]:
    return [s["start"] for s in body["slots"] if staff is None or s["staff_id"] == staff]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)
