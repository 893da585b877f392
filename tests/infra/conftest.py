"""Pulumi mocks: record every resource with its real inputs, answer the few invokes the program uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest
from pulumi.runtime.mocks import MockMonitor

from infra.config import parse_config
from infra.platform import BatchScoringPlatform

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
TENANT = "tenant-0001"
WORKFLOW_CREATED = "2026-12-01T10:37:12.1234567Z"  # Logic Apps' createdTime, as ARM returns it

# The input that names the resource itself, most specific first (a pool also names its account).
NAME_INPUTS = (
    "consumerGroupName",
    "eventHubName",
    "inputName",
    "outputName",
    "subnetName",
    "privateEndpointName",
    "privateDnsZoneGroupName",
    "virtualNetworkLinkName",
    "privateZoneName",
    "virtualNetworkName",
    "networkSecurityGroupName",
    "natGatewayName",
    "publicIpAddressName",
    "lockName",
    "blobServicesName",
    "managementPolicyName",
    "containerName",
    "poolName",
    "containerGroupName",
    "jobName",
    "registryName",
    "workflowName",
    "roleName",
    "resourceName",
    "namespaceName",
    "accountName",
    "resourceGroupName",
)


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)  # what the mock answered: inputs and computed values
    urn: str = ""
    dependencies: frozenset[str] = frozenset()  # URNs: explicit depends_on (components expanded) and inputs' sources
    protect: bool = False
    hooks: dict[str, list[str]] = field(default_factory=dict)  # e.g. {"before_update": ["some-hook"]}
    ignore_changes: list[str] = field(default_factory=list)  # the input properties the engine leaves alone


def _azure_name(args: pulumi.runtime.MockResourceArgs) -> str:
    return next((str(args.inputs[k]) for k in NAME_INPUTS if k in args.inputs), args.name)


def computed(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
    """What Azure would fill in on create, for the outputs the program reads."""
    name = _azure_name(args)
    extra: dict[str, Any] = {"name": name}
    identity = args.inputs.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        # Requests list the identities; responses map each to its principal and client ids.
        extra["identity"] = {**identity, "userAssignedIdentities": {i: {} for i in identity["userAssignedIdentities"]}}
    if args.typ == "azure-native:storage:StorageAccount":
        extra["primaryEndpoints"] = {"blob": f"https://{name}.blob.core.windows.net/"}
    elif args.typ == "azure-native:containerregistry:Registry":
        extra["loginServer"] = f"{name}.azurecr.io"
    elif args.typ == "azure-native:batch:BatchAccount":
        extra["accountEndpoint"] = f"{name}.westeurope.batch.azure.com"
    elif args.typ == "azure-native:managedidentity:UserAssignedIdentity":
        extra |= {"principalId": f"{name}-principal", "clientId": f"{name}-client"}
    elif args.typ in ("azure-native:streamanalytics:StreamingJob", "azure-native:logic:Workflow"):
        extra["identity"] = {"type": "SystemAssigned", "principalId": f"{args.name}-principal"}
    elif args.typ == "docker:index/image:Image":
        extra["repoDigest"] = f"{str(args.inputs['imageName']).rsplit(':', 1)[0]}@sha256:{'0' * 64}"
    if args.typ == "azure-native:logic:Workflow":
        extra["createdTime"] = WORKFLOW_CREATED
    return extra


@dataclass
class Mocks(pulumi.runtime.Mocks):
    resources: list[Recorded] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        outputs = {**args.inputs, **computed(args)}
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs), outputs))
        return f"/mock/{args.typ}/{args.name}", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append(args.token)
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": SUBSCRIPTION, "tenantId": TENANT, "clientId": "deployer", "objectId": "deployer"}
        if args.token == "azure-native:authorization:getClientToken":
            return {"token": "entra-access-token"}
        return {}

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_suffix: str = "") -> Recorded:
        found = [r for r in self.of_type(typ) if r.name.endswith(name_suffix)]
        assert len(found) == 1, f"expected one {typ} ending {name_suffix!r}, found {[r.name for r in found]}"
        return found[0]

    def inputs(self, typ: str, name_suffix: str = "") -> dict[str, Any]:
        return self.one(typ, name_suffix).inputs


class RecordingMonitor(MockMonitor):
    """The mock engine, also keeping what the program asked of the engine for each resource: its dependencies,
    `protect`, hooks and `ignore_changes`. Mocks see only inputs; ordering and life-cycle options are engine-side."""

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method name)
        response = super().RegisterResource(request)
        mocks = self.mocks
        assert isinstance(mocks, Mocks)
        # Registrations run on several threads: find this one by type and name (unique together), not by order.
        recorded = next((r for r in mocks.resources if r.typ == request.type and r.name == request.name), None)
        if recorded is None:  # the stack itself, which the mock engine does not pass to the mocks
            return response
        recorded.urn = response.urn
        recorded.dependencies = frozenset(request.dependencies)
        recorded.protect = bool(request.protect)
        recorded.hooks = {
            kind: list(getattr(request.hooks, kind))
            for kind in ("before_create", "after_create", "before_update", "after_update", "before_delete")
            if getattr(request.hooks, kind)
        }
        recorded.ignore_changes = list(request.ignoreChanges)
        return response


@dataclass
class Exchanges:
    """A fake ACR token exchange that records its arguments (no network in tests)."""

    seen: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, login_server: str, tenant: str, token: str) -> str:
        self.seen.append((login_server, tenant, token))
        return "acr-refresh-token"


@dataclass
class Deployment:
    mocks: Mocks
    platform: BatchScoringPlatform
    outputs: dict[str, Any]


Deploy = Callable[..., Deployment]


@pytest.fixture
def deploy() -> Deploy:
    """Run the real program against mocks with camelCase config overrides; wait for every resource."""

    def run(stack: str = "dev", exchanger: Exchanges | None = None, **config: Any) -> Deployment:
        mocks = Mocks()
        pulumi.runtime.set_mocks(mocks, preview=False, monitor=RecordingMonitor(mocks))
        built: list[BatchScoringPlatform] = []
        resolved: dict[str, Any] = {}

        @pulumi.runtime.test
        def program() -> pulumi.Output[None]:
            platform = BatchScoringPlatform(
                "batchscoring", parse_config(config), stack, token_exchanger=exchanger or Exchanges()
            )
            built.append(platform)
            keys = list(platform.outputs)
            return pulumi.Output.all(*platform.outputs.values()).apply(
                lambda values: resolved.update(zip(keys, values, strict=True))
            )

        program()
        return Deployment(mocks, built[0], resolved)

    return run
