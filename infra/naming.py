"""Azure resource names that obey each service's rules and include the stack, so stacks never collide.

Rules: "Naming rules and restrictions for Azure resources"
(learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules), e.g. storageAccounts "global,
3-24, Lowercase letters and numbers"; registries "global, 5-50, Alphanumerics"; batchAccounts "Region, 3-24,
Lowercase letters and numbers"; Event Hubs namespaces "global, 6-50, Alphanumerics and hyphens. Start with letter.
End with letter or number". ``tests/infra/test_names.py`` checks every name the program declares against them.

Names that are global DNS labels (storage, registry, Event Hubs namespace) or regional ones (Batch) end in a
suffix: 6 hex digits of a hash of the subscription, project, stack, name prefix, location and kind. Why these inputs:
- the subscription: two users deploying this project with the defaults (prefix ``bscore``, stack ``dev``) must not
  collide, and nothing else they give differs; it is stable for a stack (a stack lives in one subscription) and
  known both to the program (azure-native's client config) and to the preflight (``batchscoring-check``), so the
  preflight can check the very names ``pulumi up`` will create;
- project, stack and prefix: two stacks (or projects) in one subscription differ;
- location: a location change replaces these resources, and Pulumi creates the replacement before deleting the old
  one, which a global name still held by the old resource would refuse;
- not a random value (pulumi-random): it would be unknown before the first ``pulumi up``, so the preflight could not
  check its availability, and it is one more provider.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

SUFFIX_LENGTH = 6


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _dashed(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower()))


@dataclass(frozen=True)
class NameSeed:
    """What a stack's Azure names derive from."""

    subscription: str
    project: str
    stack: str
    prefix: str
    location: str

    def suffix(self, kind: str) -> str:
        text = f"{self.subscription.lower()}/{self.project}/{self.stack}/{self.prefix}/{self.location}/{kind}"
        return hashlib.sha256(text.encode()).hexdigest()[:SUFFIX_LENGTH]


def compact_name(prefix: str, stack: str, kind: str, max_length: int, suffix: str | None = None) -> str:
    """Lowercase letters and digits only (storage accounts: 3-24, Batch: 3-24, ACR: 5-50), ending in ``suffix``
    (by default a hash of prefix, stack and kind)."""
    tail = suffix if suffix is not None else hashlib.sha256(f"{prefix}/{stack}/{kind}".encode()).hexdigest()[:6]
    stem = _alnum(f"{prefix}{stack}{kind}")[: max_length - len(tail)]
    return f"{stem}{tail}"


def dashed_name(prefix: str, stack: str, kind: str, max_length: int = 63, suffix: str | None = None) -> str:
    """Letters, digits and single '-' (resource groups, Event Hubs, jobs, identities, container groups), never
    starting or ending with '-'; with ``suffix``, it ends ``-<suffix>`` whatever the truncation."""
    if suffix is None:
        return _dashed(f"{prefix}-{stack}-{kind}")[:max_length].strip("-")
    stem = _dashed(f"{prefix}-{stack}-{kind}")[: max_length - len(suffix) - 1].strip("-")
    return f"{stem}-{suffix}"


@dataclass(frozen=True)
class StackNames:
    """Every Azure name the program gives explicitly (others are azure-native auto-names or fixed child names)."""

    resource_group: str
    identities: dict[str, str]  # purpose -> user-assigned identity
    workspace: str
    vnet: str
    storage_account: str  # global
    event_hubs_namespace: str  # global
    registry: str  # global
    batch_account: str  # unique per region
    submitter_group: str
    action_group: str
    action_group_short: str


IDENTITY_PURPOSES = ("scorer", "submitter", "scheduler")


def stack_names(seed: NameSeed) -> StackNames:
    prefix, stack = seed.prefix, seed.stack
    return StackNames(
        resource_group=dashed_name(prefix, stack, "rg", 90),
        identities={p: dashed_name(prefix, stack, p, 128) for p in IDENTITY_PURPOSES},
        workspace=dashed_name(prefix, stack, "logs", 63),
        vnet=dashed_name(prefix, stack, "vnet", 64),
        storage_account=compact_name(prefix, stack, "data", 24, seed.suffix("data")),
        event_hubs_namespace=dashed_name(prefix, stack, "events", 50, seed.suffix("events")),
        registry=compact_name(prefix, stack, "acr", 50, seed.suffix("acr")),
        batch_account=compact_name(prefix, stack, "batch", 24, seed.suffix("batch")),
        submitter_group=dashed_name(prefix, stack, "submitter", 63),
        action_group=dashed_name(prefix, stack, "alerts", 260),
        # Action groups' groupShortName: at most 12 characters (infra/monitoring.py truncates it there too).
        action_group_short=_dashed(f"{stack}-alerts")[:12].strip("-"),
    )


# --- Azure's rules ("Naming rules and restrictions for Azure resources", see the module docstring) ---------------


@dataclass(frozen=True)
class NameRule:
    resource: str  # the ARM type, as the page lists it
    min_length: int
    max_length: int
    pattern: str  # a full match of the page's "valid characters" column
    scope: str  # where it must be unique: global, region, resource group, parent

    def errors(self, name: str) -> list[str]:
        problems = []
        if not self.min_length <= len(name) <= self.max_length:
            problems.append(f"{len(name)} characters, allowed {self.min_length}-{self.max_length}")
        if not re.fullmatch(self.pattern, name):
            problems.append(f"characters: must match {self.pattern}")
        return [f"{self.resource} name {name!r}: {p}" for p in problems]


ALNUM_DASH_US_DOT = r"[A-Za-z0-9][A-Za-z0-9_.-]*[A-Za-z0-9_]|[A-Za-z0-9]"  # Network: "Start with alphanumeric. End
# alphanumeric or underscore."
RULES: dict[str, NameRule] = {
    # azure-native type token -> the page's rule
    "azure-native:resources:ResourceGroup": NameRule(
        "Microsoft.Resources/resourcegroups", 1, 90, r"[-\w.()]*[-\w()]", "subscription"
    ),
    "azure-native:managedidentity:UserAssignedIdentity": NameRule(
        "Microsoft.ManagedIdentity/userAssignedIdentities", 3, 128, r"[A-Za-z0-9][A-Za-z0-9_-]*", "resource group"
    ),
    "azure-native:operationalinsights:Workspace": NameRule(
        "Microsoft.OperationalInsights/workspaces", 4, 63, r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]", "resource group"
    ),
    "azure-native:storage:StorageAccount": NameRule("Microsoft.Storage/storageAccounts", 3, 24, r"[a-z0-9]+", "global"),
    "azure-native:storage:BlobContainer": NameRule(
        "Microsoft.Storage/storageAccounts/blobServices/containers", 3, 63, r"[a-z0-9](?!.*--)[a-z0-9-]*", "account"
    ),
    "azure-native:eventhub:Namespace": NameRule(
        "Microsoft.EventHub/namespaces", 6, 50, r"[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]", "global"
    ),
    "azure-native:eventhub:EventHub": NameRule(
        "Microsoft.EventHub/namespaces/eventhubs", 1, 50, r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", "namespace"
    ),
    "azure-native:eventhub:ConsumerGroup": NameRule(
        "Microsoft.EventHub/namespaces/eventhubs/consumergroups",
        1,
        50,
        r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?",
        "event hub",
    ),
    "azure-native:streamanalytics:StreamingJob": NameRule(
        "Microsoft.StreamAnalytics/streamingjobs", 3, 63, r"[A-Za-z0-9_-]+", "resource group"
    ),
    "azure-native:containerregistry:Registry": NameRule(
        "Microsoft.ContainerRegistry/registries", 5, 50, r"[A-Za-z0-9]+", "global"
    ),
    "azure-native:batch:BatchAccount": NameRule("Microsoft.Batch/batchAccounts", 3, 24, r"[a-z0-9]+", "region"),
    "azure-native:batch:Pool": NameRule("Microsoft.Batch/batchAccounts/pools", 1, 64, r"[A-Za-z0-9_-]+", "account"),
    "azure-native:containerinstance:ContainerGroup": NameRule(
        "Microsoft.ContainerInstance/containerGroups", 1, 63, r"[a-z0-9]+(-[a-z0-9]+)*", "resource group"
    ),
    "azure-native:logic:Workflow": NameRule("Microsoft.Logic/workflows", 1, 80, r"[A-Za-z0-9_.()-]+", "resource group"),
    # Microsoft.Insights is on today's page (not in its 2020 revision): actionGroups, metricAlerts, activityLogAlerts,
    # scheduledQueryRules and diagnosticSettings 1-260, "Can't use" a few characters each.
    "azure-native:monitor:ActionGroup": NameRule(
        "Microsoft.Insights/actionGroups", 1, 260, r"[^:<>+/&%\\?|]+", "resource group"
    ),
    "azure-native:monitor:MetricAlert": NameRule(
        "Microsoft.Insights/metricAlerts", 1, 260, r"[^*#&+:<>?@%{}\\/]+", "resource group"
    ),
    "azure-native:monitor:ScheduledQueryRule": NameRule(
        "Microsoft.Insights/scheduledQueryRules", 1, 260, r"[^*<>%{}&:\\?/#|]+", "resource group"
    ),
    "azure-native:monitor:ActivityLogAlert": NameRule(
        "Microsoft.Insights/activityLogAlerts", 1, 260, r"[^<>*%{}&:\\?+/#]+", "resource group"
    ),
    "azure-native:monitor:DiagnosticSetting": NameRule(
        "Microsoft.Insights/diagnosticSettings", 1, 260, r"[^*<>%:&?+/\\]+", "resource"
    ),
    "azure-native:network:VirtualNetwork": NameRule(
        "Microsoft.Network/virtualNetworks", 2, 64, ALNUM_DASH_US_DOT, "resource group"
    ),
    **{
        f"azure-native:network:{kind}": NameRule(f"Microsoft.Network/{arm}", 1, 80, ALNUM_DASH_US_DOT, scope)
        for kind, arm, scope in (
            ("Subnet", "virtualnetworks/subnets", "virtual network"),
            ("NetworkSecurityGroup", "networkSecurityGroups", "resource group"),
            ("PublicIPAddress", "publicIPAddresses", "resource group"),
            ("NatGateway", "natGateways", "resource group"),
            ("PrivateEndpoint", "privateEndpoints", "resource group"),
            ("PrivateDnsZoneGroup", "privateEndpoints/privateDnsZoneGroups", "private endpoint"),
        )
    },
    "azure-native:privatedns:VirtualNetworkLink": NameRule(
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks", 1, 80, ALNUM_DASH_US_DOT, "private DNS zone"
    ),
    "azure-native:authorization:ManagementLockByScope": NameRule(
        "Microsoft.Authorization/locks", 1, 90, r"[A-Za-z0-9_.()-]*[A-Za-z0-9_()-]", "scope"
    ),
}
# Action groups' groupShortName: "The short name of the action group. This will be used in SMS messages." maxLength
# 12 (ActionGroup, Microsoft.Insights REST spec).
ACTION_GROUP_SHORT_NAME = NameRule("Microsoft.Insights/actionGroups groupShortName", 1, 12, r".+", "action group")

_FIELD_TYPES = {
    "resource_group": "azure-native:resources:ResourceGroup",
    "workspace": "azure-native:operationalinsights:Workspace",
    "vnet": "azure-native:network:VirtualNetwork",
    "storage_account": "azure-native:storage:StorageAccount",
    "event_hubs_namespace": "azure-native:eventhub:Namespace",
    "registry": "azure-native:containerregistry:Registry",
    "batch_account": "azure-native:batch:BatchAccount",
    "submitter_group": "azure-native:containerinstance:ContainerGroup",
    "action_group": "azure-native:monitor:ActionGroup",
}


def name_errors(names: StackNames) -> list[str]:
    """Every rule a stack's names break (none for a prefix the config accepts and any Pulumi stack name; a test
    checks that, and the preflight reports them offline)."""
    errors = [e for attr, typ in _FIELD_TYPES.items() for e in RULES[typ].errors(getattr(names, attr))]
    rule = RULES["azure-native:managedidentity:UserAssignedIdentity"]
    errors += [e for name in names.identities.values() for e in rule.errors(name)]
    return errors + ACTION_GROUP_SHORT_NAME.errors(names.action_group_short)
