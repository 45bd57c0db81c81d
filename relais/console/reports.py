"""The indicators in the console: a tenant's report page (a day, an ISO week or a
month in the tenant's zone, with charts) and the operator's table of every tenant
side by side over a month.

Invariants:

- The figures are the engine's: :func:`sync.reports.load.tenant_report` (the body
  of ``GET /v1/tenants/{t}/report``) and :func:`sync.reports.load.operator_report`
  (``GET /v1/report``, ``relais report --all``). This module only picks the period
  and formats; every shown figure also carries its unrounded value in
  ``data-value``, so a test compares the page with the engine exactly.
- A tenant's page: whoever may see the tenant (its admin, its client users, the
  secretaries assigned to it, the operator); anyone else 404, as if it did not
  exist. The operator's page: the operator only, 404 for anyone else.
- Charts are :func:`sync.reports.render.bars` (server-side SVG, no script), each
  given a ``<title>`` and a ``<desc>`` and followed by a table with its numbers:
  nothing is only in a picture.
- "Today" is :func:`sync.clock.now` in the tenant's zone (the operator's month:
  in UTC); periods are :func:`sync.reports.periods.period` of the tenant's days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from relais.console.i18n import _
from relais.console.web import (
    ConsoleError,
    Viewer,
    language,
    render,
    translator,
    viewer_of,
    visible_tenant,
)
from sync import clock
from sync.reports.load import operator_report, tenant_report
from sync.reports.periods import PeriodKind, local_range, parse_month, period
from sync.reports.render import bars
from sync.store.db import session_scope
from sync.store.models import Tenant
from sync.tenants import parsed_config

router = APIRouter(include_in_schema=False)
KINDS: tuple[PeriodKind, ...] = ("day", "week", "month")
KIND_LABELS = {"day": _("Jour"), "week": _("Semaine"), "month": _("Mois")}


# ------------------------------------------------------------------------ formatting

def _number(value: float, digits: int, lang: str) -> str:
    text = f"{value:.{digits}f}"
    return text.replace(".", ",") if lang == "fr" else text


def shown(value: Any, kind: str, lang: str) -> str:
    """``value`` for people: a count, a rate in %, seconds; ``–`` for a statistic
    over nothing (``None``, never a made-up 0)."""
    if value is None:
        return "–"
    if kind == "pct":
        return _number(value * 100, 1, lang) + " %"
    if kind == "secs":
        return _number(value, 1, lang) + " s"
    return str(value)


@dataclass(frozen=True)
class Figure:
    """One indicator: its JSON path in the report, its label (a msgid), the
    unrounded value and how it shows."""

    key: str
    label: str
    value: Any
    kind: str  # count | pct | secs

    @property
    def raw(self) -> str:
        return "" if self.value is None else repr(self.value)


def _at(body: dict[str, Any], key: str) -> Any:
    value: Any = body
    for part in key.split("."):
        value = value[part]
    return value


# (JSON path, label, kind): the table of a tenant's page, in reading order.
INDICATORS: tuple[tuple[str, str, str], ...] = (
    ("calls.offered", _("Appels présentés"), "count"),
    ("calls.answered", _("Appels répondus"), "count"),
    ("calls.answer_rate", _("Taux de décroché"), "pct"),
    ("calls.time_to_answer_seconds.mean", _("Temps moyen de réponse"), "secs"),
    ("calls.time_to_answer_seconds.p90", _("Temps de réponse (90e centile)"), "secs"),
    ("calls.duration_seconds.mean", _("Durée moyenne de communication"), "secs"),
    ("calls.abandoned", _("Appels abandonnés"), "count"),
    ("calls.abandon_rate", _("Taux d'abandon"), "pct"),
    ("calls.time_to_abandon_seconds.mean", _("Temps moyen avant abandon"), "secs"),
    ("calls.ringing", _("Appels encore en sonnerie"), "count"),
    ("calls.qualified", _("Appels qualifiés"), "count"),
    ("calls.qualification_rate", _("Taux de qualification"), "pct"),
    ("messages.total", _("Messages"), "count"),
    ("appointments.booked", _("Rendez-vous pris"), "count"),
    ("appointments.moved", _("Rendez-vous déplacés"), "count"),
    ("appointments.cancelled", _("Rendez-vous annulés"), "count"),
    ("deliveries.dead", _("Livraisons en échec définitif"), "count"),
    ("escalations.opened", _("Escalades ouvertes"), "count"),
    ("escalations.acknowledged", _("Escalades acquittées"), "count"),
    ("escalations.time_to_ack_seconds.mean", _("Temps moyen d'acquittement"), "secs"),
)


def figures(body: dict[str, Any]) -> list[Figure]:
    return [Figure(key, label, _at(body, key), kind) for key, label, kind in INDICATORS]


# ---------------------------------------------------------------------------- charts

def accessible(svg: str, ident: str, title: str, description: str) -> Markup:
    """``svg`` (from :func:`bars`, escaped there) with a ``<title>`` and a ``<desc>``
    as its first children, the description tied by ``aria-describedby``."""
    head_end = svg.index(">") + 1
    head = svg[:head_end].replace("<svg ", f'<svg id="{ident}" aria-describedby="{ident}-desc" ',
                                  1)
    extra = (f'<title>{escape(title)}</title>'
             f'<desc id="{ident}-desc">{escape(description)}</desc>')
    return Markup(head + extra + svg[head_end:])  # noqa: S704  (escaped here and in bars)


@dataclass(frozen=True)
class Chart:
    ident: str
    title: str
    description: str
    table: str  # the id of the table with its numbers
    svg: Markup


def charts(body: dict[str, Any], gettext: Callable[[str], str]) -> list[Chart]:
    """The four charts of the emailed report, titled in the viewer's language."""
    calls = body["calls"]
    days = calls["by_day"]
    labels = [d["day"][5:] for d in days]
    specs = [
        ("chart-volume", _("Appels par jour (présentés, répondus)"),
         _("Barres par jour : appels présentés et appels répondus. Les chiffres sont dans "
           "le tableau « Par jour »."), "by-day",
         [(_("présentés"), [d["offered"] for d in days], "#9db4d0"),
          (_("répondus"), [d["answered"] for d in days], "#2b6cb0")], ""),
        ("chart-rate", _("Taux de décroché par jour (%)"),
         _("Barres par jour : part des appels présentés qui ont été répondus. Les chiffres "
           "sont dans le tableau « Par jour »."), "by-day",
         [(_("taux de décroché"), [round((d["answer_rate"] or 0) * 100, 1) for d in days],
           "#2f855a")], " %"),
        ("chart-wait", _("Temps moyen de réponse par jour (s)"),
         _("Barres par jour : temps moyen avant décroché, en secondes. Les chiffres sont "
           "dans le tableau « Par jour »."), "by-day",
         [(_("temps de réponse"), [round(d["mean_time_to_answer_seconds"] or 0, 1)
                                   for d in days], "#c05621")], " s"),
        ("chart-hours", _("Appels par heure"),
         _("Barres par heure de la journée (00 à 23) : appels présentés et appels "
           "abandonnés. Les chiffres sont dans le tableau « Par heure »."), "by-hour",
         [(_("appels"), calls["by_hour"], "#2b6cb0"),
          (_("abandonnés"), calls["abandoned_by_hour"], "#c53030")], ""),
    ]
    out = []
    for ident, title_id, description_id, table, raw_series, unit in specs:
        title, description = gettext(title_id), gettext(description_id)
        series = [(gettext(name), values, colour) for name, values, colour in raw_series]
        hour_chart = ident == "chart-hours"
        svg = bars(title, [f"{h:02d}" for h in range(24)] if hour_chart else labels,
                   series, unit)
        out.append(Chart(ident, title, description, table,
                         accessible(svg, ident, title, description)))
    return out


# ------------------------------------------------------------------- a tenant's page

FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9000, 1, 1)  # neighbours never overflow


def _day(raw: str, field: str) -> date | None:
    try:
        day = date.fromisoformat(raw) if raw else None
    except ValueError:
        raise ConsoleError(422, _("Date invalide : écrivez-la comme 2026-12-31.")) from None
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise ConsoleError(422, _("Date hors de la plage acceptée (de 1900 à 9000)."))
    return day


def _kind(text: str) -> PeriodKind:
    for kind in KINDS:
        if kind == text:
            return kind
    raise ConsoleError(422, _("Période inconnue : choisissez jour, semaine ou mois."))


def tenant_page(viewer: Viewer, tenant_id: str, kind: str, day_text: str,
                lang: str) -> dict[str, Any]:
    """The context of ``report.html``: the period holding ``day`` (today by default)."""
    chosen, picked = _day(day_text, "day"), _kind(kind)
    with session_scope(readonly=True) as session:
        tenant = visible_tenant(session, viewer, tenant_id)
        config = parsed_config(tenant)
        now = clock.now()
        zone = config.zone
        first, end = period(picked, chosen or now.astimezone(zone).date())
        start, stop = local_range(first, end, zone)
        body = tenant_report(session, tenant_id, zone, start, stop, now=now)
        session.expunge(tenant)
    labels = {c.id: c.label for c in config.call_types}
    return {
        "tenant": tenant, "zone": zone.key, "body": body, "figures": figures(body),
        "charts": charts(body, translator(lang)),
        "kind": kind, "kinds": KINDS, "kind_labels": KIND_LABELS,
        "first": first, "last": end - timedelta(days=1), "day": chosen or first,
        "previous": period(picked, first - timedelta(days=1))[0], "next": end,
        "call_types": labels, "shown": lambda v, k: shown(v, k, lang),
        "section": "report",
    }


@router.get("/t/{tenant_id}/report")
async def report_page(request: Request, tenant_id: str,
                      kind: Annotated[str, Query(alias="period")] = "month",
                      day: str = "") -> HTMLResponse:
    """The tenant's indicators over a day, week or month of its zone, with charts."""
    viewer = await viewer_of(request)
    context = await run_in_threadpool(tenant_page, viewer, tenant_id, kind, day,
                                      language(request))
    return render(request, "report.html", context, viewer=viewer)


# ------------------------------------------------------------- the operator's table

# sort key -> (column label, how a tenant's row gives it, how it shows)
COLUMNS: dict[str, tuple[str, str, str]] = {
    "offered": (_("Appels présentés"), "calls.offered", "count"),
    "answer_rate": (_("Taux de décroché"), "calls.answer_rate", "pct"),
    "time_to_answer": (_("Temps moyen de réponse"), "calls.time_to_answer_seconds.mean",
                       "secs"),
    "abandon_rate": (_("Taux d'abandon"), "calls.abandon_rate", "pct"),
    "qualification_rate": (_("Taux de qualification"), "calls.qualification_rate", "pct"),
    "messages": (_("Messages"), "messages.total", "count"),
    "booked": (_("Rendez-vous pris"), "appointments.booked", "count"),
    "dead": (_("Livraisons en échec définitif"), "deliveries.dead", "count"),
    "escalations": (_("Escalades ouvertes"), "escalations.opened", "count"),
}
SORTS = ("tenant", *COLUMNS)


def sort_rows(rows: list[dict[str, Any]], names: dict[str, str], sort: str,
              descending: bool) -> list[dict[str, Any]]:
    """Rows by ``sort`` (a column key or ``tenant``, by name); a ``None`` figure
    (nothing to measure) last either way, ties by name."""
    def name(row: dict[str, Any]) -> str:
        return names.get(row["tenant"], row["tenant"]).casefold()

    if sort == "tenant":
        return sorted(rows, key=name, reverse=descending)
    path = COLUMNS[sort][1]
    known = sorted((r for r in rows if _at(r, path) is not None), key=name)
    known.sort(key=lambda r: _at(r, path), reverse=descending)
    return known + sorted((r for r in rows if _at(r, path) is None), key=name)


def operator_page(month: str, sort: str, direction: str) -> dict[str, Any]:
    if sort not in SORTS:
        raise ConsoleError(422, _("Colonne de tri inconnue : choisissez-en une du tableau."))
    if direction not in ("asc", "desc"):
        raise ConsoleError(422, _("Ordre de tri inconnu : croissant (asc) ou décroissant (desc)."))
    try:
        first, end = parse_month(month) if month else period("month", clock.now().date())
    except ValueError:
        raise ConsoleError(422, _("Mois invalide : écrivez-le comme 2026-11.")) from None
    if not FIRST_DAY <= first <= LAST_DAY:
        raise ConsoleError(422, _("Mois hors de la plage acceptée (de 1900 à 9000)."))
    with session_scope(readonly=True) as session:
        body = operator_report(session, first, end, now=clock.now())
        names = dict(session.execute(select(Tenant.id, Tenant.name)).all())
    rows = sort_rows(body["tenants"], names, sort, direction == "desc")
    return {"body": body, "rows": rows, "names": names, "columns": COLUMNS,
            "at": _at, "first": first, "month": f"{first:%Y-%m}",
            "previous": f"{period('month', first - timedelta(days=1))[0]:%Y-%m}",
            "next": f"{end:%Y-%m}", "sort": sort, "dir": direction}


@router.get("/reports")
async def operator_reports(request: Request, month: str = "", sort: str = "tenant",
                           direction: Annotated[str, Query(alias="dir")] = "asc"
                           ) -> HTMLResponse:
    """Every tenant's month side by side (each in its own zone), sortable by a column;
    the operator only (404 for anyone else)."""
    viewer = await viewer_of(request)
    if viewer.role != "operator":
        raise ConsoleError(404, "not_found")
    context = await run_in_threadpool(operator_page, month, sort, direction)
    lang = language(request)
    context["shown"] = lambda v, k: shown(v, k, lang)
    return render(request, "reports.html", context, viewer=viewer)
