"""The operator's people page: users, their roles and tenants; create, reset a
password (shown once), disable. Every other role gets 404 here."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from relais.console.users import (
    ROLE_LABELS,
    ROLES,
    UserError,
    create_user,
    disable_user,
    find_user,
    list_users,
    reset_password,
)
from relais.console.web import ConsoleError, Viewer, checked_form, render, viewer_of
from sync.store.db import session_scope
from sync.store.models import Tenant

router = APIRouter(include_in_schema=False)


def _operator(viewer: Viewer) -> None:
    if viewer.role != "operator":
        raise ConsoleError(404, "not_found")


def _page(viewer: Viewer, notice: dict[str, str] | None = None) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        users = list_users(session)
        tenants = list(session.scalars(select(Tenant.id).order_by(Tenant.id)))
        return {"users": users, "tenants": tenants, "roles": ROLES, "role_labels": ROLE_LABELS,
                "notice": notice or {}}


@router.get("/users")
async def users_page(request: Request) -> HTMLResponse:
    viewer = await viewer_of(request)
    _operator(viewer)
    return render(request, "users.html", await run_in_threadpool(_page, viewer), viewer=viewer)


@router.post("/users")
async def create(request: Request) -> HTMLResponse:
    viewer = await viewer_of(request)
    _operator(viewer)
    form = await checked_form(request, viewer)
    password = secrets.token_urlsafe(12)
    tenants = [t.strip() for t in form.get("tenants", "").split(",") if t.strip()] or None

    def make() -> dict[str, str]:
        try:
            with session_scope() as session:
                create_user(session, form.get("email", ""), form.get("name", ""),
                            form.get("role", ""), password,
                            tenant_id=form.get("tenant") or None, tenants=tenants,
                            actor=f"console {viewer.email}")
        except UserError as exc:
            return {"error": exc.console}
        return {"email": form.get("email", "").strip().lower(), "password": password}

    notice = await run_in_threadpool(make)
    context = await run_in_threadpool(_page, viewer, notice)
    return render(request, "users.html", context, 422 if "error" in notice else 200, viewer)


@router.post("/users/{user_id}/{action}")
async def act(request: Request, user_id: str, action: str) -> HTMLResponse:
    """``reset-password`` (a new one, shown once; sessions end) or ``disable``."""
    viewer = await viewer_of(request)
    _operator(viewer)
    await checked_form(request, viewer)
    if action not in ("reset-password", "disable"):
        raise ConsoleError(404, "not_found")
    password = secrets.token_urlsafe(12)

    def apply() -> dict[str, str]:
        with session_scope() as session:
            user = find_user(session, user_id)
            if user is None:
                raise ConsoleError(404, "not_found")
            if action == "disable":
                disable_user(session, user, actor=f"console {viewer.email}")
                return {"disabled": user.email}
            reset_password(session, user, password, actor=f"console {viewer.email}")
            return {"email": user.email, "password": password}

    notice = await run_in_threadpool(apply)
    return render(request, "users.html", await run_in_threadpool(_page, viewer, notice),
                  viewer=viewer)
