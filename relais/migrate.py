"""Apply Alembic migrations, once, even when several processes start together."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sync.settings import get_settings
from sync.store.db import get_engine, is_outage

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    if url.startswith("sqlite"):
        lock_path = get_settings().resolved_home / "migrate.lock"
        with open(lock_path, "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield
        return
    with get_engine(url).connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(727001)"))
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(727001)"))
            conn.commit()


def upgrade(url: str | None = None, *, wait_seconds: float = 0.0) -> None:
    """Bring the database to head. With ``wait_seconds`` (the long-running processes
    and ``relais db upgrade``), a start while the database restarts (connection
    refused or cut) waits for it instead of exiting: each migration is its own
    transaction, so a cut one is redone. Other commands fail at once."""
    url = url or get_settings().resolved_database_url
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            with _migration_lock(url):
                command.upgrade(alembic_config(url), "head")
            return
        except DBAPIError as exc:  # the API's own outage test: not a bad password
            if not is_outage(exc) or time.monotonic() >= deadline:
                raise
            # the type only: the message may quote SQL parameters
            log.warning("database unavailable while migrating (%s); retrying", type(exc).__name__)
            get_engine(url).dispose()
            time.sleep(1.0)
