"""Settings from the environment (prefix ``RELAIS_``), with embedded defaults.

The defaults run the whole hub on a laptop: a SQLite file and a filesystem
broker under ``RELAIS_HOME``. Production sets the URLs to PostgreSQL and
Redis or RabbitMQ; nothing else changes.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from cryptography.fernet import Fernet
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELAIS_", extra="ignore")

    home: Path = Field(default=Path("./var"), description="Data folder of the embedded default.")
    database_url: str | None = None
    broker_url: str | None = None
    # Comma-separated Fernet keys, newest first: MultiFernet decrypts with any and
    # encrypts with the first, so a key can rotate without re-encrypting at once.
    secret_keys: str | None = None
    # Base URL of the web console, used in signed links sent to people.
    public_url: str = "http://127.0.0.1:8000"

    # Signed links sent to people (sensitive notices, escalation acknowledgements).
    link_ttl_seconds: float = 7 * 24 * 3600.0
    # Links in the notices of sensitive tenants and call types (content withheld).
    sensitive_link_ttl_seconds: float = 24 * 3600.0

    # Relais's own email sender (rules without a tenant email connection).
    email_host: str | None = None
    email_port: int | None = None
    email_security: str = "starttls"  # starttls | tls | none
    email_username: str | None = None
    email_password: str | None = None
    email_from_address: str | None = None
    email_from_name: str | None = None
    email_ca_file: str | None = None
    # Relais's own SMS sender (Sinch XMS; see docs/SMS_PROVIDER.md).
    sms_base_url: str | None = None  # unset: https://eu.sms.api.sinch.com
    sms_service_plan_id: str | None = None
    sms_api_token: str | None = None
    sms_from: str | None = None
    sms_webhook_secret: str | None = None  # verifies POST /v1/webhooks/sms
    sms_ca_file: str | None = None

    # Let tenant configuration name loopback/private addresses (see sync.netguard).
    allow_private_urls: bool = False

    # The console (relais/console): its session cookie is `Secure` unless this is set,
    # for plain-http local development only (a browser then sends it over http).
    console_insecure_cookies: bool = False
    console_session_hours: float = 12.0
    # Failed console sign-ins per client address (kept in the database, so every
    # API process counts the same) before that address is refused for the window.
    console_sign_in_limit: int = 20
    console_sign_in_window_seconds: float = 600.0

    max_message_bytes: int = 64 * 1024
    # How long a request waits out an unreachable database (a restart) before a 503.
    db_outage_seconds: float = 20.0
    delivery_max_attempts: int = 8
    delivery_backoff_base: float = 2.0
    delivery_backoff_max: float = 600.0
    # An in-flight delivery whose worker vanished is taken back after this lease.
    delivery_lease_seconds: float = 120.0
    # Pending deliveries older than this without a live broker message are re-enqueued.
    delivery_stale_seconds: float = 30.0
    sweep_interval_seconds: float = 15.0
    # How often the beat looks for scheduled reports due (sync.reports.schedule).
    reports_beat_seconds: float = 300.0
    broker_polling_interval: float = 0.1
    # Celery queue; separate deployments (or test runs) on one broker use distinct names.
    queue: str = "relais"

    def missing_sender_settings(self) -> dict[str, list[str]]:
        """Per channel of Relais's own senders, the unset settings it needs (empty: ready)."""
        return {
            "email": [n for n, v in (("RELAIS_EMAIL_HOST", self.email_host),
                                     ("RELAIS_EMAIL_FROM_ADDRESS", self.email_from_address))
                      if not v],
            "sms": [n for n, v in (("RELAIS_SMS_SERVICE_PLAN_ID", self.sms_service_plan_id),
                                   ("RELAIS_SMS_API_TOKEN", self.sms_api_token)) if not v],
        }

    @property
    def resolved_home(self) -> Path:
        home = self.home.expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        return home

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_home / 'relais.db'}"

    @property
    def resolved_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        return "filesystem://"

    @property
    def broker_folder(self) -> Path:
        folder = self.resolved_home / "broker"
        for sub in ("in", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return folder

    def fernet_keys(self) -> list[bytes]:
        if self.secret_keys:
            return [k.strip().encode() for k in self.secret_keys.split(",") if k.strip()]
        key_file = self.resolved_home / "secret.key"
        if not key_file.exists():
            log.warning(
                "RELAIS_SECRET_KEYS is not set: generated %s. Production must set "
                "RELAIS_SECRET_KEYS so credentials stay readable across machines.",
                key_file,
            )
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
        return [key_file.read_bytes().strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests and the demo change the environment)."""
    get_settings.cache_clear()
