"""Every Azure name the program declares, per stack, against the service's naming rules (infra/naming.py cites the
page), and the values Azure refuses: the Event Hubs namespace's global name, Stream Analytics' streaming-unit steps."""

from __future__ import annotations

import pytest

from infra.config import VALID_STREAMING_UNITS, ConfigError, parse_config
from infra.naming import RULES, NameSeed, name_errors, stack_names
from tests.infra.conftest import SUBSCRIPTION, Deploy, Recorded
from tests.infra.test_config import stack_file_config

# The input that carries a resource's own name, per type (the rest are azure-native auto-names).
NAME_INPUT = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:eventhub:Namespace": "namespaceName",
    "azure-native:eventhub:EventHub": "eventHubName",
    "azure-native:eventhub:ConsumerGroup": "consumerGroupName",
    "azure-native:streamanalytics:StreamingJob": "jobName",
    "azure-native:containerregistry:Registry": "registryName",
    "azure-native:batch:BatchAccount": "accountName",
    "azure-native:batch:Pool": "poolName",
    "azure-native:containerinstance:ContainerGroup": "containerGroupName",
    "azure-native:logic:Workflow": "workflowName",
    "azure-native:monitor:ActionGroup": "actionGroupName",
    "azure-native:monitor:MetricAlert": "ruleName",
    "azure-native:monitor:ScheduledQueryRule": "ruleName",
    "azure-native:monitor:ActivityLogAlert": "activityLogAlertName",
    "azure-native:monitor:DiagnosticSetting": "name",
    "azure-native:network:VirtualNetwork": "virtualNetworkName",
    "azure-native:network:Subnet": "subnetName",
    "azure-native:network:NetworkSecurityGroup": "networkSecurityGroupName",
    "azure-native:network:PublicIPAddress": "publicIpAddressName",
    "azure-native:network:NatGateway": "natGatewayName",
    "azure-native:network:PrivateEndpoint": "privateEndpointName",
    "azure-native:network:PrivateDnsZoneGroup": "privateDnsZoneGroupName",
    "azure-native:privatedns:VirtualNetworkLink": "virtualNetworkLinkName",
    "azure-native:authorization:ManagementLockByScope": "lockName",
}
# Named by Azure or fixed, not by this program's names: nothing to check against a length or character rule.
NOT_NAMED_HERE = {
    "azure-native:authorization:RoleAssignment",  # a GUID azure-native generates
    "azure-native:authorization:RoleDefinition",  # a GUID; roleName is a display name (finding 7)
    "azure-native:storage:BlobServiceProperties",  # must be "default"
    "azure-native:storage:ManagementPolicy",  # must be "default"
    "azure-native:eventhub:NamespaceNetworkRuleSet",  # "default"
    "azure-native:privatedns:PrivateZone",  # privatelink.* zone names Azure prescribes
    "azure-native:applicationinsights:Component",
}
# azure-native's auto-name: the logical name and a random suffix; the longest it can be.
AUTONAME_SUFFIX = "x" * 8


def azure_name(resource: Recorded) -> str:
    key = NAME_INPUT[resource.typ]
    return str(resource.inputs[key]) if key in resource.inputs else resource.name + AUTONAME_SUFFIX


def declared_names(deploy: Deploy, stack: str, **overrides: object) -> list[tuple[Recorded, str]]:
    config = {**stack_file_config(stack), **overrides} if stack in ("dev", "prod") else dict(overrides)
    deployment = deploy(stack=stack, **config)
    azure = [r for r in deployment.mocks.resources if r.typ.startswith("azure-native:")]
    unknown = {r.typ for r in azure} - set(NAME_INPUT) - NOT_NAMED_HERE
    assert not unknown, f"resource types without a naming rule here: {unknown}"
    return [(r, azure_name(r)) for r in azure if r.typ in NAME_INPUT]


@pytest.mark.parametrize(
    ("stack", "overrides"),
    [
        ("dev", {}),
        ("prod", {}),
        # A stack name as long and odd as Pulumi allows, with the longest prefix and telemetry on.
        ("feature_x.review-2026-12-01-" + "y" * 60, {"namePrefix": "abcdefgh", "telemetry": True}),
    ],
)
def test_every_declared_name_obeys_its_service_rules(deploy: Deploy, stack: str, overrides: dict[str, object]) -> None:
    names = declared_names(deploy, stack, **overrides)
    assert len(names) > 20
    errors = [f"{r.typ} {r.name}: {e}" for r, name in names for e in RULES[r.typ].errors(name)]
    assert not errors, "\n".join(errors)
    # Names unique within their scope: no two resources of a type share one.
    for typ in {r.typ for r, _ in names}:
        same_type = [name for r, name in names if r.typ == typ and RULES[typ].scope in ("global", "region")]
        assert len(same_type) == len(set(same_type)), typ


def test_global_names_carry_a_stack_suffix(deploy: Deploy) -> None:
    """Event Hubs namespaces are global DNS names ("global, 6-50", resource-name-rules): two users deploying the
    defaults must not collide. The namespace used to be `bscore-dev-events` for everyone."""
    names = {r.typ: n for r, n in declared_names(deploy, "dev")}
    expected = stack_names(NameSeed(SUBSCRIPTION, "project", "dev", "bscore", "westeurope"))
    assert names["azure-native:eventhub:Namespace"] == expected.event_hubs_namespace
    assert names["azure-native:eventhub:Namespace"] != "bscore-dev-events"
    assert names["azure-native:storage:StorageAccount"] == expected.storage_account
    assert names["azure-native:containerregistry:Registry"] == expected.registry
    assert names["azure-native:batch:BatchAccount"] == expected.batch_account


def test_suffix_separates_users_stacks_and_locations() -> None:
    def globals_of(seed: NameSeed) -> tuple[str, ...]:
        n = stack_names(seed)
        return n.storage_account, n.event_hubs_namespace, n.registry, n.batch_account

    base = NameSeed(SUBSCRIPTION, "batchscoring", "dev", "bscore", "westeurope")
    others = [
        NameSeed("99999999-1111-2222-3333-444444444444", "batchscoring", "dev", "bscore", "westeurope"),  # other user
        NameSeed(SUBSCRIPTION, "batchscoring", "prod", "bscore", "westeurope"),
        NameSeed(SUBSCRIPTION, "other", "dev", "bscore", "westeurope"),
        NameSeed(SUBSCRIPTION, "batchscoring", "dev", "bscore", "northeurope"),
    ]
    for other in others:
        assert not set(globals_of(base)) & set(globals_of(other)), other
    # Stable: the same inputs give the same names on every run (and the subscription's case does not matter).
    assert globals_of(base) == globals_of(NameSeed(SUBSCRIPTION.upper(), *list(vars(base).values())[1:]))


@pytest.mark.parametrize("prefix", ["ab", "bscore", "abcdefgh", "a1b2c3d4"])
@pytest.mark.parametrize(
    "stack", ["dev", "prod", "x", "Feature_Branch.42", "a--b__c..d", "s" * 100, "stack-with-trailing-"]
)
def test_names_valid_for_any_accepted_prefix_and_stack(prefix: str, stack: str) -> None:
    parse_config({"namePrefix": prefix})
    names = stack_names(NameSeed(SUBSCRIPTION, "batchscoring", stack, prefix, "westeurope"))
    assert name_errors(names) == []


def test_name_rules_catch_what_azure_refuses() -> None:
    storage, namespace = RULES["azure-native:storage:StorageAccount"], RULES["azure-native:eventhub:Namespace"]
    assert storage.errors("bscore-dev") and storage.errors("ab") and storage.errors("a" * 25)
    assert namespace.errors("1events-abc") and namespace.errors("events-") and namespace.errors("short")
    assert not namespace.errors("bscore-dev-events-1a2b3c")
    group = RULES["azure-native:containerinstance:ContainerGroup"]
    assert group.errors("a--b") and group.errors("-a") and group.errors("Upper")


@pytest.mark.parametrize("units", VALID_STREAMING_UNITS)
def test_streaming_units_on_the_documented_steps_are_accepted(units: int) -> None:
    assert parse_config({"streamingUnits": units}).streaming_units == units


@pytest.mark.parametrize("units", [2, 4, 5, 7, 9, 10, 13, 20, 100])
def test_streaming_units_between_the_steps_are_refused(units: int) -> None:
    """SU V1: "Valid values for SUs per job are 1, 3, 6, and up in increments of 6" (stream-analytics-streaming-unit-
    consumption); a 4 used to pass the config and fail at the job's creation."""
    with pytest.raises(ConfigError, match=rf"batchscoring:streamingUnits: {units} is not a valid streaming-unit count"):
        parse_config({"streamingUnits": units})


def test_stack_files_use_valid_streaming_units() -> None:
    for stack in ("dev", "prod"):
        assert parse_config(stack_file_config(stack)).sizing.streaming_units in VALID_STREAMING_UNITS
