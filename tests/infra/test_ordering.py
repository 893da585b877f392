"""Order of creation: nothing runs as an identity before all of that identity's role assignments exist.

Mocks record what the program asks of the engine for each resource (tests/infra/conftest.py RecordingMonitor),
so these tests see the dependency edges Pulumi will schedule by, not just the inputs. The consumers are found
generically (whatever refers to an identity), so a new grant or a new consumer cannot slip through.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.infra.conftest import Deploy, Mocks, Recorded

ASSIGNMENT = "azure-native:authorization:RoleAssignment"
UAMI = "azure-native:managedidentity:UserAssignedIdentity"
# Resources whose system-assigned identity has grants, and the input by which a child names them.
SYSTEM_ASSIGNED_PARENT_KEY = {"azure-native:streamanalytics:StreamingJob": "jobName"}


@dataclass(frozen=True)
class Holder:
    """An identity: a user-assigned one, or the system-assigned identity of a resource."""

    resource: Recorded
    principal_id: str

    def is_used_by(self, other: Recorded) -> bool:
        if other is self.resource or other.typ == ASSIGNMENT or other.typ.startswith("batchscoring:"):
            return False
        if other.typ.startswith(OBSERVERS):  # they name a resource to watch it, never act as its identity
            return False
        own_id = f"/mock/{self.resource.typ}/{self.resource.name}"
        if own_id in json.dumps(other.inputs, default=str):
            return True
        key = SYSTEM_ASSIGNED_PARENT_KEY.get(self.resource.typ)
        return key is not None and other.inputs.get(key) == self.resource.outputs["name"]


OBSERVERS = (
    "azure-native:monitor:",
    "azure-native:operationalinsights:",
    # Records when the job's first start was asked for (infra/stream_job.py); it names the job, never calls it.
    "pulumi-python:dynamic/batchscoring:StreamJobFirstStart",
)


def holders(mocks: Mocks) -> Iterator[Holder]:
    for r in mocks.resources:
        if r.typ == UAMI:
            yield Holder(r, r.outputs["principalId"])
        elif r.typ in SYSTEM_ASSIGNED_PARENT_KEY:
            yield Holder(r, r.outputs["identity"]["principalId"])


def edges(mocks: Mocks) -> dict[str, dict[str, list[str]]]:
    """{identity: {consumer: [its grants it depends on]}}; also asserts each consumer depends on all of them."""
    found: dict[str, dict[str, list[str]]] = {}
    for holder in holders(mocks):
        grants = [g for g in mocks.of_type(ASSIGNMENT) if g.inputs["principalId"] == holder.principal_id]
        assert grants, f"{holder.resource.name} has no role assignments"
        consumers = [r for r in mocks.resources if holder.is_used_by(r)]
        found[holder.resource.name] = {}
        for consumer in consumers:
            missing = [g.name for g in grants if g.urn not in consumer.dependencies]
            assert not missing, f"{consumer.typ} {consumer.name} uses {holder.resource.name} before {missing}"
            found[holder.resource.name][consumer.name] = sorted(g.name for g in grants)
    return found


@pytest.mark.parametrize(
    "stack,overrides",
    [("dev", {}), ("prod", {"privateNetwork": True, "registrySku": "Premium", "adminIpRanges": ["203.0.113.0/24"]})],
)
def test_every_consumer_of_an_identity_waits_for_all_its_grants(
    deploy: Deploy, stack: str, overrides: dict[str, object]
) -> None:
    found = edges(deploy(stack=stack, **overrides).mocks)
    for identity, consumers in sorted(found.items()):  # the closing note prints these (pytest -s)
        for consumer, grants in sorted(consumers.items()):
            print(f"{identity} -> {consumer}: after {', '.join(grants)}")
    consumers = {identity: sorted(c) for identity, c in found.items()}
    assert consumers == {
        "batchscoring-identities-scorer": [
            "batchscoring-batch-pool",
            "batchscoring-scheduler-submitter",  # its tasks run as the scorer
        ],
        "batchscoring-identities-submitter": ["batchscoring-scheduler-submitter"],
        "batchscoring-identities-scheduler": ["batchscoring-scheduler-workflow"],
        # The job's inputs and outputs are written by its deployment (infra/stream_job.py), after the grants.
        "batchscoring-ingestion-job": ["batchscoring-stream-run"],
    }


def test_a_consumer_missing_one_grant_is_caught(deploy: Deploy) -> None:
    """The check itself can fail: drop one edge from the recorded pool and it must name the missing grant."""
    mocks = deploy().mocks
    pool = mocks.one("azure-native:batch:Pool")
    pull = mocks.one(ASSIGNMENT, "scorer-access-pull")
    pool.dependencies = pool.dependencies - {pull.urn}
    with pytest.raises(AssertionError, match="scorer-access-pull"):
        edges(mocks)


DEPLOYMENT = "pulumi-python:dynamic/batchscoring:StreamJobDeployment"


def test_the_stream_job_deployment_waits_for_the_job_its_grants_and_everything_it_names(deploy: Deploy) -> None:
    """Its create PUTs the input and output (as the job's identity) and the query: all of these must exist first."""
    mocks = deploy().mocks
    run = mocks.one(DEPLOYMENT, "stream-run")
    parts = [
        mocks.one("azure-native:streamanalytics:StreamingJob"),
        mocks.one("azure-native:eventhub:EventHub"),
        mocks.one("azure-native:eventhub:ConsumerGroup"),
        mocks.one("azure-native:storage:StorageAccount"),
        mocks.one(ASSIGNMENT, "stream-access-read-events"),
        mocks.one(ASSIGNMENT, "stream-access-write-aggregates"),
        mocks.one("pulumi-python:dynamic/batchscoring:StreamJobFirstStart"),  # the time its first start starts at
    ]
    missing = [r.name for r in parts if r.urn not in run.dependencies]
    assert not missing, f"the stream job deployment may run before {missing}"


def test_the_job_is_create_only_and_nothing_carries_hooks(deploy: Deploy) -> None:
    """Engine-side: azure-native never updates the job (its full PUT fails, pulumi-azure-native#688/#785); the
    deployment owns every property that may change. No resource hooks are left to stop or start the job."""
    mocks = deploy().mocks
    job = mocks.one("azure-native:streamanalytics:StreamingJob")
    assert sorted(job.ignore_changes) == sorted(
        [
            "transformation",
            "functions",
            "eventsLateArrivalMaxDelayInSeconds",
            "eventsOutOfOrderMaxDelayInSeconds",
            "eventsOutOfOrderPolicy",
            "outputErrorPolicy",
            "compatibilityLevel",
            "sku",
            "tags",
        ]
    )
    # Every job input that is not create-only is one azure-native would update with its failing full PUT.
    create_only = {"resourceGroupName", "location", "identity", "jobName"}
    assert set(job.inputs) - create_only <= set(job.ignore_changes), "a job input azure-native would update"
    assert [r.name for r in mocks.resources if r.hooks] == []
    assert not mocks.of_type("azure-native:streamanalytics:Input")
    assert not mocks.of_type("azure-native:streamanalytics:Output")


def test_in_a_private_network_workloads_start_after_every_private_endpoint_and_its_dns(deploy: Deploy) -> None:
    mocks = deploy(stack="prod", privateNetwork=True, registrySku="Premium", adminIpRanges=["203.0.113.0/24"]).mocks
    ready = [
        r
        for r in mocks.resources
        if r.typ in ("azure-native:network:PrivateEndpoint", "azure-native:network:PrivateDnsZoneGroup")
    ]
    assert len(ready) == 8  # blob, registry, batchAccount, nodeManagement: an endpoint and a DNS group each
    for consumer in (mocks.one("azure-native:batch:Pool"), mocks.one("azure-native:containerinstance:ContainerGroup")):
        missing = [r.name for r in ready if r.urn not in consumer.dependencies]
        assert not missing, f"{consumer.name} may start before {missing}"


# --- issue 16: grants taking effect, the custom role replicating, the delegated subnet on destroy ----------------

WAIT = "pulumi-python:dynamic/batchscoring:Wait"
PRIVATE = {"privateNetwork": True, "registrySku": "Premium", "adminIpRanges": ["203.0.113.0/24"]}


@pytest.mark.parametrize("stack,overrides", [("dev", {}), ("prod", PRIVATE)])
def test_the_submitter_group_and_the_pool_start_only_after_their_grants_have_settled(
    deploy: Deploy, stack: str, overrides: dict[str, object]
) -> None:
    """ACI pulls and runs the group when it is created, nodes pull when they start: both as identities whose AcrPull
    was granted moments before. Each waits for a pause that itself follows every grant of its identity."""
    from infra.identity import GRANT_SETTLE_SECONDS

    mocks = deploy(stack=stack, **overrides).mocks
    for policy, consumers in (
        ("submitter-access", ("azure-native:containerinstance:ContainerGroup",)),
        ("scorer-access", ("azure-native:containerinstance:ContainerGroup", "azure-native:batch:Pool")),
    ):
        settle = mocks.one(WAIT, f"{policy}-settle")
        assert settle.inputs["create_seconds"] == GRANT_SETTLE_SECONDS
        grants = [g for g in mocks.of_type(ASSIGNMENT) if g.name.startswith(f"batchscoring-{policy}-")]
        assert grants and all(g.urn in settle.dependencies for g in grants), f"{policy}-settle before its grants"
        assert sorted(settle.inputs["triggers"]) == sorted(f"/mock/{ASSIGNMENT}/{g.name}" for g in grants)
        for typ in consumers:
            consumer = mocks.one(typ)
            assert settle.urn in consumer.dependencies, f"{consumer.name} may start before {policy} has settled"


def test_the_custom_role_is_assigned_only_after_its_definition_has_settled(deploy: Deploy) -> None:
    from infra.identity import ROLE_DEFINITION_SETTLE_SECONDS

    mocks = deploy().mocks
    definition = mocks.one("azure-native:authorization:RoleDefinition")
    settle = mocks.one(WAIT, "role-group-starter-settle")
    assignment = mocks.one(ASSIGNMENT, "scheduler-access-start-submitter")
    assert definition.urn in settle.dependencies
    assert settle.inputs["create_seconds"] == ROLE_DEFINITION_SETTLE_SECONDS
    assert {definition.urn, settle.urn} <= assignment.dependencies
    assert assignment.inputs["roleDefinitionId"] == f"/mock/{definition.typ}/{definition.name}"


def test_in_a_private_network_destroy_deletes_the_group_then_waits_then_the_delegated_subnet(deploy: Deploy) -> None:
    """Pulumi deletes a resource before what it depends on: group -> release (waits for ACI's service association
    link to go) -> submitter subnet. Nothing else may sit in the delegated subnet, and no network profile is used."""
    from infra.network import ACI_LINK_RELEASE_SECONDS

    mocks = deploy(stack="prod", **PRIVATE).mocks
    group = mocks.one("azure-native:containerinstance:ContainerGroup")
    release = mocks.one(WAIT, "submitter-release")
    subnet = mocks.one("azure-native:network:Subnet", "network-submitter")
    assert release.inputs["delete_seconds"] == ACI_LINK_RELEASE_SECONDS and not release.inputs["create_seconds"]
    assert release.urn in group.dependencies
    assert subnet.urn in release.dependencies and subnet.urn in group.dependencies
    assert group.urn not in subnet.dependencies and release.urn not in subnet.dependencies
    subnet_id = f"/mock/{subnet.typ}/{subnet.name}"
    assert group.inputs["subnetIds"] == [{"id": subnet_id}]
    users = [
        r.name
        for r in mocks.resources
        if subnet_id in json.dumps(r.inputs, default=str) and r.typ not in (WAIT, group.typ)
    ]
    assert users == [], f"only container groups may use the ACI-delegated subnet: {users}"
    assert not [r for r in mocks.resources if r.typ == "azure-native:network:NetworkProfile"]


def test_dev_has_no_subnet_to_release(deploy: Deploy) -> None:
    mocks = deploy().mocks
    assert not [r for r in mocks.of_type(WAIT) if r.name.endswith("submitter-release")]
    assert "subnetIds" not in mocks.inputs("azure-native:containerinstance:ContainerGroup")
