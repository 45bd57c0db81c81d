"""Per-tenant configuration: call types, staff, connections, transmission rules, CRM mappings.

Pure (no database, no network): :func:`load_tenant_config` turns a tenant's
YAML text into a validated :class:`TenantConfig` or raises :class:`ConfigError`
with file:line:column issues; :func:`plan_deliveries` says where a message goes;
:func:`effective_mapping` (or ``connection.resolved_mapping()``) says which CRM
field gets what, and ``section.render(RenderContext(...))`` builds the record.
"""

from mappings.config import check_references, load_tenant_config, load_tenant_file
from mappings.errors import ConfigError, ConfigIssue
from mappings.fieldmap import (
    Expression,
    FieldMapping,
    HubSpotMapping,
    MappingRenderError,
    RenderContext,
    ResolvedMapping,
    SalesforceMapping,
    Section,
    effective_mapping,
    tenant_info,
)
from mappings.plan import (
    DeliveryPlan,
    MatchContext,
    PlanError,
    PlannedDelivery,
    RuleTrace,
    plan_deliveries,
)
from mappings.schema import (
    URGENCY_LEVELS,
    Action,
    BusinessHours,
    CallType,
    CrmConnection,
    DefaultRule,
    HubSpotConnection,
    IntakeField,
    ProviderConnection,
    Rule,
    RuleSet,
    SalesforceConnection,
    StaffCalendar,
    StaffMember,
    TenantConfig,
    TimeRange,
    WebhookConnection,
    When,
    normalize_phone,
)
from mappings.yamlpos import ENV_PREFIXES, public_environment

__all__ = [
    "ENV_PREFIXES",
    "URGENCY_LEVELS",
    "Action",
    "BusinessHours",
    "CallType",
    "ConfigError",
    "ConfigIssue",
    "CrmConnection",
    "DefaultRule",
    "DeliveryPlan",
    "Expression",
    "FieldMapping",
    "HubSpotConnection",
    "HubSpotMapping",
    "IntakeField",
    "MappingRenderError",
    "MatchContext",
    "PlanError",
    "PlannedDelivery",
    "ProviderConnection",
    "RenderContext",
    "ResolvedMapping",
    "Rule",
    "RuleSet",
    "RuleTrace",
    "SalesforceConnection",
    "SalesforceMapping",
    "Section",
    "StaffCalendar",
    "StaffMember",
    "TenantConfig",
    "TimeRange",
    "WebhookConnection",
    "When",
    "check_references",
    "effective_mapping",
    "load_tenant_config",
    "load_tenant_file",
    "normalize_phone",
    "plan_deliveries",
    "public_environment",
    "tenant_info",
]
