"""Store: SQLAlchemy 2 models. Migrations in ``relais/migrations`` follow them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from sync import clock
from sync.store.crypto import SEALED_PREFIX, keyed_hashes, seal_text, unseal_text


def utcnow() -> datetime:
    """The hub's now (``sync.clock``: injectable, offset by ``relais demo --at``)."""
    return clock.now()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend.

    SQLite keeps no zone, so we store UTC and put the zone back on the way out;
    a naive datetime is a bug and is refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused by the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    config_yaml: Mapped[str] = mapped_column(Text)
    # The ${VARIABLES} the YAML used, as resolved when it was applied, so every
    # process reads the same configuration whatever its own environment.
    config_env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Connection(Base):
    __tablename__ = "connections"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("con"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    # active | needs_reauth | disabled (removed from the config: kept for history)
    status: Mapped[str] = mapped_column(String(16), default="active")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    token_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Set on 429 / limit errors: no delivery leaves before this instant.
    paused_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # True while a delivery task for this connection waits in the broker: new
    # messages then need no task of their own (one task per batch, not per message).
    wake_queued: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_messages_tenant_created", "tenant_id", "created_at"),
        # sync.lists: newest calls first, and a caller's calls (its E.164 number).
        Index("ix_messages_tenant_taken", "tenant_id", "taken_at", "id"),
        Index("ix_messages_caller_phone", "tenant_id", text("(caller ->> 'phone')")),
        # "ends with these digits" as a prefix scan (PostgreSQL only; see 0013).
        Index("ix_messages_caller_phone_rev", "tenant_id",
              text("reverse(caller ->> 'phone') text_pattern_ops")).ddl_if(dialect="postgresql"),
        Index("ix_messages_tenant_call", "tenant_id", "call_id"),
        # A sealed caller's number by its keyed hash (sync.lists; migration 0020).
        Index("ix_messages_caller_phone_kh", "tenant_id", text("(caller ->> 'phone_kh')")),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("msg"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    call_type: Mapped[str] = mapped_column(String(64))
    urgency: Mapped[str] = mapped_column(String(16))
    caller: Mapped[dict[str, Any]] = mapped_column()
    # Text on PostgreSQL: a sealed subject is longer (0015); SQLite enforces no length.
    subject: Mapped[str] = mapped_column(String(300).with_variant(Text(), "postgresql"))
    body: Mapped[str] = mapped_column(Text)
    taken_by: Mapped[str] = mapped_column(String(200))
    taken_at: Mapped[datetime] = mapped_column()
    staff_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    callback_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    intake: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The call it qualifies (call_events.call_id), when the telephony names it.
    call_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # accepted (deliveries planned) | dropped (a drop rule matched: nothing to send)
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    # sync.privacy: None | content (body, subject, intake removed) | anonymised
    # (the caller too) | erased (at the person's request). Counts stay reportable.
    redaction: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Sensitive tenant or call type: subject, body, caller and intake are encrypted
    # at rest (see _seal_row below); readers of loaded rows see plaintext.
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def _seal_json(value: Any) -> Any:
    if not isinstance(value, dict) or not value or "sealed" in value:
        return value
    return {"sealed": seal_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))}


# What is sealed per class: text columns, JSON columns (sync.privacy: encryption at rest).
_SEALED_TEXT: dict[str, tuple[str, ...]] = {"Message": ("subject", "body"),
                                            "Appointment": ("subject", "notes")}
_SEALED_JSON: dict[str, tuple[str, ...]] = {"Message": ("caller", "intake"),
                                            "Appointment": ("caller",)}


def _seal_row(_mapper: Any, _connection: Any, target: Any) -> None:
    """Before a sealed message or appointment is written: its content encrypted with
    the newest credential key; the caller's phone and email also kept as keyed
    hashes (``phone_kh``, ``email_kh``) so lookups by phone still work."""
    if not target.sealed:
        return
    kind = type(target).__name__
    for name in _SEALED_TEXT[kind]:
        value = getattr(target, name)
        if isinstance(value, str) and value and not value.startswith(SEALED_PREFIX):
            setattr(target, name, seal_text(value))
    caller = target.caller
    if isinstance(caller, dict) and caller and "sealed" not in caller:
        sealed = _seal_json(caller)
        if caller.get("phone"):
            sealed["phone_kh"] = keyed_hashes(str(caller["phone"]))[0]
        if caller.get("email"):
            sealed["email_kh"] = keyed_hashes(str(caller["email"]).strip().lower())[0]
        target.caller = sealed
    for name in _SEALED_JSON[kind]:
        if name != "caller":
            setattr(target, name, _seal_json(getattr(target, name)))


def _unseal_json(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("sealed"), str):
        return json.loads(unseal_text(value["sealed"]))
    return value


def _unseal_row(target: Any, *_args: Any) -> None:
    """After a load or a write: the plaintext back in memory, not marked as a change."""
    if not target.__dict__.get("sealed"):
        return
    kind = type(target).__name__
    for name in _SEALED_TEXT[kind]:
        if name in target.__dict__:
            set_committed_value(target, name, unseal_text(target.__dict__[name]))
    for name in _SEALED_JSON[kind]:
        if name in target.__dict__:
            set_committed_value(target, name, _unseal_json(target.__dict__[name]))


def seal_at_rest(
    cls: type,
    seal: Callable[[Any, Any, Any], None] = _seal_row,
    unseal: Callable[..., None] = _unseal_row,
) -> None:
    """Seal a model's rows as they are written and unseal them in memory after each
    write, load and refresh (``seal(mapper, connection, row)``, ``unseal(row, ...)``)."""

    def unseal_after_write(_mapper: Any, _connection: Any, target: Any) -> None:
        unseal(target)

    event.listen(cls, "before_insert", seal)
    event.listen(cls, "before_update", seal)
    event.listen(cls, "after_insert", unseal_after_write)
    event.listen(cls, "after_update", unseal_after_write)
    event.listen(cls, "load", unseal)
    event.listen(cls, "refresh", unseal)


seal_at_rest(Message)


class Appointment(Base):
    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_appointments_staff_start", "tenant_id", "staff_id", "start"),
        Index("ix_appointments_tenant_start", "tenant_id", "start", "id"),  # sync.lists
        Index("ix_appointments_tenant_call", "tenant_id", "call_id"),
        # A caller's appointments, plain or sealed (sync.lists; migration 0020).
        Index("ix_appointments_caller_phone", "tenant_id", text("(caller ->> 'phone')")),
        Index("ix_appointments_caller_phone_kh", "tenant_id",
              text("(caller ->> 'phone_kh')")),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("apt"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    staff_id: Mapped[str] = mapped_column(String(64))
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime] = mapped_column()
    # pending (calendar write under way) | confirmed | cancelled | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    caller: Mapped[dict[str, Any]] = mapped_column(default=dict)
    subject: Mapped[str] = mapped_column(  # Text on PostgreSQL: sealed is longer (0015)
        String(300).with_variant(Text(), "postgresql"), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    # The tenant config's appointment type id (its buffers apply around this booking).
    appointment_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The calendar event written for it (sync.booking): connection, calendar, event id, etag.
    calendar_connection_id: Mapped[str | None] = mapped_column(
        ForeignKey("connections.id"), nullable=True
    )
    calendar_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    event_etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Why the calendar write failed (status failed), shown to the secretary.
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    booked_by: Mapped[str] = mapped_column(String(200), default="")
    # The call it was booked during (call_events.call_id), when the telephony names it.
    call_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # sync.privacy: None | anonymised (retention) | erased (the person's request)
    redaction: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Sensitive tenant: caller, subject and notes encrypted at rest, like messages.
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


seal_at_rest(Appointment)


class StaffLock(Base):
    """One row per (tenant, staff member): booking takes it ``FOR UPDATE`` on PostgreSQL,
    so two bookings for the same person run one after the other (sync.booking)."""

    __tablename__ = "staff_locks"
    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    staff_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_claim", "connection_id", "status", "next_attempt_at"),
        Index("ix_deliveries_tenant_status", "tenant_id", "status"),
        # /metrics: the backlog by status, and the oldest due pending (0014: was status only)
        Index("ix_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_deliveries_digest_key", "digest_key"),
        Index("ix_deliveries_tenant_created", "tenant_id", "created_at", "id"),  # sync.lists
        Index("ix_deliveries_tenant_delivered", "tenant_id", "delivered_at"),  # reports
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("dlv"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    message_id: Mapped[str | None] = mapped_column(ForeignKey("messages.id"), nullable=True)
    appointment_id: Mapped[str | None] = mapped_column(ForeignKey("appointments.id"), nullable=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    rule: Mapped[str] = mapped_column(String(100), default="")
    action: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending | in_flight | delivered | dead
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Digests (sync.digest): the summary row carries its bucket key (tenant, rule,
    # recipient, due time); each collected message's row carries its summary's id.
    digest_key: Mapped[str | None] = mapped_column(String(300), nullable=True)

    @classmethod
    def new(cls, **fields: Any) -> Delivery:
        """A new delivery with its id and the idempotency key it keeps through
        every retry and replay (``relais-<id>``): the one place that names it."""
        delivery_id = new_id("dlv")
        return cls(id=delivery_id, idempotency_key=f"relais-{delivery_id}", **fields)


class Escalation(Base):
    """A ladder running for one message (sync.escalation): the steps sent so far,
    when the next one is due, and who acknowledged."""

    __tablename__ = "escalations"
    __table_args__ = (
        Index("ix_escalations_open", "finished", "next_at"),
        Index("ix_escalations_message", "message_id"),
        Index("ix_escalations_tenant_created", "tenant_id", "created_at"),  # reports
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("esc"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"))
    ladder: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(100), default="")
    redact: Mapped[bool] = mapped_column(Boolean, default=False)
    # Index of the last step sent; len(steps) is the dead end.
    step: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Every address told so far (an inbound "OK" is matched on it).
    notified: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The short number in its SMS ("Répondez OK 47"): smallest free among running ladders.
    ref: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # running | acknowledged | dead_end | abandoned (the ladder left the config)
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    acknowledged_at: Mapped[datetime | None] = mapped_column(nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    acknowledged_via: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ExternalLink(Base):
    """Our record <-> the provider's record, per connection."""

    __tablename__ = "external_links"
    __table_args__ = (
        UniqueConstraint("connection_id", "local_type", "local_id", "remote_type"),
        Index("ix_external_links_remote", "connection_id", "remote_type", "remote_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    local_type: Mapped[str] = mapped_column(String(32))
    local_id: Mapped[str] = mapped_column(String(200))
    remote_type: Mapped[str] = mapped_column(String(64))
    remote_id: Mapped[str] = mapped_column(String(200))
    etag: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PullCursor(Base):
    """An incremental pull's cursor (``sync.pull_runner``), per connection, stream
    (``contacts``, ``calendar``) and partition (``""`` for a stream without any; the
    calendar id for the calendar stream). ``cursor`` is the stream's own text (a
    provider token, or a JSON object); None: the next read is a full one.
    ``full_syncs`` counts full reads; ``updated_at`` is when a pull last stored it."""

    __tablename__ = "pull_cursors"
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    partition: Mapped[str] = mapped_column(String(300), primary_key=True, default="")
    cursor: Mapped[str | None] = mapped_column(Text, nullable=True)
    full_syncs: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEvent(Base):
    """What happened to what, when: a delivery's history, config changes, key use."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_subject", "subject_type", "subject_id"),
        # Reports count appointments booked, moved, cancelled: only those rows are indexed.
        Index("ix_audit_appointments", "tenant_id", "at",
              postgresql_where=text("subject_type = 'appointment'"),
              sqlite_where=text("subject_type = 'appointment'")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OAuthState(Base):
    """An authorization started by a tenant admin, waiting for the provider's callback."""

    __tablename__ = "oauth_states"
    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    code_verifier: Mapped[str | None] = mapped_column(String(128), nullable=True)
    redirect_uri: Mapped[str] = mapped_column(String(500))
    # A console page (relative path) the callback redirects to with the outcome.
    return_to: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class RateWindow(Base):
    """Send times reserved in a connection's rolling window (database rate limiter)."""

    __tablename__ = "rate_windows"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    stamps: Mapped[list[float]] = mapped_column(JSON, default=list)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public prefix of the key
    secret_hash: Mapped[str] = mapped_column(String(128))
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True
    )
    role: Mapped[str] = mapped_column(String(16))  # secretary | admin | operator
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
