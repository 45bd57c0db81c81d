"""Per-tenant configuration: call types, staff, connections, transmission rules.

Pure (no database, no network): :func:`load_tenant_config` turns a tenant's
YAML text into a validated :class:`TenantConfig` or raises :class:`ConfigError`
with file:line:column issues; :func:`plan_deliveries` says where a message goes.
"""

from mappings.config import check_references, load_tenant_config, load_tenant_file
from mappings.errors import ConfigError, ConfigIssue
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
    DefaultRule,
    IntakeField,
    ProviderConnection,
    Rule,
    RuleSet,
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
    "DefaultRule",
    "DeliveryPlan",
    "IntakeField",
    "MatchContext",
    "PlanError",
    "PlannedDelivery",
    "ProviderConnection",
    "Rule",
    "RuleSet",
    "RuleTrace",
    "StaffCalendar",
    "StaffMember",
    "TenantConfig",
    "TimeRange",
    "WebhookConnection",
    "When",
    "check_references",
    "load_tenant_config",
    "load_tenant_file",
    "normalize_phone",
    "plan_deliveries",
    "public_environment",
]
