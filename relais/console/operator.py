"""The operator's OAuth app registrations: one app per OAuth provider of the
catalogue (``connectors/providers.yaml``), so a tenant admin only consents.

Invariants:

- Only the operator reaches these pages and actions; every other viewer gets
  404, as for a page that does not exist.
- The same engine functions as ``/v1/operator/provider-apps``
  (``sync.store.provider_apps.register_app``, ``remove_app``, ``list_apps``): no
  second path to the data; actions are recorded as ``user:<id>``.
- The client secret goes in and never comes back: a page shows only a short
  SHA-256 fingerprint of it. Replacing an app with the secret left empty keeps
  the stored secret (so endpoints or the client id can change without retyping it).
- The providers listed are the catalogue's OAuth providers, never a list of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from connectors.catalog import oauth_providers, provider
from relais.console.i18n import _
from relais.console.web import ConsoleError, Viewer, checked_form, render, viewer_of
from sync.connections import callback_url
from sync.store.db import session_scope
from sync.store.provider_apps import (
    OAUTH_URL_KEYS,
    list_apps,
    operator_client,
    register_app,
    relying_connections,
    remove_app,
    secret_fingerprint,
)

router = APIRouter(include_in_schema=False)
MAX_CLIENT_ID, MAX_SECRET, MAX_URL = 500, 2000, 500  # as the API's AppBody


@dataclass
class AppCard:
    """One OAuth provider of the catalogue and the operator's app for it, if any."""

    provider: str
    label: str
    registered: bool
    client_id: str = ""
    fingerprint: str = ""
    endpoints: dict[str, str] | None = None
    registered_by: str = ""
    updated_at: Any = None
    relying: int = 0  # live connections that use the operator's app for this provider


def _operator(viewer: Viewer) -> None:
    if viewer.role != "operator":
        raise ConsoleError(404, "not_found")


def _cards() -> list[AppCard]:
    with session_scope(readonly=True) as session:
        apps = {row.provider: row for row in list_apps(session)}
        relying = relying_connections(session)
        cards = []
        for name in oauth_providers():
            label = provider(name).recipient or name
            row = apps.get(name)
            if row is None:
                cards.append(AppCard(name, label, False, endpoints={},
                                     relying=relying.get(name, 0)))
                continue
            cards.append(AppCard(name, label, True, row.client_id, secret_fingerprint(row),
                                 dict(row.settings or {}), row.registered_by, row.updated_at,
                                 relying.get(name, 0)))
        return cards


def _context(notice: dict[str, str] | None = None,
             form: dict[str, str] | None = None) -> dict[str, Any]:
    return {"cards": _cards(), "redirect_uri": callback_url(), "url_keys": OAUTH_URL_KEYS,
            "notice": notice or {}, "form": form or {}}


@router.get("/operator/apps")
async def apps_page(request: Request) -> HTMLResponse:
    viewer = await viewer_of(request)
    _operator(viewer)
    return render(request, "operator_apps.html", await run_in_threadpool(_context),
                  viewer=viewer)


def _checked(form: dict[str, str]) -> tuple[str, str, dict[str, str]] | dict[str, str]:
    """The client id, secret and endpoints of a posted form, or the first problem
    (``field`` and a French ``problem`` msgid, translated when shown)."""
    client_id = form.get("client_id", "").strip()
    secret = form.get("client_secret", "").strip()
    if not client_id:
        return {"field": "client_id", "problem": _("obligatoire")}
    if len(client_id) > MAX_CLIENT_ID:
        return {"field": "client_id", "problem": _("trop long")}
    if len(secret) > MAX_SECRET:
        return {"field": "client_secret", "problem": _("trop long")}
    endpoints = {}
    for key in OAUTH_URL_KEYS:
        value = form.get(key, "").strip()
        if not value:
            continue
        if len(value) > MAX_URL:
            return {"field": key, "problem": _("trop long")}
        if key != "ca_file" and not value.startswith(("https://", "http://")):
            return {"field": key, "problem": _("une adresse http(s):// complète")}
        endpoints[key] = value
    return client_id, secret, endpoints


@router.post("/operator/apps/{name}")
async def register(request: Request, name: str) -> HTMLResponse:
    """Register or replace the operator's app for ``name`` (an OAuth provider)."""
    viewer = await viewer_of(request)
    _operator(viewer)
    form = await checked_form(request, viewer)
    if name not in oauth_providers():
        raise ConsoleError(404, "not_found")
    checked = _checked(form)

    def run() -> dict[str, str]:
        if isinstance(checked, dict):
            return {"error": name, **checked}
        client_id, secret, endpoints = checked
        with session_scope() as session:
            if not secret:
                kept = operator_client(session, name)
                if kept is None:
                    return {"error": name, "field": "client_secret",
                            "problem": _("obligatoire")}
                secret = kept["client_secret"]
            created = register_app(session, name, client_id, secret,
                                   actor=f"user:{viewer.id}", settings=endpoints)
        return {"registered": name, "created": "yes" if created else ""}

    notice = await run_in_threadpool(run)
    failed = "error" in notice
    context = await run_in_threadpool(_context, notice, form if failed else None)
    return render(request, "operator_apps.html", context, 422 if failed else 200, viewer)


@router.post("/operator/apps/{name}/remove")
async def remove(request: Request, name: str) -> HTMLResponse:
    """Remove the operator's app: connections without a client of their own can
    no longer start a consent or refresh their tokens until one is registered again."""
    viewer = await viewer_of(request)
    _operator(viewer)
    await checked_form(request, viewer)
    if name not in oauth_providers():
        raise ConsoleError(404, "not_found")

    def run() -> bool:
        with session_scope() as session:
            return remove_app(session, name, actor=f"user:{viewer.id}")

    if not await run_in_threadpool(run):
        raise ConsoleError(404, "not_found")
    context = await run_in_threadpool(_context, {"removed": name})
    return render(request, "operator_apps.html", context, viewer=viewer)
