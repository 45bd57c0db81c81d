"""``relais demo``: the whole hub on the embedded default, end to end.

It starts the API, a Celery worker and beat as real processes, applies the
sample tenants of ``examples/``, posts a realistic day of qualified calls,
waits until every delivery has settled and checks, against what the
receiving side counted, that nothing was lost or delivered twice.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from mappings.config import TenantConfig
from relais.demo_crm import CrmSandboxes
from relais.tables import emit
from sandbox.webhook_receiver import WebhookReceiver
from sync import clock
from sync.settings import get_settings, reset_settings
from sync.store.models import utcnow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

FIRST = [
    "Camille",
    "Léa",
    "Hugo",
    "Louis",
    "Chloé",
    "Manon",
    "Jules",
    "Inès",
    "Nathan",
    "Zoé",
    "Gabriel",
    "Sarah",
    "Théo",
    "Emma",
    "Lucas",
    "Jeanne",
    "Arthur",
    "Louise",
    "Raphaël",
]
LAST = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Muller",
]
COMPANIES = [
    "SARL Boulangerie du Marché",
    "Cabinet Moreau",
    "Garage des Lilas",
    None,
    None,
    "SCI Les Tilleuls",
    "Menuiserie Fontaine",
    None,
    "Pharmacie Centrale",
]
SECRETARIES = ["Sophie (permanence)", "Nadia (permanence)", "Karim (permanence)"]
PHRASES = [
    "Souhaite être rappelé(e) dans la journée.",
    "Demande un devis pour des travaux dans sa cuisine.",
    "Rappelle au sujet de son dossier, ne peut pas joindre le cabinet.",
    "Appel urgent : dégât des eaux dans l'appartement du dessous.",
    "Demande un rendez-vous la semaine prochaine, plutôt le matin.",
    "Fournisseur : livraison décalée à jeudi.",
    "Client mécontent du délai d'intervention, souhaite parler au responsable.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phone(rng: random.Random) -> str:
    if rng.random() < 0.7:
        # 06 10 … 06 59 only: some 06 9x ranges belong to overseas regions, not FR.
        return (
            f"06 {rng.randint(10, 59)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
            f"{rng.randint(10, 99)}"
        )
    return (
        f"+33 1 {rng.randint(40, 49)} {rng.randint(10, 99)} {rng.randint(10, 99)} "
        f"{rng.randint(10, 99)}"
    )


def _intake_value(kind: str, choices: list[str] | None, rng: random.Random) -> Any:
    if kind == "choice" and choices:
        return rng.choice(choices)
    return {
        "number": rng.randint(1, 5),
        "bool": True,
        "date": (clock.now() + timedelta(days=3)).date().isoformat(),
    }.get(kind, "Précisé à l'appel")


def day_of_calls(configs: list[TenantConfig], count: int, seed: int = 2026) -> list[tuple]:
    """``count`` (tenant id, message JSON) pairs taken over the ten hours before now
    (the hub's now: ``--at`` moves it), so no call is dated in the future."""
    rng = random.Random(seed)  # noqa: S311 - sample data
    calls = []
    for n in range(count):
        config = configs[n % len(configs)]
        call_type = rng.choice(config.call_types)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        zone = ZoneInfo(config.timezone)
        taken = clock.now().astimezone(zone).replace(second=0, microsecond=0) - timedelta(
            minutes=rng.randint(1, 600)
        )
        caller: dict[str, Any] = {"name": f"{first} {last}", "phone": _phone(rng)}
        if rng.random() < 0.5:
            caller["email"] = (
                f"{first}.{last}@exemple.fr".lower()
                .replace("é", "e")
                .replace("è", "e")
                .replace("ë", "e")
                .replace("ï", "i")
            )
        company = rng.choice(COMPANIES)
        if company:
            caller["company"] = company
        staff = rng.choice(config.staff) if config.staff and rng.random() < 0.7 else None
        message: dict[str, Any] = {
            "call_type": call_type.id,
            "caller": caller,
            "subject": f"{call_type.label} — {first} {last}",
            "body": rng.choice(PHRASES),
            "taken_by": rng.choice(SECRETARIES),
            "taken_at": taken.isoformat(),
            "callback_requested": rng.random() < 0.6,
            "intake": {
                f.name: _intake_value(
                    str(getattr(f.type, "value", f.type)), getattr(f, "choices", None), rng
                )
                for f in call_type.intake_fields
                if f.required or rng.random() < 0.5
            },
        }
        if staff:
            message["staff_id"] = staff.id
        calls.append((config.id, message))
    return calls


class Processes:
    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env, self.procs = logs, env, {}

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "relais", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {proc.returncode}; see {self.logs}/{name}.log"
                )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _prepare_home() -> Path:
    """A fresh data folder for this run, unless the operator pointed at a database."""
    settings = get_settings()
    if settings.database_url:
        return settings.resolved_home
    home = settings.home.expanduser().resolve() / "demo"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.environ["RELAIS_HOME"] = str(home)
    reset_settings()
    return home


def run_demo(
    calls: int, workers: int, timeout: float, console: Console, at: datetime | None = None,
    serve: bool = False,
) -> int:
    """Run the main job; ``at`` is the hub's now when the scenario starts (it keeps ticking).
    ``serve``: then keep everything running with the console until Ctrl-C
    (:mod:`relais.demo_console`).

    ``at`` is injected, not faked: ``RELAIS_CLOCK_OFFSET`` reaches the API, worker and
    beat started here, and this process's clock is set the same way (``sync.clock``).
    """
    from relais.auth import create_key
    from relais.migrate import upgrade
    from sync.store.db import dispose_engines, session_scope
    from sync.store.models import Connection, Delivery, Message
    from sync.tenants import apply_config, parsed_config

    if at is not None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise RuntimeError(f"--at needs a UTC offset or zone, got {at.isoformat()}")
        os.environ[clock.ENV_OFFSET] = str(clock.offset_for(at))
        clock.install(clock.from_environment())
    home = _prepare_home()
    os.environ["RELAIS_ALLOW_PRIVATE_URLS"] = "1"  # the sandboxes listen on 127.0.0.1
    if serve:  # the console over plain http on 127.0.0.1: cookies without Secure
        os.environ["RELAIS_CONSOLE_INSECURE_COOKIES"] = "1"
    reset_settings()
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    receiver = WebhookReceiver(fail_first=0.1)
    os.environ["RELAIS_DEMO_WEBHOOK_BASE"] = receiver.start() + "/hooks"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    crm = CrmSandboxes.start(public_url=base)
    started = utcnow()
    zone = ZoneInfo("Europe/Paris")
    console.print(
        f"[bold]Relais demo[/] — data in {home}; the hub's clock reads "
        f"{started.astimezone(zone):%a %d/%m/%Y %H:%M %Z} (Paris)"
    )

    upgrade()
    configs, keys = [], {}
    with session_scope() as session:
        for path in sorted(EXAMPLES.glob("*.yaml")):
            result = apply_config(
                session, path.read_text(encoding="utf-8"), str(path), actor="demo"
            )
            keys[result.tenant_id] = create_key(session, "secretary", result.tenant_id, "demo")
        session.flush()
        for conn in session.scalars(select(Connection).where(Connection.provider == "webhook")):
            from sync.store.crypto import decrypt_json

            receiver.secrets[urlparse(conn.settings["url"]).path] = decrypt_json(conn.credentials)[
                "signing_secret"
            ]
        from sync.store.models import Tenant

        configs = [parsed_config(t) for t in session.scalars(select(Tenant).order_by(Tenant.id))]
        crm.connect_all(session)
    console.print(
        f"applied {len(configs)} sample tenants: "
        + ", ".join(f"{c.name} ({c.id})" for c in configs)
    )
    dispose_engines()
    _explain_two_calls(configs, console)

    env = {
        **os.environ,
        "RELAIS_SWEEP_INTERVAL_SECONDS": "5",
        "RELAIS_DELIVERY_BACKOFF_BASE": "1",
        "RELAIS_DELIVERY_STALE_SECONDS": "10",
    }
    procs = Processes(logs, env)
    try:
        procs.start("api", "serve", "--port", str(port))
        procs.start("worker", "worker", "--concurrency", str(workers))
        procs.start("beat", "beat")
        _wait_healthy(base, procs)
        night = night_emergencies(configs)
        posted = _post_calls(base, keys, day_of_calls(configs, calls) + night, console, procs)
        code = _settle_and_report(
            started,
            posted,
            posted[len(posted) - len(night) :],
            {"webhook": receiver.landed, **crm.landings()},
            crm,
            receiver,
            timeout,
            console,
            procs,
            (Connection, Delivery, Message, session_scope),
        )
        if serve:
            from relais.demo_console import serve_until_interrupted

            serve_until_interrupted(base, configs, console, procs.check, crm)
        return code
    finally:
        procs.stop()
        receiver.stop()
        crm.stop()


def night_emergencies(configs: list[TenantConfig]) -> list[tuple]:
    """An urgent call last night for each tenant with an escalation ladder."""
    calls = []
    for config in configs:
        urgent = next((c for c in config.call_types if c.urgency_default == "urgent"), None)
        if urgent is None or not getattr(config, "escalations", None):
            continue
        zone = ZoneInfo(config.timezone)
        night = (clock.now().astimezone(zone) - timedelta(days=1)).replace(
            hour=23, minute=40, second=0, microsecond=0
        )
        calls.append(
            (
                config.id,
                {
                    "call_type": urgent.id,
                    "caller": {"name": "Mme Sandrine Roussel", "phone": "06 45 67 89 12"},
                    "subject": "Forte fièvre, enfant de 3 ans",
                    "body": "Fièvre à 40 depuis ce soir, ne baisse pas. Demande l'avis du médecin.",
                    "taken_by": "Karim (permanence de nuit)",
                    "taken_at": night.isoformat(),
                    "callback_requested": True,
                },
            )
        )
    return calls


def _acknowledge_night_emergency(
    crm: CrmSandboxes, console: Console, session_scope: Any, timeout: float, night: list[str]
) -> bool:
    """The doctor on call answers "OK <ref>" to the night emergency's SMS: that ladder must
    stop, and the doctor's phone must get the reply naming it (and any ladder still open).

    Other ladders may be open to the same phone (an urgent day call after hours): the
    check is on the night emergency's own ladder, found by its message.
    """
    from sync.store.models import Escalation

    if not night:
        return True  # no tenant has an escalation ladder
    with session_scope(readonly=True) as session:
        ladders = list(
            session.scalars(
                select(Escalation)
                .where(Escalation.message_id.in_(night))
                .order_by(Escalation.created_at)
            )
        )
    if not ladders:
        console.print("[red]the night emergency opened no escalation ladder[/]")
        return False
    for ladder in ladders:
        phone = (ladder.notified or [""])[0]
        asked = f"OK {ladder.ref}"
        if not any(m.to == phone and f"{asked} " in m.body for m in crm.sms.messages):
            console.print(f"[red]no escalation SMS asking {asked!r} reached {phone or 'anyone'}[/]")
            return False
        replies_before = sum(1 for m in crm.sms.messages if m.to == phone)
        crm.sms.reply(phone, f"{asked} merci")
        deadline = time.monotonic() + min(timeout, 30)
        esc = None
        while esc is None or esc.acknowledged_at is None:
            if time.monotonic() > deadline:
                console.print(f"[red]{asked!r} from {phone} did not stop escalation {ladder.id}[/]")
                return False
            time.sleep(0.3)
            with session_scope(readonly=True) as session:
                esc = session.get(Escalation, ladder.id)
        answer = None
        while answer is None:
            sent = [m for m in crm.sms.messages if m.to == phone][replies_before:]
            answer = next((m.body for m in sent if f"alerte {ladder.ref} " in m.body), None)
            if answer is None and time.monotonic() > deadline:
                console.print(f"[red]no reply SMS to {phone} confirmed alert {ladder.ref}[/]")
                return False
            time.sleep(0.3)
        console.print(
            f"escalation {ladder.ref}: step {esc.step + 1} acknowledged by "
            f"{esc.acknowledged_by} replying {asked!r}; no further step is sent. "
            f"Reply SMS: {answer}",
            highlight=False,
        )
    return True


def _explain_two_calls(configs: list[TenantConfig], console: Console) -> None:
    """What the rules do with two calls, as `relais rules explain` shows it."""
    from mappings.plan import explain_text, plan_for
    from mappings.rules import CallContext

    picks = [
        ("centre-medical-lumiere", "urgence-medicale", (21, 30)),
        ("plomberie-martin", "devis", (10, 15)),
    ]
    by_id = {c.id: c for c in configs}
    for tenant, call_type, (hour, minute) in picks:
        config = by_id.get(tenant)
        if config is None or config.call_type(call_type) is None:
            continue
        at = datetime(2026, 12, 24, hour, minute, tzinfo=ZoneInfo(config.timezone))
        plan = plan_for(config, CallContext(call_type=call_type, at=at))
        console.print(f"[bold]rules explain[/] {tenant} · {call_type} · {at:%d/%m/%Y %H:%M}")
        console.print(explain_text(plan), highlight=False, markup=False)


def _wait_healthy(base: str, procs: Processes) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        procs.check()
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not become healthy within 60 s")


def _post_calls(
    base: str, keys: dict[str, str], calls: list[tuple], console: Console, procs: Processes
) -> list[str]:
    posted = []
    with httpx.Client(base_url=base, timeout=30) as client, _progress(console) as progress:
        task = progress.add_task("posting calls", total=len(calls))
        for n, (tenant, message) in enumerate(calls):
            response = client.post(
                f"/v1/tenants/{tenant}/messages",
                json=message,
                headers={
                    "Authorization": f"Bearer {keys[tenant]}",
                    "Idempotency-Key": f"demo-call-{n}",
                },
            )
            if response.status_code != 202:
                procs.check()
                raise RuntimeError(f"call {n} refused: {response.status_code} {response.text}")
            posted.append(response.json()["id"])
            progress.advance(task)
    return posted


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


LATER = ("digest.item", "digest.summary")  # due at the digest's time, not now


def _settle_and_report(
    started: datetime,
    posted: list[str],
    night: list[str],
    landings: dict[str, Callable[[], Counter[str]]],
    crm: CrmSandboxes,
    receiver: WebhookReceiver,
    timeout: float,
    console: Console,
    procs: Processes,
    store: tuple,
) -> int:
    Connection, Delivery, Message, session_scope = store
    of_this_run = Delivery.created_at >= started
    settled_now = Delivery.status.in_(["delivered", "dead"]) | (
        Delivery.action.in_(LATER) & (Delivery.status == "pending")
    )
    deadline = time.monotonic() + timeout
    with _progress(console) as progress:
        task = progress.add_task("delivering", total=None)
        while True:
            with session_scope(readonly=True) as session:
                total = session.scalar(
                    select(func.count()).select_from(Delivery).where(of_this_run)
                )
                settled = session.scalar(
                    select(func.count()).select_from(Delivery).where(of_this_run, settled_now)
                )
            progress.update(task, total=total, completed=settled)
            if settled == total or time.monotonic() > deadline:
                break
            procs.check()
            time.sleep(0.3)
    acknowledged = _acknowledge_night_emergency(crm, console, session_scope, timeout, night)

    with session_scope() as session:
        rows = session.execute(
            select(Delivery, Connection, Message)
            .join(Connection, Connection.id == Delivery.connection_id)
            .outerjoin(Message, Message.id == Delivery.message_id)
            .where(of_this_run)
            .order_by(Delivery.created_at)
        ).all()
        dropped = session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.id.in_(posted), Message.status == "dropped")
        )

    landed = Table(title="Last calls and where they landed")
    for col in ("taken", "tenant", "call type", "caller", "destination", "status", "attempts"):
        landed.add_column(col)
    for d, c, m in [r for r in rows if r[2] is not None][-12:]:
        landed.add_row(
            m.taken_at.strftime("%H:%M"),
            m.tenant_id,
            m.call_type,
            m.caller.get("name", ""),
            c.name,
            d.status,
            str(d.attempts),
        )
    emit(landed, console)

    by_dest: dict[tuple[str, str], Counter[str]] = {}
    for d, c, _m in rows:
        by_dest.setdefault((c.tenant_id, c.name), Counter())[d.status] += 1
    summary = Table(title="Deliveries by destination")
    for col in ("tenant", "destination", "delivered", "dead", "unsettled"):
        summary.add_column(col)
    for (tenant, name), counts in sorted(by_dest.items()):
        unsettled = counts["pending"] + counts["in_flight"]
        summary.add_row(tenant, name, str(counts["delivered"]), str(counts["dead"]), str(unsettled))
    emit(summary, console)

    delivered: dict[str, set[str]] = {}
    for d, c, _m in rows:
        if d.status == "delivered" and d.action != "digest.item":  # items leave in the summary
            key = crm.landing_key(c.provider, d.idempotency_key)
            delivered.setdefault(c.provider, set()).add(key)
    lost, unexpected, doubled = 0, 0, 0
    for provider, keys in sorted(delivered.items()):
        landed = landings[provider]()  # key -> records found at the destination
        lost += len(keys - set(landed))
        unexpected += len(set(landed) - keys)
        doubled += sum(1 for n in landed.values() if n > 1)
        console.print(
            f"{provider}: {len(keys)} delivered, {len(landed)} found at the "
            f"destination, {sum(landed.values())} records"
        )
    later = [d for d, _c, _m in rows if d.action in LATER and d.status == "pending"]
    if later:
        due = min(d.next_attempt_at for d in later).astimezone(ZoneInfo("Europe/Paris"))
        console.print(
            f"digests: {len(later)} deliveries wait for their summary, the first "
            f"due {due:%d/%m %H:%M} (Paris)"
        )
    unsettled = [
        d for d, _c, _m in rows if d.status not in ("delivered", "dead") and d.action not in LATER
    ]
    dead = [d for d, _c, _m in rows if d.status == "dead"]
    # Digest items are delivered inside their summary: counted apart, so the total
    # reads the same as the per-destination table above.
    in_digests = sum(1 for d, _c, _m in rows
                     if d.status == "delivered" and d.action == "digest.item")
    console.print(
        f"{len(posted)} calls posted ({dropped} dropped by rule), {len(rows)} deliveries: "
        f"{sum(map(len, delivered.values()))} delivered"
        + (f" (+{in_digests} inside digests)" if in_digests else "")
        + f", {len(dead)} dead, "
        f"{len(unsettled)} unsettled. Webhook receiver: {receiver.failures_sent} injected "
        f"failures retried, {receiver.duplicates} repeated posts de-duplicated by key, "
        f"{receiver.rejected_signatures} bad signatures."
    )
    for d in dead:
        console.print(f"[red]dead[/] {d.id}: {d.last_error}")
    problems = []
    if unsettled:
        problems.append(f"{len(unsettled)} deliveries did not settle within {timeout:.0f} s")
    if lost:
        problems.append(f"{lost} deliveries marked delivered are not at their destination")
    if unexpected:
        problems.append(f"{unexpected} records at a destination match no delivery")
    if doubled:
        problems.append(f"{doubled} deliveries landed more than once")
    if dead:
        problems.append(f"{len(dead)} deliveries dead")
    if receiver.rejected_signatures:
        problems.append("signatures were rejected")
    if not acknowledged:
        problems.append("the night emergency's escalation was not acknowledged by SMS")
    for problem in problems:
        console.print(f"[bold red]FAILED:[/] {problem}")
    if not problems:
        console.print("[bold green]OK:[/] every delivery landed exactly once.")
    return 1 if problems else 0
