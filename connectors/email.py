"""Email destination: one SMTP submission session per batch (standard library).

Payload contract
----------------
The engine renders the tenant's templates and hands each delivery::

    payload["email"] = {
        "to": ["alice@example.com", ...],   # required, at least one address
        "subject": "Urgent call from ...",  # required (may be empty)
        "text": "plain-text body",          # required
        "html": "<p>...</p>" | None,        # optional HTML alternative
        "cc": [...],                        # optional
        "reply_to": "desk@example.com",     # optional
        "attachments": [                    # optional
            {"filename": "rapport.pdf", "content_type": "application/pdf",
             "data_base64": "JVBERi0..."},
        ],
    }

Anything else in the payload is ignored here. Bodies never reach the logs.

The message is ``multipart/alternative`` (text, then HTML) when ``html`` is
given, ``text/plain`` otherwise, UTF-8; with attachments it is
``multipart/mixed``: that body first, then each attachment (base64, with
``Content-Disposition: attachment; filename=...``). With ``Date``, ``From``, ``To``,
``Subject``, ``Auto-Submitted: auto-generated`` and a ``Message-ID`` derived
from the delivery's idempotency key (``<key@relais>``): a retry or a replay
carries the same ``Message-ID``, which is what receivers (and mail clients)
de-duplicate on. It is also the delivery's external id.

Settings
--------
``host``; ``port`` (587 for ``starttls``, 465 for ``tls``, 25 for ``none``);
``security``: ``starttls`` (default) | ``tls`` (implicit TLS) | ``none``;
``username`` (AUTH is skipped without one); ``from_address`` (required) and
``from_name``; ``ca_file`` (a PEM CA to trust instead of the public ones: the
sandbox CA); ``timeout_seconds`` (30); ``message_id_domain`` (``relais``);
``local_hostname`` (the EHLO name, default ``relais.localdomain``);
``rate_limit`` / ``rate_limit_window_seconds`` (optional; messages per
window for the shared pacer). Credentials: ``password``.

With ``security: none`` the password is never sent (AUTH over a clear
connection is refused as a configuration error).

Errors
------
* 4xx replies, timeouts, refused/dropped connections, TLS failures other than
  certificate verification → ``TransientError`` (retried with the same
  ``Message-ID``).
* 5xx replies → ``Rejected`` with the server's code and text; a refused
  recipient is named (``SMTPRecipientsRefused``, or a partial refusal: then
  the message *was* delivered to the others, and the reason says so).
* 535 (and other 5xx answers to AUTH) → ``Rejected``: "SMTP authentication
  failed: fix the password". Not ``AuthExpired``: there is no token to
  refresh, a person must fix the credentials; the whole batch gets the same
  reason without re-trying the login for each message.
* Certificate verification failure, missing STARTTLS/AUTH support →
  ``Rejected`` (configuration, not luck).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import smtplib
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, ClassVar

from connectors.base import (
    ConnectionInfo,
    DeliveryError,
    DeliveryRequest,
    DeliveryResult,
    Rejected,
    Runtime,
    TransientError,
)
from connectors.catalog import provider as catalogue
from connectors.http import shared_ssl_context

log = logging.getLogger("relais.connectors.email")

SECURITY_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}$")
_REASON_LIMIT = 300
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")
_FILENAME_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\"]')

__all__ = ["EmailConnector", "build_message", "message_id_for"]


def message_id_for(idempotency_key: str, domain: str = "relais") -> str:
    """``<key@domain>``; keys that are not a safe dot-atom are hashed (stable too)."""
    local = idempotency_key
    if not _SAFE_ID.match(local) or ".." in local or local.endswith("."):
        local = "k" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{local}@{domain}>"


def _addresses(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise Rejected(f"email payload: {field!r} must be a list of addresses")
    out = []
    for item in value:
        item = item.strip()
        if not item:
            continue
        try:
            Address(addr_spec=item)
        except NonASCIILocalPartDefect:
            pass  # valid with SMTPUTF8, which smtplib negotiates
        except Exception as exc:  # HeaderParseError, defects, IndexError on "x@"
            raise Rejected(
                f"email payload: invalid address {item!r} in {field!r} ({exc})") from None
        if "@" not in item:
            raise Rejected(f"email payload: invalid address {item!r} in {field!r}")
        out.append(item)
    return out


def build_message(
    payload: dict[str, Any],
    *,
    idempotency_key: str,
    from_address: str,
    from_name: str | None = None,
    message_id_domain: str = "relais",
    now: datetime | None = None,
) -> tuple[EmailMessage, list[str]]:
    """The MIME message and the envelope recipients, from ``payload["email"]``."""
    spec = payload.get("email")
    if not isinstance(spec, dict):
        raise Rejected("payload has no 'email' section (the engine must render the templates)")
    to = _addresses(spec.get("to"), "to")
    cc = _addresses(spec.get("cc"), "cc")
    if not to:
        raise Rejected("email payload: no recipient in 'to'")
    text = spec.get("text")
    if not isinstance(text, str):
        raise Rejected("email payload: 'text' (the plain-text body) is required")
    html = spec.get("html")
    if html is not None and not isinstance(html, str):
        raise Rejected("email payload: 'html' must be a string or null")
    subject = spec.get("subject", "")
    if not isinstance(subject, str):
        raise Rejected("email payload: 'subject' must be a string")

    message = EmailMessage()
    message["Message-ID"] = message_id_for(idempotency_key, message_id_domain)
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["From"] = formataddr((from_name, from_address)) if from_name else from_address
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    reply_to = spec.get("reply_to")
    if isinstance(reply_to, str) and reply_to.strip():
        message["Reply-To"] = _addresses(reply_to, "reply_to")[0]
    message["Subject"] = " ".join(subject.splitlines())
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message.set_content(text, subtype="plain", charset="utf-8")
    if html:
        message.add_alternative(html, subtype="html", charset="utf-8")
    for filename, content_type, data in _attachments(spec.get("attachments")):
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message, to + cc


def _attachments(value: Any) -> list[tuple[str, str, bytes]]:
    """``(filename, content type, bytes)`` of each attachment; a malformed one is Rejected."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Rejected("email payload: 'attachments' must be a list")
    out = []
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            raise Rejected(f"email payload: attachments[{n}] must be an object")
        filename = item.get("filename")
        if not isinstance(filename, str) or not filename.strip() \
                or _FILENAME_UNSAFE.search(filename):
            raise Rejected(f"email payload: attachments[{n}].filename must be a plain file name")
        content_type = str(item.get("content_type") or "application/octet-stream").lower()
        if not _CONTENT_TYPE.match(content_type):
            raise Rejected(f"email payload: attachments[{n}].content_type must be type/subtype")
        data = item.get("data_base64")
        if not isinstance(data, str):
            raise Rejected(f"email payload: attachments[{n}].data_base64 is required")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(f"email payload: attachments[{n}].data_base64 is not base64") from None
        out.append((filename.strip(), content_type, raw))
    return out


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(value.split())[:_REASON_LIMIT]


def _by_code(code: int, reason: str) -> DeliveryError:
    if 400 <= code < 500:
        return TransientError(reason)
    return Rejected(reason)


class _SessionGone(Exception):
    """The SMTP session cannot be used any more (fatal for the rest of the batch)."""

    def __init__(self, error: DeliveryError) -> None:
        super().__init__(str(error))
        self.error = error


class EmailConnector:
    provider: ClassVar[str] = "email"
    linger_seconds: ClassVar[float] = 0.0  # an urgent message leaves at once

    @staticmethod
    def rate_limit(info: ConnectionInfo) -> tuple[int, float] | None:
        """Messages per window, only if the relay imposes one (``rate_limit`` setting)."""
        return catalogue("email").rate_limit(
            info.settings.get("rate_limit"), info.settings.get("rate_limit_window_seconds")
        )

    def __init__(self, info: ConnectionInfo, runtime: Runtime | None = None) -> None:
        self.info = info
        self.runtime = runtime or Runtime()
        settings = info.settings
        self.security = str(settings.get("security", "starttls")).lower()
        if self.security not in SECURITY_MODES:
            raise ValueError(f"email: security must be one of {SECURITY_MODES}")
        self.host = str(settings["host"])
        self.port = int(settings.get("port") or DEFAULT_PORTS[self.security])
        self.username: str | None = settings.get("username") or None
        self.password: str = str(info.credentials.get("password") or "")
        self.from_address = str(settings["from_address"])
        self.from_name: str | None = settings.get("from_name") or None
        self.ca_file: str | None = settings.get("ca_file") or None
        self.timeout = float(settings.get("timeout_seconds", 30))
        self.domain = str(settings.get("message_id_domain", "relais"))
        self.local_hostname = str(settings.get("local_hostname", "relais.localdomain"))
        self._smtp: smtplib.SMTP | None = None
        self.sessions = 0  # SMTP sessions opened (connection reuse is observable)

    # ------------------------------------------------------------- delivery
    def deliver(self, batch: Sequence[DeliveryRequest]) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        fatal: DeliveryError | None = None
        try:
            for request in batch:
                if fatal is not None:
                    results.append(DeliveryResult(request.delivery_id, error=fatal))
                    continue
                try:
                    results.append(self._deliver_one(request))
                except _SessionGone as gone:
                    fatal = gone.error
                    results.append(DeliveryResult(request.delivery_id, error=fatal))
        finally:
            self._quit()
        return results

    def _deliver_one(self, request: DeliveryRequest) -> DeliveryResult:
        try:
            message, recipients = build_message(
                request.payload,
                idempotency_key=request.idempotency_key,
                from_address=self.from_address,
                from_name=self.from_name,
                message_id_domain=self.domain,
            )
        except Rejected as exc:
            return DeliveryResult(request.delivery_id, error=exc)
        message_id = str(message["Message-ID"])
        self.runtime.pacer.wait()
        smtp = self._session()
        try:
            refused = smtp.send_message(message, self.from_address, recipients)
        except smtplib.SMTPServerDisconnected as exc:
            # maybe after DATA: never resent at once (the retry carries the same Message-ID)
            self._drop()
            return self._failed(request, TransientError(
                f"SMTP {self.host}:{self.port} closed the connection: {exc}"))
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset(smtp)
            return self._failed(request, _refused(exc.recipients, delivered_to=[]))
        except smtplib.SMTPSenderRefused as exc:
            self._reset(smtp)
            return self._failed(request, _by_code(exc.smtp_code, (
                f"SMTP server refused the sender {self.from_address}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}")))
        except smtplib.SMTPDataError as exc:
            self._reset(smtp)
            return self._failed(request, _by_code(exc.smtp_code, (
                f"SMTP server refused the message: {exc.smtp_code} {_text(exc.smtp_error)}")))
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # the server is closing the session
                self._drop()
            else:
                self._reset(smtp)
            return self._failed(request, _by_code(exc.smtp_code, (
                f"SMTP server answered {exc.smtp_code} {_text(exc.smtp_error)}")))
        except OSError as exc:  # timeouts included
            self._drop()
            return self._failed(request, TransientError(
                f"SMTP {self.host}:{self.port} failed during the transaction "
                f"({type(exc).__name__}: {exc})"))
        except smtplib.SMTPException as exc:  # e.g. SMTPUTF8 needed but not offered
            self._reset(smtp)
            return self._failed(request, Rejected(f"SMTP: {exc}"))
        if refused:
            accepted = [r for r in recipients if r not in refused]
            return self._failed(request, _refused(refused, delivered_to=accepted))
        return DeliveryResult(request.delivery_id, external_id=message_id)

    def _failed(self, request: DeliveryRequest, error: DeliveryError) -> DeliveryResult:
        log.info("email delivery %s not sent: %s", request.delivery_id, error.kind)
        return DeliveryResult(request.delivery_id, error=error)

    # -------------------------------------------------------------- session
    def _tls_context(self) -> ssl.SSLContext:
        if self.ca_file:
            return ssl.create_default_context(cafile=self.ca_file)
        return shared_ssl_context()

    def _session(self) -> smtplib.SMTP:
        """The batch's session; a reused one is checked with NOOP (servers drop idle ones)."""
        if self._smtp is not None:
            try:
                code, _ = self._smtp.noop()
            except (smtplib.SMTPException, OSError):
                code = 0
            if code == 250:
                return self._smtp
            self._drop()
        where = f"SMTP {self.host}:{self.port}"
        try:
            if self.security == "tls":
                self._smtp = smtplib.SMTP_SSL(
                    self.host, self.port, local_hostname=self.local_hostname,
                    timeout=self.timeout, context=self._tls_context())
            else:
                self._smtp = smtplib.SMTP(self.host, self.port,
                                          local_hostname=self.local_hostname,
                                          timeout=self.timeout)
            smtp = self._smtp
            self.sessions += 1
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise _SessionGone(Rejected(
                        f"{where} does not offer STARTTLS: set security to 'tls' or fix the port"))
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if self.username:
                if self.security == "none":
                    raise _SessionGone(Rejected(
                        "refusing to send the SMTP password over a connection without TLS: "
                        "set security to 'starttls' or 'tls'"))
                smtp.login(self.username, self.password)
        except _SessionGone:
            self._drop()
            raise
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise _SessionGone(self._session_error(exc, where)) from None
        return smtp

    def _session_error(self, exc: Exception, where: str) -> DeliveryError:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return _auth_error(exc.smtp_code, exc.smtp_error, self.username or "")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return Rejected(f"{where}: {exc} (check security and port)")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return Rejected(f"{where}: TLS certificate verification failed "
                            f"({exc.verify_message}); check the host name or set ca_file")
        if isinstance(exc, smtplib.SMTPResponseException):
            return _by_code(exc.smtp_code,
                            f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientError(f"{where} closed the connection: {exc}")
        if isinstance(exc, TimeoutError):
            return TransientError(f"{where} timed out ({exc})")
        # refused, unreachable, TLS handshake errors, other SMTP oddities
        return TransientError(f"{where} unreachable ({type(exc).__name__}: {exc})")

    def _reset(self, smtp: smtplib.SMTP) -> None:
        """RSET after a refused transaction; a dead session is dropped."""
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            except OSError:
                pass
        self._smtp = None

    def _quit(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        self._drop()

    def close(self) -> None:
        self._quit()


def _auth_error(code: int, text: bytes | str, username: str) -> DeliveryError:
    detail = f"{code} {_text(text)}"
    if 400 <= code < 500:  # e.g. 454 4.7.0: the server's auth backend is down
        return TransientError(f"SMTP authentication temporarily failed: {detail}")
    return Rejected(
        f"SMTP authentication failed: fix the password (or user name {username!r}) "
        f"of this email connection; the server said {detail}")


def _refused(recipients: dict[str, tuple[int, bytes]], delivered_to: list[str]) -> DeliveryError:
    parts = [f"{addr} ({code} {_text(text)})" for addr, (code, text) in recipients.items()]
    permanent = any(code >= 500 for code, _ in recipients.values())
    reason = "SMTP server refused recipient(s): " + "; ".join(parts)
    if delivered_to:
        reason += f"; delivered to the others ({', '.join(delivered_to)})"
    return Rejected(reason) if permanent else TransientError(reason)
