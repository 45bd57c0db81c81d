"""Database engine and sessions: the same code on SQLite and PostgreSQL.

SQLite runs every writing transaction as ``BEGIN IMMEDIATE``: with several
processes (API, workers, beat) a deferred transaction that reads then writes
fails with "database is locked" instead of waiting, so we take the write lock
up front and let ``busy_timeout`` queue writers. Read-only work goes through a
second engine with plain ``BEGIN``: under WAL it never waits for, nor blocks,
a writer (SQLite's busy handler sleeps in coarse steps, so every avoided wait
counts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from sync.settings import get_settings

_engines: dict[tuple[str, bool], Engine] = {}


def _sqlite_setup(engine: Engine, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def get_engine(url: str | None = None, *, readonly: bool = False) -> Engine:
    """The engine for ``url``; bound parameters (callers' names, phones, message
    text) never appear in its logs or exception messages (``hide_parameters``)."""
    url = url or get_settings().resolved_database_url
    sqlite = url.startswith("sqlite")
    key = (url, readonly and sqlite)  # PostgreSQL needs no separate reader
    engine = _engines.get(key)
    if engine is None:
        if sqlite:
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                   hide_parameters=True)
            _sqlite_setup(engine, readonly)
        else:
            # connect_timeout: an unreachable server fails fast enough to be retried.
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                   hide_parameters=True, connect_args={"connect_timeout": 5})
        _engines[key] = engine
    return engine


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


# Server going away: admin_shutdown, crash_shutdown, cannot_connect_now ("the
# database system is shutting down" / "is starting up"); class 08 is connection
# exceptions. https://www.postgresql.org/docs/current/errcodes-appendix.html
OUTAGE_STATES = frozenset({"57P01", "57P02", "57P03"})


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the PostgreSQL server is (for now) unreachable: the
    connection dropped or was refused, or the server is stopping or starting.
    Such a transaction did nothing that will last, except perhaps its COMMIT."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if not isinstance(orig, psycopg.OperationalError):
        return False  # SQLite's "database is locked" already waited busy_timeout
    state = orig.sqlstate
    return state is None or state.startswith("08") or state in OUTAGE_STATES


def dispose_engines() -> None:
    """Close pools (after fork, and between tests that switch databases)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def session_factory(url: str | None = None, *, readonly: bool = False) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url, readonly=readonly), expire_on_commit=False)


@contextlib.contextmanager
def session_scope(url: str | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error.

    ``readonly=True`` for work that only reads (it must not write: on SQLite a
    write there would fail with "database is locked" under contention).
    """
    session = session_factory(url, readonly=readonly)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
