"""Asterisk CDR CSV (``cdr_csv``'s ``Master.csv``) read as call events.

Column order, as ``cdr_csv`` writes it: accountcode, src, dst, dcontext, clid,
channel, dstchannel, lastapp, lastdata, start, answer, end, duration, billsec,
disposition, amaflags, then uniqueid (``loguniqueid=yes``) and userfield
(``loguserfield=yes``): 16 to 18 columns, no header line. Times are
``YYYY-MM-DD HH:MM:SS`` in the PBX's zone (UTC with ``usegmtime=yes``).

One row gives: ``offered`` at start; ``answered`` at answer and ``ended`` at end
when the disposition is ANSWERED; ``abandoned`` at end otherwise (NO ANSWER,
BUSY, FAILED, CONGESTION). The call id is the uniqueid, else channel@start.
The secretary is the peer of the destination channel (``SIP/sophie-0000001a``
-> ``sophie``). A row that cannot be read is reported with its line number.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from mappings.schema import normalize_phone
from sync.calls import CallEventIn, EventConflict, record_events
from sync.store.db import session_scope
from sync.tenants import tenant_for_number

COLUMNS = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
           "lastdata", "start", "answer", "end", "duration", "billsec", "disposition",
           "amaflags", "uniqueid", "userfield")
ANSWERED = "ANSWERED"
NOT_ANSWERED = frozenset({"NO ANSWER", "BUSY", "FAILED", "CONGESTION"})
_PEER = re.compile(r"^[^/]+/(?P<peer>.+?)(?:-[0-9a-fA-F]+)?(?:;\d+)?$")


@dataclass
class CdrRow:
    line: int
    dialled: str | None  # E.164, when dst reads as a phone number
    events: list[CallEventIn]


@dataclass
class BadRow:
    line: int
    problem: str


def _instant(text: str, zone: ZoneInfo, column: str) -> datetime:
    try:
        # The zone goes on at once: the PBX wrote its local time (fold 0 when ambiguous).
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)
    except ValueError:
        raise ValueError(f"{column}: {text!r} is not YYYY-MM-DD HH:MM:SS") from None


def _secretary(dstchannel: str) -> str | None:
    found = _PEER.match(dstchannel.strip())
    return found.group("peer") if found else None


def read_row(fields: list[str], line: int, zone: ZoneInfo, region: str | None) -> CdrRow:
    """One CSV record as events; ValueError naming the column when it cannot be read."""
    if not 16 <= len(fields) <= 18:
        raise ValueError(f"{len(fields)} columns; a Master.csv row has 16 to 18 "
                         "(accountcode … amaflags[, uniqueid[, userfield]])")
    row = dict(zip(COLUMNS, fields, strict=False))
    disposition = row["disposition"].strip().upper()
    if disposition != ANSWERED and disposition not in NOT_ANSWERED:
        raise ValueError(f"disposition: {row['disposition']!r} is not ANSWERED, NO ANSWER, "
                         "BUSY, FAILED or CONGESTION")
    start = _instant(row["start"], zone, "start")
    end = _instant(row["end"], zone, "end")
    call_id = (row.get("uniqueid") or "").strip() or f"{row['channel'].strip()}@{row['start']}"
    try:
        dialled = normalize_phone(row["dst"], region) if row["dst"].strip() else None
    except ValueError:
        dialled = None  # an extension, not a number: --tenant must name the tenant
    common = {"call_id": call_id[:200], "called": dialled,
              "caller": (row["src"].strip() or None) and row["src"].strip()[:64]}
    secretary = _secretary(row["dstchannel"]) if row["dstchannel"].strip() else None
    raw = [{"event": "offered", "at": start}]
    if disposition == ANSWERED:
        if not row["answer"].strip():
            raise ValueError("answer: empty on an ANSWERED row")
        raw.append({"event": "answered", "at": _instant(row["answer"], zone, "answer"),
                    "secretary": secretary})
        raw.append({"event": "ended", "at": end, "secretary": secretary})
    else:
        raw.append({"event": "abandoned", "at": end})
    try:
        events = [CallEventIn.model_validate({**common, **e}) for e in raw]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return CdrRow(line, dialled, events)


def read_cdr(handle: TextIO, zone: ZoneInfo, region: str | None
             ) -> Iterator[CdrRow | BadRow]:
    """Every record of a Master.csv file, read or refused, with its line number."""
    reader = csv.reader(handle)
    for fields in reader:
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        try:
            yield read_row(fields, line, zone, region)
        except ValueError as exc:
            yield BadRow(line, str(exc))


@dataclass
class ImportSummary:
    rows: int = 0
    calls: int = 0
    created: int = 0
    duplicates: int = 0
    bad: list[BadRow] | None = None


def ingest(rows: Sequence[CdrRow], tenant_id: str | None,
           advance: Callable[[int], None] = lambda n: None, chunk: int = 500) -> ImportSummary:
    """Record ``rows`` (each in its own savepoint, ``chunk`` rows a transaction).

    The tenant is ``tenant_id``, else the one the row's dialled number forwards to; a
    row with no tenant or contradicting stored events is reported, the others kept.
    """
    summary = ImportSummary(bad=[])
    assert summary.bad is not None
    calls: set[tuple[str, str]] = set()
    for first in range(0, len(rows), chunk):
        with session_scope() as session:
            for row in rows[first:first + chunk]:
                tenant = tenant_id or (tenant_for_number(session, row.dialled)
                                       if row.dialled else None)
                if tenant is None:
                    summary.bad.append(BadRow(row.line, f"dst: {row.dialled or 'not a number'} "
                                              "forwards to no tenant (see forwarding_numbers, "
                                              "or name it with --tenant)"))
                    continue
                try:
                    with session.begin_nested():
                        done = record_events(session, tenant, row.events)
                except EventConflict as exc:
                    summary.bad.append(BadRow(row.line, str(exc)))
                    continue
                summary.rows += 1
                calls.add((tenant, row.events[0].call_id))
                summary.created += sum(1 for d in done if d.status == "created")
                summary.duplicates += sum(1 for d in done if d.status == "duplicate")
        advance(len(rows[first:first + chunk]))
    summary.calls = len(calls)
    return summary
