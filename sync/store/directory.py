"""The contact directory: CRM contacts copied into Relais for caller lookup.

Defined on the shared ``Base`` (``sync.store.models``) but kept in its own module;
``relais/migrations/env.py`` imports it so Alembic sees the tables.

- ``directory_contacts``: one row per CRM record (per connection), its display
  fields, the CRM's modification time and a ``deleted`` flag. The primary key
  is ``{connection id}:{object}:{crm id}``: deterministic, so a page of records
  is upserted without reading ids back.
- ``directory_phones``: one row per phone number of a live contact, E.164 and
  its digits *reversed*: "ends with 345678" becomes "starts with 876543", a
  prefix range scan on an ordinary B-tree index, on SQLite and PostgreSQL.
- ``directory_sync_state``: per connection, the pull lock (``running_since``
  with an expiry), the pause after a provider limit, and what
  ``relais sync status`` shows. Cursors live in ``pull_cursors``
  (stream ``contacts``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sync.store.models import Base, utcnow


class DirectoryContact(Base):
    __tablename__ = "directory_contacts"
    __table_args__ = (
        Index("ix_directory_contacts_crm", "connection_id", "crm_object", "crm_id", unique=True),
        Index("ix_directory_contacts_name", "tenant_id", "name_key"),
        Index("ix_directory_contacts_sweep", "connection_id", "generation"),
    )
    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    crm_object: Mapped[str] = mapped_column(String(32))  # Contact, Lead, contacts
    crm_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(300), default="")
    # Lower-case, accents stripped: "name starts with" searches.
    name_key: Mapped[str] = mapped_column(String(300), default="")
    company: Mapped[str | None] = mapped_column(String(300), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    phones: Mapped[list[str]] = mapped_column(JSON, default=list)  # E.164 where readable
    crm_updated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The full pull that last saw this record (a full pull sweeps older ones).
    generation: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class DirectoryPhone(Base):
    __tablename__ = "directory_phones"
    __table_args__ = (
        Index("ix_directory_phones_e164", "tenant_id", "e164"),
        Index("ix_directory_phones_reversed", "tenant_id", "reversed_digits"),
        Index("ix_directory_phones_contact", "contact_id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("directory_contacts.id", ondelete="CASCADE"))
    tenant_id: Mapped[str] = mapped_column(String(64))
    e164: Mapped[str] = mapped_column(String(32))  # or the raw digits if unreadable
    reversed_digits: Mapped[str] = mapped_column(String(32))


class DirectorySyncState(Base):
    __tablename__ = "directory_sync_state"
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    tenant_id: Mapped[str] = mapped_column(String(64))
    # The pull lock: set while a pull runs; a pull older than the expiry is presumed dead.
    running_since: Mapped[datetime | None] = mapped_column(nullable=True)
    run_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # After a 429 / limit error: no pull before this instant (the cursor is kept).
    paused_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_error_at: Mapped[datetime | None] = mapped_column(nullable=True)
    records_in: Mapped[int] = mapped_column(Integer, default=0)  # cumulative
    records_out: Mapped[int] = mapped_column(Integer, default=0)  # CRM writes from sync: none yet
    deleted_in: Mapped[int] = mapped_column(Integer, default=0)
    last_run: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
