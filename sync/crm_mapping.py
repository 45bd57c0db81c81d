"""The tenant's field mapping (``mappings.fieldmap``) lent to the CRM connectors as
``connectors.crm.CrmMapping``: the connectors render through it and know nothing
of the mapping language (``connectors`` imports no ``mappings``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.crm import MappingError
from mappings.fieldmap import (
    OBJECTS,
    MappingRenderError,
    RenderContext,
    ResolvedMapping,
    effective_mapping,
)


def render_context(payload: dict[str, Any]) -> RenderContext:
    """What a mapping reads, from a delivery payload (a message's or an appointment's)."""
    message = payload.get("message")
    return RenderContext(
        caller=(message or {}).get("caller") or payload.get("caller") or {},
        message=message,
        staff=(message or {}).get("staff") or payload.get("staff"),
        appointment=payload.get("appointment"),
        tenant=payload["tenant"],
    )


@dataclass(frozen=True)
class PayloadMapping:
    """A ``ResolvedMapping`` behind the ``CrmMapping`` protocol."""

    resolved: ResolvedMapping

    def object_of(self, section: str) -> str | None:
        part = self.resolved.section(section)
        return part.object if part is not None else None

    def render(self, section: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        part = self.resolved.section(section)
        if part is None:
            return None
        try:
            return part.render(render_context(payload))
        except MappingRenderError as exc:
            raise MappingError(exc.field, str(exc)) from None

    def reads(self, section: str, path: str) -> bool:
        part = self.resolved.section(section)
        return part is not None and any(
            ref.path == path
            for _, expression in part.fields
            for ref in expression.source_references()
        )

    def fields_by_object(self) -> dict[str, list[str]]:
        return self.resolved.fields_by_object()


def crm_mapping(provider: str, resolved: ResolvedMapping | None = None) -> PayloadMapping | None:
    """The connection's mapping: the tenant's (``resolved``), else the provider's
    defaults; None for a provider without field mappings."""
    if resolved is None:
        if provider not in OBJECTS:
            return None
        resolved = effective_mapping(provider, None)
    return PayloadMapping(resolved)
