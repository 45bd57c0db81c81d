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

**A sensitive tenant's directory is sealed at rest** (``sealed``): ``name`` and
``company`` are encrypted with the credential keys (``sealed1:`` text), ``emails``
and ``phones`` become ``{"sealed": token, "kh": [keyed hash, …]}``, ``name_key``
is empty and ``name_kh`` holds a 16-hex keyed hash per word of the name (whole-word
name search); its ``directory_phones`` rows hold ``k`` + the keyed hash of the
E.164 number and of its last 9 digits instead of the number and its reversed
digits (exact and "same number written another way" lookups; a search by fewer
than 9 final digits cannot find a sealed number). Loaded rows are unsealed in
memory (the ``load`` event); bulk inserts seal their dicts with
:func:`sealed_contact_row` / :func:`phone_row`, ORM writes through the
``before_insert`` / ``before_update`` events. ``owner`` (the staff member owning
the CRM record) stays readable.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from sync.store.crypto import (
    SEALED_PREFIX,
    keyed_hashes,
    lookup_tokens,
    seal_text,
    unseal_json,
    unseal_text,
)
from sync.store.models import Base, seal_at_rest, utcnow

# Longer than 300 once sealed: Text on PostgreSQL (0018); SQLite enforces no length.
_TEXT300 = String(300).with_variant(Text(), "postgresql")
_KEYED32 = String(32).with_variant(String(80), "postgresql")  # "k" + a keyed hash
NAME_TOKEN_HEX = 16
SUFFIX_DIGITS = 9  # a national significant number (FR: 9 digits)


class DirectoryContact(Base):
    __tablename__ = "directory_contacts"
    __table_args__ = (
        Index("ix_directory_contacts_crm", "connection_id", "crm_object", "crm_id", unique=True),
        Index("ix_directory_contacts_name", "tenant_id", "name_key"),
        Index("ix_directory_contacts_sweep", "connection_id", "generation"),
        # a plain tenant's name search never scans: no row of it is sealed
        Index("ix_directory_contacts_sealed", "tenant_id", "sealed"),
    )
    id: Mapped[str] = mapped_column(String(300), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(32))
    crm_object: Mapped[str] = mapped_column(String(32))  # Contact, Lead, contacts
    crm_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(_TEXT300, default="")
    # Lower-case, accents stripped: "name starts with" searches ("" when sealed).
    name_key: Mapped[str] = mapped_column(String(300), default="")
    company: Mapped[str | None] = mapped_column(_TEXT300, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    phones: Mapped[list[str]] = mapped_column(JSON, default=list)  # E.164 where readable
    crm_updated_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The full pull that last saw this record (a full pull sweeps older ones).
    generation: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A sensitive tenant's row: name, company, emails, phones encrypted at rest.
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Sealed rows: the keyed hash of each word of the name (whole-word name search).
    name_kh: Mapped[str | None] = mapped_column(Text, nullable=True)


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
    # or the raw digits if unreadable; sealed: "k" + keyed hash (0018: 80 wide)
    e164: Mapped[str] = mapped_column(_KEYED32)
    # sealed: "k" + the keyed hash of the last 9 digits
    reversed_digits: Mapped[str] = mapped_column(_KEYED32)


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


# ------------------------------------------------------------------ sealing at rest


def name_key(text: str) -> str:
    """Lower-case, accents stripped, spaces collapsed: what name searches compare."""
    decomposed = unicodedata.normalize("NFKD", text or "")
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.lower().split())


def name_word_tokens(word: str) -> list[str]:
    """A name word's lookup tokens under each key (``k`` + 16 hex, newest key first)."""
    return lookup_tokens(name_key(word), NAME_TOKEN_HEX)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


def phone_row(contact_id: str, tenant_id: str, e164: str, sealed: bool) -> dict[str, Any]:
    """A ``directory_phones`` row: the number and its reversed digits, or (sealed) the
    keyed hashes of the number and of its last 9 digits."""
    digits = _digits(e164)
    if sealed:
        return {"contact_id": contact_id, "tenant_id": tenant_id,
                "e164": lookup_tokens(e164)[0],
                "reversed_digits": lookup_tokens(digits[-SUFFIX_DIGITS:])[0]}
    return {"contact_id": contact_id, "tenant_id": tenant_id, "e164": e164[:32],
            "reversed_digits": digits[::-1][:32]}


def _sealed_list(values: Any, normal: Callable[[str], str]) -> Any:
    if not isinstance(values, list):
        return values  # sealed already (a dict) or missing
    return {"sealed": seal_text(json.dumps(values, separators=(",", ":"), ensure_ascii=False)),
            "kh": [keyed_hashes(normal(str(v)))[0] for v in values]}


def _seal_fields(get: Callable[[str], Any], put: Callable[[str, Any], None]) -> None:
    """Seal what is not sealed yet (idempotent: a sealed value is left as it is)."""
    name = get("name")
    if isinstance(name, str) and not name.startswith(SEALED_PREFIX):
        put("name_kh", " ".join(name_word_tokens(w)[0] for w in name_key(name).split()))
        put("name", seal_text(name) if name else "")
        put("name_key", "")
    company = get("company")
    if isinstance(company, str) and company and not company.startswith(SEALED_PREFIX):
        put("company", seal_text(company))
    put("emails", _sealed_list(get("emails"), lambda e: e.strip().lower()))
    put("phones", _sealed_list(get("phones"), str))


def sealed_contact_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``directory_contacts`` insert dict sealed (bulk inserts run no ORM event)."""
    out = dict(row, sealed=True)
    _seal_fields(out.get, out.__setitem__)
    return out


def _seal_contact(_mapper: Any, _connection: Any, target: DirectoryContact) -> None:
    if target.sealed:
        _seal_fields(lambda k: getattr(target, k), lambda k, v: setattr(target, k, v))


def _unseal_contact(target: DirectoryContact, *_args: Any) -> None:
    """After a load or a write: the plaintext back in memory, not marked as a change."""
    if not target.__dict__.get("sealed"):
        return
    for name in ("name", "company"):
        if name in target.__dict__:
            set_committed_value(target, name, unseal_text(target.__dict__[name]))
    for name in ("emails", "phones"):
        if name in target.__dict__:
            set_committed_value(target, name, unseal_json(target.__dict__[name]))


seal_at_rest(DirectoryContact, _seal_contact, _unseal_contact)
