"""An ARM deployment template of the resources a Pulumi program declares, for ARM-aware scanners (checkov).

Why: checkov has no Pulumi framework, but it does read ARM templates, and an azure-native resource is an ARM
resource whose request body Pulumi builds from the resource's inputs. Turning the inputs that the mocked
program records (``tests/infra/conftest.py``) back into that request shape lets checkov judge the settings
the program really passes, in every stack, without an Azure login.

The shape differences azure-native hides, and how each is undone (checked against the ARM schemas of the API
version azure-native uses for each resource: Azure/bicep-types-az ``generated/<rp>/<api-version>/types.md``):

- naming and parent inputs (``accountName``, ``resourceGroupName``, ...) are not properties: they make the ARM
  ``name`` (``acct/default/models`` for a container) or an extension resource's ``scope``, and are dropped;
- a few inputs are renamed (``enableHttpsTrafficOnly`` is ARM's ``supportsHttpsTrafficOnly``);
- azure-native flattens every nested ``properties`` object (``x-ms-client-flatten``): a container group's
  ``containers[].image`` is ARM's ``containers[].properties.image``; those are nested back;
- user-assigned identities are a list of ids in azure-native and a map ``{id: {}}`` in ARM.

Every type the program may create must be in ``ARM_TYPES`` or ``SKIPPED``: any other type raises
``UnmappedResourceTypeError``, so a newly added resource cannot silently escape the scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from string import Formatter
from typing import Any, Protocol

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
CONTENT_VERSION = "1.0.0.0"
# Pulumi's wire envelope of a secret value ({sig: SECRET_SIG, "value": ...}), as the mocks record it.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
REDACTED = "[secret]"  # a template on disk or in CI artifacts never holds a secret; checkov judges settings
# The order of an exported resource's keys (an ARM resource's top-level keys; the rest are properties).
TOP_LEVEL_ORDER = (
    "type",
    "apiVersion",
    "name",
    "scope",
    "location",
    "extendedLocation",
    "zones",
    "sku",
    "kind",
    "identity",
    "etag",
    "managedBy",
    "tags",
    "properties",
)
NETWORK_KEEP = ("id", "name", "type", "etag")  # what stays beside `properties` in a nested network object

# Not Azure resources, so nothing for an ARM scan to judge; anything else unmapped is an error.
SKIPPED: dict[str, str] = {
    "docker:": "container images built and pushed by Pulumi: registry settings are scanned on the registry",
    "batchscoring:": "component resources: groupings with no Azure counterpart; their children are exported",
    "pulumi-python:dynamic": "dynamic-provider resources run Python in the deployment; ARM never sees them",
    "pulumi:providers:": "provider configuration of the Pulumi engine, not a resource in Azure",
}


class RecordedResource(Protocol):
    """What the mocks record of one resource (``tests.infra.conftest.Recorded``)."""

    typ: str
    name: str
    inputs: dict[str, Any]


class UnmappedResourceTypeError(ValueError):
    """A resource type with no ARM mapping: map it in ``ARM_TYPES`` (or skip it in ``SKIPPED``, with the reason)."""


@dataclass(frozen=True)
class Nest:
    """Move the fields of the object(s) at ``path`` (input coordinates, ``[]`` = each list item) under
    ``properties``, except ``keep`` (ARM's envelope fields such as ``name`` or a union's ``type``)."""

    path: str
    keep: tuple[str, ...] = ("name",)


@dataclass(frozen=True)
class ArmType:
    """How one azure-native resource type maps to ARM.

    ``name`` is a format string over inputs; its last field falls back to the Pulumi logical name (auto-named
    resources). ``scope`` names the inputs whose values, joined by "/" (absent ones left out), are the scope of
    an extension resource. ``renames`` maps an input path (dotted, ``[]`` = each list item) to ARM's key;
    ``nests`` are applied after the renames, so their paths use ARM's keys.
    """

    type: str
    api_version: str
    name: str
    top_level: frozenset[str] = frozenset({"location", "tags"})
    renames: Mapping[str, str] = field(default_factory=dict)
    nests: tuple[Nest, ...] = ()
    scope: tuple[str, ...] = ()
    addressing: frozenset[str] = frozenset()  # inputs that locate the resource or echo read-only fields


TRACKED = frozenset({"location", "tags"})
_REGIONAL = TRACKED | {"identity"}


def _storage(kind: str, name: str, **extra: Any) -> ArmType:
    return ArmType(f"Microsoft.Storage/{kind}", "2024-01-01", name, **extra)


def _network(kind: str, name: str, nests: tuple[Nest, ...] = (), top: frozenset[str] = TRACKED) -> ArmType:
    return ArmType(
        f"Microsoft.Network/{kind}",
        "2024-05-01",
        name,
        top_level=top,
        nests=nests,
        addressing=frozenset({"id", "name", "type", "etag"}),
    )


def _network_nests(*paths: str) -> tuple[Nest, ...]:
    return tuple(Nest(path, NETWORK_KEEP) for path in paths)


_SUBNET_NESTS = ("delegations[]", "networkSecurityGroup", "routeTable", "natGateway", "serviceEndpointPolicies[]")
_BATCH_REGISTRY = "deploymentConfiguration.virtualMachineConfiguration.containerConfiguration.containerRegistries[]"

# azure-native type token -> ARM mapping; api versions are those azure-native 3.29 uses ("Uses Azure REST API
# version ..." in each resource's docstring; a test keeps them in step with the installed SDK).
ARM_TYPES: dict[str, ArmType] = {
    "azure-native:resources:ResourceGroup": ArmType(
        "Microsoft.Resources/resourceGroups", "2024-03-01", "{resourceGroupName}", top_level=TRACKED | {"managedBy"}
    ),
    "azure-native:managedidentity:UserAssignedIdentity": ArmType(
        "Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31", "{resourceName}"
    ),
    "azure-native:storage:StorageAccount": _storage(
        "storageAccounts",
        "{accountName}",
        top_level=_REGIONAL | {"sku", "kind", "extendedLocation"},
        renames={
            "enableHttpsTrafficOnly": "supportsHttpsTrafficOnly",
            "networkRuleSet": "networkAcls",
            "enableNfsV3": "isNfsV3Enabled",
            "networkRuleSet.ipRules[].iPAddressOrRange": "value",
            "networkRuleSet.virtualNetworkRules[].virtualNetworkResourceId": "id",
            "encryption.encryptionIdentity": "identity",
            "encryption.encryptionIdentity.encryptionFederatedIdentityClientId": "federatedIdentityClientId",
            "encryption.encryptionIdentity.encryptionUserAssignedIdentity": "userAssignedIdentity",
            "encryption.keyVaultProperties": "keyvaultproperties",
            "encryption.keyVaultProperties.keyName": "keyname",
            "encryption.keyVaultProperties.keyVaultUri": "keyvaulturi",
            "encryption.keyVaultProperties.keyVersion": "keyversion",
        },
    ),
    "azure-native:storage:BlobServiceProperties": _storage(
        "storageAccounts/blobServices",
        "{accountName}/default",  # the only name Azure accepts
        top_level=frozenset(),
        addressing=frozenset({"blobServicesName"}),
    ),
    "azure-native:storage:BlobContainer": _storage(
        "storageAccounts/blobServices/containers", "{accountName}/default/{containerName}", top_level=frozenset()
    ),
    "azure-native:storage:ManagementPolicy": _storage(
        "storageAccounts/managementPolicies",
        "{accountName}/default",  # the only name Azure accepts
        top_level=frozenset(),
        addressing=frozenset({"managementPolicyName"}),
    ),
    "azure-native:eventhub:Namespace": ArmType(
        "Microsoft.EventHub/namespaces", "2024-01-01", "{namespaceName}", top_level=_REGIONAL | {"sku"}
    ),
    "azure-native:eventhub:EventHub": ArmType(
        "Microsoft.EventHub/namespaces/eventhubs",
        "2024-01-01",
        "{namespaceName}/{eventHubName}",
        top_level=frozenset(),
        nests=(Nest("captureDescription.destination", ("name", "identity")),),
    ),
    "azure-native:eventhub:ConsumerGroup": ArmType(
        "Microsoft.EventHub/namespaces/eventhubs/consumergroups",
        "2024-01-01",
        "{namespaceName}/{eventHubName}/{consumerGroupName}",
        top_level=frozenset(),
    ),
    "azure-native:eventhub:NamespaceNetworkRuleSet": ArmType(
        "Microsoft.EventHub/namespaces/networkRuleSets", "2024-01-01", "{namespaceName}/default", top_level=frozenset()
    ),
    "azure-native:streamanalytics:StreamingJob": ArmType(
        "Microsoft.StreamAnalytics/streamingjobs",
        "2020-03-01",  # `sku` is a property in this version, not a top-level field
        "{jobName}",
        top_level=_REGIONAL,
        nests=(
            Nest("inputs[].properties.datasource", ("type",)),
            Nest("inputs[].properties.serialization", ("type",)),
            Nest("outputs[].datasource", ("type",)),
            Nest("outputs[].serialization", ("type",)),
            Nest("outputs[]"),
            Nest("transformation"),
            Nest("functions[].properties.binding", ("type",)),
            Nest("functions[].properties", ("type",)),
        ),
    ),
    "azure-native:containerregistry:Registry": ArmType(
        "Microsoft.ContainerRegistry/registries",
        "2023-01-01-preview",
        "{registryName}",
        top_level=_REGIONAL | {"sku"},
        renames={"networkRuleSet.ipRules[].iPAddressOrRange": "value"},
    ),
    "azure-native:batch:BatchAccount": ArmType(
        "Microsoft.Batch/batchAccounts", "2024-07-01", "{accountName}", top_level=_REGIONAL
    ),
    "azure-native:batch:Pool": ArmType(
        "Microsoft.Batch/batchAccounts/pools",
        "2024-07-01",
        "{accountName}/{poolName}",
        top_level=frozenset({"identity", "tags"}),
        renames={
            f"{_BATCH_REGISTRY}.userName": "username",
            "startTask.containerSettings.registry.userName": "username",
        },
    ),
    "azure-native:containerinstance:ContainerGroup": ArmType(
        "Microsoft.ContainerInstance/containerGroups",
        "2024-05-01-preview",
        "{containerGroupName}",
        top_level=_REGIONAL | {"zones"},
        nests=(Nest("containers[]"), Nest("initContainers[]"), Nest("extensions[]")),
    ),
    "azure-native:logic:Workflow": ArmType("Microsoft.Logic/workflows", "2019-05-01", "{workflowName}", _REGIONAL),
    "azure-native:applicationinsights:Component": ArmType(
        "Microsoft.Insights/components", "2020-02-02", "{resourceName}", TRACKED | {"kind"}
    ),
    "azure-native:operationalinsights:Workspace": ArmType(
        "Microsoft.OperationalInsights/workspaces", "2023-09-01", "{workspaceName}", _REGIONAL
    ),
    "azure-native:monitor:DiagnosticSetting": ArmType(
        "Microsoft.Insights/diagnosticSettings",
        "2021-05-01-preview",
        "{name}",
        top_level=frozenset(),
        scope=("resourceUri",),
    ),
    "azure-native:monitor:ActionGroup": ArmType(
        "Microsoft.Insights/actionGroups", "2024-10-01-preview", "{actionGroupName}"
    ),
    "azure-native:monitor:MetricAlert": ArmType(
        "Microsoft.Insights/metricAlerts",
        "2018-03-01",
        "{ruleName}",
        renames={"criteria.odataType": "odata.type"},
    ),
    "azure-native:monitor:ScheduledQueryRule": ArmType(
        "Microsoft.Insights/scheduledQueryRules", "2025-01-01-preview", "{ruleName}", TRACKED | {"kind", "identity"}
    ),
    # azure-native's monitor.ActivityLogAlert uses api 2020-10-01 (its generated module says so).
    "azure-native:monitor:ActivityLogAlert": ArmType(
        "Microsoft.Insights/activityLogAlerts", "2020-10-01", "{activityLogAlertName}"
    ),
    "azure-native:authorization:RoleDefinition": ArmType(
        "Microsoft.Authorization/roleDefinitions",
        "2022-05-01-preview",
        "{roleDefinitionId}",
        top_level=frozenset(),
        renames={"roleType": "type"},
        scope=("scope",),
    ),
    "azure-native:authorization:RoleAssignment": ArmType(
        "Microsoft.Authorization/roleAssignments",
        "2022-04-01",
        "{roleAssignmentName}",
        top_level=frozenset(),
        scope=("scope",),
    ),
    "azure-native:authorization:ManagementLockAtResourceLevel": ArmType(
        "Microsoft.Authorization/locks",
        "2020-05-01",
        "{lockName}",
        top_level=frozenset(),
        # ARM's scope of an extension resource in the same resource group: provider/parents/type/name.
        scope=("resourceProviderNamespace", "parentResourcePath", "resourceType", "resourceName"),
    ),
    "azure-native:authorization:ManagementLockAtResourceGroupLevel": ArmType(
        "Microsoft.Authorization/locks", "2020-05-01", "{lockName}", top_level=frozenset()
    ),
    "azure-native:authorization:ManagementLockByScope": ArmType(
        "Microsoft.Authorization/locks", "2020-05-01", "{lockName}", top_level=frozenset(), scope=("scope",)
    ),
    "azure-native:network:VirtualNetwork": _network(
        "virtualNetworks",
        "{virtualNetworkName}",
        _network_nests(*(f"subnets[].{p}" for p in _SUBNET_NESTS), "subnets[]", "virtualNetworkPeerings[]"),
        top=TRACKED | {"extendedLocation"},
    ),
    "azure-native:network:Subnet": _network(
        "virtualNetworks/subnets", "{virtualNetworkName}/{subnetName}", _network_nests(*_SUBNET_NESTS), frozenset()
    ),
    "azure-native:network:NetworkSecurityGroup": _network(
        "networkSecurityGroups", "{networkSecurityGroupName}", _network_nests("securityRules[]")
    ),
    "azure-native:network:SecurityRule": _network(
        "networkSecurityGroups/securityRules", "{networkSecurityGroupName}/{securityRuleName}", top=frozenset()
    ),
    "azure-native:network:NatGateway": _network("natGateways", "{natGatewayName}", top=TRACKED | {"sku", "zones"}),
    "azure-native:network:PublicIPAddress": _network(
        "publicIPAddresses",
        "{publicIpAddressName}",
        _network_nests("natGateway", "publicIPPrefix"),
        top=TRACKED | {"sku", "zones", "extendedLocation"},
    ),
    "azure-native:network:PrivateEndpoint": _network(
        "privateEndpoints",
        "{privateEndpointName}",
        _network_nests(
            "privateLinkServiceConnections[]", "manualPrivateLinkServiceConnections[]", "ipConfigurations[]", "subnet"
        ),
        top=TRACKED | {"extendedLocation"},
    ),
    "azure-native:network:PrivateDnsZoneGroup": _network(
        "privateEndpoints/privateDnsZoneGroups",
        "{privateEndpointName}/{privateDnsZoneGroupName}",
        _network_nests("privateDnsZoneConfigs[]"),
        top=frozenset(),
    ),
    "azure-native:privatedns:PrivateZone": ArmType(
        "Microsoft.Network/privateDnsZones", "2024-06-01", "{privateZoneName}", top_level=TRACKED | {"etag"}
    ),
    "azure-native:privatedns:VirtualNetworkLink": ArmType(
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
        "2024-06-01",
        "{privateZoneName}/{virtualNetworkLinkName}",
        top_level=TRACKED | {"etag"},
    ),
}


def skip_reason(typ: str) -> str | None:
    """Why a resource type is left out of the template, or None when it must be exported."""
    return next((reason for prefix, reason in SKIPPED.items() if typ.startswith(prefix)), None)


def to_arm_template(resources: Iterable[RecordedResource]) -> dict[str, Any]:
    """The ARM template of every exportable resource, sorted by type and name so that diffs stay readable.

    Raises UnmappedResourceTypeError naming every type that is neither mapped nor skipped.
    """
    resources = list(resources)
    unmapped = sorted({r.typ for r in resources if r.typ not in ARM_TYPES and skip_reason(r.typ) is None})
    if unmapped:
        raise UnmappedResourceTypeError(
            f"no ARM mapping for {', '.join(unmapped)}: add it to infra/arm_export.py ARM_TYPES "
            "(or to SKIPPED with the reason it is not an Azure resource), so the security scan sees it"
        )
    exported = [to_arm_resource(r) for r in resources if skip_reason(r.typ) is None]
    exported.sort(key=lambda r: (str(r["type"]), str(r["name"])))
    return {"$schema": SCHEMA, "contentVersion": CONTENT_VERSION, "resources": exported}


def to_arm_resource(resource: RecordedResource) -> dict[str, Any]:
    """One resource as ARM declares it: envelope fields at the top, everything else under ``properties``."""
    arm = ARM_TYPES.get(resource.typ)
    if arm is None:
        raise UnmappedResourceTypeError(f"no ARM mapping for {resource.typ} ({resource.name})")
    consumed = {"resourceGroupName", *_fields(arm.name), *arm.scope, *arm.addressing}
    body: dict[str, Any] = _plain({k: v for k, v in resource.inputs.items() if k not in consumed})
    for path, new in sorted(arm.renames.items(), key=lambda item: -_depth(item[0])):
        *parent, old = _segments(path)
        _visit(body, parent, partial(_rename, old=old, new=new))
    for nest in sorted(arm.nests, key=lambda n: -_depth(n.path)):
        _visit(body, _segments(nest.path), partial(_nest, keep=nest.keep))
    top = {key: body.pop(key) for key in list(body) if key in arm.top_level}
    if isinstance(top.get("identity"), dict):
        top["identity"] = _identity(top["identity"])
    entry: dict[str, Any] = {
        "type": arm.type,
        "apiVersion": arm.api_version,
        "name": _name(arm, resource),
        **top,
        "properties": body,
    }
    if scope := "/".join(str(resource.inputs[key]) for key in arm.scope if resource.inputs.get(key)):
        entry["scope"] = scope
    return {key: entry[key] for key in TOP_LEVEL_ORDER if key in entry}


def _fields(template: str) -> list[str]:
    return [name for _, name, _, _ in Formatter().parse(template) if name]


def _name(arm: ArmType, resource: RecordedResource) -> str:
    fields = _fields(arm.name)
    values: dict[str, str] = {}
    for index, key in enumerate(fields):
        if key in resource.inputs:
            values[key] = str(resource.inputs[key])
        elif index == len(fields) - 1:  # auto-named by Pulumi: the logical name stands in for the generated one
            values[key] = resource.name
        else:
            raise ValueError(f"{resource.typ} {resource.name}: no {key!r} input to name its ARM parent")
    return arm.name.format(**values)


def _segments(path: str) -> list[str]:
    return path.split(".")


def _depth(path: str) -> int:
    return len(_segments(path))


def _visit(node: Any, segments: list[str], action: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``action`` to every object that ``segments`` reach from ``node`` (``key[]`` walks each list item)."""
    if not isinstance(node, dict):
        return
    if not segments:
        action(node)
        return
    head, *rest = segments
    child = node.get(head.removesuffix("[]"))
    if head.endswith("[]"):
        for item in child if isinstance(child, list) else []:
            _visit(item, rest, action)
    else:
        _visit(child, rest, action)


def _rename(node: dict[str, Any], old: str, new: str) -> None:
    if old in node:
        node[new] = node.pop(old)


def _nest(node: dict[str, Any], keep: tuple[str, ...]) -> None:
    moved = {key: node.pop(key) for key in list(node) if key not in keep}
    if moved:
        node["properties"] = moved


def _identity(identity: dict[str, Any]) -> dict[str, Any]:
    """ARM maps each user-assigned identity id to an (output-only) object; azure-native takes a list of ids."""
    ids = identity.get("userAssignedIdentities")
    if isinstance(ids, list):
        return {**identity, "userAssignedIdentities": {str(i): {} for i in ids}}
    return identity


def _plain(value: Any) -> Any:
    """A deep copy as plain JSON: secrets redacted, integral floats as ints (Pulumi sends every number as a float)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            return REDACTED
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
