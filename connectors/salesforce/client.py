"""Salesforce through simple-salesforce: every qualified call lands as a Contact
or Lead (found or created), a Task logging the call, and a callback Task when
one was requested; booked appointments land as Events.

Per 200 messages (a batch holds up to 600), the happy path costs at most four API calls:

1. one lookup of the callers the link store does not know yet: a SOQL query on
   Phone, MobilePhone and Email (each phone in the six forms people type it,
   :func:`connectors.crm.phone_forms`). A short query goes as ``GET /query``; a
   long one is split into queries of up to 14,000 characters (the hard limit is
   16,384 bytes of URI and headers) sent as subrequests of one Composite
   request (one API call), as Salesforce recommends for long URIs; Composite
   takes at most five queries, so a batch of 600 new callers costs three;
2. one sObject Collections upsert of the callers still missing, by external id
   (``Relais_Id__c`` = the caller key, ``tel:+33…`` or ``mail:…``);
3. one Collections upsert of the call-log Tasks, by external id = the
   delivery's idempotency key, ``WhoId`` = the contact or lead;
4. one Collections upsert of the callback Tasks (key + ``:callback``), if any.

**Exactly once.** Every write is an upsert by external id, so a retry after a
lost answer updates the record an earlier attempt wrote instead of creating a
second one. A delivery's external id is ``Task/<id>`` of its call log (or
``Event/<id>``). Collections answer one result per record (``allOrNone`` is
false): a refused record fails only its own delivery.

**Duplicate rules.** When the org's duplicate rule blocks a new contact
(``DUPLICATES_DETECTED``: a record our lookup missed, e.g. ``06.12.34.56.78``),
the matching record is reused. Its id is read from the error's
``duplicateResut`` (sic) match results. The single-record REST API documents
that body; whether Collections errors carry it is unverified, so when one
does not, that record is sent again alone (one extra call, rare).

**Stale links.** A contact merged or deleted in Salesforce makes the Task
fail on ``WhoId``; the caller is then looked up again without the link store
(a merge survivor is found by phone or email), and the Task is sent again.

**Limits.** Salesforce has no per-second limit but a rolling 24 h allocation
per org, so nothing is paced per second (``rate_limit`` returns None unless a
connection sets ``rate_limit``). Every answer carries ``Sforce-Limit-Info:
api-usage=N/M``; once N reaches M (or the connection's ``daily_limit``, to
leave room to the org's other integrations) no further call is made. Past the
allocation Salesforce answers 403 ``REQUEST_LIMIT_EXCEEDED`` without
Retry-After; since the window rolls, usage falls gradually, so the connection
is paused for ``limit_pause_seconds`` (default one hour) and tried again then.
401 ``INVALID_SESSION_ID`` is AuthExpired (the engine refreshes the token);
other 4xx are Rejected with Salesforce's errorCode and message; 5xx, timeouts
and connection errors are transient.

**Appointments** (``appointment.created|updated|cancelled``): an Event upsert by
external id = the appointment id, ``WhoId`` = the caller. Cancellation deletes
the Event by default. If the tenant's ``appointment`` mapping reads
``appointment.status`` in some field, the Event is kept and upserted instead,
so that field records the cancellation. Cancelling an Event that is already
gone succeeds.

The org needs the external id field (Text, External ID, Unique) on Contact,
Lead, Task and Event. Connection settings: ``instance_url`` (the credentials' ``instance_url``, from
the token response, wins), ``api_version``, ``ca_file`` (sandbox CA),
``external_id_field`` (default ``Relais_Id__c``), ``daily_limit``,
``limit_pause_seconds``, ``timeout_seconds``, ``token_url`` and
``authorization_url`` (used by :mod:`connectors.oauth`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote_plus

import requests
from simple_salesforce import Salesforce, format_external_id, format_soql
from simple_salesforce.exceptions import SalesforceError, SalesforceMalformedRequest

from connectors.base import (
    AuthExpired,
    ConnectionInfo,
    DeliveryError,
    DeliveryRequest,
    DeliveryResult,
    RateLimited,
    Rejected,
    Runtime,
    TransientError,
)
from connectors.catalog import provider
from connectors.crm import (
    CallerKey,
    CrmRecord,
    FieldProblem,
    caller_key,
    check_fields,
    deliver_with_erasures,
    phone_forms,
    render_section,
)
from connectors.http import Classifier
from connectors.phones import format_phone

DEFAULT_EXTERNAL_ID = "Relais_Id__c"
DEFAULT_TIMEOUT = 30.0
LIMIT_PAUSE = timedelta(hours=1)  # no Retry-After exists; the 24 h window rolls
# Characters of URL-encoded SOQL per query: the URI limit is 16,384 bytes of URI and
# headers together, so this leaves room for the path and the headers.
QUERY_BUDGET = 14_000
# Composite takes 25 subrequests, but at most 5 queries (query, queryAll, next batch)
# or sObject Collections: a sixth is refused (REST API guide, Composite).
COMPOSITE_QUERIES = 5
# Per-record status codes worth retrying (locks, rollbacks, server trouble).
TRANSIENT_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "REQUEST_RUNNING_TOO_LONG",
        "SERVER_UNAVAILABLE",
        "UNKNOWN_EXCEPTION",
        "PROCESSING_HALTED",
    }
)
STALE_REFERENCE = frozenset({"INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED"})
GONE = frozenset({"ENTITY_IS_DELETED", "NOT_FOUND", "INVALID_CROSS_REFERENCE_KEY"})
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")  # it goes into a URL
APPOINTMENT_ACTIONS = ("appointment.created", "appointment.updated", "appointment.cancelled")


class _Session(requests.Session):
    """A requests session with a default timeout: the SDK sets none."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def _errors_of(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [e for e in content if isinstance(e, dict)]
    if isinstance(content, dict):
        # A Composite refused as a whole wraps its error in one compositeResponse item.
        inner = content.get("compositeResponse")
        if isinstance(inner, list) and inner and isinstance(inner[0], dict):
            return _errors_of(inner[0].get("body"))
        return [content]
    return []


def _describe(error: dict[str, Any]) -> str:
    code = error.get("errorCode") or error.get("statusCode") or "ERROR"
    text = f"{code}: {error.get('message') or 'no message'}"
    fields = error.get("fields") or []
    return text + (f" (fields: {', '.join(fields)})" if fields else "")


class _SalesforceErrors(Classifier):
    """403 ``REQUEST_LIMIT_EXCEEDED`` is the used-up 24 h allocation: a rate limit for
    the configured pause (no Retry-After). ``body`` is the answer's errorCode."""

    def rate_limited(self, status: int, headers: Mapping[str, str], body: Any) -> bool:
        return body == "REQUEST_LIMIT_EXCEEDED" or status == 429

    def limit_wait(self, status: int, headers: Mapping[str, str], body: Any) -> float:
        return self.rate_limited_seconds


def error_from_status(
    status: int, content: Any, what: str, pause: timedelta = LIMIT_PAUSE
) -> DeliveryError:
    """An HTTP error answer as one of our error kinds, with Salesforce's errorCode."""
    errors = _errors_of(content)
    first = errors[0] if errors else {}
    code = first.get("errorCode") or first.get("statusCode") or ""
    detail = _describe(first) if first else "no error body"
    reason = f"Salesforce {what} answered {status} {detail}"

    def text(kind: type[DeliveryError]) -> str:
        if kind is RateLimited:
            return (f"{reason}; the 24 h API allocation is used up, trying again in "
                    f"{int(pause.total_seconds() // 60)} min")
        return reason

    return _SalesforceErrors(pause.total_seconds()).classify(status, {}, code, text)


def error_from(exc: BaseException, what: str, pause: timedelta = LIMIT_PAUSE) -> DeliveryError:
    """An SDK or transport exception as one of our error kinds. Never quotes a URL
    (it may carry a SOQL query with callers' numbers)."""
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, SalesforceError):
        return error_from_status(int(exc.status or 0), exc.content, what, pause)
    if isinstance(exc, requests.Timeout):
        return TransientError(f"Salesforce {what}: no answer in time ({type(exc).__name__})")
    if isinstance(exc, requests.RequestException):
        return TransientError(f"Salesforce {what}: connection failed ({type(exc).__name__})")
    return TransientError(f"Salesforce {what}: unexpected answer ({type(exc).__name__})")


def record_error(
    sobject: str, what: str, result: dict[str, Any], external_id: str = DEFAULT_EXTERNAL_ID
) -> DeliveryError:
    """One refused record of a Collections answer."""
    errors = _errors_of(result.get("errors"))
    first = errors[0] if errors else {}
    code = first.get("statusCode") or first.get("errorCode") or ""
    reason = f"Salesforce refused the {sobject} {what}: " + (
        _describe(first) if first else "no reason given"
    )
    if code in TRANSIENT_CODES:
        return TransientError(reason)
    if code == "DUPLICATE_VALUE" and external_id in (first.get("fields") or []):
        # Two upserts of one external id raced; retried, it is an update.
        return TransientError(reason)
    if code == "REQUEST_LIMIT_EXCEEDED":
        return RateLimited(reason, datetime.now(UTC) + LIMIT_PAUSE)
    return Rejected(reason)


def _code(result: dict[str, Any]) -> str:
    errors = _errors_of(result.get("errors"))
    return str(errors[0].get("statusCode") or errors[0].get("errorCode") or "") if errors else ""


def duplicate_match(error: dict[str, Any]) -> tuple[str, str] | None:
    """``(sObject, id)`` of the record a duplicate rule matched, from the error body."""
    detail = error.get("duplicateResut") or error.get("duplicateResult") or {}
    for result in detail.get("matchResults") or []:
        for match in result.get("matchRecords") or []:
            record = match.get("record") or {}
            record_type = (record.get("attributes") or {}).get("type") or result.get("entityType")
            if record.get("Id") and record_type:
                return str(record_type), str(record["Id"])
    return None


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_queries(
    select: str,
    groups: Sequence[Sequence[str]],
    units: Sequence[Sequence[tuple[int, str]]],
    tail: str = "",
    budget: int = QUERY_BUDGET,
) -> list[str]:
    """SOQL ``select WHERE f IN (…) OR …tail`` over ``units`` (each a list of
    ``(group index, value)``; the values of group i are matched on every field of
    ``groups[i]``), split so each query's URL-encoded text stays within ``budget``."""

    def build(chunk: Sequence[Sequence[tuple[int, str]]]) -> str:
        clauses = []
        for index, fields in enumerate(groups):
            values = sorted({v for unit in chunk for g, v in unit if g == index})
            if values:
                clauses += [format_soql(f"{name} IN {{}}", values) for name in fields]
        return f"{select} WHERE {' OR '.join(clauses)}{tail}"

    queries: list[str] = []
    chunk: list[Sequence[tuple[int, str]]] = []
    for unit in units:
        if not unit:
            continue
        if chunk and len(quote_plus(build([*chunk, unit]))) > budget:
            queries.append(build(chunk))
            chunk = []
        chunk.append(unit)
    if chunk:
        queries.append(build(chunk))
    return queries


@dataclass
class _Work:
    """One delivery in flight through the steps of a batch."""

    request: DeliveryRequest
    key: CallerKey | None  # None: no phone nor email, nobody to link
    person: tuple[str, str] | None = None  # (Contact|Lead, id)
    linked: bool = False  # the person came from the link store
    error: DeliveryError | None = None
    record_id: str | None = None
    done: bool = False  # every step of this delivery succeeded

    @property
    def action(self) -> str:
        return self.request.action

    @property
    def payload(self) -> dict[str, Any]:
        return self.request.payload


def _caller_of(request: DeliveryRequest) -> CallerKey | None:
    payload = request.payload
    caller = (payload.get("message") or {}).get("caller") or payload.get("caller") or {}
    if not (caller.get("phone") or (caller.get("email") or "").strip()):
        return None
    return caller_key({"message": {"caller": caller}})


class SalesforceConnector:
    provider: ClassVar[str] = "salesforce"
    # Claimed at once; every write goes in Collections of 200, so a batch of 600
    # sends its (rarer) callback Tasks in one call instead of three.
    linger_seconds: ClassVar[float] = 0.5  # a lone urgent message still leaves at once

    @staticmethod
    def rate_limit(info: ConnectionInfo) -> tuple[int, float] | None:
        """No per-second pacing: Salesforce counts a rolling 24 h allocation, watched
        through ``Sforce-Limit-Info`` instead. A connection may still set
        ``rate_limit`` (requests per ``rate_limit_window_seconds``)."""
        return provider("salesforce").rate_limit(
            info.settings.get("rate_limit"), info.settings.get("rate_limit_window_seconds")
        )

    def __init__(self, info: ConnectionInfo, runtime: Runtime) -> None:
        self.info, self.runtime = info, runtime
        settings, credentials = info.settings, info.credentials
        self.external_id = str(settings.get("external_id_field") or DEFAULT_EXTERNAL_ID)
        self.daily_limit = int(settings["daily_limit"]) if settings.get("daily_limit") else None
        self.pause = timedelta(seconds=float(settings.get("limit_pause_seconds") or 3600))
        self.version = str(settings.get("api_version") or provider("salesforce").api_version)
        self.collection_size = provider("salesforce").batch_size("collections", 200)
        self.session = _Session(float(settings.get("timeout_seconds") or DEFAULT_TIMEOUT))
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.session.verify = str(settings["ca_file"]) if settings.get("ca_file") else True
        self.usage: tuple[int, int] | None = None  # (used, max) from Sforce-Limit-Info
        self.calls = 0  # API calls made, for tests and benchmarks
        instance_url = credentials.get("instance_url") or settings.get("instance_url")
        token = credentials.get("access_token")
        self.problem: DeliveryError | None = None
        self.sf: Any = None
        if not _API_NAME.fullmatch(self.external_id):  # it goes into URLs and SOQL
            self.problem = TransientError(
                f"settings.external_id_field {self.external_id!r} is not a field API name"
            )
        elif not token:
            self.problem = AuthExpired("the Salesforce connection has no access token")
        elif not instance_url:
            self.problem = TransientError(
                "the Salesforce connection has no instance_url; reconnect it or set "
                "settings.instance_url"
            )
        else:
            self.sf = Salesforce(
                instance_url=str(instance_url),
                session_id=str(token),
                session=self.session,
                version=self.version,
            )

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ plumbing
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        self._check_allocation()
        self.runtime.pacer.wait()
        self.calls += 1
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - mapped to an error kind right here
            raise error_from(exc, what, self.pause) from exc
        finally:
            usage = self.sf.api_usage.get("api-usage") if self.sf is not None else None
            if usage is not None:
                self.usage = (usage.used, usage.total)
        return result

    def _check_allocation(self) -> None:
        if self.usage is None:
            return
        used, total = self.usage
        ceiling = min(total, self.daily_limit) if self.daily_limit else total
        if used >= ceiling:
            raise RateLimited(
                f"Salesforce API usage is {used}/{total} over the last 24 h "
                f"(Relais stops at {ceiling}); trying again in "
                f"{int(self.pause.total_seconds() // 60)} min",
                datetime.now(UTC) + self.pause,
            )

    def _object(self, section: str) -> str:
        mapped = self.info.mapping.object_of(section) if self.info.mapping else None
        default = {"contact": "Contact", "call_log": "Task", "callback_task": "Task"}
        return str(mapped or default.get(section, "Event"))

    # ------------------------------------------------------------------ live check
    def check_fields(self, wanted: dict[str, list[str]]) -> list[FieldProblem]:
        """Every mapped field exists and is writable, per the org's describe."""
        if self.problem is not None:
            raise self.problem
        described: dict[str, dict[str, bool]] = {}
        for obj in sorted(wanted):
            try:
                meta = self._call(f"{obj} describe", lambda o=obj: getattr(self.sf, o).describe())
            except Rejected:
                continue  # an unknown object: reported by check_fields below
            described[obj] = {
                f["name"].lower(): bool(f.get("createable") or f.get("updateable"))
                for f in meta.get("fields", [])
            }
        return check_fields(described, wanted, self.external_id)

    # ------------------------------------------------------------------ erasure
    def erase_records(self, records: Sequence[CrmRecord]) -> None:
        """``DELETE /sobjects/{Contact|Lead}/{id}`` → 204 for each record (it goes to
        the org's Recycle Bin, emptied after 15 days or by an admin). A record already
        deleted or unknown (404 ``ENTITY_IS_DELETED``/``NOT_FOUND``) counts as erased:
        a retry after a lost answer."""
        for record in records:
            if record.object not in ("Contact", "Lead") or not _RECORD_ID.fullmatch(record.id):
                raise Rejected(f"Relais erases Contact and Lead records, not "
                               f"{record.object}/{record.id}")
            try:
                self._call(f"{record.object} delete",
                           lambda r=record: getattr(self.sf, r.object).delete(r.id))
            except Rejected as exc:
                cause = exc.__cause__
                codes = {str(e.get("errorCode")) for e in _errors_of(
                    getattr(cause, "content", None))}
                if getattr(cause, "status", None) == 404 and codes & GONE:
                    continue
                raise

    # ------------------------------------------------------------------ deliver
    def deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        if self.problem is not None:
            return [DeliveryResult(r.delivery_id, error=self.problem) for r in batch]
        return deliver_with_erasures(batch, self, self._deliver)

    def _deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        work = [_Work(r, _caller_of(r)) for r in batch]
        for w in work:
            if w.action != "message.created" and w.action not in APPOINTMENT_ACTIONS:
                w.error = Rejected(f"the Salesforce connector does not handle {w.action!r}")
            elif w.action == "message.created" and w.key is None:
                w.error = Rejected("the caller has neither a phone number nor an email")
        try:
            self._resolve_people(
                [w for w in work if w.error is None and w.key is not None and self._needs_person(w)]
            )
            messages = [w for w in work if w.error is None and w.action == "message.created"]
            self._write_activities("call_log", messages, lambda w: w.request.idempotency_key)
            for w in messages:
                if w.error is None and not w.payload["message"].get("callback_requested"):
                    w.done = True
            callbacks = [w for w in messages if w.error is None and not w.done]
            self._write_activities(
                "callback_task",
                callbacks,
                lambda w: w.request.idempotency_key + ":callback",
                keep_record_id=False,
            )
            for w in callbacks:
                w.done = w.error is None
            self._write_appointments(
                [w for w in work if w.error is None and w.action in APPOINTMENT_ACTIONS]
            )
        except DeliveryError as exc:  # the whole batch: limit, 401, 5xx, unreachable
            return [
                DeliveryResult(w.request.delivery_id, external_id=w.record_id)
                if w.done
                else DeliveryResult(
                    w.request.delivery_id,
                    error=w.error if isinstance(w.error, Rejected) else exc,
                )
                for w in work
            ]
        return [
            DeliveryResult(w.request.delivery_id, external_id=w.record_id, error=w.error)
            for w in work
        ]

    def _needs_person(self, w: _Work) -> bool:
        return not (w.action == "appointment.cancelled" and not self._cancel_by_update())

    # ------------------------------------------------------------------ people
    def _resolve_people(self, work: list[_Work], use_links: bool = True) -> None:
        """Give each caller its Contact/Lead: link store, then lookup, then upsert."""
        if not work:
            return
        links = self.runtime.links
        target = self._object("contact")
        keys = sorted({w.key.id for w in work if w.key is not None})
        known: dict[str, tuple[str, str]] = {}
        if use_links:
            # A caller found as a Contact stays one even when we create Leads.
            for sobject in ("Lead", "Contact") if target == "Lead" else ("Contact",):
                for key, rid in links.get_many("caller", keys, sobject).items():
                    known[key] = (sobject, rid)
        missing = {w.key.id: w for w in work if w.key is not None and w.key.id not in known}
        found = self._lookup(list(missing.values()), target) if missing else {}
        absent = [w for k, w in missing.items() if k not in found]
        created = self._upsert_people(absent, target) if absent else {}
        for key, outcome in created.items():
            if isinstance(outcome, tuple):
                found[key] = outcome
        for w in work:
            assert w.key is not None
            if w.key.id in known:
                w.person, w.linked = known[w.key.id], True
            elif w.key.id in found:
                w.person, w.linked = found[w.key.id], False
            else:
                outcome = created.get(w.key.id)
                w.error = (
                    outcome
                    if isinstance(outcome, DeliveryError)
                    else TransientError("Salesforce did not confirm the caller's record")
                )
        for key, (sobject, rid) in found.items():
            links.put("caller", key, sobject, rid)

    def _lookup(self, work: list[_Work], target: str) -> dict[str, tuple[str, str]]:
        """One SOQL lookup (Contact, and Lead when the mapping writes Leads) by
        phone, mobile and email; the oldest Contact wins, then the oldest Lead."""
        region = (work[0].payload.get("tenant") or {}).get("phone_region")
        units: list[list[tuple[int, str]]] = []
        for w in work:
            assert w.key is not None
            unit = [(0, form) for form in phone_forms(w.key.phone, region)] if w.key.phone else []
            if w.key.email:
                unit.append((1, w.key.email))
            units.append(unit)
        groups = (("Phone", "MobilePhone"), ("Email",))
        queries = []
        for sobject in ("Contact", "Lead") if target == "Lead" else ("Contact",):
            select = f"SELECT Id, Phone, MobilePhone, Email FROM {sobject}"  # noqa: S608
            queries += [
                (sobject, q) for q in in_queries(select, groups, units, " ORDER BY CreatedDate")
            ]
        records = self._query_all(queries, "caller lookup")
        index: dict[tuple[str, str], tuple[str, str]] = {}
        for sobject, rows in records:
            for row in rows:
                for name in ("Phone", "MobilePhone"):
                    value = format_phone(row.get(name), region, "e164")
                    if value:
                        index.setdefault(("tel", value), (sobject, row["Id"]))
                email = (row.get("Email") or "").strip().lower()
                if email:
                    index.setdefault(("mail", email), (sobject, row["Id"]))
        found = {}
        for w in work:
            assert w.key is not None
            hit = (w.key.phone and index.get(("tel", w.key.phone))) or (
                w.key.email and index.get(("mail", w.key.email))
            )
            if hit:
                found[w.key.id] = hit
        return found

    def _query_all(
        self, queries: list[tuple[str, str]], what: str
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """Run SOQL queries: one alone as ``GET /query``, several as subrequests of
        Composite requests (5 queries per request, Salesforce's limit; each one API
        call). Further pages of a long answer cost one call each."""
        if not queries:
            return []
        if len(queries) == 1:
            sobject, soql = queries[0]
            page = self._call(what, lambda: self.sf.query(soql))
            return [(sobject, self._rest_of(page, what))]
        out: list[tuple[str, list[dict[str, Any]]]] = []
        for group in _chunks(queries, COMPOSITE_QUERIES):
            body = {
                "allOrNone": False,
                "compositeRequest": [
                    {
                        "method": "GET",
                        "url": f"/services/data/v{self.version}/query?q={quote_plus(soql)}",
                        "referenceId": f"q{n}",
                    }
                    for n, (_, soql) in enumerate(group)
                ],
            }
            answer = self._call(
                what, lambda body=body: self.sf.restful("composite", method="POST", json=body)
            )
            responses = (answer or {}).get("compositeResponse") or []
            if len(responses) != len(group):
                raise TransientError(f"Salesforce {what}: incomplete Composite answer")
            for (sobject, _), response in zip(group, responses, strict=True):
                status = int(response.get("httpStatusCode") or 0)
                if status >= 300:
                    raise error_from_status(status, response.get("body"), what, self.pause)
                out.append((sobject, self._rest_of(response.get("body") or {}, what)))
        return out

    def _rest_of(self, page: dict[str, Any], what: str) -> list[dict[str, Any]]:
        rows = list(page.get("records") or [])
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            url = page["nextRecordsUrl"]
            page = self._call(what, lambda url=url: self.sf.query_more(url, True))
            rows += page.get("records") or []
        return rows

    def _upsert_people(
        self, work: list[_Work], sobject: str
    ) -> dict[str, tuple[str, str] | DeliveryError]:
        outcome: dict[str, tuple[str, str] | DeliveryError] = {}
        rows: list[tuple[str, dict[str, Any]]] = []
        for w in work:
            assert w.key is not None
            try:
                fields = render_section(self.info, "contact", w.payload)
            except Rejected as exc:
                outcome[w.key.id] = exc
                continue
            rows.append((w.key.id, {**fields, self.external_id: w.key.id}))
        results = self._upsert(sobject, [r for _, r in rows], "caller")
        again = []
        for (key, record), result in zip(rows, results, strict=True):
            if result.get("success") and result.get("id"):
                outcome[key] = (sobject, str(result["id"]))
            elif _code(result) == "DUPLICATES_DETECTED":
                match = next(
                    (m for e in _errors_of(result.get("errors")) if (m := duplicate_match(e))),
                    None,
                )
                if match:
                    outcome[key] = match
                else:
                    again.append((key, record))
            else:
                outcome[key] = record_error(sobject, "caller", result, self.external_id)
        for key, record in again:
            outcome[key] = self._upsert_one(sobject, key, record)
        return outcome

    def _upsert_one(
        self, sobject: str, key: str, record: dict[str, Any]
    ) -> tuple[str, str] | DeliveryError:
        """One record through the single-record upsert, whose DUPLICATES_DETECTED
        body carries the matching records."""
        body = {k: v for k, v in record.items() if k != self.external_id}
        path = format_external_id(self.external_id, key)
        sftype = getattr(self.sf, sobject)

        def attempt() -> tuple[str, Any]:
            try:
                return "ok", sftype.upsert(path, body, raw_response=True)
            except SalesforceMalformedRequest as exc:
                return "refused", exc.content

        kind, answer = self._call(f"{sobject} upsert", attempt)
        if kind == "refused":
            for error in _errors_of(answer):
                match = duplicate_match(error)
                if match:
                    return match
            return error_from_status(400, answer, f"{sobject} upsert", self.pause)
        data = answer.json() if answer.content else {}
        if data.get("id"):
            return sobject, str(data["id"])
        found = self._call(
            f"{sobject} read", lambda: sftype.get_by_custom_id(self.external_id, key)
        )
        return sobject, str(found["Id"])

    # ------------------------------------------------------------------ writes
    def _upsert(self, sobject: str, records: list[dict[str, Any]], what: str) -> list[dict]:
        """Collections upsert by external id; one result per record, in order."""
        results: list[dict[str, Any]] = []
        for chunk in _chunks(records, self.collection_size):
            body = {
                "allOrNone": False,
                "records": [{"attributes": {"type": sobject}, **r} for r in chunk],
            }
            answer = self._call(
                f"{sobject} {what} upsert",
                lambda body=body: self.sf.restful(
                    f"composite/sobjects/{sobject}/{self.external_id}", method="PATCH", json=body
                ),
            )
            if not isinstance(answer, list) or len(answer) != len(chunk):
                raise TransientError(
                    f"Salesforce answered the {sobject} upsert with an unexpected body"
                )
            results.extend(a if isinstance(a, dict) else {} for a in answer)
        return results

    def _write_activities(
        self,
        section: str,
        work: list[_Work],
        external_key: Callable[[_Work], str],
        keep_record_id: bool = True,
        retry_stale: bool = True,
    ) -> None:
        """Upsert one Task/Event per delivery, linked to its caller by WhoId."""
        if not work:
            return
        sobject = self._object(section)
        rows: list[tuple[_Work, dict[str, Any]]] = []
        for w in work:
            try:
                fields = render_section(self.info, section, w.payload)
            except Rejected as exc:
                w.error = exc
                continue
            record = {**fields, self.external_id: external_key(w)}
            if w.person is not None:
                record["WhoId"] = w.person[1]
            rows.append((w, record))
        if not rows:
            return
        results = self._upsert(sobject, [r for _, r in rows], section.replace("_", " "))
        stale = []
        for (w, _), result in zip(rows, results, strict=True):
            if result.get("success") and result.get("id"):
                if keep_record_id:
                    w.record_id = f"{sobject}/{result['id']}"
                if section == "appointment":
                    self.runtime.links.put("appointment", self._appointment_id(w), "Event",
                                           str(result["id"]))  # fmt: skip
            elif retry_stale and w.linked and _code(result) in STALE_REFERENCE:
                stale.append(w)  # the linked contact was merged or deleted
            else:
                w.error = record_error(sobject, section.replace("_", " "), result, self.external_id)
        if stale:
            self._resolve_people(stale, use_links=False)
            self._write_activities(
                section,
                [w for w in stale if w.error is None],
                external_key,
                keep_record_id,
                retry_stale=False,
            )

    # ------------------------------------------------------------------ appointments
    def _cancel_by_update(self) -> bool:
        """Keep cancelled Events when the tenant's mapping records the status."""
        mapping = self.info.mapping
        return bool(mapping and mapping.reads("appointment", "appointment.status"))

    @staticmethod
    def _appointment_id(w: _Work) -> str:
        return str((w.payload.get("appointment") or {}).get("id") or "")

    def _write_appointments(self, work: list[_Work]) -> None:
        # Two changes of one appointment in a batch go in order, one round each.
        rounds: list[list[_Work]] = []
        seen: dict[str, int] = {}
        for w in work:
            appointment_id = self._appointment_id(w)
            if not appointment_id:
                w.error = Rejected("the appointment has no id")
                continue
            turn = seen.get(appointment_id, 0)
            seen[appointment_id] = turn + 1
            if turn == len(rounds):
                rounds.append([])
            rounds[turn].append(w)
        by_update = self._cancel_by_update()
        for group in rounds:
            deletes = [w for w in group if w.action == "appointment.cancelled" and not by_update]
            upserts = [w for w in group if w not in deletes]
            self._write_activities("appointment", upserts, self._appointment_id)
            for w in upserts:
                w.done = w.error is None
            self._delete_events(deletes)

    def _delete_events(self, work: list[_Work]) -> None:
        if not work:
            return
        ids = sorted({self._appointment_id(w) for w in work})
        known = dict(self.runtime.links.get_many("appointment", ids, "Event"))
        missing = [i for i in ids if i not in known]
        if missing:
            select = f"SELECT Id, {self.external_id} FROM Event"  # noqa: S608 - checked name
            queries = in_queries(select, ((self.external_id,),), [[(0, i)] for i in missing])
            for _, rows in self._query_all([("Event", q) for q in queries], "Event lookup"):
                for row in rows:
                    value = str(row.get(self.external_id) or "")
                    match = next((i for i in missing if i.lower() == value.lower()), None)
                    if match:
                        known.setdefault(match, str(row["Id"]))
        targets = sorted({known[i] for i in ids if i in known})
        refused: dict[str, DeliveryError] = {}
        for chunk in _chunks(targets, self.collection_size):
            params = {"ids": ",".join(chunk), "allOrNone": "false"}
            answer = self._call(
                "Event delete",
                lambda params=params: self.sf.restful(
                    "composite/sobjects", method="DELETE", params=params
                ),
            )
            for rid, result in zip(chunk, answer or [], strict=False):
                if isinstance(result, dict) and not result.get("success"):
                    if _code(result) not in GONE:  # already gone: cancelled all the same
                        refused[rid] = record_error("Event", "deletion", result)
        for w in work:
            rid = known.get(self._appointment_id(w))
            if rid in refused:
                w.error = refused[rid]
                continue
            w.record_id = f"Event/{rid}" if rid else None
            w.done = True
