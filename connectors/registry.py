"""Which connector class serves which provider name."""

from __future__ import annotations

from collections.abc import Callable

from connectors.base import ConnectionInfo, Connector

ConnectorFactory = Callable[[ConnectionInfo], Connector]

_FACTORIES: dict[str, ConnectorFactory] = {}


def register(provider: str) -> Callable[[ConnectorFactory], ConnectorFactory]:
    def wrap(factory: ConnectorFactory) -> ConnectorFactory:
        _FACTORIES[provider] = factory
        return factory

    return wrap


def build_connector(info: ConnectionInfo) -> Connector:
    # Import for the side effect of registering the built-in connectors.
    import connectors.webhook  # noqa: F401

    try:
        factory = _FACTORIES[info.provider]
    except KeyError:
        raise LookupError(f"no connector for provider {info.provider!r}") from None
    return factory(info)
