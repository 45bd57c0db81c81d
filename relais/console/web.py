"""The console's plumbing: templates, the signed-in viewer, CSRF, sign-in and out.

Invariants:

- Every page and action but ``/login`` and the static files needs a live session
  (cookie ``relais_session``: ``HttpOnly; SameSite=Lax`` and ``Secure`` unless
  ``RELAIS_CONSOLE_INSECURE_COOKIES=1`` for plain-http development).
- Every state-changing request (POST) carries the session's CSRF token, in the
  form field ``csrf_token`` or the ``X-CSRF-Token`` header (htmx sends it from
  ``hx-headers`` on ``<body>``); without it: 403. The sign-in form carries a
  double-submit token (cookie and field) since there is no session yet.
- A tenant the viewer may not see answers 404, exactly like a missing one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from relais.console import i18n
from relais.console.users import (
    ROLE_LABELS,
    ConsoleUser,
    SignInRefused,
    address_blocked,
    record_sign_in_failure,
    session_user,
    sign_in,
    sign_out,
)
from sync.settings import get_settings
from sync.store.db import session_scope
from sync.store.models import Tenant

HERE = Path(__file__).parent
COOKIE = "relais_session"
LOGIN_CSRF_COOKIE = "relais_login_csrf"
LANG_COOKIE = "relais_lang"

templates = Jinja2Templates(directory=str(HERE / "templates"))


def _static_version() -> str:
    """A digest of the static files: their URLs carry it, so browsers may keep them."""
    digest = hashlib.sha256()
    for path in sorted((HERE / "static").iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


templates.env.globals["static_version"] = _static_version()
# Pages are never cached, never framed (clickjacking), run only our own scripts.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors "
                               "'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
router = APIRouter(include_in_schema=False)


class ConsoleError(Exception):
    """An HTML answer other than 200: 403, 404, 422…, rendered by ``error.html``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NeedsSignIn(Exception):
    """No live session: pages redirect to /login, htmx requests are told to."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in user, detached from any database session."""

    id: str
    email: str
    name: str
    role: str
    tenant_id: str | None
    tenants: tuple[str, ...] | None
    csrf_token: str

    def can_see(self, tenant_id: str) -> bool:
        if self.role == "operator":
            return True
        if self.role == "secretary":
            return self.tenants is None or tenant_id in self.tenants
        return self.tenant_id == tenant_id

    @property
    def takes_calls(self) -> bool:
        return self.role in ("operator", "secretary")

    @property
    def role_label(self) -> str:
        return ROLE_LABELS[self.role]


def _viewer(user: ConsoleUser, csrf: str) -> Viewer:
    return Viewer(user.id, user.email, user.name, user.role, user.tenant_id,
                  tuple(user.tenants) if user.tenants is not None else None, csrf)


def language(request: Request) -> str:
    return i18n.pick(request.cookies.get(LANG_COOKIE))


def translator(lang: str) -> Callable[[str], str]:
    return i18n.translations(lang).gettext


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status: int = 200, viewer: Viewer | None = None) -> HTMLResponse:
    lang = language(request)
    data = {"request": request, "lang": lang, "_": translator(lang), "viewer": viewer,
            **(context or {})}
    response = templates.TemplateResponse(request, name, data, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


def load_viewer(token: str) -> Viewer | None:
    with session_scope(readonly=True) as session:
        found = session_user(session, token)
        return _viewer(found[0], found[1].csrf_token) if found else None


async def viewer_of(request: Request) -> Viewer:
    """The signed-in viewer; :class:`NeedsSignIn` without a live session."""
    token = request.cookies.get(COOKIE, "")
    found = await run_in_threadpool(load_viewer, token) if token else None
    if found is None:
        raise NeedsSignIn()
    return found


async def checked_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """The posted form, once its CSRF token matched the session's (else 403)."""
    form = await request.form()
    sent = request.headers.get("x-csrf-token") or str(form.get("csrf_token") or "")
    if not sent or not secrets.compare_digest(sent, viewer.csrf_token):
        raise ConsoleError(403, "csrf")
    return {k: str(v) for k, v in form.multi_items() if isinstance(v, str)}


def visible_tenant(session: Session, viewer: Viewer, tenant_id: str) -> Tenant:
    """The tenant, if the viewer may see it; 404 otherwise (as if it did not exist)."""
    tenant = session.get(Tenant, tenant_id) if viewer.can_see(tenant_id) else None
    if tenant is None:
        raise ConsoleError(404, "not_found")
    return tenant


def _local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site (no open redirect), else ``default``."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return default


def _cookie_secure() -> bool:
    return not get_settings().console_insecure_cookies


class LoginThrottle:
    """Failed sign-ins per client address, counted in the database (so every API
    process shares them): more than ``limit`` in ``window`` seconds answer 429
    before any password is checked (the per-account lock is in
    :func:`relais.console.users.sign_in`). Unset ``limit``/``window``: the settings'
    ``console_sign_in_limit`` / ``console_sign_in_window_seconds``. Time: ``sync.clock``."""

    def __init__(self, limit: int | None = None, window: float | None = None) -> None:
        self._limit = limit
        self._window = window

    @property
    def limit(self) -> int:
        return self._limit if self._limit is not None else get_settings().console_sign_in_limit

    @property
    def window(self) -> timedelta:
        seconds = (self._window if self._window is not None
                   else get_settings().console_sign_in_window_seconds)
        return timedelta(seconds=seconds)

    def blocked(self, address: str) -> bool:
        with session_scope(readonly=True) as session:
            return address_blocked(session, address, self.limit, self.window)

    def failed(self, address: str) -> None:
        with session_scope() as session:
            record_sign_in_failure(session, address, self.window)


throttle = LoginThrottle()


@router.get("/")
async def root(request: Request) -> Response:
    token = request.cookies.get(COOKIE, "")
    found = await run_in_threadpool(load_viewer, token) if token else None
    if found is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(home_of(found), status_code=303)


def home_of(viewer: Viewer) -> str:
    return "/desk" if viewer.takes_calls else f"/t/{viewer.tenant_id}/messages"


@router.get("/login")
def login_page(request: Request, next: str = "") -> HTMLResponse:  # noqa: A002
    return _login_form(request, next, "", 200)


def _login_form(request: Request, next_path: str, error: str, status: int,
                email: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", {"login_csrf": token, "next": next_path,
                                              "error": error, "email": email}, status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=_cookie_secure(), path="/login")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email") or "")
    password = str(form.get("password") or "")
    next_path = _local_path(str(form.get("next") or ""), "")
    sent = str(form.get("csrf_token") or "")
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not sent or not expected or not secrets.compare_digest(sent, expected):
        raise ConsoleError(403, "csrf")
    address = request.client.host if request.client else "?"
    if await run_in_threadpool(throttle.blocked, address):
        return _login_form(request, next_path, "throttled", 429, email)
    lifetime = timedelta(hours=get_settings().console_session_hours)

    def attempt() -> tuple[str, str] | SignInRefused:
        with session_scope() as session:
            outcome = sign_in(session, email, password, lifetime)
            if isinstance(outcome, SignInRefused):
                return outcome
            return outcome.token, home_of(_viewer(outcome.user, outcome.csrf_token))

    outcome = await run_in_threadpool(attempt)
    if isinstance(outcome, SignInRefused):
        await run_in_threadpool(throttle.failed, address)
        reason = "locked" if outcome.locked_until else "wrong"
        return _login_form(request, next_path, reason, 401, email)
    token, home = outcome
    response = RedirectResponse(next_path or home, status_code=303)
    hours = get_settings().console_session_hours
    response.set_cookie(COOKIE, token, max_age=int(hours * 3600), httponly=True,
                        samesite="lax", secure=_cookie_secure(), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    viewer = await viewer_of(request)
    await checked_form(request, viewer)
    token = request.cookies.get(COOKIE, "")

    def forget() -> None:
        with session_scope() as session:
            sign_out(session, token)

    await run_in_threadpool(forget)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_language(lang: str, next: str = "/") -> Response:  # noqa: A002
    """Choose the console's language (a cookie: nothing changes on the server)."""
    response = RedirectResponse(_local_path(next), status_code=303)
    response.set_cookie(LANG_COOKIE, i18n.pick(lang), max_age=365 * 24 * 3600,
                        samesite="lax", secure=_cookie_secure(), path="/")
    return response


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = "/login?next=" + quote(target, safe="")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)
