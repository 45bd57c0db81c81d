"""Which connector class serves which provider name."""

from __future__ import annotations

from collections.abc import Callable

from connectors.base import ConnectionInfo, Connector, Runtime

ConnectorFactory = Callable[[ConnectionInfo, Runtime], Connector]

_FACTORIES: dict[str, ConnectorFactory] = {}


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


def _load_builtins() -> None:
    # Imported for the side effect of registering the built-in connectors.
    import connectors.hubspot  # noqa: F401
    import connectors.salesforce  # noqa: F401
    import connectors.webhook  # noqa: F401


def build_connector(info: ConnectionInfo, runtime: Runtime | None = None) -> Connector:
    return connector_class(info.provider)(info, runtime or Runtime())
