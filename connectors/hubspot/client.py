"""HubSpot CRM through hubspot-api-client: every qualified call lands as a
contact (found or created), a logged call or note, and a callback task when
one was requested, in as few API calls as HubSpot's batch endpoints allow.

A batch holds up to 300 messages; each step goes out in chunks of 100 (what
HubSpot's batch endpoints take), so per 100 messages the happy path costs:
1. one contact search (phone and email), skipped when every caller is linked;
2. one batch upsert of the contacts still missing, keyed by ``relais_id``;
3. one batch create of the call logs, associated inline with their contacts;
and one batch create per 100 callback tasks, which are rarer than calls.

Exactly once: every record carries ``relais_id`` (a unique custom property):
the contact's caller key, or the delivery's idempotency key. Creates carry an
``objectWriteTraceId`` so one conflict does not sink the batch; any record
refused on its own is read back by ``relais_id`` before it is declared
rejected (an earlier attempt may have written it, its answer lost), and
associated. A contact upsert refused as a whole (HubSpot may answer one
conflicting input with a 409 for the batch) is split in halves until the bad
input stands alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from hubspot import HubSpot

from connectors.base import (
    ConnectionInfo,
    DeliveryError,
    DeliveryRequest,
    DeliveryResult,
    RateLimited,
    Rejected,
    Runtime,
    TransientError,
)
from connectors.catalog import provider as catalogue
from connectors.crm import (
    CallerKey,
    CrmRecord,
    FieldProblem,
    caller_key,
    check_fields,
    deliver_with_erasures,
    phone_forms,
    render_section,
    same_phone,
)
from connectors.http import Classifier, make_client

DEFAULT_HOST = "https://api.hubapi.com"
# HUBSPOT_DEFINED association type ids, engagement -> contact.
ASSOCIATION_TO_CONTACT = {"calls": 194, "notes": 202, "tasks": 204, "meetings": 200}
_EXISTING_ID = re.compile(r"Existing ID: ?(\d+)")
APPOINTMENT_ACTIONS = ("appointment.created", "appointment.updated", "appointment.cancelled")
ACTIONS = ("message.created", *APPOINTMENT_ACTIONS)


def _is_api_exception(exc: BaseException) -> bool:
    # Each sub-package of the SDK has its own ApiException class.
    return any(cls.__name__ == "ApiException" for cls in type(exc).__mro__)


def error_from(exc: BaseException, what: str) -> DeliveryError:
    """An SDK exception as one of our error kinds, with HubSpot's own message."""
    if not _is_api_exception(exc):
        return TransientError(f"HubSpot {what}: {type(exc).__name__}: {exc}")
    status = int(getattr(exc, "status", 0) or 0)
    try:
        body = json.loads(getattr(exc, "body", None) or "{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") or getattr(exc, "reason", "") or "no message"
    reason = f"HubSpot {what} answered {status}: {message}"
    headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
    error = _HubSpotErrors().classify(status, headers, body, reason)
    if isinstance(error, RateLimited):
        error.daily = body.get("policyName") == "DAILY"  # type: ignore[attr-defined]
    return error


class _HubSpotErrors(Classifier):
    """A 429 waits for Retry-After, else the window the headers name; the DAILY
    policy waits until midnight (HubSpot's usage guidelines)."""

    def limit_wait(self, status: int, headers: Mapping[str, str], body: Any) -> float:
        return _reset_after(body, dict(headers)).total_seconds()


def next_midnight(zone: tzinfo, now: datetime | None = None) -> datetime:
    """The next midnight in ``zone`` (aware, whatever the DST of that night)."""
    local = (now or datetime.now(UTC)).astimezone(zone)
    return datetime.combine(local.date() + timedelta(days=1), time(), zone)


def _reset_after(body: dict[str, Any], headers: dict[str, str]) -> timedelta:
    if body.get("policyName") == "DAILY":  # until midnight; the connector puts it in the
        now = datetime.now(UTC)  # account's time zone (HubSpot's usage guidelines)
        return next_midnight(UTC, now) - now
    if "retry-after" in headers:
        return timedelta(seconds=float(headers["retry-after"]))
    interval = float(headers.get("x-hubspot-ratelimit-interval-milliseconds", 10_000))
    return timedelta(milliseconds=interval)


_ACCOUNT_ZONES: dict[str, tzinfo] = {}  # connection id -> the account's time zone


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class _Work:
    """One message in flight through the steps of a batch."""

    request: DeliveryRequest
    key: CallerKey
    contact_id: str | None = None
    error: DeliveryError | None = None
    record_id: str | None = None


class HubSpotConnector:
    provider: ClassVar[str] = "hubspot"
    linger_seconds: ClassVar[float] = 0.5  # a lone urgent message still leaves at once

    @staticmethod
    def rate_limit(info: ConnectionInfo) -> tuple[int, float]:
        """Requests per window for this app: 100/10 s on Free/Starter, 190 on Pro
        (the catalogue's ``limits``, unless the connection's settings say otherwise)."""
        limit = catalogue("hubspot").rate_limit(
            info.settings.get("rate_limit"), info.settings.get("rate_limit_window_seconds")
        )
        assert limit is not None
        return limit

    @staticmethod
    def extra_rate_limits(info: ConnectionInfo) -> dict[str, tuple[int, float]]:
        """Search has its own, lower limit (the catalogue's ``search_per_second``)."""
        default = catalogue("hubspot").limits["search_per_second"]
        return {"search": (int(info.settings.get("search_rate_limit", default)), 1.0)}

    def __init__(self, info: ConnectionInfo, runtime: Runtime) -> None:
        self.info, self.runtime = info, runtime
        token = info.credentials.get("access_token") or info.credentials.get("private_app_token")
        host = str(info.settings.get("api_base_url", DEFAULT_HOST)).rstrip("/")
        self.host, self.token = host, token
        self.client = HubSpot(access_token=token, host=host)
        self.id_property = str(info.settings.get("id_property", "relais_id"))
        self.calls = 0  # API calls made, for benchmarks
        self.chunk = catalogue("hubspot").batch_size("objects", 100)

    # ------------------------------------------------------------------ plumbing
    def _call(self, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """One paced SDK call. Bodies go as plain JSON and answers come back raw
        (``_preload_content=False``): the SDK's models copy a configuration per
        object and parse every date, which costs more than the request."""
        if self.info.id not in _ACCOUNT_ZONES:
            self._account_zone()  # while calls are left: a DAILY 429 is no time to ask
        self.runtime.pacer.wait()
        self.calls += 1
        try:
            response = fn()
        except Exception as exc:  # noqa: BLE001 - mapped to an error kind right here
            error = error_from(exc, what)
            if getattr(error, "daily", False):
                assert isinstance(error, RateLimited)
                error.reset_at = next_midnight(self._account_zone())
            raise error from exc
        data = response.data
        return json.loads(data) if data else {}

    def _account_zone(self) -> tzinfo:
        """The account's time-zone setting, where the daily limit resets at midnight
        (``GET /account-info/v3/details``: one call per process and connection, made
        before its first request, while the daily limit still allows it)."""
        zone = _ACCOUNT_ZONES.get(self.info.id)
        if zone is None:
            self.runtime.pacer.wait()  # HubSpot counts it: so must the limiter
            self.calls += 1
            try:
                with make_client(10, {"Authorization": f"Bearer {self.token}"}) as http:
                    answer = http.get(f"{self.host}/account-info/v3/details")
                zone = ZoneInfo(str(answer.json()["timeZone"]))
            except Exception:  # noqa: BLE001 - unknown: UTC midnight (at worst a few hours early)
                zone = UTC
            _ACCOUNT_ZONES[self.info.id] = zone
        return zone

    def close(self) -> None:
        return None

    def check_fields(self, wanted: dict[str, list[str]]) -> list[FieldProblem]:
        """Every mapped property exists and is writable, per the properties API."""
        described: dict[str, dict[str, bool]] = {}
        for obj in sorted(wanted):
            try:
                page = self._call(
                    f"{obj} properties",
                    lambda o=obj: self.client.crm.properties.core_api.get_all(
                        o, _preload_content=False
                    ),
                )
            except Rejected:
                continue
            described[obj] = {
                p["name"].lower(): not (p.get("modificationMetadata") or {}).get(
                    "readOnlyValue", False
                )
                for p in page.get("results") or []
            }
        return check_fields(described, wanted, self.id_property)

    # ------------------------------------------------------------------ erasure
    def erase_records(self, records: Sequence[CrmRecord]) -> None:
        """HubSpot's GDPR delete of each contact (``POST /crm/v3/objects/contacts/
        gdpr-delete`` ``{"objectId": id}`` → 204): permanent, with its associations.
        A contact already gone (404) counts as erased: a retry after a lost answer."""
        for record in records:
            if record.object.lower() not in ("contacts", "contact"):
                raise Rejected(f"HubSpot's GDPR delete erases contacts, not {record.object!r}")
            try:
                self._call("GDPR delete", lambda r=record: self.client.crm.contacts.basic_api
                           .purge({"objectId": r.id}, _preload_content=False))
            except Rejected as exc:
                if getattr(exc.__cause__, "status", None) == 404:
                    continue
                raise

    # ------------------------------------------------------------------ deliver
    def deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        return deliver_with_erasures(batch, self, self._deliver)

    def _deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        work = [_Work(r, caller_key(r.payload)) for r in batch]
        try:
            for w in work:
                if w.request.action not in ACTIONS:
                    w.error = Rejected(f"the HubSpot connector does not do {w.request.action!r}")
            self._resolve_contacts([w for w in work if w.error is None])
            live = [w for w in work if w.request.action == "message.created"]
            self._create_engagements("call_log", [w for w in live if w.error is None])
            callbacks = [
                w
                for w in live
                if w.error is None and w.request.payload["message"].get("callback_requested")
            ]
            self._create_engagements(
                "callback_task", callbacks, suffix=":callback", keep_record_id=False
            )
            self._upsert_meetings(
                [w for w in work if w.error is None and w.request.action in APPOINTMENT_ACTIONS]
            )
        except DeliveryError as exc:  # the whole batch: 429, 401, 5xx, unreachable
            return [DeliveryResult(w.request.delivery_id, error=exc) for w in work]
        return [
            DeliveryResult(w.request.delivery_id, external_id=w.record_id, error=w.error)
            for w in work
        ]

    # ------------------------------------------------------------------ contacts
    def _resolve_contacts(self, work: list[_Work]) -> None:
        links = self.runtime.links
        known = links.get_many("caller", sorted({w.key.id for w in work}), "contacts")
        for w in work:
            w.contact_id = known.get(w.key.id)
        missing = [w for w in work if w.contact_id is None]
        if not missing:
            return
        found: dict[tuple[str, str], str] = {}
        for part in _chunks(missing, self.chunk):
            found |= self._search_contacts(part)
        for w in missing:
            w.contact_id = found.get(("phone", w.key.phone)) or found.get(("email", w.key.email))
        to_create: dict[str, _Work] = {}
        for w in missing:
            if w.contact_id is None:
                to_create.setdefault(w.key.id, w)
        if to_create:
            created: dict[str, str | DeliveryError] = {}
            for part in _chunks(list(to_create.values()), self.chunk):
                created |= self._upsert_contacts(part)
            for w in missing:
                if w.contact_id is None:
                    outcome = created.get(w.key.id)
                    if isinstance(outcome, DeliveryError):
                        w.error = outcome
                    else:
                        w.contact_id = outcome
        for w in missing:
            if w.contact_id:
                links.put("caller", w.key.id, "contacts", w.contact_id)

    def _search_contacts(self, work: list[_Work]) -> dict[tuple[str, str], str]:
        """One search (a page per 200 matches) on phone, mobile phone and email. HubSpot
        matches strings exactly, so each phone goes in the six forms people type it;
        what comes back is keyed by E.164."""
        region = (work[0].request.payload.get("tenant") or {}).get("phone_region")
        phones = sorted({f for w in work if w.key.phone for f in phone_forms(w.key.phone, region)})
        emails = sorted({w.key.email for w in work if w.key.email})
        groups = [
            {"filters": [{"propertyName": prop, "operator": "IN", "values": values}]}
            for prop, values in (("phone", phones), ("mobilephone", phones), ("email", emails))
            if values
        ]
        found: dict[tuple[str, str], str] = {}
        after: str | None = None
        while True:  # one page unless callers exist in many copies
            request = {
                "filterGroups": groups,
                "properties": ["phone", "mobilephone", "email"],
                "limit": 200,
                "sorts": ["createdate"],  # the oldest record wins when a caller exists twice
                **({"after": after} if after else {}),
            }
            self.runtime.pacer_named("search").wait()
            page = self._call(
                "contact search",
                lambda r=request: self.client.crm.contacts.search_api.do_search(
                    public_object_search_request=r, _preload_content=False
                ),
            )
            for contact in page.get("results") or []:
                props = contact.get("properties") or {}
                for prop in ("phone", "mobilephone"):
                    e164 = same_phone(props.get(prop), region)
                    if e164:
                        found.setdefault(("phone", e164), str(contact["id"]))
                email = (props.get("email") or "").strip().lower()
                if email:
                    found.setdefault(("email", email), str(contact["id"]))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return found

    def _upsert_contacts(self, work: list[_Work]) -> dict[str, str | DeliveryError]:
        inputs, outcome = [], {}
        for w in work:
            try:
                props = render_section(self.info, "contact", w.request.payload)
            except Rejected as exc:
                outcome[w.key.id] = exc
                continue
            props[self.id_property] = w.key.id
            inputs.append({"idProperty": self.id_property, "id": w.key.id, "properties": props})
        if inputs:
            outcome |= self._upsert_inputs(inputs)
        return outcome

    def _upsert_inputs(self, inputs: list[dict[str, Any]]) -> dict[str, str | DeliveryError]:
        """One batch upsert. HubSpot may refuse a whole batch for one bad input (409
        "Contact already exists. Existing ID: N" for an email another contact owns):
        the batch is then split in halves until the bad input stands alone, so one
        record never sinks 99 good ones (about 2·log2(n) extra calls, rare). An input
        refused on its own is read back by ``relais_id`` before it is declared
        rejected: an earlier attempt may have written it."""
        try:
            response = self._call(
                "contact upsert",
                lambda: self.client.crm.contacts.batch_api.upsert(
                    {"inputs": inputs}, _preload_content=False
                ),
            )
        except Rejected as exc:
            if len(inputs) > 1:
                half = len(inputs) // 2
                return self._upsert_inputs(inputs[:half]) | self._upsert_inputs(inputs[half:])
            response = {"errors": [{"message": str(exc), "context": {"ids": [inputs[0]["id"]]}}]}
        outcome: dict[str, str | DeliveryError] = {}
        for result in response.get("results") or []:
            key = (result.get("properties") or {}).get(self.id_property)
            if key:
                outcome[key] = str(result["id"])
        refused: dict[str, str] = {}
        for error in response.get("errors") or []:
            existing = _EXISTING_ID.search(error.get("message") or "")
            for key in (error.get("context") or {}).get("ids") or []:
                if existing:  # someone else owns this email already: that contact is the caller
                    outcome[key] = existing.group(1)
                else:
                    refused[key] = str(error.get("message") or "no reason given")
        if refused:
            found = self._read_by_key(
                "contacts", self.client.crm.contacts.batch_api, list(refused)
            )
            for key, message in refused.items():
                outcome[key] = found.get(key) or Rejected(
                    f"HubSpot refused contact {key}: {message}"
                )
        return outcome

    def _read_by_key(self, object_type: str, api: Any, keys: list[str]) -> dict[str, str]:
        """Records by ``relais_id`` (one batch read per 100): key -> HubSpot id."""
        found: dict[str, str] = {}
        for part in _chunks(keys, self.chunk):
            read = self._call(
                f"{object_type} read",
                lambda part=part: api.read(
                    {
                        "idProperty": self.id_property,
                        "properties": [self.id_property],
                        "inputs": [{"id": k} for k in part],
                    },
                    _preload_content=False,
                ),
            )
            for record in read.get("results") or []:
                key = (record.get("properties") or {}).get(self.id_property)
                if key:
                    found[key] = str(record["id"])
        return found

    # ------------------------------------------------------------------ engagements
    def _create_engagements(
        self, section: str, work: list[_Work], suffix: str = "", keep_record_id: bool = True
    ) -> None:
        for part in _chunks(work, self.chunk):
            self._create_chunk(section, part, suffix, keep_record_id)

    def _create_chunk(
        self, section: str, work: list[_Work], suffix: str, keep_record_id: bool
    ) -> None:
        object_type = self._object_type(section)
        api = getattr(self.client.crm.objects, object_type).batch_api
        inputs, by_trace = [], {}
        for w in work:
            trace = w.request.idempotency_key + suffix
            try:
                props = render_section(self.info, section, w.request.payload)
            except Rejected as exc:
                w.error = exc
                continue
            props[self.id_property] = trace
            association = {
                "to": {"id": w.contact_id},
                "types": [
                    {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": ASSOCIATION_TO_CONTACT[object_type],
                    }
                ],
            }
            inputs.append(
                {"properties": props, "associations": [association], "objectWriteTraceId": trace}
            )
            by_trace[trace] = w
        if not inputs:
            return
        response = self._call(
            f"{object_type} create",
            lambda: api.create({"inputs": inputs}, _preload_content=False),
        )
        done: dict[str, str] = {}
        for result in response.get("results") or []:
            trace = result.get("objectWriteTraceId") or (result.get("properties") or {}).get(
                self.id_property
            )
            done[trace] = str(result["id"])
        # Any refused record is read back by relais_id first: a conflict on relais_id
        # (or any other error) after a lost answer means an earlier attempt wrote it.
        refused: dict[str, str] = {}
        for error in response.get("errors") or []:
            for trace in (error.get("context") or {}).get("objectWriteTraceId") or []:
                if trace in by_trace:
                    refused[trace] = str(error.get("message") or "no reason given")
        if refused:
            done |= self._recover(object_type, api, [by_trace[t] for t in refused], suffix)
            for trace, message in refused.items():
                if trace not in done:
                    by_trace[trace].error = Rejected(
                        f"HubSpot refused the {object_type} record: {message}"
                    )
        for trace, w in by_trace.items():
            if trace in done and keep_record_id:
                w.record_id = f"{object_type}/{done[trace]}"
            elif trace not in done and w.error is None:
                w.error = TransientError(f"HubSpot did not confirm the {object_type} record")

    def _recover(
        self, object_type: str, api: Any, work: list[_Work], suffix: str
    ) -> dict[str, str]:
        """Records an earlier attempt wrote but never heard back about: read them by
        ``relais_id`` and (re)associate them; associating twice changes nothing."""
        traces = [w.request.idempotency_key + suffix for w in work]
        found = self._read_by_key(object_type, api, traces)
        pairs = [
            {"from": {"id": found[t]}, "to": {"id": w.contact_id}}
            for t, w in zip(traces, work, strict=True)
            if t in found
        ]
        if pairs:
            self._call(
                "association",
                lambda: self.client.crm.associations.v4.batch_api.create_default(
                    object_type,
                    "contacts",
                    {"inputs": pairs},
                    _preload_content=False,
                ),
            )
        return {t: found[t] for t in traces if t in found}

    # ------------------------------------------------------------------ meetings
    def _upsert_meetings(self, work: list[_Work]) -> None:
        """Appointments as meetings, keyed by ``relais_id`` = ``apt:<appointment id>``:
        creating, moving and cancelling are the same idempotent upsert (a cancel
        sets the outcome to CANCELED, as HubSpot users do), then an association."""
        latest: dict[str, _Work] = {}
        for w in work:  # two changes to one appointment in a batch: the last one wins
            latest["apt:" + str(w.request.payload["appointment"]["id"])] = w
        api = self.client.crm.objects.meetings.batch_api
        for part in _chunks(list(latest.items()), self.chunk):
            inputs = []
            for key, w in part:
                try:
                    props = render_section(self.info, "appointment", w.request.payload)
                except Rejected as exc:
                    w.error = exc
                    continue
                props[self.id_property] = key
                inputs.append({"idProperty": self.id_property, "id": key, "properties": props})
            if not inputs:
                continue
            response = self._call(
                "meetings upsert",
                lambda i=inputs: api.upsert({"inputs": i}, _preload_content=False),
            )
            ids = {
                (r.get("properties") or {}).get(self.id_property): str(r["id"])
                for r in response.get("results") or []
            }
            for error in response.get("errors") or []:
                for key in (error.get("context") or {}).get("ids") or []:
                    if key in latest:
                        latest[key].error = Rejected(
                            f"HubSpot refused the meeting: {error.get('message')}"
                        )
            pairs = [
                {"from": {"id": ids[key]}, "to": {"id": w.contact_id}}
                for key, w in part
                if key in ids and w.contact_id and w.error is None
            ]
            if pairs:
                self._call(
                    "meeting association",
                    lambda p=pairs: self.client.crm.associations.v4.batch_api.create_default(
                        "meetings", "contacts", {"inputs": p}, _preload_content=False
                    ),
                )
            for key, w in part:
                if key in ids:
                    w.record_id = f"meetings/{ids[key]}"
                elif w.error is None:
                    w.error = TransientError("HubSpot did not confirm the meeting")
        for w in work:  # earlier changes superseded in this batch share the outcome
            final = latest["apt:" + str(w.request.payload["appointment"]["id"])]
            if w is not final:
                w.record_id, w.error = final.record_id, final.error

    def _object_type(self, section: str) -> str:
        mapped = self.info.mapping.object_of(section) if self.info.mapping else None
        default = {"call_log": "calls", "callback_task": "tasks", "appointment": "meetings"}
        return str(mapped or default[section]).lower()
