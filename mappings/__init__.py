"""Per-tenant configuration: call types, staff, connections, transmission rules, CRM mappings.

Pure (no database, no network): :func:`load_tenant_config` turns a tenant's
YAML text into a validated :class:`TenantConfig` or raises :class:`ConfigError`
with file:line:column issues; :func:`plan_deliveries` says where a message goes;
:func:`effective_mapping` (or ``connection.resolved_mapping()``) says which CRM
field gets what, and ``section.render(RenderContext(...))`` builds the record.

The rule language: :func:`plan_for` (a :class:`CallContext` with the instant of
the call) gives the deliveries with resolved recipients and the trace,
:func:`explain_text` shows it; :func:`who_is_on_call`, :func:`ladder` (escalation
ladders) and :func:`render_template` are what the engine runs them with.
"""

from mappings.config import check_references, load_tenant_config, load_tenant_file
from mappings.errors import ConfigError, ConfigIssue
from mappings.escalation import Ladder, LadderStep, ladder, ladders
from mappings.fieldmap import (
    URGENCY_LEVELS,
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
from mappings.oncall import (
    NoOnCallSchedule,
    OnCallShift,
    on_call_at,
    on_call_shifts,
    who_is_on_call,
)
from mappings.plan import (
    CallContext,
    ConditionTrace,
    DeliveryPlan,
    DigestSchedule,
    MatchContext,
    PlanError,
    PlannedDelivery,
    RuleTrace,
    explain_text,
    plan_deliveries,
    plan_for,
)
from mappings.recipients import RELAIS_SENDER, Recipient
from mappings.rules import TemplateRenderError, render_template
from mappings.schema import (
    Action,
    AppointmentTypeSpec,
    BusinessHours,
    CallType,
    ClockRange,
    CrmConnection,
    DefaultRule,
    EscalationLadder,
    Holidays,
    HubSpotConnection,
    IntakeField,
    MessageTemplate,
    OnCall,
    ProviderConnection,
    Rule,
    RuleSet,
    SalesforceConnection,
    StaffCalendarRef,
    StaffMember,
    TenantConfig,
    WebhookConnection,
    When,
    normalize_phone,
)
from mappings.yamlpos import ENV_PREFIXES, public_environment

__all__ = [
    "ENV_PREFIXES",
    "RELAIS_SENDER",
    "URGENCY_LEVELS",
    "Action",
    "AppointmentTypeSpec",
    "BusinessHours",
    "CallContext",
    "CallType",
    "ClockRange",
    "ConditionTrace",
    "ConfigError",
    "ConfigIssue",
    "CrmConnection",
    "DefaultRule",
    "DeliveryPlan",
    "DigestSchedule",
    "EscalationLadder",
    "Expression",
    "FieldMapping",
    "Holidays",
    "HubSpotConnection",
    "HubSpotMapping",
    "IntakeField",
    "Ladder",
    "LadderStep",
    "MappingRenderError",
    "MatchContext",
    "MessageTemplate",
    "NoOnCallSchedule",
    "OnCall",
    "OnCallShift",
    "PlanError",
    "PlannedDelivery",
    "ProviderConnection",
    "Recipient",
    "RenderContext",
    "ResolvedMapping",
    "Rule",
    "RuleSet",
    "RuleTrace",
    "SalesforceConnection",
    "SalesforceMapping",
    "Section",
    "StaffCalendarRef",
    "StaffMember",
    "TemplateRenderError",
    "TenantConfig",
    "WebhookConnection",
    "When",
    "check_references",
    "effective_mapping",
    "explain_text",
    "ladder",
    "ladders",
    "load_tenant_config",
    "load_tenant_file",
    "normalize_phone",
    "on_call_at",
    "on_call_shifts",
    "plan_deliveries",
    "plan_for",
    "public_environment",
    "render_template",
    "tenant_info",
    "who_is_on_call",
]
