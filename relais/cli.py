"""The ``relais`` command line (typer + rich).

Bad input exits 2 with one readable line per problem, never a traceback. Tables
are boxed on a terminal and plain, full-width lines when piped; every list
command also prints ``--json`` for scripts.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from mappings.errors import ConfigError
from relais import tables

HELP = """Relais carries each call your secretaries qualify to where the business
wants it: CRM, calendars, email, SMS or a webhook, exactly once.

First steps:

  relais demo                                 see the whole hub work on sandboxes
  relais tenants validate examples/*.yaml     check a tenant's YAML (file:line errors)
  relais tenants apply my-tenant.yaml         store it
  relais keys create --tenant my-tenant --role secretary
  relais connect my-tenant crm --token pat-…  connect a HubSpot private app
  relais serve  |  relais worker  |  relais beat

Watch and repair:

  relais connections list --tenant my-tenant
  relais deliveries list --status dead
  relais deliveries replay dlv_…
  relais sync status --json | jq .

Bad input exits 2 with one line per problem. Piped output is plain text;
list commands take --json.
"""

app = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
db_app = typer.Typer(no_args_is_help=True, help="Apply the database migrations.")
tenants_app = typer.Typer(
    no_args_is_help=True, help="Tenant YAML files: validate, apply, list."
)
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
connections_app = typer.Typer(
    no_args_is_help=True, help="Connections (CRM, calendar, webhook…) and their health."
)
deliveries_app = typer.Typer(
    no_args_is_help=True, help="Deliveries: list them, replay the dead ones."
)
rules_app = typer.Typer(no_args_is_help=True, help="What the rules would do with a call.")
users_app = typer.Typer(
    no_args_is_help=True,
    help="Console users (people; API keys are for machines): create, list, disable, reset.")
providers_app = typer.Typer(
    no_args_is_help=True,
    help="The operator's OAuth app per provider: tenant admins then only consent.")
calls_app = typer.Typer(no_args_is_help=True, help="Calls from the telephony: import a PBX's CDRs.")
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(connections_app, name="connections")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(rules_app, name="rules")
app.add_typer(users_app, name="users")
app.add_typer(providers_app, name="providers")
app.add_typer(calls_app, name="calls")
audit_app = typer.Typer(no_args_is_help=True, help="The access log: list it, verify its chain.")
privacy_app = typer.Typer(
    no_args_is_help=True,
    help="A person's data (export, erase); retention runs; sealing older rows (reseal)."
)
app.add_typer(audit_app, name="audit")
app.add_typer(privacy_app, name="privacy")

out = Console(soft_wrap=True)  # keys, secrets and file:line errors stay on one line
err = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


JsonOption = Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")]


def emit(table: Table) -> None:
    tables.emit(table, out)


def listing(rows: list[dict[str, Any]], columns: dict[str, str], *, as_json: bool) -> None:
    """``rows`` as JSON (every key) or as a table of ``columns`` (key -> header)."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
        return
    table = Table(*columns.values())
    for row in rows:  # Text: a value is never read as rich markup ("[/x]" in an error)
        table.add_row(*(Text("-" if row[key] is None else str(row[key])) for key in columns))
    emit(table)


def _when(value: Any) -> str | None:
    """A stored instant as ISO 8601 UTC to the second (None stays None)."""
    from sync.domain import as_utc_iso

    return as_utc_iso(value.replace(microsecond=0)) if value is not None else None


def require_tenant(tenant: str | None) -> None:
    """Exit 2 naming the tenant when ``--tenant`` names none that exists."""
    if tenant is None:
        return
    from sync.store.db import session_scope
    from sync.store.models import Tenant

    with session_scope(readonly=True) as session:
        if session.get(Tenant, tenant) is None:
            fail(f"no tenant {tenant!r}; see relais tenants list")


# serve, worker, beat and `db upgrade` wait this long for a database that restarts
SERVICE_DB_WAIT_SECONDS = 60.0


def _upgrade(wait_seconds: float = 0.0) -> None:
    from relais.migrate import upgrade

    upgrade(wait_seconds=wait_seconds)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations (idempotent)."""
    from sync.settings import get_settings

    _upgrade(SERVICE_DB_WAIT_SECONDS)
    out.print(f"database at head: {_redact(get_settings().resolved_database_url)}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@tenants_app.command("validate")
def tenants_validate(
    files: Annotated[list[Path], typer.Argument(exists=False)],
    live: Annotated[
        bool, typer.Option("--live", help="also ask each connected CRM about the mapped fields")
    ] = False,
) -> None:
    """Check tenant YAML files; print every problem with file and line."""
    from sync.tenants import load_checked_file

    problems = 0
    for path in files:
        try:
            config = load_checked_file(path)  # as `apply` checks it, senders included
        except ConfigError as exc:
            for issue in exc.issues:
                err.print(str(issue), highlight=False, soft_wrap=True)
            problems += len(exc.issues)
        except OSError as exc:
            err.print(f"{path}: cannot read: {exc.strerror}", highlight=False)
            problems += 1
        else:
            found = _live(config) if live else []
            for line in found:
                err.print(f"{path}: {line}", highlight=False, soft_wrap=True)
            problems += len(found)
            if not found:
                checked = " (fields checked with the CRM)" if live else ""
                out.print(
                    f"{path}: ok — tenant {config.id} ({config.name}){checked}", highlight=False
                )
    if problems:
        raise typer.Exit(2)


def _live(config: object) -> list[str]:
    from relais.livecheck import live_problems

    _upgrade()
    return live_problems(config)  # type: ignore[arg-type]


@tenants_app.command("apply")
def tenants_apply(files: Annotated[list[Path], typer.Argument()]) -> None:
    """Validate and store tenant YAML files (creates or updates the tenants)."""
    from sync.store.db import session_scope
    from sync.tenants import apply_config

    _upgrade()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"{path}: cannot read: {exc.strerror}")
        try:
            with session_scope() as session:
                result = apply_config(session, text, str(path), actor="cli")
        except ConfigError as exc:
            for issue in exc.issues:
                err.print(str(issue), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        verb = "created" if result.created else "updated"
        out.print(f"{path}: tenant {result.tenant_id} {verb} (version {result.version})")
        for name, secret in result.new_secrets.items():
            out.print(f"  webhook {name}: signing secret {secret} (shown once)")


@tenants_app.command("list")
def tenants_list(as_json: JsonOption = False) -> None:
    """The tenants and their configuration versions."""
    from sync.store.db import session_scope
    from sync.store.models import Tenant

    _upgrade()
    with session_scope(readonly=True) as session:
        rows = [
            {"tenant": t.id, "name": t.name, "timezone": t.timezone,
             "version": t.config_version, "updated_at": _when(t.updated_at)}
            for t in session.scalars(select(Tenant).order_by(Tenant.id))
        ]  # fmt: skip
    listing(rows, {"tenant": "tenant", "name": "name", "timezone": "time zone",
                   "version": "version", "updated_at": "updated"}, as_json=as_json)  # fmt: skip


@tenants_app.command("diff")
def tenants_diff(tenant: str, file: Path) -> None:
    """Dry run: FILE's problems (file:line:column) and its unified diff from the
    configuration TENANT has now. Nothing is stored; exits 2 if FILE has problems."""
    from sync.config_versions import dry_run
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{file}: cannot read: {exc.strerror}")
    with session_scope(readonly=True) as session:
        found = dry_run(session, tenant, text)
    typer.echo(found.diff, nl=False)
    if not found.changed:
        out.print(f"{file}: same as version {found.applied_version}", highlight=False)
    for error in found.errors:
        where = f"{file}:{error['line']}:{error['column']}: "
        what = f"{error['path']}: {error['message']}" if error["path"] else error["message"]
        err.print(where + what + (f" — {error['hint']}" if error["hint"] else ""),
                  highlight=False, soft_wrap=True)
    if found.errors:
        raise typer.Exit(2)


@tenants_app.command("history")
def tenants_history(tenant: str, as_json: JsonOption = False) -> None:
    """Every configuration version applied to TENANT, newest first: who, when, hash."""
    from sync.config_versions import history, version_view
    from sync.store.db import session_scope
    from sync.tenants import get_tenant

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        current = get_tenant(session, tenant).config_version
        rows = [version_view(row, current) for row in history(session, tenant)]
    for row in rows:
        row["current"] = "yes" if row["current"] and not as_json else row["current"]
    listing(rows, {"version": "version", "applied_at": "applied", "actor": "by",
                   "restored_from": "restores", "sha256": "sha256", "current": "current"},
            as_json=as_json)  # fmt: skip


@tenants_app.command("rollback")
def tenants_rollback(tenant: str, version: int) -> None:
    """Apply TENANT's configuration VERSION again (checked as `apply` checks it;
    recorded as a new version)."""
    from sync.config_versions import UnknownVersion, rollback
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    try:
        with session_scope() as session:
            result = rollback(session, tenant, version, actor="cli")
    except UnknownVersion as exc:
        fail(f"{exc} (see `relais tenants history {tenant}`)")
    except ConfigError as exc:
        err.print(f"version {version} no longer applies:", highlight=False)
        for issue in exc.issues:
            err.print(str(issue), highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    out.print(f"tenant {tenant}: version {version} applied again as version {result.version}",
              highlight=False)
    for name, secret in result.new_secrets.items():
        out.print(f"  webhook {name}: signing secret {secret} (shown once)")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="secretary, admin or operator")],
    tenant: Annotated[str | None, typer.Option(help="tenant id (not for operator keys)")] = None,
    name: Annotated[str, typer.Option(help="who or what uses the key")] = "",
) -> None:
    """Create an API key; it is printed once."""
    from relais.auth import create_key
    from sync.store.db import session_scope
    from sync.store.models import Tenant

    _upgrade()
    with session_scope() as session:
        if tenant and session.get(Tenant, tenant) is None:
            fail(f"no tenant {tenant!r}; apply its configuration first (relais tenants apply)")
        try:
            key = create_key(session, role, tenant, name)
        except ValueError as exc:
            fail(str(exc))
    out.print(key, highlight=False)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after ``rls_``)."""
    from relais.auth import revoke_key
    from sync.store.db import session_scope

    with session_scope() as session:
        if not revoke_key(session, key_id):
            fail(f"no active key {key_id!r}")
    out.print(f"key {key_id} revoked")


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
    as_json: JsonOption = False,
) -> None:
    """API keys (ids, never secrets): role, tenant, who uses it, last use."""
    from sync.store.db import session_scope
    from sync.store.models import ApiKey

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        query = select(ApiKey).order_by(ApiKey.tenant_id, ApiKey.created_at)
        if tenant:
            query = query.where(ApiKey.tenant_id == tenant)
        if not show_all:
            query = query.where(ApiKey.revoked_at.is_(None))
        rows = [
            {"id": k.id, "tenant": k.tenant_id, "role": k.role, "name": k.name,
             "created_at": _when(k.created_at), "last_used_at": _when(k.last_used_at),
             "revoked_at": _when(k.revoked_at)}
            for k in session.scalars(query)
        ]  # fmt: skip
    columns = {"id": "key id", "tenant": "tenant", "role": "role", "name": "name",
               "created_at": "created", "last_used_at": "last used"}  # fmt: skip
    if show_all:
        columns["revoked_at"] = "revoked"
    listing(rows, columns, as_json=as_json)


@connections_app.command("disconnect")
def connections_disconnect(tenant: str, name: str) -> None:
    """Revoke NAME's token at the provider where it can, erase it here; the
    connection waits in not_connected until it is connected again."""
    from connectors.base import TransientError
    from sync.connections import ConnectError, disconnect
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    try:
        with session_scope() as session:
            done = disconnect(session, tenant, name, actor="cli")
            shown = done.connection.name
    except ConnectError as exc:
        fail(str(exc))
    except TransientError as exc:
        fail(f"{exc}; nothing was changed: try again")
    out.print(f"{tenant}/{shown}: disconnected ({done.note})", highlight=False)


@connections_app.command("list")
def connections_list(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's connections")] = None,
    as_json: JsonOption = False,
) -> None:
    """Each connection: provider, role, state (active, needs_reauth…), token expiry,
    pause, and its deliveries by status."""
    from sqlalchemy import func

    from sync.store.db import session_scope
    from sync.store.models import Connection, Delivery

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        counts_query = select(Delivery.connection_id, Delivery.status, func.count()).group_by(
            Delivery.connection_id, Delivery.status
        )
        query = select(Connection).order_by(Connection.tenant_id, Connection.name)
        if tenant:
            counts_query = counts_query.where(Delivery.tenant_id == tenant)
            query = query.where(Connection.tenant_id == tenant)
        counts = {(cid, st): n for cid, st, n in session.execute(counts_query)}
        rows = [
            {"tenant": c.tenant_id, "connection": c.name, "provider": c.provider,
             "role": c.role, "status": c.status,
             "token_expires_at": _when(c.token_expires_at),
             "paused_until": _when(c.paused_until),
             **{st: counts.get((c.id, st), 0)
                for st in ("pending", "in_flight", "delivered", "dead")}}
            for c in session.scalars(query)
        ]  # fmt: skip
    listing(rows, {"tenant": "tenant", "connection": "connection", "provider": "provider",
                   "role": "role", "status": "status", "token_expires_at": "token expires",
                   "paused_until": "paused until", "pending": "pending",
                   "dead": "dead", "delivered": "delivered"}, as_json=as_json)  # fmt: skip


@deliveries_app.command("list")
def deliveries_list(
    status: Annotated[
        str | None, typer.Option(help="pending, in_flight, delivered or dead")
    ] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """Deliveries, newest first, with the reason of the last failure."""
    from sync.store.db import session_scope
    from sync.store.models import Connection, Delivery

    if status and status not in ("pending", "in_flight", "delivered", "dead"):
        fail(f"--status {status!r}: use pending, in_flight, delivered or dead")
    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        query = select(Delivery, Connection.name).join(
            Connection, Connection.id == Delivery.connection_id
        )
        if status:
            query = query.where(Delivery.status == status)
        if tenant:
            query = query.where(Delivery.tenant_id == tenant)
        rows = [
            {"delivery": d.id, "tenant": d.tenant_id, "connection": conn_name,
             "message": d.message_id, "appointment": d.appointment_id, "rule": d.rule,
             "status": d.status, "attempts": d.attempts, "created_at": _when(d.created_at),
             "next_attempt_at": _when(d.next_attempt_at), "external_id": d.external_id,
             "last_error": d.last_error}
            for d, conn_name in session.execute(
                query.order_by(Delivery.created_at.desc()).limit(limit))
        ]  # fmt: skip
    listing(rows, {"delivery": "delivery", "tenant": "tenant", "connection": "connection",
                   "status": "status", "attempts": "attempts", "last_error": "last error"},
            as_json=as_json)  # fmt: skip
    if not as_json:
        out.print(f"{len(rows)} deliveries")


@deliveries_app.command("replay")
def deliveries_replay(delivery_id: str) -> None:
    """Send a dead delivery again (same idempotency key: no duplicate downstream)."""
    from sync.delivery import ReplayRefused, replay
    from sync.queue import enqueue_connections
    from sync.store.db import session_scope
    from sync.store.models import Delivery

    _upgrade()
    with session_scope() as session:
        delivery = session.get(Delivery, delivery_id, with_for_update=True)
        if delivery is None:
            fail(f"no delivery {delivery_id!r}; list them with: relais deliveries list")
        try:
            replay(session, delivery, actor="cli")
        except ReplayRefused as exc:
            fail(str(exc))
        connection_id = delivery.connection_id
    enqueue_connections([connection_id])
    out.print(f"delivery {delivery_id} queued again")


@rules_app.command("explain")
def rules_explain(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    call_type: Annotated[str, typer.Option("--call-type", help="call type id")],
    urgency: Annotated[str | None, typer.Option(help="low, normal, high or urgent")] = None,
    at: Annotated[
        str | None,
        typer.Option(help="instant of the call, e.g. 2026-12-24T21:30 (no offset: the "
                     "tenant's zone); default: now"),
    ] = None,
    staff: Annotated[str | None, typer.Option("--staff", help="staff member asked for")] = None,
    intake: Annotated[
        list[str] | None, typer.Option("--intake", help="intake answer name=value (repeat)")
    ] = None,
) -> None:
    """Which rules a call would match, why, and the deliveries it would create."""
    from datetime import datetime

    from mappings.plan import PlanError, explain_text, plan_for
    from mappings.rules import CallContext
    from sync import clock
    from sync.store.db import session_scope
    from sync.tenants import UnknownTenant, get_tenant, parsed_config

    _upgrade()
    try:
        with session_scope(readonly=True) as session:
            config = parsed_config(get_tenant(session, tenant))
    except UnknownTenant as exc:
        fail(str(exc))
    answers: dict[str, str] = {}
    for item in intake or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--intake {item!r}: write name=value")
        answers[name.strip()] = value.strip()
    note = ""
    if at is None:
        instant = clock.now()  # the hub's now
    else:
        try:
            instant = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r} is not an ISO 8601 date-time (e.g. 2026-12-24T21:30)")
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=config.zone)
            note = f"(--at {at} read in the tenant's zone, {config.timezone})"
    try:
        plan = plan_for(config, CallContext(call_type=call_type, urgency=urgency, at=instant,
                                            staff_id=staff, intake=answers))
    except PlanError as exc:
        fail(str(exc))
    if note:
        out.print(note, highlight=False, markup=False)
    out.print(explain_text(plan), highlight=False, markup=False)


@app.command()
def connect(
    tenant: str,
    connection: str,
    client_id: Annotated[str | None, typer.Option(help="OAuth app client id")] = None,
    client_secret: Annotated[
        str | None,
        typer.Option(
            help="OAuth app client secret (or set RELAIS_CLIENT_SECRET)",
            envvar="RELAIS_CLIENT_SECRET",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            help="private-app / API token (HubSpot private app)", envvar="RELAIS_CONNECTION_TOKEN"
        ),
    ] = None,
    authorize: Annotated[bool, typer.Option(help="print the OAuth URL to open")] = False,
    client_credentials: Annotated[
        bool, typer.Option(help="get a server-to-server token (Salesforce client credentials)")
    ] = False,
) -> None:
    """Connect a CRM or calendar account: OAuth app (then --authorize), private token
    (HubSpot) or --client-credentials (Salesforce)."""
    from connectors.base import DeliveryError
    from sync.connections import (
        ConnectError,
        connect_client_credentials,
        set_credentials,
        start_authorization,
    )
    from sync.queue import enqueue_connections
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    if not (client_id or client_secret or token or authorize or client_credentials):
        fail(
            "give --client-id and --client-secret, or --token, and/or --authorize "
            "or --client-credentials"
        )
    try:
        with session_scope() as session:
            connection_id = None
            if client_id or client_secret or token:
                connection_id = set_credentials(
                    session,
                    tenant,
                    connection,
                    {"client_id": client_id, "client_secret": client_secret, "access_token": token},
                )
            started = start_authorization(session, tenant, connection) if authorize else None
            if client_credentials:
                connection_id = connect_client_credentials(session, tenant, connection).id
    except (ConnectError, DeliveryError) as exc:
        fail(str(exc))
    if (token or client_credentials) and connection_id:
        enqueue_connections([connection_id])
        out.print(f"{tenant}/{connection}: token stored; connection active")
    elif client_id or client_secret:
        out.print(f"{tenant}/{connection}: OAuth app credentials stored")
    if started:
        out.print(f"open this URL to connect (valid until {started.expires_at:%H:%M} UTC):")
        out.print(started.url, highlight=False)


def _oauth_provider(name: str) -> str:
    from connectors.catalog import oauth_providers

    if name not in oauth_providers():
        fail(f"no OAuth provider {name!r}; one of: {', '.join(oauth_providers())}")
    return name


_INSTEAD = "instead of the catalogue's (a sandbox, a Salesforce My Domain)"


@providers_app.command("register-app")
def providers_register_app(
    provider: str,
    client_id: Annotated[str, typer.Option(help="the app's client id")],
    client_secret: Annotated[str, typer.Option(
        prompt=True, hide_input=True, envvar="RELAIS_PROVIDER_CLIENT_SECRET",
        help="the app's client secret (prompted, or from RELAIS_PROVIDER_CLIENT_SECRET)")],
    authorization_url: Annotated[str | None, typer.Option(help=_INSTEAD)] = None,
    token_url: Annotated[str | None, typer.Option(help=_INSTEAD)] = None,
    revocation_url: Annotated[str | None, typer.Option(help=_INSTEAD)] = None,
    ca_file: Annotated[str | None, typer.Option(help="trust only this CA (PEM)")] = None,
) -> None:
    """Register (or replace) the operator's OAuth app for PROVIDER; the secret is
    stored encrypted and never printed."""
    from sync.store.db import session_scope
    from sync.store.provider_apps import register_app

    _upgrade()
    _oauth_provider(provider)
    if not client_id.strip() or not client_secret.strip():
        fail("--client-id and --client-secret must not be empty")
    with session_scope() as session:
        created = register_app(session, provider, client_id.strip(), client_secret.strip(),
                               actor="cli", settings={
                                   "authorization_url": authorization_url,
                                   "token_url": token_url, "revocation_url": revocation_url,
                                   "ca_file": ca_file})
    out.print(f"{provider}: OAuth app {'registered' if created else 'replaced'} "
              f"(client id {client_id.strip()})", highlight=False)


@providers_app.command("apps")
def providers_apps(as_json: JsonOption = False) -> None:
    """The registered OAuth apps (client ids, never secrets)."""
    from sync.store.db import session_scope
    from sync.store.provider_apps import list_apps

    _upgrade()
    with session_scope(readonly=True) as session:
        rows = [{"provider": r.provider, "client_id": r.client_id,
                 "registered_by": r.registered_by, "updated_at": _when(r.updated_at)}
                for r in list_apps(session)]
    listing(rows, {"provider": "provider", "client_id": "client id",
                   "registered_by": "by", "updated_at": "updated"}, as_json=as_json)


@providers_app.command("remove-app")
def providers_remove_app(provider: str) -> None:
    """Remove the operator's app for PROVIDER (connections keep their tokens but
    cannot refresh them without an app)."""
    from sync.store.db import session_scope
    from sync.store.provider_apps import remove_app

    _upgrade()
    _oauth_provider(provider)
    with session_scope() as session:
        if not remove_app(session, provider, actor="cli"):
            fail(f"no app registered for {provider}")
    out.print(f"{provider}: OAuth app removed")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Run the HTTP API (secretaries, admins, provider callbacks)."""
    import uvicorn

    _upgrade(SERVICE_DB_WAIT_SECONDS)
    uvicorn.run(
        "relais.api:create_app",
        factory=True,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
    )


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=64)] = 2,
    loglevel: str = "INFO",
) -> None:
    """Run a worker: delivers messages, pulls CRM contacts and calendars."""
    _upgrade(SERVICE_DB_WAIT_SECONDS)
    from worker import app as celery

    celery.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--loglevel={loglevel}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def beat(loglevel: str = "INFO") -> None:
    """Run the scheduler (exactly one): lost-work sweep, sync pulls, escalations."""
    _upgrade(SERVICE_DB_WAIT_SECONDS)
    from worker import app as celery

    celery.start(["beat", f"--loglevel={loglevel}"])


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sandbox(ctx: typer.Context) -> None:
    """Run local emulators of every provider (CRMs, calendars, SMTP, SMS gateway,
    webhook receiver) and print the settings a connection needs for each.

    Options are those of python -m sandbox (e.g. --seed, --json, --only hubspot)."""
    from sandbox.__main__ import main as sandbox_main

    raise typer.Exit(sandbox_main(list(ctx.args)))


@app.command()
def demo(
    calls: Annotated[int, typer.Option(min=1, max=5000, help="qualified calls to post")] = 60,
    workers: Annotated[int, typer.Option(min=1, max=8)] = 2,
    timeout: Annotated[float, typer.Option(help="seconds to wait for every delivery")] = 180,
    at: Annotated[
        str | None,
        typer.Option(help="run as if it were then, e.g. 2026-12-02T16:18:00+01:00 (hub clock)"),
    ] = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="then keep the hub, sandboxes and console running until Ctrl-C")] = False,
) -> None:
    """The main job: API, worker and beat as real processes, a day of calls, every
    delivery settled. Exits non-zero if anything was lost or duplicated."""
    from datetime import datetime

    from relais.demo import run_demo

    try:
        start = datetime.fromisoformat(at) if at else None
    except ValueError:
        fail(f"--at {at!r} is not an ISO 8601 date-time (e.g. 2026-12-02T16:18:00+01:00)")
    if start is not None and start.utcoffset() is None:
        fail(f"--at {at!r} needs a UTC offset (e.g. +01:00)")
    try:
        code = run_demo(calls=calls, workers=workers, timeout=timeout, console=out, at=start,
                        serve=serve)
    except RuntimeError as exc:
        err.print(f"[bold red]demo failed:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


sync_app = typer.Typer(
    no_args_is_help=True, help="Two-way sync: pull CRM contacts and staff calendars."
)
app.add_typer(sync_app, name="sync")


@sync_app.command("run")
def sync_run(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's connections")] = None,
    connection: Annotated[str | None, typer.Option(help="only this connection (name)")] = None,
    full: Annotated[bool, typer.Option(help="re-read everything, then sweep deletes")] = False,
    force: Annotated[bool, typer.Option(help="run even while paused by a provider limit")] = False,
    kind: Annotated[str, typer.Option(help="which connections: all, crm or calendar")] = "all",
) -> None:
    """Pull CRM contacts into the directory and staff calendars (moves, cancellations,
    busy store) now, incrementally unless --full."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from sync.contacts import crm_connections, pull_connection

    if kind not in ("all", "crm", "calendar"):
        fail("--kind is all, crm or calendar")
    _upgrade()
    require_tenant(tenant)
    ids = crm_connections(tenant, connection) if kind in ("all", "crm") else []
    calendars = _calendar_connections(tenant, connection) if kind in ("all", "calendar") else []
    if not ids and not calendars:
        fail(
            "no CRM (HubSpot, Salesforce) or calendar (Google, Outlook) connection matches; "
            "see relais tenants list"
        )
    failed = _calendar_run(calendars, full=full, force=force) if calendars else False
    if not ids:
        if failed:
            raise typer.Exit(1)
        return
    table = Table("tenant", "connection", "result", "mode", "in", "unchanged", "deleted",
                  "API calls", "seconds", "note")  # fmt: skip
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                  console=out, transient=True) as bar:  # fmt: skip
        for connection_id in ids:
            task = bar.add_task(connection_id, total=None, detail="")

            def step(o, task=task) -> None:  # type: ignore[no-untyped-def]
                bar.update(
                    task,
                    description=f"{o.tenant_id}/{o.name} ({o.mode})",
                    detail=f"{o.records_in} in, {o.unchanged} unchanged, page {o.pages}",
                )

            outcome = pull_connection(connection_id, full=full, force=force, progress=step)
            bar.update(task, total=1, completed=1)
            failed = failed or outcome.status in PULL_FAILED
            table.add_row(outcome.tenant_id, outcome.name, outcome.status, outcome.mode,
                          str(outcome.records_in), str(outcome.unchanged), str(outcome.deleted),
                          str(outcome.calls), f"{outcome.seconds:.1f}",
                          outcome.error or outcome.note or "")  # fmt: skip
    emit(table)
    if failed:
        raise typer.Exit(1)


# A pull that did not complete: the exit status says so (paused: a provider limit).
PULL_FAILED = frozenset({"error", "needs_reauth", "paused"})


def _calendar_connections(tenant: str | None, name: str | None) -> list[str]:
    from sync.calendar_sync import PROVIDERS
    from sync.store.db import session_scope
    from sync.store.models import Connection

    with session_scope(readonly=True) as session:
        query = select(Connection.id).where(Connection.provider.in_(PROVIDERS))
        if tenant:
            query = query.where(Connection.tenant_id == tenant)
        if name:
            query = query.where(Connection.name == name)
        return list(session.scalars(query.order_by(Connection.tenant_id, Connection.name)))


def _calendar_run(ids: list[str], *, full: bool, force: bool) -> bool:
    """Pull each calendar connection; print a table; True when one failed."""
    from sync.calendar_sync import pull_connection

    table = Table("tenant", "connection", "result", "calendars", "changes", "moved",
                  "cancelled", "own writes", "full resyncs", "API calls", "seconds", "note",
                  title="Calendars")  # fmt: skip
    failed = False
    for connection_id in ids:
        with out.status(f"pulling calendar connection {connection_id}"):
            o = pull_connection(connection_id, full=full, force=force)
        failed = failed or o.status in PULL_FAILED
        table.add_row(o.tenant_id, f"{o.name} ({o.provider})", o.status, str(o.calendars),
                      str(o.changes), str(o.moved), str(o.cancelled), str(o.own_writes),
                      str(o.full_resyncs), str(o.calls), f"{o.seconds:.1f}",
                      o.error or o.note or "")  # fmt: skip
    emit(table)
    return failed


@sync_app.command("status")
def sync_status_command(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Per CRM and calendar connection: last success, cursor age, records in and out,
    channels, last error."""
    from sync.calendar_sync import sync_status as calendar_status
    from sync.contacts import sync_status
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        rows = sync_status(session, tenant)
        calendars = calendar_status(session, tenant)
    if as_json:
        both = [{"kind": "crm", **r} for r in rows]
        both += [{"kind": "calendar", **r} for r in calendars]
        out.print_json(json.dumps(both))
        return
    if calendars:
        _calendar_status_table(calendars)
    if not rows and calendars:
        return
    table = Table("tenant", "connection", "state", "last success", "cursor age", "contacts",
                  "in", "out", "last error")  # fmt: skip
    for r in rows:
        age = r["cursor_age_seconds"]
        table.add_row(
            r["tenant"], f"{r['connection']} ({r['provider']})", r["state"],
            (r["last_success_at"] or "never")[:19], _age(age), str(r["contacts"]),
            str(r["records_in"]), str(r["records_out"]), r["last_error"] or "",
        )  # fmt: skip
    emit(table)


def _calendar_status_table(rows: list[dict[str, Any]]) -> None:
    table = Table("tenant", "connection", "state", "last success", "calendars",
                  "oldest cursor", "channels", "changes in", "moved", "cancelled",
                  "last error", title="Calendars")  # fmt: skip
    for r in rows:
        ages = [c["cursor_age_seconds"] for c in r["calendars"] if c["has_cursor"]]
        table.add_row(
            r["tenant"], f"{r['connection']} ({r['provider']})", r["state"],
            (r["last_success_at"] or "never")[:19], str(len(r["calendars"])),
            _age(max(ages) if ages else None), str(len(r["channels"])), str(r["changes_in"]),
            str(r["moved"]), str(r["cancelled"]), r["last_error"] or "",
        )  # fmt: skip
    emit(table)
    for r in rows:  # no change notifications: say so, never silently
        if r.get("channels_off"):
            out.print(f"{r['tenant']}/{r['connection']}: {r['channels_off']}", highlight=False)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@calls_app.command("import")
def calls_import_command(
    file: Annotated[Path, typer.Argument(help="an Asterisk Master.csv (cdr_csv)")],
    tenant: Annotated[str | None, typer.Option(
        help="every row is this tenant's (default: found from each row's dst)")] = None,
    zone: Annotated[str, typer.Option(
        help="the PBX's time zone (UTC when cdr.conf has usegmtime=yes)")] = "UTC",
    region: Annotated[str, typer.Option(help="region to read national numbers in")] = "FR",
    skip_bad: Annotated[bool, typer.Option(
        "--skip-bad", help="import the good rows even if some are bad")] = False,
) -> None:
    """Import an Asterisk CDR CSV as call events (idempotent: a file imported twice
    adds nothing). Bad rows are listed with their line; without --skip-bad nothing
    is imported then, and the exit code is 2."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from rich.progress import Progress

    from sync.cdr import BadRow, CdrRow, ingest, read_cdr

    try:
        pbx_zone = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--zone: {zone!r} is not a time zone; use an IANA name such as Europe/Paris")
    _upgrade()
    require_tenant(tenant)
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            read = list(read_cdr(handle, pbx_zone, region))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{file}: {exc}")
    rows = [r for r in read if isinstance(r, CdrRow)]
    bad = [r for r in read if isinstance(r, BadRow)]
    for row in bad:
        err.print(f"{file}:{row.line}: {row.problem}", highlight=False, markup=False)
    if not rows:
        fail(f"{file}: no call record could be read")
    if bad and not skip_bad:
        fail(f"{len(bad)} bad row(s) in {file}: nothing imported (fix them, or --skip-bad)")
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("importing", total=len(rows))
        summary = ingest(rows, tenant, lambda n: progress.advance(task, n))
    for row in summary.bad or []:
        err.print(f"{file}:{row.line}: {row.problem}", highlight=False, markup=False)
    out.print(f"{summary.rows} rows imported: {summary.calls} calls, {summary.created} new "
              f"events, {summary.duplicates} already known; "
              f"{len(bad) + len(summary.bad or [])} bad rows", highlight=False)
    if summary.bad and not skip_bad:
        raise typer.Exit(2)


def _flat(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flat(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [pair for n, v in enumerate(value) for pair in _flat(v, f"{path}[{n}]")]
    return [(path, "" if value is None else value)]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def report_rows(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The report as (indicator, value) lines: the table and the CSV."""
    calls, esc = body["calls"], body["escalations"]
    rows = [
        ("calls offered", str(calls["offered"])),
        ("answered", str(calls["answered"])),
        ("answer rate", _pct(calls["answer_rate"])),
        ("mean time to answer", _secs(calls["time_to_answer_seconds"]["mean"])),
        ("p90 time to answer", _secs(calls["time_to_answer_seconds"]["p90"])),
        ("mean call duration", _secs(calls["duration_seconds"]["mean"])),
        ("abandoned", str(calls["abandoned"])),
        ("abandon rate", _pct(calls["abandon_rate"])),
        ("mean time to abandon", _secs(calls["time_to_abandon_seconds"]["mean"])),
        ("qualification rate", _pct(calls["qualification_rate"])),
        ("messages", str(body["messages"]["total"])),
    ]
    rows += [(f"messages: {k}", str(v)) for k, v in body["messages"]["by_call_type"].items()]
    rows += [(f"appointments {k}", str(v)) for k, v in body["appointments"].items()]
    for name, d in body["deliveries"]["by_destination"].items():
        rows.append((f"delivered to {name} (p50 / p95)", f"{d['delivered']} "
                     f"({_secs(d['latency_seconds']['p50'])} / "
                     f"{_secs(d['latency_seconds']['p95'])})"))
    rows += [("dead letters", str(body["deliveries"]["dead"])),
             ("escalations opened", str(esc["opened"])),
             ("escalations acknowledged", str(esc["acknowledged"])),
             ("mean time to acknowledge", _secs(esc["time_to_ack_seconds"]["mean"]))]
    busiest = [f"{h:02d}h:{n}" for h, n in enumerate(calls["by_hour"]) if n]
    rows.append(("calls by hour", " ".join(busiest) or "-"))
    return rows


def _write_pages(body: dict[str, Any], name: str, kind: str, html: Path | None,
                 pdf: Path | None) -> None:
    """Write the report's page and/or PDF; exit 2 when a file cannot be written or
    WeasyPrint cannot render (before writing anything: no half-done pair)."""
    from sync.reports.pdf import PdfUnavailable, report_pdf
    from sync.reports.render import html_report, period_days, report_title

    page = html_report(body, report_title(name, kind, *period_days(body)))
    document = None
    if pdf is not None:
        try:
            document = report_pdf(page)
        except PdfUnavailable as exc:
            fail(f"--pdf: {exc}; install the 'weasyprint' package and Pango, or use --html")
    for option, path, data in (("--html", html, page.encode()), ("--pdf", pdf, document)):
        if path is None or data is None:
            continue
        try:
            path.write_bytes(data)
        except OSError as exc:
            fail(f"{option}: cannot write {path}: {exc.strerror or exc}")


@app.command("report")
def report_command(
    tenant: Annotated[str | None, typer.Option(help="the tenant (or --all)")] = None,
    month: Annotated[str | None, typer.Option(help="YYYY-MM, in the tenant's zone")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD")] = None,
    to: Annotated[str | None, typer.Option(help="day after the last, YYYY-MM-DD")] = None,
    all_tenants: Annotated[bool, typer.Option("--all", help="operator-wide")] = False,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="print CSV")] = False,
    html: Annotated[Path | None, typer.Option(
        help="also write an HTML page with SVG charts to this file")] = None,
    pdf: Annotated[Path | None, typer.Option(
        help="also write the PDF the scheduled email attaches to this file")] = None,
) -> None:
    """Indicators of a tenant (or every tenant) over a month or days: calls, answer
    rate, times to answer, qualification, messages, appointments, deliveries.

    ``--html`` and ``--pdf`` write the page and the PDF of the scheduled email
    (``sync.reports.schedule``), by the same functions and with the same title: a
    month's PDF here is the one its monthly email attaches."""
    import csv
    from datetime import date

    from sync import clock
    from sync.reports.load import operator_report, tenant_report
    from sync.reports.periods import local_range, parse_month
    from sync.store.db import session_scope
    from sync.store.models import Tenant
    from sync.tenants import parsed_config

    if (tenant is None) == (not all_tenants):
        fail("name one tenant with --tenant T, or every tenant with --all")
    if as_json and as_csv:
        fail("--json or --csv, not both")
    try:
        if month is not None:
            if from_ or to:
                fail("--month or --from/--to, not both")
            first, end = parse_month(month)
        elif from_ and to:
            first, end = date.fromisoformat(from_), date.fromisoformat(to)
        else:
            fail("give --month YYYY-MM, or --from YYYY-MM-DD --to YYYY-MM-DD")
    except ValueError as exc:
        fail(f"period: {exc}")
    if end <= first:
        fail("--to must come after --from")
    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        if tenant is not None:
            row = session.get(Tenant, tenant)
            assert row is not None
            config = parsed_config(row)
            zone, name = config.zone, config.name
            start, stop = local_range(first, end, zone)
            body = tenant_report(session, tenant, zone, start, stop, now=clock.now())
        else:
            body = operator_report(session, first, end, now=clock.now())
            name = "Relais, tous les clients"
    if html is not None or pdf is not None:
        _write_pages(body, name, "monthly" if month is not None else "days", html, pdf)
    if as_json:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    if as_csv:  # every figure, unrounded, by its JSON path (calls.answer_rate, …)
        writer = csv.writer(sys.stdout)
        writer.writerow(["indicator", "value"])
        writer.writerows(_flat(body))
        return
    lines = report_rows(body)
    title = f"{tenant or 'all tenants'}: {first} to {end} (excluded)"
    table = Table("indicator", "value", title=title)
    for name, value in lines:
        table.add_row(Text(name), Text(value))
    emit(table)


# ------------------------------------------------------------------ privacy (issue 15)


def _actor() -> str:
    import getpass

    try:
        return f"cli {getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@audit_app.command("verify")
def audit_verify(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's chain")] = None,
) -> None:
    """Check each tenant's access log chain; exit 1 naming the first bad entry."""
    from sync.privacy.audit import verify
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        reports = verify(session, tenant)
    for report in reports:
        (out if report.ok else err).print(report.line(), highlight=False, soft_wrap=True)
    if not reports:
        out.print("no access log entries yet")
    if any(not r.ok for r in reports):
        raise typer.Exit(1)


@audit_app.command("list")
def audit_list(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The tenant's access log, newest first: who read, exported or erased what."""
    from sync.privacy import audit
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        rows = [audit.entry_view(e) for e in audit.listing(session, tenant, limit=limit)]
    rows = [{**r, "subject": f"{r['subject_type']} {r['subject_id']}"} for r in rows]
    listing(rows, {"seq": "seq", "at": "at", "actor": "actor", "action": "action",
                   "subject": "subject"}, as_json=as_json)


def _person(tenant: str, phone: str | None, email: str | None) -> tuple[Any, str | None]:
    from sync.privacy.subject import BadSubject, Person
    from sync.store.db import session_scope
    from sync.store.models import Tenant
    from sync.tenants import parsed_config

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        row = session.get(Tenant, tenant)
        assert row is not None
        region = parsed_config(row).phone_region
    try:
        return Person.parse(phone, email, region), region
    except BadSubject as exc:
        fail(f"--{exc.field}: {exc}")


PhoneOption = Annotated[str | None, typer.Option(help="the person's phone, any format")]
EmailOption = Annotated[str | None, typer.Option(help="the person's email")]


@privacy_app.command("export")
def privacy_export(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    phone: PhoneOption = None,
    email: EmailOption = None,
    output: Annotated[Path | None, typer.Option("--out", help="write to this file")] = None,
) -> None:
    """Everything held about a person, as one JSON document (GDPR art. 15)."""
    from sync.privacy.subject import export
    from sync.store.db import session_scope

    person, region = _person(tenant, phone, email)
    with session_scope() as session:
        doc = export(session, tenant, person, region, actor=_actor())
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        out.print(f"{output}: {len(doc['messages'])} message(s), "
                  f"{len(doc['appointments'])} appointment(s), "
                  f"{len(doc['deliveries'])} deliveries", highlight=False)


@privacy_app.command("erase")
def privacy_erase(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    phone: PhoneOption = None,
    email: EmailOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    as_json: JsonOption = False,
) -> None:
    """Erase a person's data everywhere in Relais (GDPR art. 17); list where it was sent,
    and with ``privacy: {erase_in_crm: true}`` erase them at the CRM too (outbox)."""
    from sync.privacy.subject import erase, find
    from sync.queue import enqueue_connections
    from sync.store.db import session_scope

    person, region = _person(tenant, phone, email)
    if not yes and not typer.confirm(f"erase this person's data in tenant {tenant}?"):
        raise typer.Exit(1)
    with session_scope() as session:
        found = find(session, tenant, person, region)
        result = erase(session, found, tenant, actor=_actor())
    enqueue_connections(found.to_wake)  # after commit: the CRM erasures (privacy.erase_in_crm)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    counts = ", ".join(f"{k} {v}" for k, v in result["erased"].items())
    out.print(f"erased ({result['person_ref']}): {counts}", highlight=False)
    for id_ in result["in_flight_not_erased"]:
        err.print(f"delivery {id_} was in flight: erase again once it is done", highlight=False)
    if result["sent_to"]:
        out.print("sent outside Relais (erase it there too):")
        rows = [{"kind": r["kind"], "where": f"{r.get('connection')} ({r.get('provider')})",
                 "id": r.get("external_id") or r.get("remote_id") or r.get("event_id")
                 or r.get("crm_id")} for r in result["sent_to"]]
        listing(rows, {"kind": "kind", "where": "connection", "id": "remote id"}, as_json=False)
    for crm in result["crm_erasure"]:
        out.print(f"erasure queued at {crm['connection']} ({crm['provider']}): "
                  f"{crm['records']} record(s), delivery {crm['delivery_id']}", highlight=False)


@privacy_app.command("status")
def privacy_status(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: JsonOption = False,
) -> None:
    """Each tenant's retention periods, its last retention run and its CRM erasures
    (``privacy.erase_in_crm``) by delivery status."""
    from sync.privacy.crm_erase import status as crm_status
    from sync.privacy.retention import status
    from sync.store.db import session_scope

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        rows = status(session, tenant)
        for row in rows:
            row["crm_erasures"] = crm_status(session, row["tenant"])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    flat = [{"tenant": r["tenant"],
             "keep": " ".join(f"{k} {v}" for k, v in r["retention"].items()),
             "last_run": (r["last_run_finished_at"] or "never")[:19],
             "done": ", ".join(f"{k} {v}" for k, v in r["last_run"].items() if v) or "-",
             "crm": ", ".join(f"{k} {v}" for k, v in sorted(r["crm_erasures"].items()))
             or "-",
             "error": r["last_error"]} for r in rows]
    listing(flat, {"tenant": "tenant", "keep": "retention", "last_run": "last run",
                   "done": "last run did", "crm": "CRM erasures", "error": "error"},
            as_json=False)


@privacy_app.command("register")
def privacy_register(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    as_json: JsonOption = False,
) -> None:
    """The tenant's record of processing (GDPR art. 30), generated from its configuration."""
    from sync.privacy.register import as_text, record
    from sync.store.db import session_scope
    from sync.store.models import Tenant
    from sync.tenants import parsed_config

    _upgrade()
    require_tenant(tenant)
    with session_scope(readonly=True) as session:
        row = session.get(Tenant, tenant)
        assert row is not None
        doc = record(parsed_config(row))
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False) if as_json else as_text(doc))


@privacy_app.command("run")
def privacy_run(
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
) -> None:
    """Run retention now (the beat job runs it hourly); exit 1 if a run failed."""
    from sync.privacy.retention import run_all, run_tenant

    _upgrade()
    require_tenant(tenant)
    outcomes = [run_tenant(tenant)] if tenant else run_all()
    for o in outcomes:
        done = ", ".join(f"{k} {v}" for k, v in o.counts.items() if v) or "nothing expired"
        out.print(f"{o.tenant_id}: {done}" + (f" — FAILED: {o.error}" if o.error else ""),
                  highlight=False)
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


@privacy_app.command("reseal")
def privacy_reseal(
    tenant: Annotated[str, typer.Option(help="tenant id")],
    batch: Annotated[int, typer.Option("--batch", help="rows per transaction")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Seal (encrypt at rest) the tenant's rows written in clear before it or its call
    types became sensitive: messages, appointments, contact directory, sync conflicts,
    caller links (a phone or email kept as its keyed hash).
    In batches, each committed; safe to interrupt and run again."""
    from sync.privacy.reseal import reseal

    if batch < 1:
        fail(f"--batch: {batch} is not a positive number of rows")
    _upgrade()
    require_tenant(tenant)

    def progress(kind: str, done: int) -> None:
        err.print(f"{tenant}: {kind} sealed {done}", highlight=False)

    report = reseal(tenant, batch, progress=None if as_json else progress)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    counts = ", ".join(f"{k} {v}" for k, v in report.sealed.items())
    out.print(f"{tenant}: sealed {counts} ({report.batches} batch(es))", highlight=False)
    if not report.sensitive and not report.sensitive_call_types:
        out.print(f"{tenant} is not sensitive and has no sensitive call type: "
                  "nothing is sealed", highlight=False)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


def _new_password(from_stdin: bool) -> tuple[str, bool]:
    """The password read from standard input, or a generated one (then printed once)."""
    import secrets
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return secrets.token_urlsafe(12), True


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="sign-in address")],
    name: Annotated[str, typer.Option(help="the person's name")],
    role: Annotated[str, typer.Option(help="operator, secretary, tenant_admin or client")],
    tenant: Annotated[str | None, typer.Option(
        help="tenant_admin and client: their one tenant")] = None,
    tenants: Annotated[str | None, typer.Option(
        help="secretary: comma-separated tenants assigned (default: all)")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="read the password from standard input "
        "(default: generate one and print it once)")] = False,
) -> None:
    """Create a console user. The generated password is shown once."""
    from relais.console.users import UserError, create_user
    from sync.store.db import session_scope

    _upgrade()
    password, generated = _new_password(password_stdin)
    assigned = [t.strip() for t in tenants.split(",") if t.strip()] if tenants else None
    try:
        with session_scope() as session:
            user = create_user(session, email, name, role, password, tenant_id=tenant,
                               tenants=assigned)
            user_id = user.id
    except UserError as exc:
        fail(str(exc))
    out.print(f"user {email.strip().lower()} created ({user_id})", highlight=False)
    if generated:
        out.print(f"password: {password}", highlight=False)


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """Console users: role, tenants they see, disabled or not, last sign-in."""
    from relais.console.users import list_users, user_row
    from sync.store.db import session_scope

    _upgrade()
    with session_scope(readonly=True) as session:
        users = list_users(session)
        rows = [{**user_row(u), "scope": u.scope_label(),
                 "last_login_at": _when(u.last_login_at)} for u in users]
    listing(rows, {"email": "email", "name": "name", "role": "role", "scope": "tenants",
                   "disabled": "disabled", "last_login_at": "last sign-in"}, as_json=as_json)


@users_app.command("disable")
def users_disable(email: Annotated[str, typer.Argument(help="email or user id")]) -> None:
    """Disable a user: they can no longer sign in; their sessions end now."""
    from relais.console.users import disable_user, find_user
    from sync.store.db import session_scope

    _upgrade()
    with session_scope() as session:
        user = find_user(session, email)
        if user is None:
            fail(f"no user {email!r}; see relais users list")
        disable_user(session, user)
    out.print(f"user {email} disabled", highlight=False)


@users_app.command("reset-password")
def users_reset_password(
    email: Annotated[str, typer.Argument(help="email or user id")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="read the new password from standard input "
        "(default: generate one and print it once)")] = False,
) -> None:
    """The operator sets a new password: the account is unlocked, its sessions end."""
    from relais.console.users import UserError, find_user, reset_password
    from sync.store.db import session_scope

    _upgrade()
    password, generated = _new_password(password_stdin)
    try:
        with session_scope() as session:
            user = find_user(session, email)
            if user is None:
                fail(f"no user {email!r}; see relais users list")
            reset_password(session, user, password)
    except UserError as exc:
        fail(str(exc))
    out.print(f"password of {email} reset; every session of theirs ended", highlight=False)
    if generated:
        out.print(f"password: {password}", highlight=False)
