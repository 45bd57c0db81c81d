"""Incremental reads of HubSpot contacts for the contact directory (sync.contacts).

**Changed contacts**: ``POST /crm/v3/objects/contacts/search`` filtered on
``lastmodifieddate >= since``, sorted by ``hs_object_id`` (unique and stable,
so records entering the result set during a pull shift nothing we have not
read yet), paged with ``after``. HubSpot refuses to page past 10,000 results
(``search_max_results``): before the next page would cross it, the search
restarts with ``hs_object_id > last id seen`` and the same date filter, i.e.
paging by id. The checkpoint after each page is that last id, so a pull cut
short (429, crash) resumes where it stopped. HubSpot's search takes one sort
only, which is why the date is a filter and the id the sort.

**Deleted contacts**: ``GET /crm/v3/objects/contacts?archived=true`` paged with
``after``. It has no date filter, so its cost grows with the archive, not with the
changes: the engine runs it at most every ``deleted_sweep_hours`` (default 24;
``deletions_every``), not on every pull, so an incremental pull costs the same
whatever the archive's size. Deletions pushed by HubSpot's webhooks arrive sooner.

Search has its own lower rate limit (~4-5 requests/s per token): every search
waits on the runtime's ``search`` limiter (``HubSpotConnector.extra_rate_limits``:
the catalogue's ``search_per_second``), as well as on the app's shared limiter.
Errors map through ``connectors.hubspot.client``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.base import ConnectionInfo, Runtime, TransientError
from connectors.crm import ContactPage, CrmContact, CrmDeletion
from connectors.hubspot.client import HubSpotConnector

PROPERTIES = [
    "firstname", "lastname", "email", "phone", "mobilephone", "company",
    "hubspot_owner_id", "lastmodifieddate",
]  # fmt: skip
SEARCH_CAP = 10_000  # results one search can page through (settings.search_max_results)
SEARCH_PAGE = 200  # search takes at most 200 per page
LIST_PAGE = 100  # the list endpoint takes at most 100 per page


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def contact_from(raw: dict[str, Any]) -> CrmContact:
    props = raw.get("properties") or {}
    name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p).strip()
    phones = tuple(p for p in (props.get("phone"), props.get("mobilephone")) if p)
    emails = tuple(e.strip().lower() for e in (props.get("email"),) if e and e.strip())
    updated = _parse_time(props.get("lastmodifieddate")) or _parse_time(raw.get("updatedAt"))
    return CrmContact(
        object="contacts",
        id=str(raw["id"]),
        name=name,
        company=props.get("company") or None,
        owner=props.get("hubspot_owner_id") or None,
        emails=emails,
        phones=phones,
        updated_at=updated,
    )


class HubSpotContactReader:
    provider = "hubspot"

    def __init__(self, info: ConnectionInfo, runtime: Runtime) -> None:
        self.connector = HubSpotConnector(info, runtime)
        settings = info.settings
        self.page_size = max(1, min(int(settings.get("sync_page_size", SEARCH_PAGE)), 200))
        self.cap = int(settings.get("search_max_results", SEARCH_CAP))
        self.search_pacer = runtime.pacer_named("search")
        hours = float(settings.get("deleted_sweep_hours", 24))
        self.deletions_every = timedelta(hours=hours) if hours > 0 else None

    @property
    def calls(self) -> int:
        return self.connector.calls

    def close(self) -> None:
        self.connector.close()

    def changed(self, since: datetime | None, resume: str | None) -> Iterator[ContactPage]:
        """Pages of contacts modified at or after ``since`` (all when None)."""
        window_id = int(resume) if resume else 0  # this search window starts after it
        last_id = window_id  # the checkpoint: every record up to it is read
        offset = 0
        search = self.connector.client.crm.contacts.search_api
        while True:
            filters: list[dict[str, Any]] = []
            if since is not None:
                ms = int(since.timestamp() * 1000)
                filters.append(
                    {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(ms)}
                )
            if window_id:
                filters.append(
                    {"propertyName": "hs_object_id", "operator": "GT", "value": str(window_id)}
                )
            body: dict[str, Any] = {
                "filterGroups": [{"filters": filters}] if filters else [],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": PROPERTIES,
                "limit": self.page_size,
                **({"after": str(offset)} if offset else {}),
            }
            self.search_pacer.wait()
            page = self.connector._call(
                "contact sync search",
                lambda b=body: search.do_search(
                    public_object_search_request=b, _preload_content=False
                ),
            )
            results = page.get("results") or []
            records = [contact_from(r) for r in results]
            if results:
                last_id = max(last_id, int(results[-1]["id"]))
            checkpoint = str(last_id) if last_id else None
            nxt = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not nxt:
                yield ContactPage(records, checkpoint)
                return
            if not results:
                raise TransientError("HubSpot search announced a next page after an empty one")
            offset = int(nxt)
            if offset + self.page_size > self.cap:
                window_id, offset = last_id, 0  # the cap is near: go on by id
            yield ContactPage(records, checkpoint)

    def deleted(self, since: datetime | None, until: datetime) -> Iterator[list[CrmDeletion]]:
        """Archived contacts, all of them (HubSpot offers no date filter here)."""
        api = self.connector.client.crm.contacts.basic_api
        after: str | None = None
        while True:
            page = self.connector._call(
                "archived contacts",
                lambda a=after: api.get_page(
                    limit=LIST_PAGE,
                    # The SDK would send "True"; HubSpot documents "true".
                    archived="true",  # type: ignore[arg-type]
                    properties=["lastmodifieddate"],
                    _preload_content=False,
                    **({"after": a} if a else {}),
                ),
            )
            yield [
                CrmDeletion("contacts", str(r["id"]), _parse_time(r.get("archivedAt")))
                for r in page.get("results") or []
                if r.get("archived") is True  # never delete on a live record
            ]
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return
