"""Lists of a tenant's messages, appointments and deliveries: filtered, newest
first, paginated with a cursor. The API and the console both read through here.

Invariants:
- every query carries the tenant explicitly (``tenant_id == …``);
- the order is a total order on (instant, id), newest first, so a cursor
  (the last row's instant and id) resumes exactly after that row even when new
  rows arrive meanwhile: no row is shown twice or skipped; ``newer`` (a page's
  ``prev_cursor``, its first row) walks back the same way, towards the newest;
- a date range is half-open, ``start <= instant < end``, on aware instants;
- a caller is matched as the directory matches it (``sync.contacts``): a full
  number in any format by its E.164 form, a partial one (6+ digits) by the
  number's ending;
- a sealed row (a sensitive tenant's or call type's, ``sync.store.models``) keeps no
  readable number, only its keyed hash (``caller.phone_kh``): a full number finds it
  through that hash (under every key, newest first, so rows written before a key
  rotation still match); a partial number cannot (a hash of the whole number says
  nothing of its ending), so an ending finds only plain rows.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, literal_column, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from sync.contacts import PhoneQuery
from sync.store.crypto import keyed_hashes
from sync.store.models import Appointment, Connection, Delivery, Message

T = TypeVar("T")

MESSAGE_STATUSES = ("accepted", "dropped")
APPOINTMENT_STATUSES = ("pending", "confirmed", "cancelled", "failed")
DELIVERY_STATUSES = ("pending", "in_flight", "delivered", "dead")
MAX_LIMIT = 500


class BadFilter(ValueError):
    """A filter the caller got wrong: ``field`` names it, ``hint`` says the fix."""

    def __init__(self, field: str, problem: str, hint: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem, self.hint = field, problem, hint


@dataclass(frozen=True)
class Filters:
    """What to keep. ``start``/``end`` aware; ``end`` exclusive."""

    start: datetime | None = None
    end: datetime | None = None
    staff_id: str | None = None
    caller: PhoneQuery | None = None
    status: str | None = None
    connection: str | None = None  # deliveries: a connection's name


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # older rows follow: pass it as ``cursor``
    prev_cursor: str | None = None  # newer rows precede: pass it as ``newer``


def parse_instant(value: str, field: str) -> datetime:
    """An aware ISO 8601 instant from a query string. A ``+`` that the URL
    turned into a space (``…T10:00:00 01:00``) is read back as ``+``."""
    text = value.strip()
    if len(text) > 6 and text[-6] == " " and text[-5:-3].isdigit():
        text = text[:-6] + "+" + text[-5:]
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadFilter(field, f"{value!r} is not an ISO 8601 date-time",
                        "e.g. 2026-12-02T00:00:00+01:00 (URL-encode the + as %2B)") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise BadFilter(field, f"{value!r} has no UTC offset",
                        "add one, e.g. 2026-12-02T00:00:00+01:00 or …Z")
    if not 1971 <= at.year <= 2199:
        raise BadFilter(field, "must lie between the years 1971 and 2199", "give a real date")
    return at.astimezone(UTC)


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end <= start:
        raise BadFilter("to", "must be after from", "swap them, or widen the range")


def check_status(status: str | None, allowed: tuple[str, ...]) -> None:
    if status is not None and status not in allowed:
        raise BadFilter("status", f"{status!r} is not a status here",
                        f"one of: {', '.join(allowed)}")


def encode_cursor(at: datetime, row_id: str) -> str:
    raw = json.dumps([at.astimezone(UTC).isoformat(), row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_text, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at = datetime.fromisoformat(at_text)
        if at.tzinfo is None or not isinstance(row_id, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadFilter("cursor", "not a cursor this list gave",
                        "pass next_cursor from the previous page as it was") from None
    return at, row_id


def _caller_phone(column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    """``caller.phone`` as text, written exactly as the expression index has it
    (``ix_messages_caller_phone``; PostgreSQL and SQLite 3.38+ both read ``->>``)."""
    return literal_column(f"{column.table.name}.{column.key} ->> 'phone'")


def _caller_phone_kh(column: InstrumentedAttribute[Any]) -> ColumnElement[Any]:
    """A sealed row's keyed hash of ``caller.phone``, as ``ix_*_caller_phone_kh`` has it."""
    return literal_column(f"{column.table.name}.{column.key} ->> 'phone_kh'")


def _caller_condition(session: Session, column: InstrumentedAttribute[Any],
                      query: PhoneQuery) -> ColumnElement[bool]:
    phone = _caller_phone(column)
    if query.e164:
        # Stored callers are E.164 (sync.outbox validates them); a sealed row's is
        # hashed from that same E.164 form (sync.store.models._seal_row).
        return or_(phone == query.e164,
                   _caller_phone_kh(column).in_(keyed_hashes(query.e164)))
    if session.get_bind().dialect.name == "postgresql":
        # The ending as a prefix of the reversed number: ix_messages_caller_phone_rev.
        reversed_phone = literal_column(
            f"reverse({column.table.name}.{column.key} ->> 'phone')")
        return reversed_phone.like(f"{query.suffix[::-1]}%")
    return phone.like(f"%{query.suffix}")


def _page(session: Session, stmt: Select[Any], at: InstrumentedAttribute[datetime],
          row_id: InstrumentedAttribute[str], limit: int, cursor: str | None,
          newer: str | None = None) -> Page[Any]:
    """One page, newest first: the rows older than ``cursor``, or (``newer``) the
    ``limit`` rows just newer than that one, still shown newest first. Keyset
    paging both ways: each direction reads ``limit + 1`` rows to know if more follow."""
    limit = max(1, min(limit, MAX_LIMIT))
    if newer:
        before_at, before_id = decode_cursor(newer)
        stmt = stmt.where(tuple_(at, row_id) > tuple_(before_at, before_id))
        rows = list(session.scalars(stmt.order_by(at.asc(), row_id.asc()).limit(limit + 1)))
        more_newer = len(rows) > limit
        rows = rows[:limit][::-1]
        return Page(rows, _key(rows[-1], at, row_id) if rows else newer,
                    _key(rows[0], at, row_id) if more_newer else None)
    if cursor:
        after_at, after_id = decode_cursor(cursor)
        stmt = stmt.where(tuple_(at, row_id) < tuple_(after_at, after_id))
    rows = list(session.scalars(stmt.order_by(at.desc(), row_id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more else None
    return Page(rows, _key(last, at, row_id) if last is not None else None,
                _key(rows[0], at, row_id) if cursor and rows else cursor)


def _key(row: Any, at: InstrumentedAttribute[datetime],
         row_id: InstrumentedAttribute[str]) -> str:
    return encode_cursor(getattr(row, at.key), getattr(row, row_id.key))


def _range(stmt: Select[Any], at: InstrumentedAttribute[datetime], f: Filters) -> Select[Any]:
    if f.start is not None:
        stmt = stmt.where(at >= f.start)
    if f.end is not None:
        stmt = stmt.where(at < f.end)
    return stmt


def _list_calls(session: Session, model: Any, when: Any, statuses: Any, tenant_id: str,
                f: Filters, limit: int, cursor: str | None) -> Page[Any]:
    """Messages and appointments share their filters: range on ``when``, staff,
    status, caller; newest first by ``when`` then id."""
    check_status(f.status, statuses)
    check_range(f.start, f.end)
    stmt = _range(select(model).where(model.tenant_id == tenant_id), when, f)
    if f.staff_id:
        stmt = stmt.where(model.staff_id == f.staff_id)
    if f.status:
        stmt = stmt.where(model.status == f.status)
    if f.caller:
        stmt = stmt.where(_caller_condition(session, model.caller, f.caller))
    return _page(session, stmt, when, model.id, limit, cursor)


def list_messages(session: Session, tenant_id: str, f: Filters, *, limit: int = 50,
                  cursor: str | None = None) -> Page[Message]:
    """A tenant's messages by the instant the call was taken, newest first."""
    return _list_calls(session, Message, Message.taken_at, MESSAGE_STATUSES, tenant_id, f,
                       limit, cursor)


def list_appointments(session: Session, tenant_id: str, f: Filters, *, limit: int = 50,
                      cursor: str | None = None) -> Page[Appointment]:
    """A tenant's appointments by their start, latest first."""
    return _list_calls(session, Appointment, Appointment.start, APPOINTMENT_STATUSES, tenant_id,
                       f, limit, cursor)


def list_deliveries(session: Session, tenant_id: str, f: Filters, *, limit: int = 100,
                    cursor: str | None = None, newer: str | None = None) -> Page[Delivery]:
    """A tenant's deliveries by creation, newest first; ``f.connection`` is a
    connection's name (or its provider, matching each connection of it);
    ``cursor``: older than that, ``newer``: the page just before (``prev_cursor``)."""
    check_status(f.status, DELIVERY_STATUSES)
    check_range(f.start, f.end)
    stmt = _range(select(Delivery).where(Delivery.tenant_id == tenant_id),
                  Delivery.created_at, f)
    if f.status:
        stmt = stmt.where(Delivery.status == f.status)
    if f.connection:
        ids = select(Connection.id).where(
            Connection.tenant_id == tenant_id,
            or_(Connection.name == f.connection, Connection.provider == f.connection))
        stmt = stmt.where(Delivery.connection_id.in_(ids))
    return _page(session, stmt, Delivery.created_at, Delivery.id, limit, cursor, newer)


def connection_names(session: Session, tenant_id: str) -> dict[str, Connection]:
    return {c.id: c for c in session.scalars(
        select(Connection).where(Connection.tenant_id == tenant_id))}


__all__ = ["BadFilter", "Filters", "Page", "list_appointments", "list_deliveries",
           "list_messages", "parse_instant", "decode_cursor", "encode_cursor"]
