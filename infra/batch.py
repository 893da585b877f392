"""Azure Batch account and the autoscaling pool that runs the scorer image."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import batch

from infra.autoscale import AutoscaleSpec, autoscale_formula
from infra.network import PrivateNetwork

POOL_PREFIX = "scorers"
MAX_POOL_ID = 64  # Batch pool ids: letters, digits, hyphens and underscores, at most 64 characters

# Which pool properties Batch changes on a running pool. "Update Batch pool properties"
# (learn.microsoft.com/azure/batch/batch-pool-update-properties), Management Plane: Pool - Update (API 2024-07-01
# or newer; this provider uses 2024-07-01): "Some properties can only be updated when the pool has no active nodes
# in it ... The properties that *don't* require the pool to be size zero for the new value to take effect are:
# applicationPackages, certificates, metadata, scaleSettings, startTask ... All other updateable pool properties
# require the pool to be of size zero nodes to be accepted", and Pool - Create (PUT) updates them under the same
# rule. Refused updates fail as `PropertyCannotBeUpdated` on properties.deploymentConfiguration (Azure/Batch#153,
# azure-sdk-for-net#40325). So:
# - nothing that changes with each code deploy sits in those properties: the prefetch list names the scorer's
#   stable tag, not its digest (tasks pull the digest they name in containerSettings.imageName, whose layers the
#   prefetched tag already holds); the formula (scaleSettings) may change on a running pool;
# - every other property the pool sets goes into its id (`pool_id`): a change yields a new pool name, which the
#   provider can only meet by replacing the pool, create-before-delete: the new pool is created, the submitter's
#   BATCH_POOL_ID switches to it (its container group takes the pool's name), and only then is the old pool deleted
#   (README, "Changing the node size"). No update is ever sent that Batch would refuse with nodes running.


def pool_id(vm_size: str, fixed: object) -> str:
    """The pool's id: the node size, readable, and a digest of every property that needs an empty pool to change."""
    digest = hashlib.sha256(json.dumps([vm_size, fixed], sort_keys=True, default=str).encode()).hexdigest()[:8]
    size = vm_size.lower().removeprefix("standard_").replace("_", "-")
    return f"{POOL_PREFIX}-{size}"[: MAX_POOL_ID - 9] + f"-{digest}"


@dataclass(frozen=True)
class PoolImage:
    """A Marketplace image ("publisher:offer:sku:version", config `poolImage`) and the node agent that runs it."""

    reference: str
    node_agent: str

    def image_reference(self) -> batch.ImageReferenceArgs:
        publisher, offer, sku, version = self.reference.split(":")
        return batch.ImageReferenceArgs(publisher=publisher, offer=offer, sku=sku, version=version)


@dataclass
class BatchComputeArgs:
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    account_name: str
    vm_size: str
    image: PoolImage
    autoscale: AutoscaleSpec
    evaluation_minutes: int
    # The scorer's tag (registry/scorer:latest), pre-pulled when a node starts: a name that stays the same from one
    # code deploy to the next (never the digest: see the note at the top).
    prefetch_image: pulumi.Input[str]
    registry_server: pulumi.Input[str]
    node_identity_id: pulumi.Input[str]  # pulls images and reads/writes blobs on the nodes
    node_grants: Sequence[pulumi.Resource]  # that identity's role assignments: in place before a node starts
    subnet_id: pulumi.Input[str] | None = None
    ephemeral_os_disk: bool = False
    # privateNetwork: the account has no public endpoint; the submitter (batchAccount) and the nodes
    # (nodeManagement, with simplified node communication) reach it through private endpoints ("Create an Azure
    # Batch pool without public IP addresses",
    # learn.microsoft.com/azure/batch/simplified-node-communication-pool-no-public-ip).
    network: PrivateNetwork | None = None
    tags: dict[str, str] = field(default_factory=dict)


class BatchCompute(pulumi.ComponentResource):
    def __init__(self, name: str, args: BatchComputeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("batchscoring:infra:BatchCompute", name, None, opts)
        self.account = batch.BatchAccount(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            pool_allocation_mode=batch.PoolAllocationMode.BATCH_SERVICE,
            allowed_authentication_modes=[batch.AuthenticationMode.AAD],  # no shared keys
            public_network_access=(
                batch.PublicNetworkAccessType.DISABLED if args.network else batch.PublicNetworkAccessType.ENABLED
            ),
            tags={**args.tags, "component": "batch"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        if args.network:
            for group in ("batchAccount", "nodeManagement"):
                args.network.private_endpoint(f"batch-{group.lower()}", self.account.id, group, parent=self.account)
        subnet_id = args.network.subnet_id("pool") if args.network else args.subnet_id
        self.formula = autoscale_formula(args.autoscale)
        node_identity = batch.ComputeNodeIdentityReferenceArgs(resource_id=args.node_identity_id)
        network = (
            batch.NetworkConfigurationArgs(
                subnet_id=subnet_id,
                public_ip_address_configuration=batch.PublicIPAddressConfigurationArgs(
                    provision=batch.IPAddressProvisioningType.NO_PUBLIC_IP_ADDRESSES
                ),
            )
            if subnet_id
            else None
        )
        communication, fill = batch.NodeCommunicationMode.SIMPLIFIED, batch.ComputeNodeFillType.PACK
        # Every input below but the formula needs an empty pool to change: all of them name the pool.
        fixed = pulumi.Output.all(
            task_slots=args.autoscale.task_slots_per_node,
            image=args.image.reference,
            node_agent=args.image.node_agent,
            ephemeral_os_disk=args.ephemeral_os_disk,
            prefetch=args.prefetch_image,
            registry=args.registry_server,
            identity=args.node_identity_id,
            subnet=subnet_id,
            communication=communication,
            fill=fill,
        )
        self.pool = batch.Pool(
            f"{name}-pool",
            pool_name=fixed.apply(lambda values: pool_id(args.vm_size, values)),
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            vm_size=args.vm_size,
            task_slots_per_node=args.autoscale.task_slots_per_node,
            task_scheduling_policy=batch.TaskSchedulingPolicyArgs(node_fill_type=fill),
            identity=batch.BatchPoolIdentityArgs(
                type=batch.PoolIdentityType.USER_ASSIGNED, user_assigned_identities=[args.node_identity_id]
            ),
            deployment_configuration=batch.DeploymentConfigurationArgs(
                virtual_machine_configuration=batch.VirtualMachineConfigurationArgs(
                    image_reference=args.image.image_reference(),
                    node_agent_sku_id=args.image.node_agent,
                    # The OS disk, and Docker's images and layers under /var/lib/docker with it, on the VM's local
                    # cache disk: no managed disk to pay for, faster pulls. Batch's only placement is CacheDisk
                    # (DiffDiskPlacement, Batch API), so the size needs a cache disk larger than the image.
                    os_disk=batch.OSDiskArgs(
                        ephemeral_os_disk_settings=batch.DiffDiskSettingsArgs(
                            placement=batch.DiffDiskPlacement.CACHE_DISK
                        )
                    )
                    if args.ephemeral_os_disk
                    else None,
                    container_configuration=batch.ContainerConfigurationArgs(
                        type=batch.ContainerType.DOCKER_COMPATIBLE,
                        container_image_names=[args.prefetch_image],  # pre-fetched when a node starts
                        container_registries=[
                            batch.ContainerRegistryArgs(
                                registry_server=args.registry_server, identity_reference=node_identity
                            )
                        ],
                    ),
                )
            ),
            scale_settings=batch.ScaleSettingsArgs(
                auto_scale=batch.AutoScaleSettingsArgs(
                    formula=self.formula, evaluation_interval=f"PT{args.evaluation_minutes}M"
                )
            ),
            network_configuration=network,
            target_node_communication_mode=communication,
            opts=pulumi.ResourceOptions(
                parent=self.account,
                # Nodes start running as the scorer once the pool exists: its grants first, and in a private
                # network the private endpoints (storage, registry, Batch node management) and their DNS records.
                depends_on=[*args.node_grants, *(args.network.ready if args.network else [])],
                custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m", delete="30m"),
                # A new pool (new id) before the old one goes, so the submitter always names a pool that exists.
                delete_before_replace=False,
            ),
        )
        self.account_endpoint = self.account.account_endpoint.apply(lambda host: f"https://{host}")
        self.pool_id = self.pool.name
        self.register_outputs({"account_endpoint": self.account_endpoint, "pool_id": self.pool_id})
