"""Console people: user accounts beside API keys, their sessions and sign-in.

Invariants:

- A password is kept only as an argon2id hash (``argon2-cffi``); a session
  token only as its SHA-256 (256 random bits: no KDF needed), so a copy of the
  database opens no session.
- Roles: ``operator`` (every tenant, users), ``secretary`` (the answering
  service: the tenants in ``tenants``, or all when it is null), ``tenant_admin``
  and ``client`` (exactly one ``tenant_id``). :meth:`ConsoleUser.can_see` is the
  one scoping rule; pages answer 404 for a tenant it refuses.
- Sign-in is throttled per account: ``MAX_FAILURES`` wrong passwords in a row
  lock it for ``LOCK_MINUTES`` (the lock is checked before the password, so a
  locked account answers the same whatever is typed). Times come from
  ``sync.clock``.
- Sign-in is also throttled per client address, in the database
  (``console_sign_in_failures``: one row per failure, the address kept only as
  its SHA-256), so every API process counts the same failures; rows older than
  the window are deleted as new ones come.
- A disabled user's sessions are deleted with it; a password reset by the
  operator ends every session of that user.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import JSON, ForeignKey, Index, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from relais.console.i18n import _
from sync.store.models import AuditEvent, Base, Tenant, new_id, utcnow

ROLES = ("operator", "secretary", "tenant_admin", "client")
ROLE_LABELS = {"operator": "operator admin", "secretary": "secretary",
               "tenant_admin": "tenant admin", "client": "client"}
MAX_FAILURES = 5
LOCK_MINUTES = 15
MIN_PASSWORD = 10

_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters
# Verified against when the email is unknown: the same work, so timing tells nothing.
_DUMMY_HASH = _hasher.hash("relais-no-such-user")


class ConsoleUser(Base):
    __tablename__ = "console_users"
    __table_args__ = (Index("ix_console_users_email", "email", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("usr"))
    email: Mapped[str] = mapped_column(String(320))  # lower-cased
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    # tenant_admin, client: their tenant; secretary, operator: null.
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True)
    # secretary: the tenants assigned (null: all of them).
    tenants: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def can_see(self, tenant_id: str) -> bool:
        """Whether this user may open anything of ``tenant_id`` (else: 404)."""
        if self.role == "operator":
            return True
        if self.role == "secretary":
            return self.tenants is None or tenant_id in self.tenants
        return self.tenant_id == tenant_id

    @property
    def takes_calls(self) -> bool:
        return self.role in ("operator", "secretary")

    def scope_label(self) -> str:
        if self.role == "operator" or (self.role == "secretary" and self.tenants is None):
            return "*"
        if self.role == "secretary":
            return ",".join(self.tenants or []) or "-"
        return self.tenant_id or "-"


class ConsoleSession(Base):
    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_user", "user_id"),)
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class SignInFailure(Base):
    """One failed sign-in from an address (``address``: its SHA-256, no IP in clear)."""

    __tablename__ = "console_sign_in_failures"
    __table_args__ = (Index("ix_console_sign_in_failures_address", "address", "failed_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=lambda: new_id("sif"))
    address: Mapped[str] = mapped_column(String(64))
    failed_at: Mapped[datetime] = mapped_column()


def _address_key(address: str) -> str:
    return hashlib.sha256(address.encode()).hexdigest()


def address_blocked(session: Session, address: str, limit: int, window: timedelta) -> bool:
    """Whether ``address`` failed ``limit`` times or more in the last ``window``."""
    since = utcnow() - window
    count = session.scalar(select(func.count()).select_from(SignInFailure).where(
        SignInFailure.address == _address_key(address), SignInFailure.failed_at > since))
    return (count or 0) >= limit


def record_sign_in_failure(session: Session, address: str, window: timedelta) -> None:
    """Count one failure of ``address``; failures older than ``window`` (any address) go."""
    now = utcnow()
    session.execute(delete(SignInFailure).where(SignInFailure.failed_at <= now - window))
    session.add(SignInFailure(address=_address_key(address), failed_at=now))


class UserError(ValueError):
    """A user cannot be created or changed as asked (the message says why and what to
    do, in English for the CLI; ``console``: the same in a French msgid for the console)."""

    def __init__(self, message: str, console: str) -> None:
        super().__init__(message)
        self.console = console


class SignInRefused(PermissionError):
    """Wrong email or password, a disabled user, or a locked account."""

    def __init__(self, message: str, locked_until: datetime | None = None) -> None:
        super().__init__(message)
        self.locked_until = locked_until


@dataclass(frozen=True)
class SignedIn:
    token: str  # the cookie's value: shown once, stored only as a hash
    user: ConsoleUser
    csrf_token: str


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters",
                        _("Mot de passe trop court : au moins 10 caractères."))


def _check_scope(session: Session, role: str, tenant_id: str | None,
                 tenants: list[str] | None) -> None:
    if role not in ROLES:
        raise UserError(f"role: {role!r} is not one of {', '.join(ROLES)}",
                        _("Rôle inconnu : choisissez-en un dans la liste."))
    if role in ("tenant_admin", "client"):
        if not tenant_id:
            raise UserError(f"tenant: a {role} belongs to exactly one tenant (--tenant ID)",
                            _("Un admin client ou un client appartient à un seul client : "
                              "choisissez-le."))
        if tenants is not None:
            raise UserError(f"tenants: only a secretary has assigned tenants, not a {role}",
                            _("Seule une secrétaire a des clients attribués."))
        named = [tenant_id]
    else:
        if tenant_id:
            raise UserError(f"tenant: a {role} has no single tenant"
                            + (" (use --tenants for a secretary's assignment)"
                               if role == "secretary" else ""),
                            _("Une secrétaire ou un opérateur n'appartient pas à un client : "
                              "laissez « Client » vide."))
        if role == "operator" and tenants is not None:
            raise UserError("tenants: an operator sees every tenant",
                            _("Un opérateur voit tous les clients : laissez « Clients "
                              "attribués » vide."))
        named = tenants or []
    for name in named:
        if session.get(Tenant, name) is None:
            raise UserError(f"tenant: no tenant {name!r} (list them with: relais tenants list)",
                            _("Client inconnu."))


def create_user(session: Session, email: str, name: str, role: str, password: str, *,
                tenant_id: str | None = None, tenants: list[str] | None = None,
                actor: str = "cli") -> ConsoleUser:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise UserError(f"email: {email!r} is not an email address",
                        _("Adresse e-mail invalide."))
    if not name.strip():
        raise UserError("name: give the person's name", _("Donnez le nom de la personne."))
    check_password(password)
    _check_scope(session, role, tenant_id, tenants)
    if session.scalar(select(ConsoleUser.id).where(ConsoleUser.email == email)):
        raise UserError(f"email: a user {email} already exists",
                        _("Un utilisateur a déjà cette adresse e-mail."))
    user = ConsoleUser(email=email, name=name.strip(), role=role, tenant_id=tenant_id,
                       tenants=sorted(set(tenants)) if tenants is not None else None,
                       password_hash=_hasher.hash(password))
    session.add(user)
    session.flush()
    _audit(session, user, "user.created", actor, {"role": role})
    return user


def find_user(session: Session, email_or_id: str) -> ConsoleUser | None:
    key = email_or_id.strip()
    return session.get(ConsoleUser, key) or session.scalar(
        select(ConsoleUser).where(ConsoleUser.email == key.lower()))


def list_users(session: Session) -> list[ConsoleUser]:
    return list(session.scalars(select(ConsoleUser).order_by(ConsoleUser.email)))


def user_row(user: ConsoleUser) -> dict[str, Any]:
    """A user as ``relais users list --json`` shows it (no hash, ever)."""
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role,
            "tenant": user.tenant_id, "tenants": user.tenants,
            "disabled": user.disabled_at is not None,
            "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None}


def disable_user(session: Session, user: ConsoleUser, actor: str = "cli") -> None:
    user.disabled_at = user.disabled_at or utcnow()
    end_sessions(session, user.id)
    _audit(session, user, "user.disabled", actor, {})


def reset_password(session: Session, user: ConsoleUser, password: str,
                   actor: str = "cli") -> None:
    """The operator sets a new password: the lock is lifted, every session ends."""
    check_password(password)
    user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    end_sessions(session, user.id)
    _audit(session, user, "user.password_reset", actor, {})


def end_sessions(session: Session, user_id: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.user_id == user_id))


def sign_in(session: Session, email: str, password: str,
            lifetime: timedelta) -> SignedIn | SignInRefused:
    """Check the password and open a session. A refusal is *returned*, not raised, so
    the caller's transaction commits the failure count and the lock."""
    now = utcnow()
    user = session.scalar(select(ConsoleUser).where(ConsoleUser.email == email.strip().lower()))
    refused = SignInRefused("wrong email or password")
    if user is None:
        _verify(_DUMMY_HASH, password)
        return refused
    if user.locked_until is not None and user.locked_until > now:
        return SignInRefused("too many failed attempts: try again later", user.locked_until)
    if not _verify(user.password_hash, password):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            user.failed_logins = 0
            _audit(session, user, "user.locked", "sign-in", {})
        return refused
    if user.disabled_at is not None:
        return refused
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    session.execute(delete(ConsoleSession).where(  # this user's expired sessions go
        ConsoleSession.user_id == user.id, ConsoleSession.expires_at <= now))
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(ConsoleSession(token_hash=_token_hash(token), user_id=user.id, csrf_token=csrf,
                               created_at=now, expires_at=now + lifetime))
    return SignedIn(token, user, csrf)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def session_user(session: Session, token: str) -> tuple[ConsoleUser, ConsoleSession] | None:
    """The signed-in user of a cookie's token, if the session is live and the user enabled."""
    if not token:
        return None
    row = session.get(ConsoleSession, _token_hash(token))
    if row is None or row.expires_at <= utcnow():
        return None
    user = session.get(ConsoleUser, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    return user, row


def sign_out(session: Session, token: str) -> None:
    session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == _token_hash(token)))


def _audit(session: Session, user: ConsoleUser, kind: str, actor: str,
           detail: dict[str, Any]) -> None:
    session.add(AuditEvent(tenant_id=user.tenant_id, kind=kind, subject_type="console_user",
                           subject_id=user.id, detail={"actor": actor, **detail}))
