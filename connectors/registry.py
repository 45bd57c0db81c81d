"""Which connector class serves which provider name.

Two separate tables: delivery connectors (``build_connector``: CRMs, webhooks)
and calendar connectors (``calendar_connector``: busy times and events, the
``connectors.calendar`` protocol). A provider may appear in both.
"""

from __future__ import annotations

from collections.abc import Callable

from connectors.base import ConnectionInfo, Connector, Runtime
from connectors.calendar import CalendarConnector

ConnectorFactory = Callable[[ConnectionInfo, Runtime], Connector]
CalendarFactory = Callable[[ConnectionInfo, Runtime], CalendarConnector]

_FACTORIES: dict[str, ConnectorFactory] = {}
_CALENDAR_FACTORIES: dict[str, CalendarFactory] = {}


def register(provider: str) -> Callable[[ConnectorFactory], ConnectorFactory]:
    def wrap(factory: ConnectorFactory) -> ConnectorFactory:
        _FACTORIES[provider] = factory
        return factory

    return wrap


def connector_class(provider: str) -> ConnectorFactory:
    _load_builtins()
    try:
        return _FACTORIES[provider]
    except KeyError:
        raise LookupError(f"no connector for provider {provider!r}") from None


def delivers(provider: str) -> bool:
    """Whether deliveries go through this provider (a calendar-only provider, such as
    ``google_calendar``, has no delivery connector: its events are written by booking)."""
    _load_builtins()
    return provider in _FACTORIES


def _load_builtins() -> None:
    # Imported for the side effect of registering the built-in connectors.
    import connectors.email  # noqa: F401
    import connectors.hubspot  # noqa: F401
    import connectors.salesforce  # noqa: F401
    import connectors.sms  # noqa: F401
    import connectors.webhook  # noqa: F401


def build_connector(info: ConnectionInfo, runtime: Runtime | None = None) -> Connector:
    return connector_class(info.provider)(info, runtime or Runtime())


# ------------------------------------------------------------------ calendars


def register_calendar(provider: str) -> Callable[[CalendarFactory], CalendarFactory]:
    def wrap(factory: CalendarFactory) -> CalendarFactory:
        _CALENDAR_FACTORIES[provider] = factory
        return factory

    return wrap


def calendar_connector_class(provider: str) -> CalendarFactory:
    """The calendar connector class (its ``rate_limit(info)`` sizes the shared limiter)."""
    _load_calendar_builtins()
    try:
        return _CALENDAR_FACTORIES[provider]
    except KeyError:
        raise LookupError(f"no calendar connector for provider {provider!r}") from None


def _load_calendar_builtins() -> None:
    # Imported on first use only: the Google and Microsoft SDKs are slow to import.
    import connectors.google_calendar  # noqa: F401
    import connectors.outlook  # noqa: F401


def calendar_connector(info: ConnectionInfo, runtime: Runtime | None = None) -> CalendarConnector:
    return calendar_connector_class(info.provider)(info, runtime or Runtime())
