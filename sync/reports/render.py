"""A report as one self-contained HTML page with server-side SVG charts.

Pure: the report's JSON (``sync.reports.load``) in, text out; no script, no
external resource (mail clients show it as is). Charts: calls offered and
answered by day with the answer rate, mean time to answer by day, calls by hour
of day. Every bar carries its figure in a ``<title>`` (hover, screen readers); the
axis names at most ``LABELS`` groups (a month's days: every other one).

The page states its period with its first and last days in the tenant's zone
(``du 01/11/2026 au 30/11/2026``), read from the report itself (``from``/``to``
are the zone's midnights in UTC, the last day is the one before ``to``): a page
cannot name another period than the figures it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

WIDTH, HEIGHT, PAD = 640, 200, 30
LABELS = 16  # at most this many axis labels fit under a chart without overlapping


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def period_days(body: dict[str, Any]) -> tuple[date, date]:
    """(first day, last day included) of the report ``body``: a tenant's report carries
    its zone and UTC instants; the operator's carries plain days (each tenant's own)."""
    if "zone" in body:
        zone = ZoneInfo(body["zone"])
        first = datetime.fromisoformat(body["from"]).astimezone(zone).date()
        end = datetime.fromisoformat(body["to"]).astimezone(zone).date()
    else:
        first, end = date.fromisoformat(body["from"]), date.fromisoformat(body["to"])
    return first, end - timedelta(days=1)


def period_text(first: date, last: date) -> str:
    """``du 01/11/2026 au 30/11/2026`` (``le 01/11/2026`` for one day)."""
    if first == last:
        return f"le {first:%d/%m/%Y}"
    return f"du {first:%d/%m/%Y} au {last:%d/%m/%Y}"


def report_title(name: str, kind: str, first: date, last: date) -> str:
    """The emailed report's subject and the page's heading: ``ACME : mois du 01/11/2026``
    for a ``monthly`` or ``weekly`` report, else ``ACME : du 01/11/2026 au 03/11/2026``."""
    if kind in ("weekly", "monthly"):
        return f"{name} : {kind == 'weekly' and 'semaine' or 'mois'} du {first:%d/%m/%Y}"
    return f"{name} : {period_text(first, last)}"


def bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]],
         unit: str = "") -> str:
    """Grouped vertical bars, one group per label, scaled to the largest value."""
    top = max((v for _, values, _ in series for v in values), default=0) or 1
    groups = max(len(labels), 1)
    slot = (WIDTH - 2 * PAD) / groups
    width = max(1.0, slot * 0.8 / max(len(series), 1))
    step = -(-groups // LABELS)  # every label up to LABELS groups, then every step-th
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f'<text x="{PAD}" y="16" font-size="13" font-family="sans-serif">'
             f'{escape(title)}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             'stroke="#888"/>']
    for g, label in enumerate(labels):
        x0 = PAD + g * slot + slot * 0.1
        for s, (name, values, colour) in enumerate(series):
            value = values[g]
            h = (HEIGHT - 2 * PAD - 10) * value / top
            parts.append(
                f'<rect class="{escape(name)}" x="{x0 + s * width:.1f}" '
                f'y="{HEIGHT - PAD - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(label)} {escape(name)}: '
                f'{value:g}{unit}</title></rect>')
        if g % step == 0:
            parts.append(f'<text x="{x0:.1f}" y="{HEIGHT - PAD + 14}" font-size="9" '
                         f'font-family="sans-serif">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(body: dict[str, Any], title: str) -> str:
    """The page: headline figures, then the three charts."""
    calls = body["calls"]
    days = calls["by_day"]
    day_labels = [d["day"][5:] for d in days]
    rows = [
        ("Appels présentés", str(calls["offered"])),
        ("Taux de décroché", _pct(calls["answer_rate"])),
        ("Temps moyen de réponse", _secs(calls["time_to_answer_seconds"]["mean"])),
        ("Temps de réponse (p90)", _secs(calls["time_to_answer_seconds"]["p90"])),
        ("Durée moyenne de communication", _secs(calls["duration_seconds"]["mean"])),
        ("Taux d'abandon", _pct(calls["abandon_rate"])),
        ("Taux de qualification", _pct(calls["qualification_rate"])),
        ("Messages", str(body["messages"]["total"])),
        ("Rendez-vous pris", str(body["appointments"]["booked"])),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    first, last = period_days(body)
    where = (f"jours de {body['zone']}" if "zone" in body
             else "jours de chaque client, dans son fuseau")
    provisional = "" if body.get("complete", True) else " — période en cours : chiffres provisoires"
    stated = (f'<p id="period" data-from="{first.isoformat()}" data-last="{last.isoformat()}">'
              f"Période : {period_text(first, last)} ({escape(where)}){provisional}</p>")
    charts = [
        bars("Appels par jour (présentés, répondus)", day_labels,
             [("offered", [d["offered"] for d in days], "#9db4d0"),
              ("answered", [d["answered"] for d in days], "#2b6cb0")]),
        bars("Taux de décroché par jour (%)", day_labels,
             [("answer_rate", [round((d["answer_rate"] or 0) * 100, 1) for d in days],
               "#2f855a")], " %"),
        bars("Temps moyen de réponse par jour (s)", day_labels,
             [("time_to_answer", [round(d["mean_time_to_answer_seconds"] or 0, 1)
                                  for d in days], "#c05621")], " s"),
        bars("Appels par heure", [f"{h:02d}" for h in range(24)],
             [("calls", calls["by_hour"], "#2b6cb0"),
              ("abandoned", calls["abandoned_by_hour"], "#c53030")]),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\"/>"
            f"<title>{escape(title)}</title></head>"
            "<body style=\"font-family:sans-serif\">"
            f"<h1>{escape(title)}</h1>{stated}<table>{table}</table>"
            + "".join(f"<div>{chart}</div>" for chart in charts)
            + "</body></html>\n")
