"""Incremental reads of Salesforce Contacts (and Leads) for the contact directory.

**Changed records**: SOQL ``SELECT … FROM Contact WHERE SystemModstamp > :since
ORDER BY Id``, paged with ``nextRecordsUrl`` (``Sforce-Query-Options:
batchSize``, setting ``sync_page_size``, 200–2000). The engine passes
``since`` already moved back by its lookback (records committed late, clock
skew) and skips records whose id and modstamp it already holds. The checkpoint
after each page is ``Object:last Id``: a pull cut short resumes with ``Id >``
that id instead of starting over. Leads are read too when the tenant's
mapping files callers as Leads.

**Deleted records**: ``GET /sobjects/{Object}/deleted/?start=&end=``, which
answers at most 15 days back: an older cursor (or Salesforce's
``INVALID_REPLICATION_DATE``), or a delete log purged past the cursor
(``earliestDateAvailable`` later than ``start``), raises ``CursorExpired`` and
the engine runs a full resync instead, sweeping what it no longer sees. The
log covers deletions only up to ``latestDateCovered``:
``deletions_covered_until`` tells the engine where the next window starts.

Errors map through ``connectors.salesforce.client`` (403 ``REQUEST_LIMIT_EXCEEDED`` is
RateLimited, 401 AuthExpired, …), and the daily allocation is watched the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from simple_salesforce import format_soql

from connectors.base import ConnectionInfo, CursorExpired, Rejected, Runtime
from connectors.crm import ContactPage, CrmContact, CrmDeletion
from connectors.salesforce.client import SalesforceConnector

DELETED_WINDOW = timedelta(days=15)  # how far back getDeleted answers
FIELDS = ["Id", "FirstName", "LastName", "Email", "Phone", "MobilePhone", "OwnerId",
          "SystemModstamp"]  # fmt: skip


def soql_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    if text.endswith("+0000"):
        text = text[:-5] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def contact_from(sobject: str, raw: dict[str, Any]) -> CrmContact:
    name = " ".join(p for p in (raw.get("FirstName"), raw.get("LastName")) if p).strip()
    return CrmContact(
        object=sobject,
        id=str(raw["Id"]),
        name=name,
        company=(raw.get("Company") or None) if sobject == "Lead" else None,
        owner=raw.get("OwnerId") or None,
        emails=tuple(e.strip().lower() for e in (raw.get("Email"),) if e and e.strip()),
        phones=tuple(p for p in (raw.get("Phone"), raw.get("MobilePhone")) if p),
        updated_at=_parse_time(raw.get("SystemModstamp")),
    )


class SalesforceContactReader:
    provider = "salesforce"

    def __init__(self, info: ConnectionInfo, runtime: Runtime) -> None:
        self.connector = SalesforceConnector(info, runtime)
        self.page_size = max(200, min(int(info.settings.get("sync_page_size", 2000)), 2000))
        target = self.connector._object("contact")
        self.objects = ["Contact", "Lead"] if target == "Lead" else ["Contact"]
        # Where the last deleted() call's log coverage ended (latestDateCovered): the next
        # window starts there, not at ``until``.
        self.deletions_covered_until: datetime | None = None

    @property
    def calls(self) -> int:
        return self.connector.calls

    def close(self) -> None:
        self.connector.close()

    def _ready(self) -> Any:
        if self.connector.problem is not None:
            raise self.connector.problem
        return self.connector.sf

    def changed(self, since: datetime | None, resume: str | None) -> Iterator[ContactPage]:
        sf = self._ready()
        start_object, _, after_id = (resume or "").partition(":")
        objects = self.objects
        if start_object in objects:
            objects = objects[objects.index(start_object) :]
        headers = {"Sforce-Query-Options": f"batchSize={self.page_size}"}
        for sobject in objects:
            fields = FIELDS + (["Company"] if sobject == "Lead" else [])
            where = []
            if since is not None:
                where.append(f"SystemModstamp > {soql_datetime(since)}")
            if after_id and sobject == start_object:
                where.append(format_soql("Id > {}", after_id))
            soql = f"SELECT {', '.join(fields)} FROM {sobject}"  # noqa: S608 - fixed names
            if where:
                soql += " WHERE " + " AND ".join(where)
            soql += " ORDER BY Id"
            page = self.connector._call(
                f"{sobject} sync query", lambda q=soql: sf.query(q, headers=headers)
            )
            while True:
                rows = page.get("records") or []
                records = [contact_from(sobject, r) for r in rows]
                last = str(rows[-1]["Id"]) if rows else after_id
                yield ContactPage(records, f"{sobject}:{last}" if last else f"{sobject}:")
                if page.get("done", True) or not page.get("nextRecordsUrl"):
                    break
                url = page["nextRecordsUrl"]
                page = self.connector._call(
                    f"{sobject} sync query", lambda u=url: sf.query_more(u, True, headers=headers)
                )
            after_id = ""

    def deleted(self, since: datetime | None, until: datetime) -> Iterator[list[CrmDeletion]]:
        if since is None or since < until - DELETED_WINDOW + timedelta(minutes=1):
            raise CursorExpired("the deleted-records window (15 days) no longer covers the cursor")
        sf = self._ready()
        # Salesforce wants more than a minute between start and end.
        start = min(since, until - timedelta(minutes=2)).replace(second=0, microsecond=0)
        self.deletions_covered_until = until
        for sobject in self.objects:
            try:
                answer = self.connector._call(
                    f"{sobject} deleted records",
                    lambda o=sobject: sf.restful(
                        f"sobjects/{o}/deleted/",
                        params={"start": soql_datetime(start), "end": soql_datetime(until)},
                    ),
                )
            except Rejected as exc:
                if "INVALID_REPLICATION_DATE" in str(exc):
                    raise CursorExpired(str(exc)) from exc
                raise
            answer = answer or {}
            earliest = _parse_time(answer.get("earliestDateAvailable"))
            if earliest is not None and earliest > start:
                # The log was purged past our window: deletions may be lost in between.
                raise CursorExpired(
                    f"the {sobject} delete log starts at {soql_datetime(earliest)}, after "
                    f"the cursor ({soql_datetime(start)})"
                )
            covered = _parse_time(answer.get("latestDateCovered"))
            if covered is not None:
                self.deletions_covered_until = min(self.deletions_covered_until, covered)
            yield [
                CrmDeletion(sobject, str(r["id"]), _parse_time(r.get("deletedDate")))
                for r in answer.get("deletedRecords") or []
            ]
