"""Which connector class serves which provider name: read from the catalogue.

Each provider's ``connector`` (deliveries: CRMs, webhooks), ``calendar`` (busy
times and events, the ``connectors.calendar`` protocol) and ``contacts``
(incremental contact reader) are ``module:Class`` paths in ``providers.yaml``,
imported on first use: the connectors do not import this module, and the
Google and Microsoft SDKs (slow to import) load only when a calendar is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

from connectors.base import ConnectionInfo, Connector, Runtime
from connectors.calendar import CalendarConnector
from connectors.catalog import provider as spec_of
from connectors.catalog import providers

ConnectorFactory = Callable[[ConnectionInfo, Runtime], Connector]
CalendarFactory = Callable[[ConnectionInfo, Runtime], CalendarConnector]

DEFAULT_BATCH = 50


@cache
def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _class(provider: str, part: str) -> Any | None:
    try:
        path = getattr(spec_of(provider), part)
    except LookupError:
        return None
    return _load(path) if path else None


def connector_class(provider: str) -> ConnectorFactory:
    found = _class(provider, "connector")
    if found is None:
        raise LookupError(f"no connector for provider {provider!r}")
    return found  # type: ignore[no-any-return]


def delivers(provider: str) -> bool:
    """Whether deliveries go through this provider (a calendar-only provider, such as
    Google Calendar, has no delivery connector: its events are written by booking)."""
    try:
        return bool(spec_of(provider).connector)
    except LookupError:
        return False


def max_batch(provider: str) -> int:
    """Deliveries claimed at once for this provider (the catalogue's ``batch.claim``)."""
    return spec_of(provider).batch_size("claim", DEFAULT_BATCH)


def load_delivery_connectors() -> None:
    """Import every delivery connector now (a worker does it before forking)."""
    for spec in providers():
        if spec.connector:
            _load(spec.connector)


def build_connector(info: ConnectionInfo, runtime: Runtime | None = None) -> Connector:
    return connector_class(info.provider)(info, runtime or Runtime())


# ------------------------------------------------------------------ calendars


def calendar_connector_class(provider: str) -> CalendarFactory:
    """The calendar connector class (its ``rate_limit(info)`` sizes the shared limiter)."""
    found = _class(provider, "calendar")
    if found is None:
        raise LookupError(f"no calendar connector for provider {provider!r}")
    return found  # type: ignore[no-any-return]


def calendar_connector(info: ConnectionInfo, runtime: Runtime | None = None) -> CalendarConnector:
    return calendar_connector_class(info.provider)(info, runtime or Runtime())


# ------------------------------------------------------------------ contacts


def contact_reader_class(provider: str) -> Any:
    """The provider's incremental contact reader class (``connectors.crm`` protocol)."""
    found = _class(provider, "contacts")
    if found is None:
        raise LookupError(f"no contact reader for provider {provider!r}")
    return found
