"""Who receives an email or an SMS: staff ids, ``on_call`` and literal addresses resolved.

A ``to:`` list in a rule action, a digest or an escalation step holds, in any order:

* a staff id (``claire-durand``): that person's ``email`` (email) or ``phone`` (SMS);
* ``on_call``: whoever is on call at the instant of the call (:mod:`mappings.oncall`);
* an email address, or a phone number (stored in E.164 form, read in the tenant's
  ``phone_region``).

Which connection sends it: the action's ``via``, else the tenant's only connection
of that provider (``email`` / ``sms``), else Relais's own sender (:data:`RELAIS_SENDER`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from mappings.oncall import on_call_at
from mappings.schema import TenantConfig, recipient_kind

RELAIS_SENDER = ""  # PlannedDelivery.connection of messages sent by Relais's own email/SMS


class Recipient(BaseModel):
    """One resolved recipient: where to send, and who it is."""

    model_config = ConfigDict(frozen=True)

    address: str  # an email address, or an E.164 phone number
    written: str  # as written in the file: a staff id, "on_call", or the address itself
    staff_id: str | None = None
    name: str | None = None
    on_call: bool = False

    def __str__(self) -> str:
        who = [w for w in (self.staff_id, "on call" if self.on_call else None) if w]
        return self.address + (f" ({', '.join(who)})" if who else "")


def staff_address(member_email: str | None, member_phone: str | None, channel: str) -> str | None:
    return member_email if channel == "email" else member_phone


def resolve_recipients(
    config: TenantConfig, to: Sequence[str], channel: str, at: datetime | None
) -> tuple[list[Recipient], list[str]]:
    """The recipients of ``to`` for ``channel`` at instant ``at``, and notes on the ones
    that could not be resolved (``on_call`` without an instant…). Duplicates (the same
    address twice) are kept once, first mention first."""
    out: list[Recipient] = []
    notes: list[str] = []
    what = "email address" if channel == "email" else "phone number"
    for item in to:
        kind = recipient_kind(item)
        if kind in ("email", "phone"):
            if (kind == "email") != (channel == "email"):
                notes.append(f"{item}: not an {what}, skipped")  # refused at load
                continue
            out.append(Recipient(address=item, written=item))
            continue
        if kind == "on_call":
            if at is None:
                notes.append("on_call: no time given, so nobody is on call (not sent)")
                continue
            if config.on_call is None:
                notes.append("on_call: the tenant has no on_call schedule (not sent)")
                continue
            member = on_call_at(config, at).staff
        else:
            found = config.staff_member(item)
            if found is None:
                notes.append(f"{item}: unknown staff member, skipped")  # refused at load
                continue
            member = found
        address = staff_address(member.email, member.phone, channel)
        if not address:
            notes.append(f"{member.id}: no {what}, skipped")  # refused at load
            continue
        out.append(
            Recipient(
                address=address,
                written=item,
                staff_id=member.id,
                name=member.name,
                on_call=kind == "on_call",
            )
        )
    unique: dict[str, Recipient] = {}
    for recipient in out:
        unique.setdefault(recipient.address, recipient)
    return list(unique.values()), notes


def channel_connection(config: TenantConfig, channel: str, via: str | None) -> tuple[str, str]:
    """``(connection name, provider)`` sending ``channel`` messages: ``via`` if given, else
    the tenant's only ``channel`` connection, else ``(RELAIS_SENDER, channel)``."""
    if via is not None:
        connection = config.connections.get(via)
        return via, connection.provider if connection is not None else channel
    named = [n for n, c in config.connections.items() if c.provider == channel]
    if len(named) == 1:
        return named[0], channel
    return RELAIS_SENDER, channel  # several: refused at load (say which with `via`)
