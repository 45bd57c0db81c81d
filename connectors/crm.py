"""What the CRM connectors share: who the caller is, and the tenant's field
mapping (``CrmMapping``, lent by the engine) applied to a delivery's payload."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.base import (
    ConnectionInfo,
    DeliveryError,
    DeliveryRequest,
    DeliveryResult,
    RateLimited,
    Rejected,
)
from connectors.phones import format_phone, parse_phone


@dataclass(frozen=True)
class CallerKey:
    """A caller's identity for de-duplication: E.164 phone first, else email."""

    id: str  # "tel:+33612345678" or "mail:jeanne@exemple.fr": stored as relais_id
    phone: str | None
    email: str | None


def caller_key(payload: dict[str, Any]) -> CallerKey:
    """The caller of a message, or of an appointment (whose payload has no message)."""
    caller = (payload.get("message") or {}).get("caller") or payload.get("caller") or {}
    phone = caller.get("phone") or None
    email = (caller.get("email") or "").strip().lower() or None
    return CallerKey(id=f"tel:{phone}" if phone else f"mail:{email}", phone=phone, email=email)


def phone_forms(e164: str, region: str | None) -> list[str]:
    """The ways people type a number into a CRM, for exact-match lookups:
    ``+33612345678``, ``+33 6 12 34 56 78``, ``06 12 34 56 78``, ``0612345678``,
    ``06.12.34.56.78`` and ``06-12-34-56-78`` (a foreign number: its international
    forms only)."""
    forms = [e164]
    for style in ("international", "national"):
        text = format_phone(e164, region, style)
        if text:
            forms += [text, text.replace(" ", "")]
            if not text.startswith("+"):
                forms += [text.replace(" ", "."), text.replace(" ", "-")]
    return list(dict.fromkeys(forms))


def same_phone(stored: str | None, region: str | None) -> str | None:
    """A phone as a CRM stores it, in E.164 (None when it is no number)."""
    if not stored or parse_phone(stored, region) is None:
        return None
    return format_phone(stored, region, "e164")


class MappingError(Exception):
    """A CRM field of the tenant's mapping could not be rendered for this payload;
    ``field`` is the CRM field, the message says the fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class CrmMapping(Protocol):
    """The tenant's field mapping as a CRM connector uses it. The engine builds it
    (``sync.crm_mapping``) and lends it through ``ConnectionInfo.mapping``: the
    connectors know no mapping language."""

    def object_of(self, section: str) -> str | None:
        """The CRM object ``section`` writes (None: the connector's default)."""
        ...

    def render(self, section: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The CRM fields of ``section`` for this delivery payload (None: no such
        section); ``MappingError`` when a field cannot be rendered."""
        ...

    def reads(self, section: str, path: str) -> bool:
        """Whether ``section`` reads the payload's ``path`` (e.g. ``appointment.status``)."""
        ...


def render_section(info: ConnectionInfo, section: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The CRM fields of ``section`` for this payload; a mapping error rejects the
    delivery with a reason that names the field to fix in the tenant's YAML."""
    mapping: CrmMapping | None = info.mapping
    if mapping is None:
        raise Rejected(f"the {info.provider} connection was given no field mapping")
    try:
        fields = mapping.render(section, payload)
    except MappingError as exc:
        raise Rejected(f"mapping of {section}.{exc.field}: {exc}") from None
    if fields is None:
        raise Rejected(f"the {info.provider} mapping has no {section!r} section")
    return fields


@dataclass(frozen=True)
class FieldProblem:
    """A mapped field the CRM does not have or will not let us write."""

    object: str
    field: str
    problem: str


def check_fields(
    described: dict[str, dict[str, bool]],
    wanted: dict[str, list[str]],
    id_field: str,
) -> list[FieldProblem]:
    """Compare the mapping with what the CRM described.

    ``described`` maps object -> {field name (lower case) -> writable}. The
    idempotency field must exist on every object we write.
    """
    problems = []
    for obj, fields in sorted(wanted.items()):
        known = described.get(obj)
        if known is None:
            problems.append(FieldProblem(obj, "", f"the CRM has no object {obj!r}"))
            continue
        for name in [*fields, id_field]:
            writable = known.get(name.lower())
            if writable is None:
                hint = " (create it: Text, unique, External ID)" if name == id_field else ""
                problems.append(FieldProblem(obj, name, f"{obj} has no field {name!r}{hint}"))
            elif not writable:
                problems.append(FieldProblem(obj, name, f"{obj}.{name} is read-only"))
    return problems


# ------------------------------------------------------------------ directory reads
# What the incremental readers (connectors.hubspot.reader, connectors.salesforce.reader)
# hand to the directory engine (sync.contacts): provider-neutral records.


@dataclass(frozen=True)
class CrmContact:
    """One CRM person record as read, phones as the CRM stores them."""

    object: str  # Contact, Lead, contacts
    id: str
    name: str
    company: str | None
    owner: str | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    updated_at: Any  # aware datetime, the CRM's own modification stamp


@dataclass(frozen=True)
class ContactPage:
    """A page of changed records, and where to resume after it (opaque to the engine)."""

    records: list[CrmContact]
    checkpoint: str | None


@dataclass(frozen=True)
class CrmDeletion:
    object: str
    id: str
    deleted_at: Any  # aware datetime or None


class ContactReader(Protocol):
    """A CRM's incremental contact reads (the catalogue's ``contacts`` class), built as
    ``Reader(info, runtime)``: the runtime lends the connection's limiters (``pacer``,
    and the named ones its delivery connector declares, e.g. HubSpot's ``search``).
    Optional attributes the engine reads: ``deletions_every`` (a timedelta: list
    deletions at most that often) and ``deletions_covered_until`` (where the last
    ``deleted`` listing stopped covering)."""

    @property
    def calls(self) -> int:
        """Provider API calls made so far."""
        ...

    def changed(self, since: Any, resume: str | None) -> Iterator[ContactPage]:
        """Records changed since ``since`` (None: all), resuming after ``resume``;
        ``CursorExpired`` when the provider cannot answer from there."""
        ...

    def deleted(self, since: Any, until: Any) -> Iterator[list[CrmDeletion]]:
        """Records deleted between ``since`` and ``until``."""
        ...

    def close(self) -> None: ...


# ------------------------------------------------------------------ erasure (GDPR art. 17)
# ``relais privacy erase`` on a tenant with ``privacy: {erase_in_crm: true}`` writes one
# delivery per CRM connection (sync.privacy.crm_erase) whose payload names the records
# to delete: ``{"event": ERASE_ACTION, "records": [{"object": "contacts", "id": "101"}]}``.

ERASE_ACTION = "person.erase"


@dataclass(frozen=True)
class CrmRecord:
    """One CRM record to erase: its object (``contacts``, ``Contact``, ``Lead``) and id."""

    object: str
    id: str


def erase_records_of(request: DeliveryRequest) -> list[CrmRecord]:
    """The records an erasure delivery names; a malformed payload is rejected."""
    records = request.payload.get("records")
    if not isinstance(records, list):
        raise Rejected("the erasure names no records")
    out = []
    for record in records:
        if not isinstance(record, dict) or not record.get("object") or not record.get("id"):
            raise Rejected(f"an erasure record needs an object and an id: {record!r}")
        out.append(CrmRecord(str(record["object"]), str(record["id"])))
    return out


class CrmEraser(Protocol):
    """What a CRM connector does for an erasure: delete every record, permanently
    where the CRM can. Idempotent: a record already gone counts as erased (a retry
    after a lost answer must succeed). Raises a ``DeliveryError`` kind otherwise."""

    def erase_records(self, records: Sequence[CrmRecord]) -> None: ...


def deliver_with_erasures(
    batch: Sequence[DeliveryRequest],
    eraser: CrmEraser,
    deliver: Callable[[Sequence[DeliveryRequest]], list[DeliveryResult]],
) -> list[DeliveryResult]:
    """One result per request, in order: erasures through ``eraser`` (one at a time;
    after a rate limit the remaining erasures get the same error), the rest through
    ``deliver``."""
    results: dict[str, DeliveryResult] = {}
    stop: DeliveryError | None = None
    for request in batch:
        if request.action != ERASE_ACTION:
            continue
        if stop is not None:
            results[request.delivery_id] = DeliveryResult(request.delivery_id, error=stop)
            continue
        try:
            records = erase_records_of(request)
            eraser.erase_records(records)
        except DeliveryError as exc:
            results[request.delivery_id] = DeliveryResult(request.delivery_id, error=exc)
            if isinstance(exc, RateLimited):
                stop = exc
            continue
        results[request.delivery_id] = DeliveryResult(
            request.delivery_id, external_id=",".join(f"{r.object}/{r.id}" for r in records)[:200])
    rest = [r for r in batch if r.action != ERASE_ACTION]
    if rest:
        results.update((r.delivery_id, r) for r in deliver(rest))
    return [results[r.delivery_id] for r in batch]
