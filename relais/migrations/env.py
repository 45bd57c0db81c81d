"""Alembic environment: run by ``relais db upgrade`` through relais.migrate."""

from __future__ import annotations

from alembic import context

import relais.console.client  # noqa: F401
import relais.console.users  # noqa: F401
import relais.replay  # noqa: F401
import sync.store.busy_models  # noqa: F401
import sync.store.calendar_sync_models  # noqa: F401
import sync.store.calls_models  # noqa: F401
import sync.store.config_versions  # noqa: F401
import sync.store.conflict_models  # noqa: F401
import sync.store.directory  # noqa: F401
import sync.store.privacy_models  # noqa: F401
import sync.store.provider_apps  # noqa: F401
from sync.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is None:
        from sync.store.db import get_engine

        with get_engine(config.get_main_option("sqlalchemy.url")).connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
