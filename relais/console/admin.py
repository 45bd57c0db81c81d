"""The client IT admin's pages: connections (connect, reconnect, disconnect),
configuration (validate, diff, apply, history, rollback), deliveries (filter,
dead letters, replay), the rules tester, API keys (shown once, revoked); and
the operator's tenants with their health.

Invariants:

- Only a tenant admin of the tenant, or the operator, reaches these pages; any
  other viewer gets 404, as for a tenant that does not exist.
- Every action calls the engine function the admin API calls (``sync.connections``,
  ``sync.config_versions``, ``sync.tenants.apply_config``, ``sync.lists``,
  ``sync.delivery.replay_dead``): no second path to the data. Actions are recorded
  as ``user:<id>``.
- Work is enqueued only after the transaction committed (the outbox rule).
- The OAuth consent starts from a CSRF-checked POST; the page it answers sends the
  browser on to the provider (a meta refresh and a link: the console's CSP only
  lets forms post to this site) and the callback comes back to the connections
  page with the outcome in its query, shown as text, never as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from connectors.base import TransientError
from mappings.errors import ConfigError
from mappings.plan import PlanError, explain_text, plan_for
from mappings.rules import CallContext
from relais.auth import create_key, revoke_key
from relais.console.connect_reasons import UNAVAILABLE, callback_reason, engine_reason
from relais.console.i18n import _
from relais.console.web import (
    ConsoleError,
    Viewer,
    checked_form,
    render,
    viewer_of,
    visible_tenant,
)
from sync.config_versions import UnknownVersion, dry_run, history, rollback
from sync.connections import (
    NOT_FOUND,
    OAUTH_PROVIDERS,
    ConnectError,
    disconnect,
    start_authorization,
)
from sync.delivery import replay_dead
from sync.lists import DELIVERY_STATUSES, BadFilter, Filters, list_deliveries
from sync.queue import enqueue_connections
from sync.store.db import session_scope
from sync.store.models import ApiKey, Connection, Delivery, Tenant, utcnow
from sync.tenants import apply_config, parsed_config

router = APIRouter(include_in_schema=False)
ADMINS = frozenset({"operator", "tenant_admin"})
PAGE = 100  # deliveries shown at once


def admin_tenant(session: Session, viewer: Viewer, tenant_id: str) -> Tenant:
    """The tenant, if the viewer administers it; 404 otherwise."""
    if viewer.role not in ADMINS:
        raise ConsoleError(404, "not_found")
    return visible_tenant(session, viewer, tenant_id)


def actor(viewer: Viewer) -> str:
    return f"user:{viewer.id}"


def _zone(tenant: Tenant) -> ZoneInfo:
    try:
        return parsed_config(tenant).zone
    except Exception:  # noqa: BLE001  (a stored config always parses; UTC if not)
        return ZoneInfo("UTC")


# ---------------------------------------------------------------------- connections

@dataclass
class ConnectionCard:
    name: str
    provider: str
    role: str
    status: str
    oauth: bool
    paused_until: datetime | None
    token_expires_at: datetime | None
    last_error: str | None
    dead: int
    pending: int


def connection_cards(session: Session, tenant_id: str) -> list[ConnectionCard]:
    """Each live connection with its state, its last delivery error and its counts."""
    rows = list(session.scalars(
        select(Connection).where(Connection.tenant_id == tenant_id,
                                 Connection.status != "disabled").order_by(Connection.name)))
    counts = {(cid, status): n for cid, status, n in session.execute(
        select(Delivery.connection_id, Delivery.status, func.count())
        .where(Delivery.tenant_id == tenant_id, Delivery.status.in_(("dead", "pending")))
        .group_by(Delivery.connection_id, Delivery.status))}
    cards = []
    for row in rows:
        last_error = session.scalar(
            select(Delivery.last_error)
            .where(Delivery.tenant_id == tenant_id, Delivery.connection_id == row.id,
                   Delivery.last_error.is_not(None), Delivery.status != "delivered")
            .order_by(Delivery.updated_at.desc()).limit(1))
        cards.append(ConnectionCard(
            row.name, row.provider, row.role, row.status, row.provider in OAUTH_PROVIDERS,
            row.paused_until, row.token_expires_at, last_error,
            counts.get((row.id, "dead"), 0), counts.get((row.id, "pending"), 0)))
    return cards


# How a disconnection went (``sync.connections.Disconnected.how``), as French msgids.
DISCONNECTED = {
    "revoked": _("Le fournisseur a révoqué le jeton."),
    "no_token": _("Aucun jeton n'était enregistré."),
    "not_revocable": _("Ce fournisseur ne permet pas de révoquer un jeton : les jetons ont été "
                       "effacés de Relais ; retirez aussi le consentement de l'application dans "
                       "la console d'administration du fournisseur."),
}


def _connections_context(viewer: Viewer, tenant_id: str) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant = admin_tenant(session, viewer, tenant_id)
        return {"tenant": tenant, "zone": _zone(tenant),
                "cards": connection_cards(session, tenant_id), "section": "connections"}


@router.get("/t/{tenant_id}/connections")
async def connections_page(request: Request, tenant_id: str, outcome: str = "",
                           connection: str = "", code: str = "", field: str = "",
                           detail: str = "") -> HTMLResponse:
    """The cards; ``outcome``, ``connection``, ``code``, ``field``, ``detail``: what
    the OAuth callback said, shown as a sentence in the viewer's language
    (:mod:`relais.console.connect_reasons`; the English ``reason`` is not shown)."""
    viewer = await viewer_of(request)
    context = await run_in_threadpool(_connections_context, viewer, tenant_id)
    notice: dict[str, str] = {}
    if outcome == "connected":
        notice = {"connected": connection}
    elif outcome == "error":
        notice = {"error": callback_reason(code, field), "detail": detail[:300]}
    return render(request, "admin_connections.html", {**context, "notice": notice},
                  viewer=viewer)


@router.post("/t/{tenant_id}/connections/{name}/connect")
async def connect(request: Request, tenant_id: str, name: str) -> HTMLResponse:
    """Start the OAuth consent; the answer sends the browser to the provider."""
    viewer = await viewer_of(request)
    await checked_form(request, viewer)

    def start() -> tuple[str, str] | str:
        try:
            with session_scope() as session:
                admin_tenant(session, viewer, tenant_id)
                started = start_authorization(session, tenant_id, name,
                                              return_to=f"/t/{tenant_id}/connections")
                row = session.get(Tenant, tenant_id)
                return started.url, row.name if row else tenant_id
        except ConnectError as exc:
            if exc.code == NOT_FOUND:
                raise ConsoleError(404, "not_found") from None
            return engine_reason(exc.code, exc.field)

    started = await run_in_threadpool(start)
    if isinstance(started, str):
        context = await run_in_threadpool(_connections_context, viewer, tenant_id)
        return render(request, "admin_connections.html",
                      {**context, "notice": {"error": started}}, 422, viewer)
    return render(request, "admin_redirect.html", {"url": started[0], "name": name},
                  viewer=viewer)


@router.post("/t/{tenant_id}/connections/{name}/disconnect")
async def disconnect_page(request: Request, tenant_id: str, name: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    await checked_form(request, viewer)

    def run() -> dict[str, str]:
        try:
            with session_scope() as session:
                admin_tenant(session, viewer, tenant_id)
                done = disconnect(session, tenant_id, name, actor=actor(viewer))
                return {"disconnected": done.connection.name, "note": DISCONNECTED[done.how]}
        except ConnectError as exc:
            if exc.code == NOT_FOUND:
                raise ConsoleError(404, "not_found") from None
            return {"error": engine_reason(exc.code, exc.field), "failed": "disconnect"}
        except TransientError:
            return {"error": UNAVAILABLE, "failed": "disconnect"}

    notice = await run_in_threadpool(run)
    context = await run_in_threadpool(_connections_context, viewer, tenant_id)
    return render(request, "admin_connections.html", {**context, "notice": notice},
                  422 if "error" in notice else 200, viewer)


# -------------------------------------------------------------------- configuration

def _config_context(viewer: Viewer, tenant_id: str, text: str | None = None,
                    **extra: Any) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant = admin_tenant(session, viewer, tenant_id)
        versions = history(session, tenant_id)
        session.expunge_all()
        return {"tenant": tenant, "zone": _zone(tenant), "versions": versions,
                "current": tenant.config_version, "section": "config",
                "text": tenant.config_yaml if text is None else text, "errors": [],
                "diff": None, "valid": None, "notice": {}, **extra}


@router.get("/t/{tenant_id}/config")
async def config_page(request: Request, tenant_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    context = await run_in_threadpool(_config_context, viewer, tenant_id)
    return render(request, "admin_config.html", context, viewer=viewer)


def _yaml_of(form: dict[str, str]) -> str:
    # Browsers send textareas with CRLF line ends: the stored YAML keeps LF.
    return form.get("yaml", "").replace("\r\n", "\n")


@router.post("/t/{tenant_id}/config/validate")
async def config_validate(request: Request, tenant_id: str) -> HTMLResponse:
    """A dry run: the errors at their line and column, and the diff; nothing stored."""
    viewer = await viewer_of(request)
    text = _yaml_of(await checked_form(request, viewer))

    def check() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            admin_tenant(session, viewer, tenant_id)
            found = dry_run(session, tenant_id, text)
        return {"errors": found.errors, "diff": found.diff, "valid": found.valid,
                "changed": found.changed}

    found = await run_in_threadpool(check)
    context = await run_in_threadpool(_config_context, viewer, tenant_id, text, **found)
    return render(request, "admin_config.html", context, 200 if found["valid"] else 422,
                  viewer)


@router.post("/t/{tenant_id}/config/apply")
async def config_apply(request: Request, tenant_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    text = _yaml_of(await checked_form(request, viewer))

    def run() -> dict[str, Any]:
        try:
            with session_scope() as session:
                admin_tenant(session, viewer, tenant_id)
                result = apply_config(session, text, f"{tenant_id}.yaml",
                                      expect_tenant=tenant_id, actor=actor(viewer))
                return {"notice": {"applied": str(result.version)}}
        except ConfigError as exc:
            return {"errors": [i.as_dict() for i in exc.issues], "valid": False,
                    "text": text}

    outcome = await run_in_threadpool(run)
    text_shown = outcome.pop("text", None)
    context = await run_in_threadpool(_config_context, viewer, tenant_id, text_shown,
                                      **outcome)
    return render(request, "admin_config.html", context, 422 if outcome.get("errors") else 200,
                  viewer)


@router.post("/t/{tenant_id}/config/rollback")
async def config_rollback(request: Request, tenant_id: str) -> HTMLResponse:
    """Apply an earlier version again (validated again, recorded as a new version)."""
    viewer = await viewer_of(request)
    form = await checked_form(request, viewer)
    try:
        version = int(form.get("version", ""))
    except ValueError:
        raise ConsoleError(422, _("Version invalide : un numéro de version est attendu.")
                           ) from None

    def run() -> dict[str, Any]:
        try:
            with session_scope() as session:
                admin_tenant(session, viewer, tenant_id)
                result = rollback(session, tenant_id, version, actor=actor(viewer))
                return {"notice": {"restored": str(version), "applied": str(result.version)}}
        except UnknownVersion:
            raise ConsoleError(404, "not_found") from None
        except ConfigError as exc:
            return {"notice": {"error": _("Cette version ne passe plus la validation "
                                          "d'aujourd'hui : voyez les erreurs ci-dessous.")},
                    "errors": [i.as_dict() for i in exc.issues], "valid": False}

    outcome = await run_in_threadpool(run)
    context = await run_in_threadpool(_config_context, viewer, tenant_id, None, **outcome)
    return render(request, "admin_config.html", context, 422 if outcome.get("errors") else 200,
                  viewer)


# ----------------------------------------------------------------------- deliveries

def _day(value: str, zone: ZoneInfo, field: str) -> datetime | None:
    """A ``YYYY-MM-DD`` date, as the start of that day in the tenant's zone."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadFilter(field, f"{value!r} is not a date", "write it as 2026-12-31") from None
    return datetime.combine(day, time(0), zone)


# The deliveries' filter problems, by the field ``sync.lists.BadFilter`` names (French
# msgids: the engine's English hint is for API callers).
FILTER_PROBLEMS = {
    "start": _("Date de début invalide : écrivez-la comme 2026-12-31."),
    "end": _("Date de fin invalide : écrivez-la comme 2026-12-31."),
    "to": _("La date de fin doit suivre la date de début."),
    "status": _("Statut inconnu : choisissez-en un dans la liste."),
    "cursor": _("Ce lien de page n'est plus valable : revenez à la première page."),
}


def _deliveries_context(viewer: Viewer, tenant_id: str, params: dict[str, str],
                        notice: dict[str, Any] | None = None) -> dict[str, Any]:
    status = params.get("status") or None
    connection = params.get("connection") or None
    with session_scope(readonly=True) as session:
        tenant = admin_tenant(session, viewer, tenant_id)
        zone = _zone(tenant)
        names = {c.id: c.name for c in session.scalars(
            select(Connection).where(Connection.tenant_id == tenant_id))}
        error = None
        items: list[Delivery] = []
        older: str | None = None
        newer: str | None = None
        try:
            start = _day(params.get("start", ""), zone, "start")
            last = _day(params.get("end", ""), zone, "end")
            end = last + timedelta(days=1) if last else None  # the end day included
            page = list_deliveries(session, tenant_id,
                                   Filters(start=start, end=end, status=status,
                                           connection=connection), limit=PAGE,
                                   cursor=params.get("before") or None,
                                   newer=params.get("after") or None)
            items = page.items
            older, newer = page.next_cursor, page.prev_cursor
        except BadFilter as exc:
            error = FILTER_PROBLEMS.get(exc.field, FILTER_PROBLEMS["status"])
        session.expunge_all()
    return {"tenant": tenant, "zone": zone, "deliveries": items, "names": names,
            "connections": sorted(set(names.values())), "statuses": DELIVERY_STATUSES,
            "filters": {k: params.get(k, "") for k in ("status", "connection", "start", "end")},
            "filter_error": error, "notice": notice or {}, "section": "deliveries",
            "older": _page_link(tenant_id, params, before=older) if older else None,
            "newer": _page_link(tenant_id, params, after=newer) if newer else None}


def _page_link(tenant_id: str, params: dict[str, str], **cursor: str) -> str:
    """The deliveries page with the same filters and another cursor (``before``:
    older rows, ``after``: newer ones)."""
    kept = {k: params[k] for k in ("status", "connection", "start", "end") if params.get(k)}
    return f"/t/{tenant_id}/deliveries?" + urlencode(kept | cursor)


@router.get("/t/{tenant_id}/deliveries")
async def deliveries_page(request: Request, tenant_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    params = dict(request.query_params)
    context = await run_in_threadpool(_deliveries_context, viewer, tenant_id, params)
    return render(request, "admin_deliveries.html", context,
                  422 if context["filter_error"] else 200, viewer)


async def _replay(request: Request, viewer: Viewer, tenant_id: str,
                  ids: list[str]) -> HTMLResponse:
    def run() -> dict[str, Any]:
        with session_scope() as session:
            admin_tenant(session, viewer, tenant_id)
            outcome = replay_dead(session, tenant_id, ids, actor=actor(viewer))
            replayed = [d.id for d in outcome.replayed]
            connection_ids = outcome.connection_ids
        if connection_ids:
            enqueue_connections(connection_ids)  # after commit: the outbox rule
        return {"replayed": replayed, "refused": outcome.refused}

    notice = await run_in_threadpool(run) if ids else {"error": "none"}
    params = {k: v for k, v in request.query_params.items()}
    context = await run_in_threadpool(_deliveries_context, viewer, tenant_id, params, notice)
    return render(request, "admin_deliveries.html", context,
                  422 if not ids else 200, viewer)


@router.post("/t/{tenant_id}/deliveries/replay")
async def replay_selection(request: Request, tenant_id: str) -> HTMLResponse:
    """Replay the checked dead deliveries (``ids``, repeated)."""
    viewer = await viewer_of(request)
    await checked_form(request, viewer)
    form = await request.form()
    ids = [str(v) for v in form.getlist("ids") if isinstance(v, str) and v]
    return await _replay(request, viewer, tenant_id, ids)


@router.post("/t/{tenant_id}/deliveries/{delivery_id}/replay")
async def replay_one(request: Request, tenant_id: str, delivery_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    await checked_form(request, viewer)
    return await _replay(request, viewer, tenant_id, [delivery_id])


# -------------------------------------------------------------------------- tenants

@dataclass
class TenantHealth:
    id: str
    name: str
    dead: int
    pending: int
    needs_auth: list[str]  # connections needing (re-)authorisation
    paused: list[str]  # connections paused by a provider's limit, now

    @property
    def healthy(self) -> bool:
        return not (self.dead or self.needs_auth or self.paused)


def tenants_health(session: Session) -> list[TenantHealth]:
    """Every tenant with what needs the operator: dead letters, connections to
    authorise again or never connected, connections paused now."""
    now = utcnow()
    counts = {(tid, status): n for tid, status, n in session.execute(
        select(Delivery.tenant_id, Delivery.status, func.count())
        .where(Delivery.status.in_(("dead", "pending")))
        .group_by(Delivery.tenant_id, Delivery.status))}
    connections: dict[str, list[Connection]] = {}
    for row in session.scalars(select(Connection).where(Connection.status != "disabled")
                               .order_by(Connection.name)):
        connections.setdefault(row.tenant_id, []).append(row)
    out = []
    for tenant in session.scalars(select(Tenant).order_by(Tenant.name)):
        rows = connections.get(tenant.id, [])
        out.append(TenantHealth(
            tenant.id, tenant.name, counts.get((tenant.id, "dead"), 0),
            counts.get((tenant.id, "pending"), 0),
            [c.name for c in rows if c.status in ("needs_reauth", "not_connected")],
            [c.name for c in rows if c.paused_until is not None and c.paused_until > now]))
    return out


@router.get("/tenants")
async def tenants_page(request: Request) -> HTMLResponse:
    """The operator's tenants with their health at a glance; 404 for anyone else."""
    viewer = await viewer_of(request)
    if viewer.role != "operator":
        raise ConsoleError(404, "not_found")

    def load() -> list[TenantHealth]:
        with session_scope(readonly=True) as session:
            return tenants_health(session)

    return render(request, "admin_tenants.html", {"tenants": await run_in_threadpool(load)},
                  viewer=viewer)


# ----------------------------------------------------------------------- rules tester

@router.get("/t/{tenant_id}/rules")
async def rules_tester(request: Request, tenant_id: str) -> HTMLResponse:
    """A call type, an instant, a staff member, an urgency → what the rules would do
    and why (``mappings.plan.plan_for``, the engine of ``POST …/rules/explain``).
    Reads only: a GET form. ``at`` is a local time in the tenant's zone."""
    viewer = await viewer_of(request)
    params = dict(request.query_params)

    def run() -> dict[str, Any]:
        with session_scope(readonly=True) as session:
            tenant = admin_tenant(session, viewer, tenant_id)
        config = parsed_config(tenant)
        context: dict[str, Any] = {"tenant": tenant, "config": config, "section": "rules",
                                   "form": params, "plan": None, "text": "", "error": None,
                                   "urgencies": ("low", "normal", "high", "urgent")}
        if not params.get("call_type"):
            return context
        at = utcnow()
        if params.get("at"):
            try:
                at = datetime.fromisoformat(params["at"]).replace(tzinfo=config.zone)
            except ValueError:
                context["error"] = _("Date et heure invalides : écrivez-les comme "
                                     "2026-12-31T14:30.")
                return context
        known = {"yes": True, "no": False}.get(params.get("known", ""))
        try:
            plan = plan_for(config, CallContext(
                call_type=params["call_type"], urgency=params.get("urgency") or None, at=at,
                known_contact=known, staff_id=params.get("staff") or None, intake={}))
        except PlanError as exc:
            context["error"] = _plan_problem(str(exc))
            return context
        context.update(plan=plan, text=explain_text(plan), conditions=CONDITION_LABELS,
                       chosen=[t.rule for t in plan.trace if t.matched])
        return context

    context = await run_in_threadpool(run)
    return render(request, "admin_rules.html", context, 422 if context["error"] else 200, viewer)


# The rule conditions (``mappings.schema.When``) as the tester names them.
CONDITION_LABELS = {
    "call_types": _("type d'appel"), "urgency": _("urgence"), "window": _("plage horaire"),
    "holiday": _("jour férié ou fermeture"), "known_contact": _("appelant connu du CRM"),
    "staff": _("demandé pour"), "intake": _("réponses du formulaire"),
}


def _plan_problem(message: str) -> str:
    """A French msgid for ``mappings.plan.PlanError`` (its English message names the
    input it refused first: ``unknown call type``, ``unknown urgency``…)."""
    for start, problem in PLAN_PROBLEMS:
        if message.startswith(start):
            return problem
    return _("Cet appel ne peut pas être évalué pour ce client.")


PLAN_PROBLEMS = (
    ("unknown call type", _("Type d'appel inconnu pour ce client.")),
    ("unknown urgency", _("Urgence inconnue.")),
    ("unknown staff", _("Membre de l'équipe inconnu pour ce client.")),
)


# -------------------------------------------------------------------------- API keys

KEY_ROLES = ("admin", "secretary")  # a tenant's keys; operator keys stay on the CLI


def _keys_context(viewer: Viewer, tenant_id: str,
                  notice: dict[str, str] | None = None) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        tenant = admin_tenant(session, viewer, tenant_id)
        keys = list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id)
                                    .order_by(ApiKey.created_at.desc())))
    return {"tenant": tenant, "zone": _zone(tenant), "keys": keys, "roles": KEY_ROLES,
            "notice": notice or {}, "section": "keys"}


@router.get("/t/{tenant_id}/keys")
async def keys_page(request: Request, tenant_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    context = await run_in_threadpool(_keys_context, viewer, tenant_id)
    return render(request, "admin_keys.html", context, viewer=viewer)


@router.post("/t/{tenant_id}/keys")
async def create_key_page(request: Request, tenant_id: str) -> HTMLResponse:
    """A new key of the tenant (``relais.auth.create_key``), shown once, never again."""
    viewer = await viewer_of(request)
    form = await checked_form(request, viewer)
    role, name = form.get("role", ""), form.get("name", "").strip()[:100]

    def run() -> dict[str, str]:
        if role not in KEY_ROLES:
            return {"error": _("Rôle inconnu : choisissez-en un dans la liste.")}
        with session_scope() as session:
            admin_tenant(session, viewer, tenant_id)
            return {"key": create_key(session, role, tenant_id, name or actor(viewer))}

    notice = await run_in_threadpool(run)
    context = await run_in_threadpool(_keys_context, viewer, tenant_id, notice)
    return render(request, "admin_keys.html", context, 422 if "error" in notice else 200,
                  viewer)


@router.post("/t/{tenant_id}/keys/{key_id}/revoke")
async def revoke_key_page(request: Request, tenant_id: str, key_id: str) -> HTMLResponse:
    viewer = await viewer_of(request)
    await checked_form(request, viewer)

    def run() -> dict[str, str]:
        with session_scope() as session:
            admin_tenant(session, viewer, tenant_id)
            row = session.get(ApiKey, key_id)
            if row is None or row.tenant_id != tenant_id:  # another tenant's: as missing
                raise ConsoleError(404, "not_found")
            revoke_key(session, key_id)
            return {"revoked": key_id}

    notice = await run_in_threadpool(run)
    context = await run_in_threadpool(_keys_context, viewer, tenant_id, notice)
    return render(request, "admin_keys.html", context, viewer=viewer)
