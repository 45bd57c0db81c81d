"""``relais demo --serve``: after the demo, keep the hub, the sandboxes and the
console running for a newcomer to click through, with one sign-in per role.

Invariants: the demo users are created in the demo's fresh data folder only,
with random passwords printed once on the terminal; nothing else is changed.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from mappings.config import TenantConfig

DOMAIN = "demo.relais.test"


def demo_logins(configs: list[TenantConfig]) -> list[tuple[str, str, str, str]]:
    """Create the demo's console users: (role label, tenant or "*", email, password)."""
    from relais.console.users import create_user
    from sync.store.db import session_scope

    made: list[tuple[str, str, str, str]] = []

    def add(session: Any, label: str, email: str, name: str, role: str, **scope: Any) -> None:
        password = secrets.token_urlsafe(9)
        create_user(session, email, name, role, password, actor="demo", **scope)
        made.append((label, scope.get("tenant_id") or "*", email, password))

    with session_scope() as session:
        add(session, "operator", f"operator@{DOMAIN}", "Opératrice démo", "operator")
        add(session, "secretary", f"secretary@{DOMAIN}", "Sophie (secrétaire)", "secretary")
        for config in configs:
            add(session, "tenant admin", f"admin.{config.id}@{DOMAIN}",
                f"Admin {config.name}", "tenant_admin", tenant_id=config.id)
            add(session, "client", f"client.{config.id}@{DOMAIN}",
                f"Client {config.name}", "client", tenant_id=config.id)
    return made


KNOWN_CALLER = "+33612345678"


def known_caller(crm: Any, configs: list[TenantConfig]) -> str | None:
    """A caller the desk recognises: a contact put in the Salesforce sandbox and
    pulled into the directory of the tenant answering a forwarding number (a real
    pull, as ``relais sync run`` does). The screen-pop URL, or None."""
    from sqlalchemy import select

    from mappings.schema import SalesforceConnection
    from sync.contacts import pull_connection
    from sync.store.db import session_scope
    from sync.store.models import Connection

    for config in configs:
        if not config.forwarding_numbers:
            continue
        # The contact goes into the Salesforce sandbox: the tenant's connection to it.
        names = [n for n, c in config.connections.items() if isinstance(c, SalesforceConnection)]
        if not names:
            continue
        with session_scope(readonly=True) as session:
            found = session.scalar(select(Connection.id).where(
                Connection.tenant_id == config.id, Connection.name == names[0]))
        if found is None:
            continue
        crm.salesforce.insert("Contact", {"FirstName": "Jeanne", "LastName": "Martin",
                                          "Phone": "06 12 34 56 78",
                                          "Email": "jeanne.martin@example.org"})
        if pull_connection(found, full=True, force=True).error is not None:
            return None
        called = config.forwarding_numbers[0].replace("+", "%2B")
        return f"/desk?called={called}&caller={KNOWN_CALLER.replace('+', '%2B')}"
    return None


def serve_until_interrupted(base: str, configs: list[TenantConfig], console: Console,
                            check: Callable[[], None], crm: Any = None) -> None:
    """Print the console's URL and the logins, then wait for Ctrl-C (or SIGTERM);
    ``check`` raises if a hub process died, which ends the wait too."""
    logins = demo_logins(configs)
    pop = known_caller(crm, configs) if crm is not None else None
    console.print("\n[bold]Demo logins[/] (passwords made for this run):")
    for label, scope, email, password in logins:
        console.print(f"  {label:<13} {scope:<18} {email:<40} {password}", highlight=False,
                      soft_wrap=True)
    if pop:
        console.print(f"Screen-pop: {base}{pop}", highlight=False, soft_wrap=True)
    console.print(f"Console: {base}/  (Ctrl-C stops the hub and the sandboxes)",
                  highlight=False, soft_wrap=True)

    def stop(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            check()
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping the demo…")
    finally:
        signal.signal(signal.SIGTERM, previous)
